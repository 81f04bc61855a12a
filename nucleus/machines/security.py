"""Security controls: formal/Security.tla.

Capabilities are dropped, then the seccomp filter is loaded, then Landlock restricts the
filesystem; each step is irreversible. A capability failure is always fatal. A seccomp or Landlock
failure is fatal unless degraded security was explicitly allowed, in which case it is recorded as
degraded and reported as a warning. In the strict modes (strict-agent, production) nothing is ever
degraded: the machine fails closed even if degraded security was somehow allowed. Seccomp trace
mode (agent mode only) loads a filter that allows every call and reports it: the control is in
place but refuses nothing, so the level is "traced", never "enforced".
"""

from __future__ import annotations

from dataclasses import replace

from nucleus import vocab as v
from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step, spec_set

PHASES = ("idle", "caps", "seccomp", "landlock", "locked", "failed")
CONTROLS = ("caps", "seccomp", "landlock")
DEGRADABLE = ("seccomp", "landlock")


@frozen
class SecurityState:
    allow_degraded: bool = False
    strict: bool = False  # strict-agent and production: nothing may be degraded, whatever else says
    phase: str = "idle"
    applied: frozenset[str] = frozenset()
    degraded: frozenset[str] = frozenset()
    # Parameters of the intents (not part of the spec's abstraction).
    keep_caps: tuple[str, ...] = ()
    user: tuple[int, int, tuple[int, ...]] | None = None  # -u: who the caps step switches to
    program_sha256: str = ""
    log_denied: bool = False
    seccomp_mode: str = "enforce"  # "trace": the user-notification filter of seccomp trace mode
    # ("notify": the enforced program's notify form, refusals answered by the violation monitor)
    landlock_rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    landlock_min_abi: int = 0
    landlock_log: bool = False  # log the workload's Landlock denials (the violation stream reads them)

    @property
    def trace(self) -> bool:
        """Seccomp trace mode: the filter allows every call (never in a strict mode)."""
        return self.seccomp_mode == "trace"

    @property
    def level(self) -> str:
        if self.degraded:
            return "degraded"
        return "traced" if self.trace else "enforced"


def initial(allow_degraded: bool = False, strict: bool = False, **params: object) -> SecurityState:
    """ValueError for seccomp trace mode in a strict mode (the spec's Init excludes it)."""
    state = SecurityState(allow_degraded=allow_degraded, strict=strict, **params)  # type: ignore[arg-type]
    if state.strict and state.trace:
        raise ValueError("seccomp trace mode in a strict mode: nothing may run unfiltered there")
    return state


def _intent(state: SecurityState, control: str) -> v.Intent:
    if control == "caps":
        return v.DropCapabilities(state.keep_caps, state.user)
    if control == "seccomp":
        return v.LoadSeccomp(state.program_sha256, state.log_denied, state.seccomp_mode)
    return v.ApplyLandlock(state.landlock_rules, state.landlock_min_abi, log_new_exec=state.landlock_log)


def _after(state: SecurityState, control: str, intents: tuple[v.Intent, ...] = ()) -> Step:
    nxt = CONTROLS.index(control) + 1
    if nxt == len(CONTROLS):
        return Step(replace(state, phase="locked"), intents)
    following = CONTROLS[nxt]
    return Step(replace(state, phase=following), intents + (_intent(state, following),))


def step(state: SecurityState, event: v.Event) -> Step | Refused:
    match event:
        case v.SecBegin():
            if state.phase != "idle":
                return Refused(f"cannot Begin security: it is {state.phase} (Begin is allowed only from idle)")
            return Step(replace(state, phase="caps"), (_intent(state, "caps"),))
        case v.SecDone(step=name) | v.SecFailed(step=name):
            if state.phase not in CONTROLS or name != state.phase:
                return Refused(
                    f"cannot {v.action_name(event)} security control {name!r}: it is {state.phase}"
                )
            if isinstance(event, v.SecDone):
                return _after(replace(state, applied=state.applied | {name}), name)
            if name in DEGRADABLE and state.allow_degraded and not state.strict:
                warn = v.Warn(
                    f"{name} could not be applied ({event.message}); continuing with degraded "
                    "security because --allow-degraded-security was given"
                )
                return _after(replace(state, degraded=state.degraded | {name}), name, (warn,))
            return Step(replace(state, phase="failed"))
    return Refused(f"security has no action {event.name}")


def is_initial(state: SecurityState) -> bool:
    return state.phase == "idle" and not state.applied and not state.degraded and not (state.strict and state.trace)


def to_tla(state: SecurityState) -> dict[str, object]:
    return {
        "sec_allowDegraded": state.allow_degraded, "sec_strict": state.strict, "sec_trace": state.trace,
        "sec_phase": state.phase,
        "sec_applied": state.applied, "sec_degraded": state.degraded,
    }


def from_tla(values: dict[str, object], base: SecurityState | None = None) -> SecurityState:
    """The state the spec's variables describe; parameters from `base` (the filter's mode from
    `sec_trace` where the two disagree)."""
    base = base or SecurityState()
    if bool(values["sec_trace"]) != base.trace:
        base = replace(base, seccomp_mode="trace" if values["sec_trace"] else "enforce")
    return replace(
        base,
        allow_degraded=bool(values["sec_allowDegraded"]), strict=bool(values["sec_strict"]),
        phase=str(values["sec_phase"]),
        applied=spec_set(values["sec_applied"]), degraded=spec_set(values["sec_degraded"]),
    )


# Invariants: the same names as in formal/Security.tla.
def TypeOK(s: SecurityState) -> bool:  # noqa: N802
    return s.phase in PHASES and s.applied <= set(CONTROLS) and s.degraded <= set(DEGRADABLE)


def InOrder(s: SecurityState) -> bool:  # noqa: N802
    reached = s.applied | s.degraded
    return ("seccomp" not in reached or "caps" in s.applied) and (
        "landlock" not in reached or "seccomp" in reached
    )


def DegradedOnlyIfAllowed(s: SecurityState) -> bool:  # noqa: N802
    return not s.degraded or s.allow_degraded


def StrictNeverDegraded(s: SecurityState) -> bool:  # noqa: N802
    return not s.strict or not s.degraded


def StrictNeverTraced(s: SecurityState) -> bool:  # noqa: N802
    return not s.strict or not s.trace


def LockedMeansAllControls(s: SecurityState) -> bool:  # noqa: N802
    return s.phase != "locked" or (s.applied | s.degraded == set(CONTROLS) and "caps" in s.applied)


def NeverBoth(s: SecurityState) -> bool:  # noqa: N802
    return not (s.applied & s.degraded)


INVARIANTS = (TypeOK, InOrder, DegradedOnlyIfAllowed, StrictNeverDegraded, LockedMeansAllControls, NeverBoth,
              StrictNeverTraced)


def candidate_events(state: SecurityState) -> list[v.Event]:
    return [v.SecBegin()] + [v.SecDone(c) for c in CONTROLS] + [v.SecFailed(c) for c in CONTROLS]
