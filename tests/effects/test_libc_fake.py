"""The recording fake of nucleus.effects.libc (tests/fakes/libc.py): it stands in for every call
of the seam, no call reaches the kernel around it, it refuses what it was not told to answer, and
its scripted failures read exactly like the real calls' errors. Runs as any user."""

from __future__ import annotations

import ast
import errno
import inspect
import os
import resource
from pathlib import Path

import pytest

from nucleus import linux
from nucleus.effects import abi, libc
from tests.fakes.libc import (
    DEFAULTS,
    RecordingLibc,
    fake_libc_fixture,  # noqa: F401 - the fake_libc fixture
    public_calls,
)

PACKAGE = Path(__file__).resolve().parents[2] / "nucleus"
MISSING = "/nonexistent-nucleus-fake-test"


def test_every_public_call_of_the_seam_is_replaced(fake_libc):
    assert public_calls() == {}  # no real call of the module is left reachable
    for name, real in fake_libc.real.items():
        stub = getattr(libc, name)
        assert stub is not real and stub.__name__ == name, name
    # The calls the effects make are all among them.
    assert {"mount", "umount2", "pivot_root", "chdir", "chroot", "chown", "lchown", "statvfs",
            "unshare", "setns", "open", "close", "readlink", "ioctl", "prctl", "capset",
            "setgroups", "setresuid", "setresgid", "landlock_create_ruleset", "landlock_add_rule",
            "landlock_restrict_self", "seccomp_set_mode_filter", "getrlimit",
            "setrlimit"} <= set(fake_libc.real)
    assert set(DEFAULTS) <= set(fake_libc.real)


def test_the_seam_holds_calls_only():
    """Constants and errors live in abi: libc re-exports none, so nothing reaches the kernel
    through a name the fake does not replace."""
    calls = public_calls()
    annotations_only = ("__future__", "typing", "collections.abc")
    others = {name for name, obj in vars(libc).items()
              if not name.startswith("_") and name not in calls and not inspect.ismodule(obj)
              and getattr(obj, "__module__", type(obj).__module__) not in annotations_only}
    assert not others, f"nucleus.effects.libc holds more than calls: {sorted(others)}"
    data = {name for name, obj in vars(abi).items() if not name.startswith("_")
            and (getattr(obj, "__module__", "") == abi.__name__ or isinstance(obj, int | dict))}
    assert data and not data & set(vars(libc)), "re-exported from abi"


