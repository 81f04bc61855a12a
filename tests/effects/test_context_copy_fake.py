"""The context copy (CopyTree, nucleus.effects.fs.copy_tree), the walk it shares with the
measurement and the manifest (nucleus.effects.tree), and the measurement itself
(nucleus.effects.prepare), against real files in tmp_path and the recording fake of libc: what
is copied and left out, that the walk reads only by descriptor and fails on an entry swapped
under it, whose identity it takes around each lookup (and that it is back to its own before
every write), sparse files, and errors that name the entry. Runs as any user."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from nucleus import vocab as v
from nucleus.config.context import Matcher, exclusion_list
from nucleus.effects import fs, integrity, prepare, tree
from nucleus.errors import InvalidInput
from tests.fakes.libc import fake_libc_fixture  # noqa: F401 - the fake_libc fixture

ALICE = 4242
MiB = 1 << 20


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    os.chmod(root / "a.txt", 0o640)
    (root / "sub" / "b.txt").write_text("beta\n")
    (root / "sub" / "deep" / "c.sh").write_text("echo c\n")
    os.chmod(root / "sub" / "deep" / "c.sh", 0o4755)  # setuid: never copied as such
    os.symlink("/etc/shadow", root / "shadow-link")
    os.symlink("a.txt", root / "rel-link")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / ".env").write_text("TOKEN=1\n")
    (root / ".env.example").write_text("TOKEN=\n")
    (root / "id_ed25519").write_text("k\n")
    (root / "deploy").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n")
    (root / "secrets_manager.py").write_text("class SecretsManager: ...\n")
    os.mkfifo(root / "sub" / "fifo")
    return root


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "context"
    path.mkdir()
    return path


def copy(source, target, **fields) -> None:
    fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs.copy_tree(v.CopyTree(str(source), str(target), exclusion_list(), opened=fd, **fields))
    finally:
        os.close(fd)


def listing(root) -> dict[str, object]:
    out: dict[str, object] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(stat.S_IMODE(st.st_mode)))
            else:
                with open(path) as f:
                    out[rel] = ("file", f.read(), oct(stat.S_IMODE(st.st_mode)))
    return out


def test_the_copy_holds_what_the_rules_keep(fake_libc, src, target):
    copy(src, target, owner=(100000, 100000))
    assert listing(target) == {
        "a.txt": ("file", "alpha\n", "0o640"),
        ".env.example": ("file", "TOKEN=\n", "0o644"),
        "secrets_manager.py": ("file", "class SecretsManager: ...\n", "0o644"),
        "shadow-link": ("link", "/etc/shadow"),
        "rel-link": ("link", "a.txt"),
        "sub": ("dir", "0o755"),
        "sub/b.txt": ("file", "beta\n", "0o644"),
        "sub/deep": ("dir", "0o755"),
        "sub/deep/c.sh": ("file", "echo c\n", "0o755"),  # without its setuid bit
    }
    # Every entry chowned to container root (links themselves), and no identity switched.
    chowned = sorted(os.path.relpath(path, target) for path, *_ in fake_libc.of("lchown"))
    assert chowned == sorted(listing(target))
    assert all(args[1:] == (100000, 100000) for args in fake_libc.of("lchown"))
    assert "setfsuid" not in fake_libc.names() and "setgroups" not in fake_libc.names()


def test_the_copy_needs_the_descriptor_opened_before_the_run(fake_libc, src, target):
    with pytest.raises(OSError) as info:
        fs.copy_tree(v.CopyTree(str(src), str(target), exclusion_list()))
    assert info.value.errno == errno.EBADF
    assert "it was not opened before the setup process was started" in str(info.value)
    assert os.listdir(target) == []


def test_the_copy_reads_the_descriptor_never_the_path(fake_libc, src, target, tmp_path):
    """The directory opened before the run is copied, whatever the path names by then."""
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rename(src, tmp_path / "moved")
        other = tmp_path / "other"
        other.mkdir()
        (other / "planted").write_text("not the context\n")
        os.symlink(other, src)
        fs.copy_tree(v.CopyTree(str(src), str(target), exclusion_list(), opened=fd))
    finally:
        os.close(fd)
    assert "planted" not in os.listdir(target) and (target / "a.txt").read_text() == "alpha\n"


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_directory_swapped_while_the_walk_runs_fails_the_copy_naming_it(fake_libc, src, target,
                                                                         tmp_path, monkeypatch, kind):
    """Between the listing (a directory) and its open: swapped for a symlink to a tree
    elsewhere, or for a file. The open does not follow it and the copy stops, naming it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "root-only").write_text("secret\n")
    real_open = os.open

    def swapping_open(path, flags, mode=0o777, *, dir_fd=None):
        if path == "sub" and flags & os.O_DIRECTORY and dir_fd is not None:
            os.rename("sub", "sub.moved", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            if kind == "symlink":
                os.symlink(str(outside), "sub", dir_fd=dir_fd)
            else:
                os.close(real_open("sub", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dir_fd))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(tree.os, "open", swapping_open)
    with pytest.raises(OSError) as info:
        copy(src, target)
    monkeypatch.undo()
    assert info.value.errno == errno.ESTALE
    assert str(info.value) == (f"[Errno {errno.ESTALE}] copying the context {str(src)!r}: "
                               "'sub': changed while it was read")
    assert not any("root-only" in names for _, _, names in os.walk(target))


def test_a_file_that_cannot_be_read_stops_the_copy_naming_it(fake_libc, src, target):
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 0")
    os.chmod(src / "sub" / "b.txt", 0)
    with pytest.raises(OSError) as info:
        copy(src, target)
    assert info.value.errno == errno.EACCES
    assert str(info.value).endswith("copying the context "
                                    f"{str(src)!r}: 'sub/b.txt': Permission denied")


def test_a_full_tmpfs_names_the_file_and_the_flag(fake_libc, src, target, monkeypatch):
    def full(fin, fout, st):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fs, "copy_data", full)
    with pytest.raises(OSError) as info:
        copy(src, target)
    assert info.value.errno == errno.ENOSPC
    assert info.value.strerror == (f"copying the context {str(src)!r}: '.env.example': No space "
                                   "left on device; the context's tmpfs is full (--context-size "
                                   "sets its size)")


