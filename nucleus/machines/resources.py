"""The container's cgroup: formal/Resources.tla.

create -> set limits -> (wait for the setup process) -> attach -> ready; released at cleanup.
A failure is fatal when cgroups are required (production) and otherwise degrades: the container
runs without limits, with a warning. Whatever was created is removed at cleanup, on every path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nucleus import vocab as v
from nucleus.machines.base import Refused, Step

PHASES = (
    "idle", "creating", "limiting", "waiting", "attaching", "ready", "degraded", "failed",
    "releasing", "released", "leaked",
)
STEPS = ("create", "limits", "attach", "release")
_UNDER_WAY = {"creating": "create", "limiting": "limits", "attaching": "attach", "releasing": "release"}


@dataclass(frozen=True)
class ResourcesState:
    required: bool = False
    phase: str = "idle"
    held: bool = False  # a cgroup of this container exists on the host
    limited: bool = False  # its limits are written
    # Parameters of the intents (not part of the spec's abstraction).
    name: str = ""
    parent: str = "nucleus"
    limits: Any = None


def initial(required: bool = False, name: str = "", parent: str = "nucleus", limits: Any = None) -> ResourcesState:
    return ResourcesState(required=required, name=name, parent=parent, limits=limits)


def is_initial(state: ResourcesState) -> bool:
    return state.phase == "idle" and not state.held and not state.limited


def step(state: ResourcesState, event: v.Event) -> Step | Refused:
    p = state.phase
    match event:
        case v.ResBegin():
            if p != "idle":
                return Refused(f"cannot Begin resources: it is {p} (Begin is allowed only from idle)")
            return Step(replace(state, phase="creating"), (v.CreateCgroup(state.parent, state.name),))
        case v.ResAttach():
            if p != "waiting":
                return Refused(f"cannot Attach resources: it is {p} (Attach is allowed only from waiting)")
            return Step(replace(state, phase="attaching"), (v.AttachCgroup(),))
        case v.ResRelease():
            if p in ("idle", "degraded", "failed", "waiting", "ready", "leaked"):
                if not state.held:
                    return Step(replace(state, phase="released"))
                return Step(replace(state, phase="releasing"), (v.RemoveCgroup(),))
            return Refused(
                f"cannot Release resources: it is {p} (Release is allowed only when no step is under way)"
            )
        case v.ResDone(step=name) | v.ResFailed(step=name):
            expected = _UNDER_WAY.get(p)
            if expected is None or name != expected:
                return Refused(
                    f"cannot {v.action_name(event)} resources step {name!r}: it is {p}"
                    + (f" (the step under way is {expected!r})" if expected else "")
                )
            if isinstance(event, v.ResDone):
                if name == "create":
                    return Step(replace(state, phase="limiting", held=True), (v.SetCgroupLimits(),))
                if name == "limits":
                    return Step(replace(state, phase="waiting", limited=True))
                if name == "attach":
                    return Step(replace(state, phase="ready"))
                return Step(replace(state, phase="released", held=False, limited=False))
            if name == "release":
                return Step(replace(state, phase="leaked"))
            if state.required:
                return Step(replace(state, phase="failed"))
            return Step(
                replace(state, phase="degraded"),
                (v.Warn(f"cgroup {name} failed ({event.message}); running without resource limits"),),
            )
    return Refused(f"resources have no action {event.name}")


def to_tla(state: ResourcesState) -> dict[str, object]:
    return {"res_required": state.required, "res_phase": state.phase, "res_held": state.held,
            "res_limited": state.limited}


def from_tla(values: dict[str, object]) -> ResourcesState:
    return ResourcesState(
        required=bool(values["res_required"]), phase=str(values["res_phase"]),
        held=bool(values["res_held"]), limited=bool(values["res_limited"]),
    )


# Invariants: the same names as in formal/Resources.tla.
def TypeOK(s: ResourcesState) -> bool:  # noqa: N802
    return s.phase in PHASES


def ReleasedHoldsNothing(s: ResourcesState) -> bool:  # noqa: N802
    return s.phase != "released" or not s.held


def DegradedOnlyIfOptional(s: ResourcesState) -> bool:  # noqa: N802
    return s.phase != "degraded" or not s.required


def FailedOnlyIfRequired(s: ResourcesState) -> bool:  # noqa: N802
    return s.phase != "failed" or s.required


def AttachOnlyWhenLimited(s: ResourcesState) -> bool:  # noqa: N802
    return s.phase not in ("attaching", "ready") or (s.held and s.limited)


def LimitedMeansHeld(s: ResourcesState) -> bool:  # noqa: N802
    return not s.limited or s.held


INVARIANTS = (
    TypeOK, ReleasedHoldsNothing, DegradedOnlyIfOptional, FailedOnlyIfRequired,
    AttachOnlyWhenLimited, LimitedMeansHeld,
)


def candidate_events(state: ResourcesState) -> list[v.Event]:
    return [v.ResBegin(), v.ResAttach(), v.ResRelease()] + [v.ResDone(n) for n in STEPS] + [
        v.ResFailed(n) for n in STEPS
    ]
