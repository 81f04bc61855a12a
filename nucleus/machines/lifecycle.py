"""The container lifecycle: formal/Lifecycle.tla.

none -> creating -> created -> running -> stopped -> removed, with failed reachable from creating
and created, and from any active status when the supervisor is lost. Host resources are held
from Create until CleanupDone; Remove needs them released. A supervisor lost before it cleaned
up (seen by `rm --force`) leads to the same cleanup.
"""

from __future__ import annotations

from dataclasses import field, replace

from nucleus import vocab as v
from nucleus.config.signals import SENDABLE
from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step

STATUSES = ("none", "creating", "created", "running", "stopped", "failed", "removed")
ACTIVE = ("creating", "created", "running")
LEVELS = ("none", "enforced", "degraded", "traced")
PREPARED_LEVELS = LEVELS[1:]  # what a prepared container runs at (the security machine's level)
SIGNALS = SENDABLE


@frozen
class LifecycleState:
    status: str = "none"
    security: str = "none"  # the security level the container was prepared with
    cleaned: bool = True  # nothing allocated on the host that still needs releasing
    removed: bool = False  # Remove happened (a removed container never comes back)
    # Not part of the spec's abstraction: the workload Start execs, and what the CLI reports.
    workload: v.ExecWorkload = field(default_factory=v.ExecWorkload)
    exit_code: int | None = None


def initial(workload: v.ExecWorkload | None = None) -> LifecycleState:
    return LifecycleState(workload=workload or v.ExecWorkload())


def _refuse(state: LifecycleState, action: str, allowed: str) -> Refused:
    return Refused(
        f"cannot {action} the container: it is {state.status} ({action} is allowed only {allowed})"
    )


def step(state: LifecycleState, event: v.Event) -> Step | Refused:
    s = state.status
    match event:
        case v.Create():
            if s != "none":
                return _refuse(state, "Create", "before it exists")
            return Step(replace(state, status="creating", cleaned=False))
        case v.Prepared(level=level):
            if s != "creating":
                return _refuse(state, "Prepared", "from creating")
            if level not in PREPARED_LEVELS:
                return Refused(f"cannot Prepared the container: unknown security level {level!r}")
            return Step(replace(state, status="created", security=level))
        case v.SetupFailed():
            if s != "creating":
                return _refuse(state, "SetupFailed", "from creating")
            return Step(replace(state, status="failed"), (v.Cleanup(),))
        case v.Start():
            if s != "created":
                return _refuse(state, "Start", "from created")
            return Step(replace(state, status="running"), (state.workload,))
        case v.Abort():
            if s != "created":
                return _refuse(state, "Abort", "from created")
            return Step(replace(state, status="failed"), (v.Cleanup(),))
        case v.Exit(code=code):
            if s != "running":
                return _refuse(state, "Exit", "from running")
            return Step(replace(state, status="stopped", exit_code=code), (v.Cleanup(),))
        case v.Kill(signal=sig):
            if s != "running":
                return _refuse(state, "Kill", "from running")
            if sig not in SIGNALS:
                return Refused(f"cannot Kill the container: unknown signal {sig!r}")
            return Step(state, (v.SendSignal(sig),))
        case v.Lost():
            if s in ACTIVE:
                return Step(replace(state, status="failed"), (v.Cleanup(),))
            if s in ("stopped", "failed") and not state.cleaned:
                return Step(state, (v.Cleanup(),))  # cleanup was under way: it starts again
            return _refuse(state, "Lost", "from creating, created or running, or before cleanup")
        case v.Attach():
            if s != "running":
                return _refuse(state, "Attach", "from running")
            return Step(state)
        case v.CleanupDone():
            if s not in ("stopped", "failed") or state.cleaned:
                return _refuse(state, "CleanupDone", "from stopped or failed, once")
            return Step(replace(state, cleaned=True))
        case v.Remove():
            if s not in ("stopped", "failed") or not state.cleaned:
                return _refuse(state, "Remove", "from stopped or failed after cleanup")
            return Step(replace(state, status="removed", removed=True))
    return Refused(f"the lifecycle has no action {event.name}")


def is_initial(state: LifecycleState) -> bool:
    return to_tla(state) == to_tla(initial())


def to_tla(state: LifecycleState) -> dict[str, object]:
    return {
        "lc_status": state.status,
        "lc_security": state.security,
        "lc_cleaned": state.cleaned,
        "lc_removed": state.removed,
    }


def from_tla(values: dict[str, object], base: LifecycleState | None = None) -> LifecycleState:
    """The state the spec's variables describe; parameters (the workload) from `base`."""
    return replace(
        base or LifecycleState(),
        status=str(values["lc_status"]),
        security=str(values["lc_security"]),
        cleaned=bool(values["lc_cleaned"]),
        removed=bool(values["lc_removed"]),
    )


# Invariants: the same names as in formal/Lifecycle.tla.
def TypeOK(s: LifecycleState) -> bool:  # noqa: N802
    return s.status in STATUSES and s.security in LEVELS


def SecuredBeforeRun(s: LifecycleState) -> bool:  # noqa: N802
    return s.status not in ("created", "running") or s.security != "none"


def RemovedIsFinal(s: LifecycleState) -> bool:  # noqa: N802
    return not s.removed or s.status == "removed"


def RemovedRequiresCleanup(s: LifecycleState) -> bool:  # noqa: N802
    return s.status != "removed" or s.cleaned


def NothingHeldWhenAbsent(s: LifecycleState) -> bool:  # noqa: N802
    return s.status not in ("none", "removed") or s.cleaned


INVARIANTS = (TypeOK, SecuredBeforeRun, RemovedIsFinal, RemovedRequiresCleanup, NothingHeldWhenAbsent)


def candidate_events(state: LifecycleState) -> list[v.Event]:
    """Every event the spec's actions range over (for exhaustive walks and model tests)."""
    return [
        v.Create(), *(v.Prepared(level) for level in PREPARED_LEVELS), v.SetupFailed(), v.Start(),
        v.Abort(), v.Exit(0), *(v.Kill(sig) for sig in SIGNALS), v.Lost(), v.Attach(), v.CleanupDone(),
        v.Remove(),
    ]
