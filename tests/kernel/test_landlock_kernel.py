"""Landlock rules enforced for real, in a forked child (a restriction cannot be lifted)."""

from __future__ import annotations

import errno
import os
import shutil
import socket

import pytest

from nucleus.config import landlock_default as ll
from nucleus.effects import landlock
from tests.child import in_child

pytestmark = pytest.mark.requires("root", "landlock")


def attempt(fn, *args):
    """The errno name an operation fails with, or "ok"."""
    try:
        fn(*args)
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"


def read_file(path):
    with open(path, "rb") as f:
        f.read()


def write_file(path, data=b"x"):
    with open(path, "wb") as f:
        f.write(data)


def run(argv):
    pid = os.fork()
    if pid == 0:  # pragma: no cover - grandchild
        try:
            os.execv(argv[0], argv)
        except OSError as e:
            os._exit(100 + e.errno)
        os._exit(99)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return "ok" if code == 0 else (errno.errorcode.get(code - 100) or f"exit {code}")


@pytest.fixture
def tree(tmp_path):
    for name in ("allowed", "denied", "ro", "rx"):
        (tmp_path / name).mkdir()
    (tmp_path / "allowed" / "a.txt").write_text("a")
    (tmp_path / "denied" / "b.txt").write_text("b")
    for name in ("ro", "rx"):
        shutil.copy2("/bin/true", tmp_path / name / "true")
    return tmp_path


def system_rules(home):
    """The default rules: the test's own paths are added on top."""
    return ll.default_rules(home)


def test_abi_version():
    abi = landlock.abi_version()
    assert 1 <= abi
    assert ll.fs_rights_for_abi(abi) & ll.READ_FILE


def test_allowed_dir_readable_sibling_denied(tree):
    def body():
        result = landlock.restrict(
            [(str(tree / "allowed"), {"read"}), ("/dev/null", {"read", "write"})]
        )
        return {
            "abi": result.abi,
            "read allowed": attempt(read_file, tree / "allowed" / "a.txt"),
            "list allowed": attempt(os.listdir, tree / "allowed"),
            "read sibling": attempt(read_file, tree / "denied" / "b.txt"),
            "list parent": attempt(os.listdir, tree),
            "write allowed": attempt(write_file, tree / "allowed" / "new"),
            "write /dev/null": attempt(write_file, "/dev/null"),
            "read unlisted": attempt(read_file, "/etc/hostname"),
        }

    got = in_child(body).value
    assert got.pop("abi") == landlock.abi_version()
    assert got == {
        "read allowed": "ok",
        "list allowed": "ok",
        "read sibling": "EACCES",
        "list parent": "EACCES",
        "write allowed": "EACCES",
        "write /dev/null": "ok",
        "read unlisted": "EACCES",
    }


def test_execute_needs_the_execute_right(tree):
    home = str(tree / "home")

    def body():
        landlock.restrict(
            system_rules(home)
            + [(str(tree / "ro"), {"read"}), (str(tree / "rx"), {"read", "execute"})]
        )
        return {
            "ro": run([str(tree / "ro" / "true")]),
            "rx": run([str(tree / "rx" / "true")]),
            "system": run(["/bin/true"]),
        }

    assert in_child(body).value == {"ro": "EACCES", "rx": "ok", "system": "ok"}


def test_default_rules(tree):
    home = tree / "home"
    home.mkdir()
    candidates = ("/var/lib/dpkg/status", "/root/.bashrc", "/var/log/lastlog", "/boot/config")
    outside = next((p for p in candidates if os.path.isfile(p)), None)
    if outside is None:
        pytest.skip(f"none of {candidates} exists to stand for a file outside the rules")

    def body():
        result = landlock.restrict(ll.default_rules(str(home)))
        master, slave = os.openpty()
        return {
            "skipped": [p for p, _ in result.skipped],
            "etc read": attempt(read_file, "/etc/hostname"),
            "etc write": attempt(write_file, "/etc/nucleus-landlock-test"),
            "home write": attempt(write_file, home / "f"),
            "home mkdir": attempt(os.mkdir, home / "d"),
            "home rename": attempt(os.rename, home / "f", home / "d" / "g"),
            "home remove": attempt(os.unlink, home / "d" / "g"),
            "home exec": run([shutil.copy2("/bin/true", home / "t")]),
            "tmp sibling": attempt(read_file, tree / "allowed" / "a.txt"),
            "root listing": attempt(os.listdir, "/"),
            "outside file": attempt(read_file, outside),
            "outside listing": attempt(os.listdir, os.path.dirname(outside)),
            "proc": attempt(read_file, "/proc/self/status"),
            "pty": os.isatty(slave) and os.ttyname(slave).startswith("/dev/pts/"),
            "urandom": len(os.urandom(4)),
            "ls": run(["/bin/ls", "/"]),
        }

    got = in_child(body).value
    missing = [p for p, _ in ll.default_rules(str(home)) if not os.path.exists(p)]
    assert sorted(got.pop("skipped")) == sorted(missing)
    # The tree lives under /tmp, which is scratch space (read, write, create, remove).
    assert got == {
        "etc read": "ok",
        "etc write": "EACCES",
        "home write": "ok",
        "home mkdir": "ok",
        "home rename": "ok",
        "home remove": "ok",
        "home exec": "EACCES",
        "tmp sibling": "ok" if str(tree).startswith("/tmp/") else "EACCES",
        "root listing": "ok",
        "outside file": "EACCES",
        "outside listing": "ok",  # the rule on "/" grants READ_DIR to every directory below
        "proc": "ok",
        "pty": True,
        "urandom": 4,
        "ls": "ok",
    }


