"""rlimits of the calling process: nucleus's own NOFILE, NPROC (from --pids) and MEMLOCK, soft =
hard; then those an OCI config's process.rlimits gives, exactly as given.

nucleus's own are capped at the current hard limit: raising a hard limit needs CAP_SYS_RESOURCE,
which even root may lack (inside a user namespace, or on a host that withholds it), and asking
for more than the host allows must not fail a run. A limit the config gives is set as given or
not at all (as runc does): a hard limit above the host's fails naming it, which `over_host` lets
the runtime tell before anything is set up. Lowering a hard limit is irreversible for this
process and its children, which is the point for a container.
"""

from __future__ import annotations

import resource

from nucleus.effects import abi, libc

RESOURCES = (
    ("nofile", "RLIMIT_NOFILE", resource.RLIMIT_NOFILE),
    ("nproc", "RLIMIT_NPROC", resource.RLIMIT_NPROC),
    ("memlock", "RLIMIT_MEMLOCK", resource.RLIMIT_MEMLOCK),
)


def _capped(want: int, hard: int) -> int:
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


def apply(nofile: int, nproc: int, memlock: int, exact: tuple[tuple[str, int, int], ...] = ()
          ) -> dict[str, tuple[int, int]]:
    """Set each of nucleus's limits (soft and hard) to the value asked, capped at the current
    hard limit, unless `exact` names its resource; then each of `exact` (RLIMIT_*, soft, hard;
    -1 unlimited) as given. Returns what was applied: name -> (soft, hard)."""
    wanted = {"nofile": nofile, "nproc": nproc, "memlock": memlock}
    given = {name for name, _soft, _hard in exact}
    applied: dict[str, tuple[int, int]] = {}
    for name, label, res in RESOURCES:
        if label in given:
            continue
        _soft, hard = libc.getrlimit(res)
        value = _capped(wanted[name], hard)
        libc.setrlimit(res, value, value)  # SyscallError naming the limit and the values
        applied[name] = (value, value)
    for label, soft, hard in exact:
        libc.setrlimit(abi.RLIMITS[label], soft, hard)
        applied[label] = (soft, hard)
    return applied


def _above(want: int, hard: int) -> bool:
    if hard == resource.RLIM_INFINITY:
        return False
    return want == resource.RLIM_INFINITY or want > hard


def over_host(exact: tuple[tuple[str, int, int], ...]) -> list[tuple[str, int, int]]:
    """The limits of `exact` whose hard limit is above this process's (which its children, the
    container among them, inherit): (RLIMIT_*, asked, allowed). Raising one needs
    CAP_SYS_RESOURCE in the host's user namespace."""
    out = []
    for label, _soft, hard in exact:
        _, allowed = libc.getrlimit(abi.RLIMITS[label])
        if _above(hard, allowed):
            out.append((label, hard, allowed))
    return out
