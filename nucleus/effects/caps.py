"""Capabilities, no_new_privs and dumpability of the calling process."""

from __future__ import annotations

import errno
import signal

from nucleus import linux
from nucleus.effects import abi, libc

CAP_LAST_CAP_PATH = "/proc/sys/kernel/cap_last_cap"  # a plain read: a test points it at a file

_STATUS_HEX = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
_STATUS_DEC = ("NoNewPrivs", "Seccomp", "Seccomp_filters")


def cap_last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open(CAP_LAST_CAP_PATH, "rb") as f:
            return int(f.read())
    except OSError as e:
        raise abi.SyscallError("open", (repr(CAP_LAST_CAP_PATH),), e.errno or errno.EIO) from e


def drop_capabilities(keep: frozenset[int] = frozenset(),
                      user: tuple[int, int, tuple[int, ...]] | None = None) -> None:
    """Drop every capability not in ``keep`` from all five sets of the calling thread; with
    ``user`` = (uid, gid, groups), become that user on the way.

    Order matters: the bounding set is cut first (PR_CAPBSET_DROP needs CAP_SETPCAP in the
    effective set), then the ambient set is cleared, then the user is taken (setgroups,
    setresgid, setresuid need CAP_SETGID and CAP_SETUID; PR_SET_KEEPCAPS keeps the permitted
    set across the change of uid), then capset leaves inheritable empty and permitted =
    effective = ``keep`` (a user other than root loses them at exec, having no ambient set). A
    capability already absent from the bounding set is not dropped again, so a caller without
    CAP_SETPCAP succeeds when there is nothing left to drop.
    """
    last = cap_last_cap()
    for cap in range(last + 1):
        if cap in keep:
            continue
        if libc.prctl(linux.PR_CAPBSET_READ, cap):
            libc.prctl(linux.PR_CAPBSET_DROP, cap)
    libc.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    if user is not None:
        uid, gid, groups = user
        libc.prctl(linux.PR_SET_KEEPCAPS, 1)
        libc.setgroups(groups)
        libc.setresgid(gid, gid, gid)
        libc.setresuid(uid, uid, uid)
        libc.prctl(linux.PR_SET_KEEPCAPS, 0)
        after_identity_change()
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    libc.capset(effective=mask, permitted=mask, inheritable=0)


def after_identity_change() -> None:
    """A change of credentials clears the parent-death signal and resets dumpability (to the
    host's suid_dumpable): restore both (die with the parent; nothing of this process is
    readable or traceable by the container's users)."""
    libc.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    set_dumpable(False)


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: execve can no longer grant privileges (setuid bits, file caps).
    It is inherited by children and cannot be unset."""
    libc.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)


def set_dumpable(dumpable: bool) -> None:
    """PR_SET_DUMPABLE: a non-dumpable process cannot be ptrace-attached and its /proc/<pid>
    files are owned by root, so the workload cannot reach into the runtime's memory."""
    libc.prctl(linux.PR_SET_DUMPABLE, 1 if dumpable else 0)


def read_status_caps(pid: int | str = "self") -> dict[str, int]:
    """The capability sets and confinement fields of /proc/<pid>/status as integers:
    CapInh CapPrm CapEff CapBnd CapAmb (masks), NoNewPrivs, Seccomp (0 off, 1 strict, 2 filter)
    and Seccomp_filters where the kernel reports it."""
    path = f"/proc/{pid}/status"
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in _STATUS_HEX:
                    out[key] = int(value, 16)
                elif key in _STATUS_DEC:
                    out[key] = int(value)
    except OSError as e:
        raise abi.SyscallError("open", (repr(path),), e.errno or errno.EIO) from e
    return out
