"""The namespace effects against the recording fake of nucleus.effects.libc: which namespaces are
created or joined, in what order, and the identity taken on inside, as the calls the kernel would
receive. Runs as any user; tests/kernel proves the same on the kernel."""

from __future__ import annotations

import errno
import os
import signal
import struct

import pytest

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import abi, handlers, namespaces, setup
from tests.fakes.libc import fake_libc_fixture, syscall_error  # noqa: F401 - the fixture
from tests.fakes.serving import serve_batch

IFREQ = struct.Struct("16sH14x")
RDONLY_CLOEXEC = os.O_RDONLY | os.O_CLOEXEC


def run(intent: v.Intent) -> None:
    handlers.child_handler(intent)(setup.SetupProcess(), intent)


# --- Unshare, SetHostname, LoopbackUp -------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "flags"),
    [
        (("mount", "uts", "ipc", "pid", "net", "cgroup"),
         linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWPID
         | linux.CLONE_NEWNET | linux.CLONE_NEWCGROUP),
        (("user",), linux.CLONE_NEWUSER),
        (("mnt", "time"), linux.CLONE_NEWNS | linux.CLONE_NEWTIME),
    ],
)
def test_unshare_is_one_call_with_the_flags_of_the_names(fake_libc, names, flags):
    run(v.Unshare(namespaces=names))
    assert fake_libc.calls == [("unshare", (flags,))]


def test_an_unknown_namespace_name_makes_no_call(fake_libc):
    with pytest.raises(KeyError):
        run(v.Unshare(namespaces=("mount", "nope")))
    assert fake_libc.calls == []


def test_set_hostname(fake_libc):
    run(v.SetHostname(hostname="box"))
    assert fake_libc.calls == [("sethostname", ("box",))]


def test_loopback_up_reads_the_flags_then_adds_up(fake_libc):
    iff_loopback_running = 0x8 | 0x40
    fake_libc.answer("ioctl", lambda fd, request, arg: (
        IFREQ.pack(b"lo", iff_loopback_running) if request == abi.SIOCGIFFLAGS else arg))
    run(v.LoopbackUp())
    (fd1, get, asked), (fd2, set_, told) = fake_libc.of("ioctl")
    assert fake_libc.names() == ["ioctl", "ioctl"] and fd1 == fd2
    assert (get, set_) == (abi.SIOCGIFFLAGS, abi.SIOCSIFFLAGS)
    assert IFREQ.unpack(asked) == (b"lo".ljust(16, b"\0"), 0)
    assert IFREQ.unpack(told) == (b"lo".ljust(16, b"\0"), iff_loopback_running | abi.IFF_UP)


# --- EnterUserNamespace, BecomeRoot ---------------------------------------------------------------


def test_enter_user_namespace_clears_the_groups_first(fake_libc):
    run(v.EnterUserNamespace())
    assert fake_libc.calls == [("setgroups", ([],)), ("unshare", (linux.CLONE_NEWUSER,))]


def test_enter_user_namespace_stops_when_the_groups_cannot_be_cleared(fake_libc):
    fake_libc.fail("setgroups", errno.EPERM)
    with pytest.raises(abi.SyscallError, match=r"^setgroups\(\[\]\) failed: EPERM"):
        run(v.EnterUserNamespace())
    assert fake_libc.names() == ["setgroups"]


BECOME_ROOT = [
    ("setresgid", (0, 0, 0)),
    ("setresuid", (0, 0, 0)),
    # a credential change clears both: restored at once
    ("prctl", (linux.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)),
    ("prctl", (linux.PR_SET_DUMPABLE, 0, 0, 0, 0)),
]


@pytest.mark.parametrize("intent", [v.BecomeRoot(), v.JoinIdentity()], ids=["run", "attach"])
def test_become_root_sets_gid_then_uid_then_restores_deathsig_and_non_dumpable(fake_libc, intent):
    run(intent)
    assert fake_libc.calls == BECOME_ROOT


# --- EnterNamespaces ------------------------------------------------------------------------------

TARGET = {  # the container's namespaces (/proc/<pid>/ns/...) and this process's own
    "/proc/42/ns/user": "user:[4026532001]", "/proc/self/ns/user": "user:[4026531837]",
    "/proc/42/ns/mnt": "mnt:[4026532002]", "/proc/self/ns/mnt": "mnt:[4026531841]",
    "/proc/42/ns/pid": "pid:[4026532003]", "/proc/self/ns/pid": "pid:[4026531836]",
    "/proc/42/ns/net": "net:[4026531840]", "/proc/self/ns/net": "net:[4026531840]",  # shared
}


def _namespaces(fake, table=TARGET):
    def readlink(path):
        if path in table:
            return table[path]
        raise syscall_error("readlink", (path,), errno.ENOENT)
    fake.answer("readlink", readlink)
    fake.returns("open", 10, 11, 12)


