"""The filesystem effects against the recording fake of nucleus.effects.libc: for each intent of
the mount plan, the calls it makes, in order, with the arguments the kernel would receive. The
directories, files and links an effect creates are real, in tmp_path; the mounts, chown, chdir,
chroot and statvfs are the fake's. Runs as any user; tests/kernel proves the same on the kernel."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from nucleus import vocab as v
from nucleus.effects import abi, fs, handlers, setup
from tests.fakes.libc import fake_libc_fixture, mount_flags  # noqa: F401 - the fake_libc fixture
from tests.fakes.serving import serve_batch

NOSUID_NODEV_NOEXEC = abi.MS_NOSUID | abi.MS_NODEV | abi.MS_NOEXEC
ST_NOSUID_NODEV_NOEXEC = os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC


def run(intent: v.Intent) -> None:
    """Carry out ``intent`` as the setup process does: through the handler table."""
    handlers.child_handler(intent)(setup.SetupProcess(), intent)


# --- SetPropagation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "recursive", "flags"),
    [
        ("private", True, abi.MS_PRIVATE | abi.MS_REC),
        ("slave", True, abi.MS_SLAVE | abi.MS_REC),
        ("shared", False, abi.MS_SHARED),
    ],
)
def test_set_propagation(fake_libc, mode, recursive, flags):
    run(v.SetPropagation(target="/", mode=mode, recursive=recursive))
    assert fake_libc.calls == [("mount", (None, "/", None, flags, None))]


# --- MountFs --------------------------------------------------------------------------------------


def test_mount_fs_makes_the_mount_point_then_mounts(fake_libc, tmp_path):
    target = tmp_path / "root" / "tmp"
    run(v.MountFs(fstype="tmpfs", target=str(target), flags=("nosuid", "nodev"),
                  data="size=64m,mode=1777"))
    assert target.is_dir()
    assert fake_libc.calls == [
        ("mount", ("tmpfs", str(target), "tmpfs", abi.MS_NOSUID | abi.MS_NODEV,
                   "size=64m,mode=1777")),
    ]


def test_mount_fs_without_data_passes_null(fake_libc, tmp_path):
    target = tmp_path / "proc"
    target.mkdir()  # an existing mount point is fine
    run(v.MountFs(fstype="proc", target=str(target), flags=("nosuid", "nodev", "noexec")))
    assert fake_libc.calls == [
        ("mount", ("proc", str(target), "proc", NOSUID_NODEV_NOEXEC, None)),
    ]


# --- BindMount ------------------------------------------------------------------------------------


def test_bind_mount_of_a_directory_without_flags_is_one_call(fake_libc, tmp_path):
    source, target = tmp_path / "src", tmp_path / "root" / "data"
    source.mkdir()
    run(v.BindMount(source=str(source), target=str(target), recursive=True))
    assert target.is_dir()
    assert fake_libc.calls == [
        ("mount", (str(source), str(target), None, abi.MS_BIND | abi.MS_REC, None)),
    ]


@pytest.mark.parametrize(
    ("st_flags", "locked"),
    [
        (0, 0),
        (ST_NOSUID_NODEV_NOEXEC, NOSUID_NODEV_NOEXEC),
        (os.ST_RDONLY | os.ST_RELATIME, abi.MS_RDONLY | abi.MS_RELATIME),
        (os.ST_NOATIME | os.ST_RELATIME, abi.MS_NOATIME),  # noatime wins
    ],
    ids=["nothing-locked", "nosuid-nodev-noexec", "rdonly-relatime", "noatime"],
)
def test_bind_mount_with_flags_remounts_keeping_the_locked_flags(fake_libc, tmp_path, st_flags,
                                                                  locked):
    """The flags of a bind mount change only on a remount, and a remount that would clear a
    flag the source mount locks in is refused: the effect reads the new mount's flags (statvfs of
    the target, after the bind) and keeps them."""
    source, target = tmp_path / "src", tmp_path / "root" / "data"
    source.mkdir()
    fake_libc.returns("statvfs", mount_flags(st_flags))
    run(v.BindMount(source=str(source), target=str(target), flags=("rdonly", "nosuid")))
    assert fake_libc.calls == [
        ("mount", (str(source), str(target), None, abi.MS_BIND, None)),
        ("statvfs", (str(target),)),
        ("mount", (None, str(target), None,
                   abi.MS_BIND | abi.MS_REMOUNT | abi.MS_RDONLY | abi.MS_NOSUID | locked, None)),
    ]


def test_bind_mount_of_a_file_makes_an_empty_file_to_mount_on(fake_libc, tmp_path):
    source = tmp_path / "resolv.conf"
    source.write_text("nameserver 10.0.0.1\n")
    target = tmp_path / "root" / "etc" / "resolv.conf"
    run(v.BindMount(source=str(source), target=str(target)))
    assert target.is_file() and target.read_text() == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 & ~_umask()
    assert fake_libc.calls == [("mount", (str(source), str(target), None, abi.MS_BIND, None))]


def test_an_optional_bind_mount_of_a_missing_source_does_nothing(fake_libc, tmp_path):
    target = tmp_path / "root" / "dev" / "kvm"
    run(v.BindMount(source=str(tmp_path / "kvm"), target=str(target), optional=True))
    assert fake_libc.calls == [] and not target.parent.exists()


# --- RemountFs ------------------------------------------------------------------------------------


def test_remount_not_bind_takes_the_flags_as_given(fake_libc):
    run(v.RemountFs(target="/", flags=("rdonly",)))
    assert fake_libc.calls == [
        ("mount", (None, "/", None, abi.MS_REMOUNT | abi.MS_RDONLY, None)),
    ]


def test_remount_bind_keeps_the_locked_flags(fake_libc):
    fake_libc.returns("statvfs", mount_flags(os.ST_NODEV | os.ST_NOSUID))
    run(v.RemountFs(target="/new", flags=("rdonly", "noexec"), bind=True))
    assert fake_libc.calls == [
        ("statvfs", ("/new",)),
        ("mount", (None, "/new", None, abi.MS_REMOUNT | abi.MS_BIND | abi.MS_RDONLY
                   | abi.MS_NOEXEC | abi.MS_NODEV | abi.MS_NOSUID, None)),
    ]


# --- MakeDirs, MakeSymlinks, WriteFile ------------------------------------------------------------


def test_make_dirs_with_an_owner_chowns_each(fake_libc, tmp_path):
    run(v.MakeDirs(root=str(tmp_path), paths=("home/user", "tmp"), mode=0o700,
                   owner=(1000, 1000)))
    assert (tmp_path / "home" / "user").is_dir() and (tmp_path / "tmp").is_dir()
    assert fake_libc.calls == [
        ("chown", (str(tmp_path / "home/user"), 1000, 1000)),
        ("chown", (str(tmp_path / "tmp"), 1000, 1000)),
    ]


def test_make_dirs_without_an_owner_makes_no_call(fake_libc, tmp_path):
    run(v.MakeDirs(root=str(tmp_path), paths=("a/b",)))
    assert (tmp_path / "a" / "b").is_dir() and fake_libc.calls == []


def test_make_symlinks(fake_libc, tmp_path):
    run(v.MakeSymlinks(root=str(tmp_path), links=(("dev/fd", "/proc/self/fd"),
                                                  ("dev/stdin", "/proc/self/fd/0"))))
    assert os.readlink(tmp_path / "dev" / "fd") == "/proc/self/fd"
    assert os.readlink(tmp_path / "dev" / "stdin") == "/proc/self/fd/0"
    assert fake_libc.calls == []


def test_write_file(fake_libc, tmp_path):
    path = tmp_path / "hostname"
    path.write_text("a much longer old content\n")
    run(v.WriteFile(path=str(path), content="box\n", mode=0o644))
    assert path.read_text() == "box\n" and fake_libc.calls == []


def test_write_file_does_not_follow_a_symlink(fake_libc, tmp_path):
    """A link planted where the file goes (in a user's rootfs) must not redirect the write."""
    outside = tmp_path / "host-file"
    outside.write_text("host\n")
    link = tmp_path / "root-etc-hostname"
    link.symlink_to(outside)
    with pytest.raises(OSError) as info:
        run(v.WriteFile(path=str(link), content="box\n"))
    assert info.value.errno == errno.ELOOP
    assert outside.read_text() == "host\n"


# --- MaskPaths ------------------------------------------------------------------------------------


def test_mask_paths_hides_files_and_directories_and_makes_paths_read_only(fake_libc, tmp_path):
    (tmp_path / "proc" / "acpi").mkdir(parents=True)
    (tmp_path / "proc" / "kcore").write_text("")
    (tmp_path / "proc" / "sys").mkdir()
    fake_libc.returns("statvfs", mount_flags(ST_NOSUID_NODEV_NOEXEC),
                      mount_flags(os.ST_NOSUID | os.ST_NODEV))
    run(v.MaskPaths(root=str(tmp_path), paths=("proc/acpi", "proc/kcore", "proc/missing"),
                    readonly=("proc/sys", "proc/sysrq-missing")))
    acpi, kcore, sys_ = (str(tmp_path / "proc" / name) for name in ("acpi", "kcore", "sys"))
    read_only = abi.MS_BIND | abi.MS_REMOUNT | abi.MS_RDONLY
    assert fake_libc.calls == [
        # a directory: an empty read-only tmpfs over it
        ("mount", ("tmpfs", acpi, "tmpfs", abi.MS_RDONLY | NOSUID_NODEV_NOEXEC,
                   "size=0,mode=0555")),
        # a file: /dev/null bound over it, then made read-only keeping the locked flags
        ("mount", ("/dev/null", kcore, None, abi.MS_BIND, None)),
        ("statvfs", (kcore,)),
        ("mount", (None, kcore, None, read_only | NOSUID_NODEV_NOEXEC, None)),
        # read-only: bound onto itself, then remounted read-only
        ("mount", (sys_, sys_, None, abi.MS_BIND | abi.MS_REC, None)),
        ("statvfs", (sys_,)),
        ("mount", (None, sys_, None, read_only | abi.MS_NOSUID | abi.MS_NODEV, None)),
    ]


# --- PivotRoot, DetachOldRoot, Chroot -------------------------------------------------------------


def test_pivot_root_then_detach_the_old_root(fake_libc):
    run(v.PivotRoot(new_root="/run/nucleus/root"))
    assert fake_libc.calls == [("chdir", ("/run/nucleus/root",)), ("pivot_root", (".", "."))]
    run(v.DetachOldRoot())
    assert fake_libc.calls[2:] == [("umount2", (".", abi.MNT_DETACH)), ("chdir", ("/",))]


def test_chroot_moves_the_new_root_over_slash_first(fake_libc):
    run(v.Chroot(new_root="/run/nucleus/root"))
    assert fake_libc.calls == [
        ("chdir", ("/run/nucleus/root",)),
        ("mount", (".", "/", None, abi.MS_MOVE, None)),
        ("chroot", (".",)),
        ("chdir", ("/",)),
    ]


def test_a_failed_pivot_root_stops_there(fake_libc):
    fake_libc.fail("pivot_root", errno.EINVAL)
    with pytest.raises(abi.SyscallError, match=r"^pivot_root\('\.', '\.'\) failed: EINVAL"):
        run(v.PivotRoot(new_root="/new"))
    assert fake_libc.names() == ["chdir", "pivot_root"]


# --- AuditMounts ----------------------------------------------------------------------------------


def _mountinfo(tmp_path, *mounts: tuple[str, str]) -> str:
    lines = [f"{20 + i} 1 0:{i} / {point} {options} - fs none rw\n"
             for i, (point, options) in enumerate(mounts)]
    path = tmp_path / "mountinfo"
    path.write_text("".join(lines))
    return str(path)


def test_audit_mounts_passes_when_every_rule_holds(fake_libc, tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "proc" / "sys").mkdir(parents=True)
    (root / "my data").mkdir()
    (root / "etc").symlink_to(root / "proc" / "sys")  # resolved before the lookup
    monkeypatch.setattr(fs, "MOUNTINFO", _mountinfo(
        tmp_path, ("/", "rw"), (str(root), "ro,nosuid"),
        (f"{root}/proc", "rw,nosuid,nodev,noexec"),
        (f"{root}/proc/sys", "ro,nosuid,nodev,noexec"),
        (f"{root}/my\\040data", "ro,nodev"),
    ))
    run(v.AuditMounts(rules=(
        (str(root), ("rdonly",), True),
        (str(root / "proc"), ("nosuid", "nodev", "noexec"), True),
        (str(root / "etc"), ("rdonly", "noexec"), True),
        (str(root / "my data"), ("rdonly", "nodev"), True),
        (str(root / "optional"), ("rdonly",), False),
    )))
    assert fake_libc.calls == []


def test_audit_mounts_names_every_problem(fake_libc, tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    monkeypatch.setattr(fs, "MOUNTINFO", _mountinfo(
        tmp_path, (str(root), "rw,nosuid"), (f"{root}/proc", "rw,nosuid"),
    ))
    with pytest.raises(OSError) as info:
        run(v.AuditMounts(rules=(
            (str(root), ("rdonly",), True),
            (str(root / "proc"), ("nosuid", "nodev", "noexec"), True),
            (str(root / "sys"), ("rdonly",), True),
            ("/", ("rdonly",), True),  # on no mount this mountinfo lists
        )))
    assert info.value.errno == errno.EPERM
    assert info.value.strerror == (
        f"mount audit: {root} (mount {root}): lacks rdonly; "
        f"{root}/proc (mount {root}/proc): lacks nodev, noexec; "
        f"{root}/sys: missing; /: on no mount"
    )


# --- a failure, as the supervisor receives it -----------------------------------------------------


def test_a_failed_call_is_the_intent_s_fail_event_naming_the_call(fake_libc, tmp_path):
    """Through the real serving loop (in a forked child that inherits the fake): the batch stops
    at the failure, whose event names the call, its arguments and the errno."""
    source, target = tmp_path / "src", tmp_path / "root" / "data"
    source.mkdir()
    later = tmp_path / "root" / "never"
    fake_libc.returns("statvfs", mount_flags(os.ST_NODEV))
    fake_libc.fail("mount", errno.EPERM, nth=3)  # the remount (propagation, bind, remount)
    events, code = serve_batch((
        v.SetPropagation(target="/"),
        v.BindMount(source=str(source), target=str(target), flags=("rdonly",)),
        v.MakeDirs(root=str(tmp_path), paths=("root/never",)),
    ))
    assert events == [
        v.FsDone(step="mount"),
        v.FsFailed(step="mount", errno=errno.EPERM, message=(
            f"mount(NULL, '{target}', NULL, MS_RDONLY|MS_NODEV|MS_REMOUNT|MS_BIND, NULL) "
            "failed: EPERM (Operation not permitted)")),
    ]
    assert not later.exists()  # nothing after the failure was carried out
    assert code == 125  # and the loop ended when the supervisor closed the pipe


def test_describe_names_the_call(fake_libc):
    fake_libc.fail("chroot", errno.EPERM)
    with pytest.raises(OSError) as info:
        run(v.Chroot(new_root="/new"))
    assert setup.describe(info.value) == "chroot('.') failed: EPERM (Operation not permitted)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