# --- whose identity ------------------------------------------------------------------------------


def script_ids(fake_libc) -> None:
    fake_libc.answer("setfsuid", lambda uid: 0).answer("setfsgid", lambda gid: 0)


def test_reading_as_another_user_switches_around_each_lookup_and_back_before_each_write(
        fake_libc, tmp_path, target):
    """The user's ids and groups are taken before a directory is listed and its entries looked
    up and opened, and the process's own are back before anything is written (a copy writes as
    root); the groups are restored at the end."""
    root = tmp_path / "src"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_text("x")
    script_ids(fake_libc)
    me, euid, egid, groups = os.stat(root / "d").st_uid, os.geteuid(), os.getegid(), os.getgroups()
    reads_d = ALICE if me == 0 else me  # root's directory in alice's tree: still alice
    copy(root, target, read_as=ALICE,
         identities=((ALICE, 4343, (4343, 27)),) + (((me, me, ()),) if me != 0 else ()))

    def take(uid):
        gid, extra = (4343, [4343, 27]) if uid == ALICE else (uid, [])
        return [("setgroups", (extra,)), ("setfsgid", (gid,)), ("setfsuid", (uid,))]

    back = [("setfsuid", (euid,)), ("setfsgid", (egid,))]
    assert fake_libc.calls == [
        *take(ALICE),    # list the top, look "d" up, open it
        *back,           # make d in the copy
        *take(reads_d),  # list d, look "f" up, open it, read its first bytes
        *back,           # write f
        ("setgroups", (groups,)),  # the process's groups, as they were
    ]
    assert (target / "d" / "f").read_text() == "x"


