"""rlimits of the calling process: NOFILE, NPROC (from --pids) and MEMLOCK, soft = hard.

A limit is capped at the current hard limit: raising a hard limit needs CAP_SYS_RESOURCE, which
even root may lack (inside a user namespace, or on a host that withholds it), and asking for
more than the host allows must not fail a run. Lowering a hard limit is irreversible for this
process and its children, which is the point for a container.
"""

from __future__ import annotations

import resource

from nucleus.effects import libc

RESOURCES = (
    ("nofile", "RLIMIT_NOFILE", resource.RLIMIT_NOFILE),
    ("nproc", "RLIMIT_NPROC", resource.RLIMIT_NPROC),
    ("memlock", "RLIMIT_MEMLOCK", resource.RLIMIT_MEMLOCK),
)


def _capped(want: int, hard: int) -> int:
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


def apply(nofile: int, nproc: int, memlock: int) -> dict[str, tuple[int, int]]:
    """Set each limit (soft and hard) to the value asked, capped at the current hard limit.
    Returns what was applied: name -> (soft, hard)."""
    wanted = {"nofile": nofile, "nproc": nproc, "memlock": memlock}
    applied: dict[str, tuple[int, int]] = {}
    for name, _label, res in RESOURCES:
        _soft, hard = libc.getrlimit(res)
        value = _capped(wanted[name], hard)
        libc.setrlimit(res, value, value)  # SyscallError naming the limit and the values
        applied[name] = (value, value)
    return applied