def test_missing_path_is_skipped_and_reported(tree):
    ghost = str(tree / "ghost")

    def body():
        result = landlock.restrict([(ghost, {"read"}), (str(tree / "allowed"), {"read"})])
        return [list(result.skipped), [p for p, _ in result.applied]]

    skipped, applied = in_child(body).value
    assert skipped == [[ghost, "does not exist"]]
    assert applied == [str(tree / "allowed")]


def test_file_rule_masked_to_file_rights(tree):
    target = tree / "allowed" / "a.txt"

    def body():
        result = landlock.restrict([(str(target), {"read", "write", "create", "remove"})])
        ((path, rights),) = result.applied
        return [rights, attempt(read_file, target), attempt(os.unlink, target)]

    rights, read, unlink = in_child(body).value
    assert rights == (ll.READ_FILE | ll.WRITE_FILE | ll.TRUNCATE) & ll.fs_rights_for_abi(
        landlock.abi_version()
    )
    assert (read, unlink) == ("ok", "EACCES")


def test_handled_subset_leaves_other_rights_alone(tree):
    """Only handled rights are restricted: handling just WRITE_FILE leaves reading free."""

    def body():
        landlock.restrict([], handled=ll.WRITE_FILE)
        return [
            attempt(read_file, tree / "denied" / "b.txt"),
            attempt(write_file, tree / "denied" / "b.txt"),
        ]

    assert in_child(body).value == ["ok", "EACCES"]


def test_older_abi_masks_rights(tree):
    def body():
        result = landlock.restrict([(str(tree / "allowed"), {"read", "write"})], abi=1)
        return [result.abi, result.handled, result.scoped, result.applied[0][1]]

    abi, handled, scoped, rights = in_child(body).value
    assert (abi, handled, scoped) == (1, ll.FS_RIGHTS_BY_ABI[1], 0)
    assert rights == ll.READ_FILE | ll.READ_DIR | ll.WRITE_FILE  # TRUNCATE is ABI 3


def test_no_new_privs_is_set():
    def body():
        with open("/proc/self/status") as f:  # opened before: Landlock checks at open time
            landlock.restrict([("/", {"readdir"})])
            return [line.split()[1] for line in f if line.startswith("NoNewPrivs:")][0]

    assert in_child(body).value == "1"


@pytest.mark.skipif(landlock.abi_version() < 6, reason="scoping needs Landlock ABI 6")
def test_scopes_cut_signals_and_abstract_sockets_to_the_outside():
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0nucleus-landlock-test-{os.getpid()}"
    server.bind(name)
    server.listen()
    parent = os.getpid()

    def connect():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(name)

    def body(scope_signals):
        result = landlock.restrict([("/", {"readdir"})], scope_signals=scope_signals)
        return [result.scoped, attempt(connect), attempt(os.kill, parent, 0)]

    try:
        scoped = in_child(lambda: body(True)).value
        unscoped_signals = in_child(lambda: body(False)).value
    finally:
        server.close()
    both = ll.SCOPE_ABSTRACT_UNIX_SOCKET | ll.SCOPE_SIGNAL
    assert scoped == [both, "EPERM", "EPERM"]
    assert unscoped_signals == [ll.SCOPE_ABSTRACT_UNIX_SOCKET, "EPERM", "ok"]


# --- the data ----------------------------------------------------------------------------------


def test_groups_and_defaults_are_consistent():
    assert not ll.ACCESS_GROUPS["read"] & ll.EXECUTE
    assert not ll.ACCESS_GROUPS["create"] & (ll.MAKE_CHAR | ll.MAKE_BLOCK)
    assert ll.access_mask({"read", "execute"}) == ll.READ_FILE | ll.READ_DIR | ll.EXECUTE
    with pytest.raises(ValueError, match="unknown access group 'exec'"):
        ll.access_mask({"exec"})
    rules = dict(ll.default_rules("/home/agent"))
    assert rules["/"] == {"readdir"}
    for path in ("/tmp", "/home/agent", "/dev/shm"):
        assert "execute" not in rules[path] and "write" in rules[path]
    for path in ("/etc", "/context", "/proc"):
        assert rules[path] == {"read"}
    for path in ("/usr", "/bin", "/lib", "/nix"):
        assert rules[path] == {"read", "execute"}
    assert ll.FS_RIGHTS_BY_ABI[1] == 0x1FFF
    assert ll.FS_RIGHTS_BY_ABI[5] == 0xFFFF
