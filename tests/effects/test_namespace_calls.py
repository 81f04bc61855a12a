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
from nucleus.effects import abi, handlers, namespaces, process, setup
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


def test_loopback_already_up_is_left_alone(fake_libc):
    """The host's lo (--network host): read, never written."""
    fake_libc.answer("ioctl", lambda fd, request, arg: IFREQ.pack(b"lo", 0x8 | 0x40 | abi.IFF_UP))
    run(v.LoopbackUp())
    ((_, get, _),) = fake_libc.of("ioctl")
    assert get == abi.SIOCGIFFLAGS


# --- EnterUserNamespace, BecomeRoot ---------------------------------------------------------------


def test_enter_user_namespace_clears_the_groups_first(fake_libc):
    run(v.EnterUserNamespace())
    assert fake_libc.calls == [("setgroups", ([],)), ("unshare", (linux.CLONE_NEWUSER,))]


def test_enter_user_namespace_stops_when_the_groups_cannot_be_cleared(fake_libc):
    fake_libc.fail("setgroups", errno.EPERM)
    with pytest.raises(abi.SyscallError, match=r"^setgroups\(\[\]\) failed: EPERM"):
        run(v.EnterUserNamespace())
    assert fake_libc.names() == ["setgroups"]


JOIN_IDENTITY = [
    ("setresgid", (0, 0, 0)),
    ("setresuid", (0, 0, 0)),
    # a credential change clears both: restored at once
    ("prctl", (linux.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)),
    ("prctl", (linux.PR_SET_DUMPABLE, 0, 0, 0, 0)),
]
# A run's setup process is dumpable from here until its capabilities are dropped, so that a
# user-mode network's stack, run as the caller, can join its namespaces.
BECOME_ROOT = [*JOIN_IDENTITY, ("prctl", (linux.PR_SET_DUMPABLE, 1, 0, 0, 0))]


@pytest.mark.parametrize(("intent", "calls"), [(v.BecomeRoot(), BECOME_ROOT), (v.JoinIdentity(), JOIN_IDENTITY)],
                         ids=["run", "attach"])
def test_become_root_sets_gid_then_uid_then_restores_deathsig_and_non_dumpable(fake_libc, intent, calls):
    run(intent)
    assert fake_libc.calls == calls


# --- EnterNamespaces ------------------------------------------------------------------------------
#
# The container's init is pid 42, started at START (its record says so). The namespaces are
# opened first (their paths stop resolving once the mount namespace changes); then the init must
# still be the process that started at START (the open descriptors are then its namespaces, not
# those of a process that reused pid 42), none may be this process's own (the listed kinds are
# those the container made: one that is the host's is refused), and the init is checked once more
# after the comparisons; only then the groups are cleared and setns is called, in order.

START = 7340321
CONTAINER = {  # the container's namespaces, each another than this process's own
    "/proc/42/ns/user": "user:[4026532001]", "/proc/42/ns/mnt": "mnt:[4026532002]",
    "/proc/42/ns/pid": "pid:[4026532003]", "/proc/42/ns/net": "net:[4026532004]",
}
OWN = {
    "/proc/self/ns/user": "user:[4026531837]", "/proc/self/ns/mnt": "mnt:[4026531841]",
    "/proc/self/ns/pid": "pid:[4026531836]", "/proc/self/ns/net": "net:[4026531840]",
}
FDS = {"/proc/42/ns/user": 10, "/proc/42/ns/mnt": 11, "/proc/42/ns/net": 12, "/proc/42/ns/pid": 13}
ALL = (("user", "/proc/42/ns/user"), ("mnt", "/proc/42/ns/mnt"), ("net", "/proc/42/ns/net"),
       ("pid", "/proc/42/ns/pid"))
CHECK = ("process_start", (42,))  # the start-time check of the init, in the same sequence


def enter(namespaces=ALL, clear_groups=False, start=START) -> v.EnterNamespaces:
    return v.EnterNamespaces(namespaces=namespaces, clear_groups=clear_groups, pid=42, start=start)


@pytest.fixture
def host(fake_libc, monkeypatch):
    """The fake libc answering as a host where the container's init runs: readlink gives each
    namespace's identity (ENOENT for a path that does not exist), open an fd per namespace
    (ENOENT likewise), and nucleus.effects.process.process_start the init's start time, each
    check recorded in the fake's sequence as CHECK. `host.starts` scripts the next answers of
    the checks (then START); `host.table` is what readlink sees."""
    class Host:
        table = {**CONTAINER, **OWN}
        starts: list[int | None] = []

    def readlink(path):
        if path in Host.table:
            return Host.table[path]
        raise syscall_error("readlink", (path,), errno.ENOENT)

    def open_(path, flags, mode):
        if path in FDS:
            return FDS[path]
        raise syscall_error("open", (path, flags, mode), errno.ENOENT)

    def process_start(pid):
        fake_libc.calls.append(("process_start", (pid,)))
        return Host.starts.pop(0) if Host.starts else START

    fake_libc.answer("readlink", readlink).answer("open", open_)
    monkeypatch.setattr(process, "process_start", process_start)
    return Host