def test_a_directory_of_another_user_is_read_as_that_user(fake_libc, tmp_path, target):
    """read_as 0 (root reads the top): a directory owned by another uid is read as its owner,
    a directory of root's inside it still as that owner."""
    root = tmp_path / "src"
    (root / "theirs" / "roots").mkdir(parents=True)
    (root / "theirs" / "roots" / "f").write_text("x")
    st = os.stat(root)
    me = st.st_uid
    script_ids(fake_libc)
    if me == 0:  # as root the tree can belong to others for real
        os.chown(root / "theirs", ALICE, ALICE)
        owner = ALICE
    else:
        owner = me
    copy(root, target, read_as=0, identities=((owner, owner, ()),))
    taken = [args[0] for args in fake_libc.of("setfsuid") if args[0] != os.geteuid()]
    if me == 0:
        assert taken and set(taken) == {ALICE}  # theirs/ and theirs/roots/ both read as alice
    assert (target / "theirs" / "roots" / "f").read_text() == "x"


def test_an_owner_the_measurement_did_not_see_stops_the_copy(fake_libc, tmp_path, target):
    root = tmp_path / "src"
    (root / "d").mkdir(parents=True)
    script_ids(fake_libc)
    with pytest.raises(OSError) as info:
        copy(root, target, read_as=ALICE)
    assert info.value.errno == errno.ESTALE
    assert "owned by uid 4242, which owned nothing when the context was measured" in str(info.value)


def test_an_identity_the_kernel_refuses_stops_the_copy(fake_libc, tmp_path, target):
    """A --rootless setup process as root has no other uid mapped: setfsuid keeps root."""
    root = tmp_path / "src"
    root.mkdir()
    (root / "f").write_text("x")
    fake_libc.answer("setfsgid", lambda gid: 0).fail("setfsuid", errno.EPERM)
    with pytest.raises(OSError) as info:
        copy(root, target, read_as=ALICE, identities=((ALICE, ALICE, ()),))
    assert info.value.errno == errno.EPERM
    assert "setfsuid(4242) failed: EPERM" in str(info.value)
    assert os.listdir(target) == []


# --- sparse files --------------------------------------------------------------------------------


def test_a_sparse_file_keeps_its_holes(fake_libc, tmp_path, target):
    root = tmp_path / "src"
    root.mkdir()
    path = root / "disk.img"
    with open(path, "wb") as f:
        f.truncate(256 * MiB)
        f.seek(64 * MiB)
        f.write(b"middle")
        f.seek(256 * MiB - 3)
        f.write(b"end")
    if os.stat(path).st_blocks * 512 >= 256 * MiB:
        pytest.skip("this file system does not keep holes")
    copy(root, target)
    st = os.stat(target / "disk.img")
    assert st.st_size == 256 * MiB
    assert st.st_blocks * 512 <= 4 * MiB  # the holes stayed holes
    with open(target / "disk.img", "rb") as f:
        assert os.pread(f.fileno(), 6, 64 * MiB) == b"middle"
        assert os.pread(f.fileno(), 3, 256 * MiB - 3) == b"end"
        assert os.pread(f.fileno(), 16, 0) == bytes(16)


def test_a_file_of_holes_only_and_an_empty_one(fake_libc, tmp_path, target):
    root = tmp_path / "src"
    root.mkdir()
    with open(root / "holes", "wb") as f:
        f.truncate(2 << 30)  # 2 GiB, no data
    (root / "empty").write_bytes(b"")
    copy(root, target)
    assert os.stat(target / "holes").st_size == 2 << 30
    assert os.stat(target / "holes").st_blocks == 0
    assert os.stat(target / "empty").st_size == 0


# --- the measurement -----------------------------------------------------------------------------


def test_the_measurement_walks_as_the_copy_does(fake_libc, src):
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        measured, manifest = prepare.measure_context("ctx", fd, Matcher(exclusion_list()), -1, True)
    finally:
        os.close(fd)
    assert measured.files == 5
    assert measured.bytes == 5 * 4096
    assert [rel for rel, _ in measured.largest] == sorted(
        ["a.txt", ".env.example", "secrets_manager.py", "sub/b.txt", "sub/deep/c.sh"], reverse=True)
    assert measured.left_out == (
        (".env", ".env"), (".git/", ".git"), ("deploy", "content:private-key"),
        ("id_ed25519", "id_ed25519"), ("sub/fifo", "special"))
    assert measured.identities == ()
    copied = {rel for rel, _ in manifest}
    assert copied == {".env.example", "a.txt", "rel-link", "secrets_manager.py", "shadow-link", "sub",
                      "sub/b.txt", "sub/deep", "sub/deep/c.sh"}


