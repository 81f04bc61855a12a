"""The container's cgroup: formal/Resources.tla.

create -> set limits -> (wait for the setup process) -> attach -> ready; released at cleanup.
A failure is fatal when cgroups are required (strict-agent, production) and otherwise degrades:
the container runs without limits, with a warning. Whatever may have been created is removed at
cleanup, on every path: a failed or abandoned creation may have left directories behind, so it
counts as held. What each step writes is planned (nucleus.plan.cgroups) and carried by its
intent.

One limit the kernel refuses: when cgroups are required the limits intent is strict and the
step fails (fatal, as above); otherwise the step skips that write and goes on, and its Done
lists what it skipped: one warning per limit not applied, naming the flag, the file, the value
and the error, while the others stay in force (the spec's Done(limits): the limits that the
host took are written).

A removal that fails leaves the group leaked, and cleanup tries it again, after a growing pause
(RELEASE_PAUSES), MAX_RELEASE_TRIES removals in all; then it gives up (`gave_up`): the group
stays leaked until another process takes the cleanup over (`reclaim`: `rm --force`).
"""

from __future__ import annotations

from dataclasses import field, replace

from nucleus import vocab as v
from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step
from nucleus.plan.cgroups import flag_of

PHASES = (
    "idle", "creating", "limiting", "waiting", "attaching", "ready", "degraded", "failed",
    "releasing", "released", "leaked",
)
STEPS = ("create", "limits", "attach", "release")
UNDER_WAY = {"creating": "create", "limiting": "limits", "attaching": "attach", "releasing": "release"}
SETTLED = ("idle", "degraded", "failed", "waiting", "ready", "leaked")
# The removals cleanup tries before it gives up (the spec's MaxReleaseTries), and the pause in
# seconds before each: a group still busy (a process in uninterruptible sleep, a kernel slow to
# let an emptied group go) gets a little longer each time.
MAX_RELEASE_TRIES = 3
RELEASE_PAUSES = (0.0, 0.5, 2.0)


@frozen
class ResourcesState:
    required: bool = False
    phase: str = "idle"
    held: bool = False  # a cgroup of this container (or part of one) may exist on the host
    limited: bool = False  # its limits are written
    tries: int = 0  # the removals that failed since cleanup last began afresh
    # Not part of the spec's abstraction: the planned intents, and what the release observed.
    create: v.CreateCgroup = field(default_factory=v.CreateCgroup)
    limits: v.SetCgroupLimits = field(default_factory=v.SetCgroupLimits)
    attach: v.AttachCgroup = field(default_factory=v.AttachCgroup)
    remove: v.RemoveCgroup = field(default_factory=v.RemoveCgroup)
    oom_killed: bool = False
    oom_peak: int | None = None  # the group's peak memory use in bytes, when the release read it


def initial(required: bool = False, create: v.CreateCgroup | None = None,
            limits: v.SetCgroupLimits | None = None, attach: v.AttachCgroup | None = None,
            remove: v.RemoveCgroup | None = None) -> ResourcesState:
    return ResourcesState(
        required=required, create=create or v.CreateCgroup(), limits=limits or v.SetCgroupLimits(),
        attach=attach or v.AttachCgroup(), remove=remove or v.RemoveCgroup(),
    )


def is_initial(state: ResourcesState) -> bool:
    return state.phase == "idle" and not state.held and not state.limited and state.tries == 0


def gave_up(state: ResourcesState) -> bool:
    """Cleanup has given up on the group: every removal it may try has failed (GaveUp)."""
    return state.phase == "leaked" and state.tries >= MAX_RELEASE_TRIES


def reclaim(state: ResourcesState) -> ResourcesState:
    """Another process takes over a cleanup that gave up: its tries start afresh (Reclaim)."""
    return replace(state, tries=0) if gave_up(state) else state


def _failed(state: ResourcesState, name: str, message: str | None) -> Step:
    """A step that did not complete: fatal when cgroups are required, else a warning (none
    for a step abandoned with its supervisor: nothing runs on without limits then)."""
    if state.required:
        return Step(replace(state, phase="failed", held=True))
    warn = () if message is None else (
        v.Warn(f"cgroup {name} failed ({message}); running without resource limits"),)
    return Step(replace(state, phase="degraded", held=True), warn)


def _not_applied(detail: str) -> tuple[v.Intent, ...]:
    """One warning per write the limits step skipped."""
    warnings: list[v.Intent] = []
    for path, value, error in v.skipped_writes(detail):
        flag = flag_of(path)
        what = f"{flag} not applied" if flag else "a cgroup limit not applied"
        warnings.append(v.Warn(f"{what}: writing {value!r} to {path} failed: {error}; "
                               "running with the other limits"))
    return tuple(warnings)