def opens(*paths: str) -> list:
    return [("open", (p, RDONLY_CLOEXEC, 0o777)) for p in paths]


def compares(*pairs: tuple[str, str]) -> list:
    return [call for kind, path in pairs
            for call in (("readlink", (path,)), ("readlink", (f"/proc/self/ns/{kind}",)))]


def test_enter_namespaces_checks_opens_compares_checks_then_joins_in_order(fake_libc, host):
    """The init is checked, every namespace opened, the init checked again, each compared with
    this process's own, the init checked a last time; then setns into each in the listed order
    (the user namespace where the plan put it), and every fd is closed at the end."""
    run(enter())
    assert fake_libc.calls == [
        CHECK,
        *opens("/proc/42/ns/user", "/proc/42/ns/mnt", "/proc/42/ns/net", "/proc/42/ns/pid"),
        CHECK,
        *compares(*ALL),
        CHECK,
        ("setns", (10, linux.CLONE_NEWUSER)),
        ("setns", (11, linux.CLONE_NEWNS)),
        ("setns", (12, linux.CLONE_NEWNET)),
        ("setns", (13, linux.CLONE_NEWPID)),
        ("close", (10,)), ("close", (11,)), ("close", (12,)), ("close", (13,)),
    ]


def test_enter_namespaces_clears_the_groups_after_the_last_check_before_the_first_setns(fake_libc, host):
    run(enter((("mnt", "/proc/42/ns/mnt"), ("pid", "/proc/42/ns/pid")), clear_groups=True))
    assert fake_libc.names()[-7:] == ["readlink", "process_start", "setgroups", "setns", "setns",
                                      "close", "close"]
    assert fake_libc.of("setgroups") == [([],)]
    run(enter((("mnt", "/proc/42/ns/mnt"),), clear_groups=False))  # rootless: the groups stay
    assert fake_libc.of("setgroups") == [([],)]


@pytest.mark.parametrize("gone_at", [1, 2, 3], ids=["before-the-opens", "after-the-opens", "after-the-comparisons"])
@pytest.mark.parametrize("now", [None, START + 1], ids=["gone", "pid-reused"])
def test_a_gone_init_is_esrch_and_nothing_is_joined(fake_libc, host, gone_at, now):
    """The init ended (None: gone or a zombie) or its pid now names another process (another
    start time): whichever check sees it, the join is refused with ESRCH, nothing is joined, no
    group is cleared, and whatever was opened is closed. Nothing is opened before the first
    check passed, and nothing compared before the second."""
    host.starts = [START] * (gone_at - 1) + [now]
    with pytest.raises(OSError) as info:
        run(enter(clear_groups=True))
    assert info.value.errno == errno.ESRCH
    assert str(info.value) == f"[Errno {errno.ESRCH}] the container's init (pid 42) has ended"
    names = fake_libc.names()
    assert names.count("process_start") == gone_at
    assert "setns" not in names and "setgroups" not in names
    if gone_at == 1:
        assert names == ["process_start"]  # nothing opened
    else:
        assert fake_libc.of("open") == [(p, RDONLY_CLOEXEC, 0o777) for p in FDS]
        assert names[-len(FDS):] == ["close"] * len(FDS) and fake_libc.of("close") == [(fd,) for fd in FDS.values()]
    assert ("readlink" in names) == (gone_at == 3)


def test_a_missing_namespace_is_the_opens_error_not_a_skip(fake_libc, host):
    """A listed kind is one the container made: a path that does not resolve (the init ended
    meanwhile, or the record is wrong) is an error, never skipped; the fds opened before it are
    closed and nothing is joined."""
    listed = (("user", "/proc/42/ns/user"), ("mnt", "/proc/42/ns/mnt"), ("time", "/proc/42/ns/time"),
              ("pid", "/proc/42/ns/pid"))
    with pytest.raises(abi.SyscallError) as info:
        run(enter(listed, clear_groups=True))
    assert info.value.errno == errno.ENOENT
    assert str(info.value) == str(syscall_error("open", ("/proc/42/ns/time", RDONLY_CLOEXEC, 0o777), errno.ENOENT))
    assert fake_libc.calls == [
        CHECK, *opens("/proc/42/ns/user", "/proc/42/ns/mnt", "/proc/42/ns/time"),
        ("close", (10,)), ("close", (11,)),
    ]


