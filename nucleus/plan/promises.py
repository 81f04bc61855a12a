"""What production promises before its workload starts, checked once more just before Start:
the production rows of the mode table (nucleus.config.modes.TABLE) that setup enforces, seen in
the machines' state (formal/System.tla's Production* invariants) and in what the host shows
(the memory limit read back from the container's cgroup, the container's /proc mount options).

Validation and setup already refuse what breaks these; this check is the last word, so that a
setup that went wrong without saying so never reaches the workload. Pure: what the host shows
arrives as `Observed` (nucleus.effects.promises reads it).
"""

from __future__ import annotations

import posixpath

from nucleus.config import modes
from nucleus.frozen import frozen
from nucleus.machines import network, system

MEMORY_FILES = ("memory.max", "memory.limit_in_bytes")  # cgroup v2, v1
# The kernel rounds a memory limit down to a whole page; no page is larger than this.
PAGE_SLACK = 64 * 1024
HIDEPID = ("hidepid=2", "hidepid=invisible")  # how /proc shows hidepid=2 (the name since 5.8)


@frozen
class Observed:
    """What the host shows just before Start: the memory limit file's content and the
    container's /proc mount's options (None: not found; `unread` says why, per field name)."""

    memory: str | None = None
    proc_options: tuple[str, ...] | None = None
    unread: tuple[tuple[str, str], ...] = ()

    def why(self, name: str) -> str:
        return next((f" ({reason})" for field, reason in self.unread if field == name), "")


def memory_limit(state: system.SystemState) -> tuple[str, str] | None:
    """The memory limit's cgroup file and the value written to it, from the cgroup plan (None
    without one)."""
    for path, value, _optional in state.res.limits.writes:
        if posixpath.basename(path) in MEMORY_FILES:
            return path, value
    return None


def checked(state: system.SystemState) -> bool:
    """Whether the run makes these promises: production mode."""
    return state.mode == modes.PRODUCTION


def unmet(state: system.SystemState, seen: Observed) -> list[str]:
    """Each production promise not kept, naming its row of the mode table and what was found."""
    if not checked(state):
        return []
    problems = []
    if state.sec.level != "enforced" or state.sec.phase != "locked":
        problems.append(f'row "Degraded security": security is {state.sec.level!r}'
                        + (f" ({', '.join(sorted(state.sec.degraded))} degraded)" if state.sec.degraded else "")
                        + ("" if state.sec.phase == "locked" else f", its controls {state.sec.phase}"))
    if state.fs.chrooted:
        problems.append('row "Chroot fallback": the root was entered with chroot, not pivot_root')
    if not state.fs.audited:
        problems.append('row "Mount audit": the mounts were not audited')
    if state.res.phase != "ready" or not state.res.limited:
        problems.append(f'row "Cgroup limits": the cgroup is {state.res.phase}'
                        + ("" if state.res.limited else ", its limits not written"))
    problems += _memory(state, seen)
    if (state.net.bridged or state.net.user) and not system.ProductionEgressDenied(state):
        pending = [n for n in network.POLICY_STEPS if n in state.net.plan and not state.net.has_done(n)]
        problems.append('row "Egress policy": egress is open on the container\'s network'
                        + (f" ({', '.join(pending)} not in force)" if pending else " (no egress policy)"))
    if seen.proc_options is None:
        problems.append(f'row "/proc": the container\'s /proc mount was not found{seen.why("proc_options")}')
    elif not set(HIDEPID) & set(seen.proc_options):
        problems.append(f'row "/proc": /proc is mounted with {",".join(seen.proc_options)!r}, without hidepid=2')
    return problems


def _memory(state: system.SystemState, seen: Observed) -> list[str]:
    planned = memory_limit(state)
    if planned is None or not planned[1].isdigit():
        return ['row "Memory limit": no memory limit is planned for the cgroup']
    path, value = planned
    if seen.memory is None:
        return [f'row "Memory limit": {path} could not be read back{seen.why("memory")}']
    shown = seen.memory.strip()
    if not shown.isdigit() or not int(value) - PAGE_SLACK < int(shown) <= int(value):
        return [f'row "Memory limit": {path} holds {shown!r}, not the {value} bytes written']
    return []