def test_the_manifest_of_the_copy_is_the_measured_one(fake_libc, src, target):
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _, manifest = prepare.measure_context("ctx", fd, Matcher(exclusion_list()), -1, True)
    finally:
        os.close(fd)
    copy(src, target)
    assert integrity.manifest(target) == dict(manifest or ())


def test_an_unreadable_entry_is_refused_before_the_run(fake_libc, src):
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 0")
    os.chmod(src / "a.txt", 0)
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(InvalidInput) as info:
            prepare.measure_context("./ctx", fd, Matcher(exclusion_list()), -1, False)
    finally:
        os.close(fd)
    assert info.value.message == "--context './ctx': cannot read 'a.txt': Permission denied"
    assert info.value.hint == "leave it out in .nucleusignore, or make it readable"


# --- the ignore file -----------------------------------------------------------------------------


def ignore_of(root) -> tuple:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return prepare.ignore_patterns("ctx", fd, -1)
    finally:
        os.close(fd)


def test_the_ignore_file_is_read_by_descriptor_and_compiled(fake_libc, src, target):
    (src / ".nucleusignore").write_text("# local\nsub/deep/\n*.txt\n!a.txt\n")
    patterns = ignore_of(src)
    assert [(p, neg) for p, _, neg in patterns] == [("sub/deep/", False), ("*.txt", False),
                                                     ("!a.txt", True)]
    copy(src, target, ignore=patterns)
    assert sorted(listing(target)) == [".env.example", ".nucleusignore", "a.txt", "rel-link",
                                       "secrets_manager.py", "shadow-link", "sub"]


def test_without_an_ignore_file_there_are_no_patterns(fake_libc, src):
    assert ignore_of(src) == ()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: os.symlink("/etc/passwd", p), "--context 'ctx': .nucleusignore: Too many levels of symbolic links"),
    (lambda p: p.mkdir(), "--context 'ctx': .nucleusignore: not a regular file of at most 1 MiB"),
    (lambda p: p.write_bytes(b"\xff\xfe"), "--context 'ctx': .nucleusignore: not UTF-8 text"),
    (lambda p: p.write_text("ok\nbad\\\n"), "--context 'ctx': .nucleusignore, line 2: 'bad\\\\' is not a pattern"),
], ids=["symlink", "directory", "binary", "bad-pattern"])
def test_a_bad_ignore_file_is_refused(fake_libc, src, make, message):
    make(src / ".nucleusignore")
    with pytest.raises(InvalidInput) as info:
        ignore_of(src)
    assert info.value.message.startswith(message)


# --- private keys by their content ---------------------------------------------------------------

CERT = ("-----BEGIN CERTIFICATE-----\n" + "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n" * 30
        + "-----END CERTIFICATE-----\n")
PRIVATE = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"


def test_a_certificate_bundle_is_copied_a_key_after_a_chain_is_not(fake_libc, tmp_path, target):
    """A *.pem file is read whole: certifi's cacert.pem holds certificates only; a server's
    combined PEM holds its key after the chain, beyond the first bytes other files are read for."""
    root = tmp_path / "src"
    root.mkdir()
    (root / "cacert.pem").write_text(CERT * 4)
    (root / "combined.pem").write_text(CERT * 3 + PRIVATE)
    assert len(CERT * 3) > 4096
    (root / "notes.txt").write_text(CERT * 3 + PRIVATE)  # not a PEM file: its first bytes only
    (root / "deploy").write_text(PRIVATE)
    (root / "test_keys.py").write_text(f'KEY = """\n{PRIVATE}"""\n')  # source code: copied
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        measured, _ = prepare.measure_context("ctx", fd, Matcher(exclusion_list()), -1, False)
    finally:
        os.close(fd)
    assert measured.left_out == (("combined.pem", "content:private-key"), ("deploy", "content:private-key"))
    copy(root, target)
    assert sorted(os.listdir(target)) == ["cacert.pem", "notes.txt", "test_keys.py"]