def test_enter_namespaces_opens_all_first_then_joins_in_order(fake_libc):
    """Every namespace is opened before the first setns (its path stops resolving once the mount
    namespace changes); the one this process already shares is skipped, as is a kind the kernel
    lacks; the fds are closed at the end."""
    _namespaces(fake_libc)
    run(v.EnterNamespaces(namespaces=(
        ("user", "/proc/42/ns/user"), ("mnt", "/proc/42/ns/mnt"), ("net", "/proc/42/ns/net"),
        ("time", "/proc/42/ns/time"), ("pid", "/proc/42/ns/pid"),
    )))
    assert fake_libc.calls == [
        ("readlink", ("/proc/42/ns/user",)), ("readlink", ("/proc/self/ns/user",)),
        ("open", ("/proc/42/ns/user", RDONLY_CLOEXEC, 0o777)),
        ("readlink", ("/proc/42/ns/mnt",)), ("readlink", ("/proc/self/ns/mnt",)),
        ("open", ("/proc/42/ns/mnt", RDONLY_CLOEXEC, 0o777)),
        ("readlink", ("/proc/42/ns/net",)), ("readlink", ("/proc/self/ns/net",)),  # shared
        ("readlink", ("/proc/42/ns/time",)),  # no time namespace on this kernel
        ("readlink", ("/proc/42/ns/pid",)), ("readlink", ("/proc/self/ns/pid",)),
        ("open", ("/proc/42/ns/pid", RDONLY_CLOEXEC, 0o777)),
        ("setns", (10, linux.CLONE_NEWUSER)),
        ("setns", (11, linux.CLONE_NEWNS)),
        ("setns", (12, linux.CLONE_NEWPID)),
        ("close", (10,)), ("close", (11,)), ("close", (12,)),
    ]


def test_enter_namespaces_clears_the_groups_before_the_first_setns(fake_libc):
    _namespaces(fake_libc)
    run(v.EnterNamespaces(namespaces=(("mnt", "/proc/42/ns/mnt"), ("pid", "/proc/42/ns/pid")),
                          clear_groups=True))
    assert fake_libc.names()[-6:] == ["open", "setgroups", "setns", "setns", "close", "close"]
    assert fake_libc.of("setgroups") == [([],)]


def test_enter_namespaces_skips_its_own_user_namespace(fake_libc):
    """setns into one's own user namespace is refused by the kernel: it is never attempted."""
    _namespaces(fake_libc, {**TARGET, "/proc/self/ns/user": TARGET["/proc/42/ns/user"]})
    run(v.EnterNamespaces(namespaces=(("user", "/proc/42/ns/user"), ("mnt", "/proc/42/ns/mnt"))))
    assert fake_libc.of("open") == [("/proc/42/ns/mnt", RDONLY_CLOEXEC, 0o777)]
    assert fake_libc.of("setns") == [(10, linux.CLONE_NEWNS)]


def test_a_failed_setns_still_closes_every_fd(fake_libc):
    _namespaces(fake_libc)
    fake_libc.fail("setns", errno.EINVAL, nth=2)
    with pytest.raises(abi.SyscallError) as info:
        run(v.EnterNamespaces(namespaces=(("mnt", "/proc/42/ns/mnt"),
                                          ("pid", "/proc/42/ns/pid"))))
    assert str(info.value) == "setns(11, CLONE_NEWPID) failed: EINVAL (Invalid argument)"
    assert fake_libc.names()[-4:] == ["setns", "setns", "close", "close"]


def test_an_unreadable_namespace_is_an_error_not_a_skip(fake_libc):
    fake_libc.returns("readlink", "mnt:[1]", "mnt:[2]",
                      syscall_error("readlink", ("/proc/42/ns/pid",), errno.EACCES))
    fake_libc.returns("open", 10)
    with pytest.raises(abi.SyscallError, match=r"^readlink\('/proc/42/ns/pid'\) failed: EACCES"):
        run(v.EnterNamespaces(namespaces=(("mnt", "/proc/42/ns/mnt"),
                                          ("pid", "/proc/42/ns/pid"))))
    assert fake_libc.names()[-1] == "close" and fake_libc.of("close") == [(10,)]
    assert fake_libc.of("setns") == []


# --- a failure, as the supervisor receives it -----------------------------------------------------


def test_a_refused_unshare_is_the_iso_fail_event(fake_libc):
    fake_libc.fail("unshare", errno.EPERM)
    events, _ = serve_batch((v.SetHostname(hostname="box"), v.Unshare(namespaces=("user",)),
                             v.SetHostname(hostname="never")))
    assert events == [
        v.IsoDone(step="hostname"),
        v.IsoFailed(step="unshare", errno=errno.EPERM,
                    message="unshare(CLONE_NEWUSER) failed: EPERM (Operation not permitted)"),
    ]


def test_flags_cover_every_namespace_kind():
    assert set(namespaces.FLAGS.values()) == {
        linux.CLONE_NEWUSER, linux.CLONE_NEWPID, linux.CLONE_NEWNS, linux.CLONE_NEWNET, linux.CLONE_NEWUTS,
        linux.CLONE_NEWIPC, linux.CLONE_NEWCGROUP, linux.CLONE_NEWTIME,
    }