@pytest.mark.parametrize("kind", ["user", "mnt", "net", "pid"])
def test_a_namespace_that_is_the_callers_own_is_einval_and_nothing_is_joined(fake_libc, host, kind):
    """A listed namespace equal to this process's own would leave the joined process in the
    host's (a container that made no such namespace, or a record that says wrong): refused
    with EINVAL before any group is cleared or any setns, every fd closed."""
    path = f"/proc/42/ns/{kind}"
    host.table = {**CONTAINER, **OWN, f"/proc/self/ns/{kind}": CONTAINER[path]}
    with pytest.raises(OSError) as info:
        run(enter(clear_groups=True))
    assert info.value.errno == errno.EINVAL
    assert str(info.value) == (f"[Errno {errno.EINVAL}] {path} is this process's own {kind} namespace, "
                               "not one the container made: refusing to join it")
    at = [p for _, p in ALL].index(path)
    assert fake_libc.calls == [
        CHECK, *opens(*FDS), CHECK, *compares(*ALL[:at + 1]),
        *(("close", (fd,)) for fd in FDS.values()),
    ]


def test_a_failed_setns_still_closes_every_fd(fake_libc, host):
    fake_libc.fail("setns", errno.EINVAL, nth=2)
    with pytest.raises(abi.SyscallError) as info:
        run(enter((("mnt", "/proc/42/ns/mnt"), ("pid", "/proc/42/ns/pid"))))
    assert str(info.value) == "setns(13, CLONE_NEWPID) failed: EINVAL (Invalid argument)"
    assert fake_libc.names()[-4:] == ["setns", "setns", "close", "close"]


def test_an_unreadable_namespace_is_an_error_not_a_skip(fake_libc, host):
    """A namespace that cannot be compared (readlink refused) is an error: nothing is joined."""
    fake_libc.returns("readlink", "mnt:[1]", "mnt:[2]",
                      syscall_error("readlink", ("/proc/42/ns/pid",), errno.EACCES))
    with pytest.raises(abi.SyscallError, match=r"^readlink\('/proc/42/ns/pid'\) failed: EACCES"):
        run(enter((("mnt", "/proc/42/ns/mnt"), ("pid", "/proc/42/ns/pid")), clear_groups=True))
    assert fake_libc.names()[-2:] == ["close", "close"] and fake_libc.of("close") == [(11,), (13,)]
    assert fake_libc.of("setns") == [] and fake_libc.of("setgroups") == []


def test_a_gone_init_is_the_join_fail_event(fake_libc, host):
    """As the supervisor receives it: the join's enter step failed with ESRCH, and what comes
    after it in the batch is not carried out."""
    host.starts = [START, START, None]
    events, _ = serve_batch((enter(clear_groups=True), v.JoinIdentity()))
    assert events == [v.JoinFailed(step="enter", errno=errno.ESRCH,
                                   message="the container's init (pid 42) has ended (ESRCH)")]


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


# --- share: an OCI supervisor joins its container's namespaces ----------------------------------


def test_share_joins_only_the_namespaces_not_yet_shared_after_the_init_is_checked(fake_libc, host):
    host.table = {**host.table, "/proc/42/ns/mnt": OWN["/proc/self/ns/mnt"]}  # already shared
    namespaces.share(42, START, ("net", "mnt", "pid"))
    assert fake_libc.calls == [
        *compares(("net", "/proc/42/ns/net")), *opens("/proc/42/ns/net"),
        *compares(("mnt", "/proc/42/ns/mnt")),
        *compares(("pid", "/proc/42/ns/pid")), *opens("/proc/42/ns/pid"),
        CHECK,
        ("setns", (12, linux.CLONE_NEWNET)), ("setns", (13, linux.CLONE_NEWPID)),
        ("close", (12,)), ("close", (13,)),
    ]


def test_share_with_an_init_already_gone_opens_nothing(fake_libc, host):
    with pytest.raises(OSError) as info:
        namespaces.share(42, None, ("net",))
    assert info.value.errno == errno.ESRCH
    assert fake_libc.calls == []


def test_share_with_an_init_whose_pid_was_reused_joins_nothing(fake_libc, host):
    host.starts = [START + 1]
    with pytest.raises(OSError) as info:
        namespaces.share(42, START, ("net",))
    assert info.value.errno == errno.ESRCH
    assert "setns" not in fake_libc.names()
    assert fake_libc.of("close") == [(12,)]
