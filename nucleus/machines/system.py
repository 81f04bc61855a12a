"""One container's setup and life: formal/System.tla composes the four machines.

Each step is one machine's step; the coupling between machines lives in guards (which must hold
before a machine's event is accepted) and in `advance`, which names the next internal event the
driver should take. A real `nucleus run` is a behaviour of this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nucleus import vocab as v
from nucleus.machines import filesystem, isolation, lifecycle, security
from nucleus.machines.base import Refused, Step

MACHINES: dict[str, Any] = {"lc": lifecycle, "iso": isolation, "fs": filesystem, "sec": security}


@dataclass(frozen=True)
class SystemState:
    lc: lifecycle.LifecycleState
    iso: isolation.IsolationState
    fs: filesystem.FilesystemState
    sec: security.SecurityState

    def failed(self) -> bool:
        return "failed" in (self.iso.phase, self.fs.phase, self.sec.phase)


def initial(
    iso: isolation.IsolationState, fs: filesystem.FilesystemState, sec: security.SecurityState
) -> SystemState:
    return SystemState(lifecycle.initial(), iso, fs, sec)


def _guard(s: SystemState, event: v.Event) -> str | None:
    """Why the composition does not allow this event now, or None."""
    match event:
        case v.IsoBegin():
            if s.lc.status != "creating":
                return "isolation begins only while the container is creating"
        case v.FsBegin():
            if not s.iso.has_done("loopback"):
                return "the filesystem is built only inside the new namespaces (after loopback is up)"
        case v.IsoResume():
            if s.fs.phase != "sealed":
                return "the user namespace is entered only after the root filesystem is sealed"
        case v.SecBegin():
            if s.iso.phase != "ready" or s.fs.phase != "sealed":
                return "security controls are applied only once isolation is ready and the root is sealed"
        case v.Prepared(level=level):
            if s.sec.phase != "locked":
                return "the container is prepared only when every security control is in force"
            if level != s.sec.level:
                return f"the security level is {s.sec.level!r}, not {level!r}"
        case v.SetupFailed():
            if not s.failed():
                return "setup has not failed"
    return None


def step(s: SystemState, event: v.Event) -> Step | Refused:
    why = _guard(s, event)
    if why is not None:
        return Refused(
            f"cannot {v.action_name(event)} ({event.machine}): {why} (the container is "
            f"{s.lc.status}; isolation {s.iso.phase}, filesystem {s.fs.phase}, security {s.sec.phase})"
        )
    module = MACHINES[event.machine]
    result = module.step(getattr(s, event.machine), event)
    if isinstance(result, Refused):
        return result
    return Step(replace(s, **{event.machine: result.state}), result.intents)


def advance(s: SystemState) -> v.Event | None:
    """The next internal event the driver takes, if any (setup proceeds on its own)."""
    if s.lc.status != "creating":
        return None
    if s.failed():
        return v.SetupFailed()
    if s.iso.phase == "idle":
        return v.IsoBegin()
    if s.fs.phase == "idle" and s.iso.has_done("loopback"):
        return v.FsBegin()
    if s.iso.phase == "waiting" and s.fs.phase == "sealed":
        return v.IsoResume()
    if s.sec.phase == "idle" and s.iso.phase == "ready" and s.fs.phase == "sealed":
        return v.SecBegin()
    if s.sec.phase == "locked":
        return v.Prepared(s.sec.level)
    return None


def is_initial(s: SystemState) -> bool:
    return all(module.is_initial(getattr(s, name)) for name, module in MACHINES.items())


def to_tla(s: SystemState) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, module in MACHINES.items():
        out.update(module.to_tla(getattr(s, name)))
    return out


def from_tla(values: dict[str, object]) -> SystemState:
    return SystemState(*(module.from_tla(values) for module in MACHINES.values()))


# Invariants: the same names as in formal/System.tla (plus each machine's own).
def RunningRequiresIsolation(s: SystemState) -> bool:  # noqa: N802
    return s.lc.status not in ("created", "running") or (s.iso.phase == "ready" and s.fs.phase == "sealed")


def RunningRequiresSecurity(s: SystemState) -> bool:  # noqa: N802
    return s.lc.status not in ("created", "running") or s.sec.phase == "locked"


def LevelMatchesControls(s: SystemState) -> bool:  # noqa: N802
    return s.lc.status not in ("created", "running") or s.lc.security == s.sec.level


def UserNamespaceAfterSeal(s: SystemState) -> bool:  # noqa: N802
    return s.iso.rootless or not s.iso.has_done("enter_user") or s.fs.phase == "sealed"


def FailureNeverRuns(s: SystemState) -> bool:  # noqa: N802
    return not s.failed() or s.lc.status in ("creating", "failed", "removed")


def SecurityOnlyInside(s: SystemState) -> bool:  # noqa: N802
    return s.sec.phase == "idle" or (s.iso.phase in ("ready", "failed") and s.fs.phase == "sealed")


INVARIANTS = (
    RunningRequiresIsolation, RunningRequiresSecurity, LevelMatchesControls, UserNamespaceAfterSeal,
    FailureNeverRuns, SecurityOnlyInside,
)


def all_invariants() -> list[tuple[str, Any]]:
    """(name, check(SystemState)) for the composition's and every machine's invariants."""
    checks: list[tuple[str, Any]] = [(f.__name__, f) for f in INVARIANTS]
    for name, module in MACHINES.items():
        for inv in module.INVARIANTS:
            checks.append((f"{name}.{inv.__name__}", lambda s, inv=inv, name=name: inv(getattr(s, name))))
    return checks


def candidate_events(s: SystemState) -> list[v.Event]:
    events: list[v.Event] = []
    for name, module in MACHINES.items():
        events.extend(module.candidate_events(getattr(s, name)))
    return events