def test_no_module_imports_a_call_by_name():
    """``from nucleus.effects.libc import mount`` would bind the real call before a test could
    replace it: every module calls through the module (``libc.mount``)."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "nucleus.effects.libc":
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not bad, "import nucleus.effects.libc as a module: " + ", ".join(bad)


def test_calls_are_recorded_in_order_with_every_argument(fake_libc):
    libc.mount(None, "/x", None, abi.MS_PRIVATE | abi.MS_REC)
    libc.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    libc.capset(effective=1, permitted=1, inheritable=0)
    libc.chdir("/")
    assert fake_libc.calls == [
        ("mount", (None, "/x", None, abi.MS_PRIVATE | abi.MS_REC, None)),
        ("prctl", (linux.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)),
        ("capset", (1, 1, 0)),
        ("chdir", ("/",)),
    ]
    assert fake_libc.names() == ["mount", "prctl", "capset", "chdir"]
    assert fake_libc.of("chdir") == [("/",)]


def test_a_call_the_real_one_would_refuse_is_a_type_error(fake_libc):
    with pytest.raises(TypeError):
        libc.mount("/x")
    assert fake_libc.calls == []


@pytest.mark.parametrize(
    "call",
    [
        lambda: libc.capget(),
        lambda: libc.prctl(linux.PR_CAPBSET_READ, 0),
        lambda: libc.prctl(linux.PR_GET_NO_NEW_PRIVS),
        lambda: libc.landlock_create_ruleset(None, 0, abi.LANDLOCK_CREATE_RULESET_VERSION),
        lambda: libc.statvfs("/"),
        lambda: libc.readlink("/proc/self/ns/mnt"),
        lambda: libc.open("/proc/1/ns/mnt", os.O_RDONLY),
        lambda: libc.close_range(3),
        lambda: libc.libseccomp_version(),
    ],
    ids=["capget", "capbset_read", "get_no_new_privs", "landlock_abi", "statvfs", "readlink",
         "open", "close_range", "libseccomp_version"],
)
def test_a_question_without_a_scripted_answer_fails_the_test(fake_libc, call):
    with pytest.raises(pytest.fail.Exception, match="the fake has no answer for this call"):
        call()
    assert len(fake_libc.refused) == 1
    fake_libc.refused.clear()  # acknowledged: the fixture fails a test that swallowed one


def test_a_refusal_is_no_exception_an_effect_could_swallow(fake_libc):
    with pytest.raises(BaseException) as info:
        libc.capget()
    assert not isinstance(info.value, Exception)  # what effects and handlers catch
    fake_libc.refused.clear()


def test_scripted_results_then_answers(fake_libc):
    fake_libc.returns("landlock_create_ruleset", 3, 7)
    fake_libc.answer("landlock_create_ruleset", lambda attr, size, flags: 9)
    fake_libc.returns("capget", (1, 2, 3))
    assert libc.landlock_create_ruleset(None, 0, 1) == 3
    assert libc.landlock_create_ruleset(b"x" * 8, 8) == 7
    assert libc.landlock_create_ruleset(b"x" * 8, 8) == 9
    assert libc.capget() == (1, 2, 3)
    err = abi.SyscallError("capget", ("v3", "pid 0"), errno.EPERM)
    fake_libc.returns("capget", err)
    with pytest.raises(abi.SyscallError) as info:
        libc.capget()
    assert info.value is err


def test_the_nth_call_fails(fake_libc):
    fake_libc.fail("mount", errno.EPERM, nth=2)
    libc.mount("/a", "/b", None, abi.MS_BIND)
    with pytest.raises(abi.SyscallError) as info:
        libc.mount(None, "/b", None, abi.MS_BIND | abi.MS_REMOUNT | abi.MS_RDONLY)
    libc.mount("/c", "/d", None, abi.MS_BIND)
    assert str(info.value) == ("mount(NULL, '/b', NULL, MS_RDONLY|MS_REMOUNT|MS_BIND, NULL) "
                               "failed: EPERM (Operation not permitted)")
    assert (info.value.errno, info.value.call) == (errno.EPERM, "mount")
    assert fake_libc.names() == ["mount", "mount", "mount"]  # the failed call is recorded too


def test_every_call_fails(fake_libc):
    fake_libc.fail("chdir", errno.ENOENT)
    for path in ("/a", "/b"):
        with pytest.raises(abi.SyscallError, match=rf"^chdir\('{path}'\) failed: ENOENT"):
            libc.chdir(path)


def test_scripting_an_unknown_call_is_an_error(fake_libc):
    with pytest.raises(ValueError, match="no call 'mount2'"):
        fake_libc.fail("mount2", errno.EPERM)


# --- the fake's failures read as the real calls' --------------------------------------------------
# Each call fails harmlessly on a real kernel, as root or not (a path that does not exist, a bad
# descriptor or option); the fake, told the same errno, must raise the same message.

REAL_FAILURES = {
    "mount": (None, MISSING, None, abi.MS_BIND | abi.MS_REMOUNT | abi.MS_RDONLY),
    "mount_setattr": (abi.AT_FDCWD, MISSING, abi.AT_RECURSIVE,
                      abi.MOUNT_ATTR_RDONLY | abi.MOUNT_ATTR_NOSUID | abi.MOUNT_ATTR_NODEV),
    "umount2": (MISSING, abi.MNT_DETACH),
    "unshare": (0x1,),  # not a flag unshare accepts: EINVAL
    "setns": (-1, linux.CLONE_NEWNS),
    "prctl": (0xDEAD, 1),
    "open": (MISSING, os.O_RDONLY | os.O_CLOEXEC),
    "chdir": (MISSING,),
    "chroot": (MISSING,),
    "chown": (MISSING, 0, 0),
    "lchown": (MISSING, 0, 0),
    "statvfs": (MISSING,),
    "readlink": (MISSING,),
    "close": (1 << 30,),
    "setrlimit": (resource.RLIMIT_NOFILE, 2, 1),  # soft above hard
    "pivot_root": (MISSING, MISSING),
}


@pytest.mark.parametrize("name", sorted(REAL_FAILURES))
def test_a_scripted_failure_reads_as_the_real_one(monkeypatch, name):
    args = REAL_FAILURES[name]
    with pytest.raises(abi.SyscallError) as real:
        getattr(libc, name)(*args)
    fake = RecordingLibc().install(monkeypatch).fail(name, real.value.errno)
    with pytest.raises(abi.SyscallError) as scripted:
        getattr(libc, name)(*args)
    assert str(scripted.value) == str(real.value)
    assert fake.names() == [name]