def step(state: ResourcesState, event: v.Event) -> Step | Refused:
    p = state.phase
    match event:
        case v.ResBegin():
            if p != "idle":
                return Refused(f"cannot Begin resources: it is {p} (Begin is allowed only from idle)")
            return Step(replace(state, phase="creating"), (state.create,))
        case v.ResAttach():
            if p != "waiting":
                return Refused(f"cannot Attach resources: it is {p} (Attach is allowed only from waiting)")
            return Step(replace(state, phase="attaching"), (state.attach,))
        case v.ResRelease():
            if p not in SETTLED:
                return Refused(
                    f"cannot Release resources: it is {p} (Release is allowed only when no step is under way)"
                )
            if gave_up(state):
                return Refused(
                    f"cannot Release resources: all {MAX_RELEASE_TRIES} removals of the cgroup failed "
                    "(it is tried again once another process takes the cleanup over)"
                )
            if not state.held:
                return Step(replace(state, phase="released"))
            remove = state.remove.replace(pause=RELEASE_PAUSES[state.tries]) if state.tries else state.remove
            return Step(replace(state, phase="releasing"), (remove,))
        case v.ResAbandon():
            under_way = UNDER_WAY.get(p)
            if under_way is None:
                return Refused(f"cannot Abandon resources: it is {p} (Abandon is allowed only while a step is under way)")
            if under_way == "release":
                return Step(replace(state, phase="leaked", tries=state.tries + 1))
            return _failed(state, under_way, None)
        case v.ResDone(step=name) | v.ResFailed(step=name):
            expected = UNDER_WAY.get(p)
            if expected is None or name != expected:
                return Refused(
                    f"cannot {v.action_name(event)} resources step {name!r}: it is {p}"
                    + (f" (the step under way is {expected!r})" if expected else "")
                )
            if isinstance(event, v.ResDone):
                if name == "create":
                    return Step(replace(state, phase="limiting", held=True), (state.limits,))
                if name == "limits":
                    return Step(replace(state, phase="waiting", limited=True), _not_applied(event.detail))
                if name == "attach":
                    return Step(replace(state, phase="ready"))
                oom, peak = v.oom_of(event.detail)
                return Step(replace(state, phase="released", held=False, limited=False,
                                    oom_killed=state.oom_killed or oom,
                                    oom_peak=peak if oom else state.oom_peak))
            if name == "release":
                return Step(replace(state, phase="leaked", tries=state.tries + 1))
            assert isinstance(event, v.ResFailed)
            return _failed(state, name, event.message)
    return Refused(f"resources have no action {event.name}")


def to_tla(state: ResourcesState) -> dict[str, object]:
    return {"res_required": state.required, "res_phase": state.phase, "res_held": state.held,
            "res_limited": state.limited, "res_tries": state.tries}


def from_tla(values: dict[str, object], base: ResourcesState | None = None) -> ResourcesState:
    """The state the spec's variables describe; the planned intents from `base`. (A record
    written before removals were retried has no res_tries: none had been.)"""
    tries = values.get("res_tries", 0)
    assert isinstance(tries, int)
    return replace(
        base or ResourcesState(),
        required=bool(values["res_required"]), phase=str(values["res_phase"]),
        held=bool(values["res_held"]), limited=bool(values["res_limited"]), tries=tries,
    )


# Invariants: the same names as in formal/Resources.tla.
def TypeOK(s: ResourcesState) -> bool:  # noqa: N802
    return s.phase in PHASES and 0 <= s.tries <= MAX_RELEASE_TRIES


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


def NothingCreatedIsForgotten(s: ResourcesState) -> bool:  # noqa: N802
    """Once creation has been tried, the group counts as held until a release completes."""
    return s.phase in ("idle", "creating", "released") or s.held


INVARIANTS = (
    TypeOK, ReleasedHoldsNothing, DegradedOnlyIfOptional, FailedOnlyIfRequired,
    AttachOnlyWhenLimited, LimitedMeansHeld, NothingCreatedIsForgotten,
)


def candidate_events(state: ResourcesState) -> list[v.Event]:
    return [v.ResBegin(), v.ResAttach(), v.ResRelease(), v.ResAbandon()] + [
        v.ResDone(n) for n in STEPS] + [v.ResFailed(n) for n in STEPS]
