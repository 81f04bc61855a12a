"""The Service machine: a long-running service's health, readiness and restarts, as the
supervisor drives them around the System machine's runs.

Health is `starting` until the first check passes, `healthy` after a passing check, and
`unhealthy` once `retries` checks in a row have failed; a failure within the start period
leaves `starting` as it is (it does not count). Becoming unhealthy asks the supervisor to end
the workload when --health-on-unhealthy says stop or restart. The first readiness (or, without
a readiness condition, the start itself) says READY=1 once per service, never again on a
restart.

When the workload ends, the restart policy decides: `always` starts it again, `on-failure` when
its status was not 0 (or it was ended as unhealthy) and fewer than N restarts were made; `no`
never; and after a StopAsked nothing starts again. The delay doubles from BACKOFF_FIRST with
each restart in a row up to BACKOFF_MAX, and the row starts over once a run has lasted
BACKOFF_RESET seconds.
"""

from __future__ import annotations

from dataclasses import replace

from nucleus.config.service import HealthCheck, Readiness, RestartPolicy, ServiceOptions
from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step
from nucleus.vocab import service as sv

HEALTH = ("none", "starting", "healthy", "unhealthy")
PHASES = ("starting", "running", "waiting", "finished")
BACKOFF_FIRST = 0.1  # seconds before the first restart of a row
BACKOFF_MAX = 10.0
BACKOFF_RESET = 10.0  # a run that lasted this long starts the row over
LOG_KEPT = 5  # the last check results that inspect shows
MAX_COUNT = 2  # formal/Service.tla's MaxCount: where the abstraction's restart count saturates
SPEC_RETRIES = 2  # formal/Service.tla's Retries


@frozen
class Result:
    """One check's result as inspect shows it."""

    finished: float
    code: int
    output: str
    timed_out: bool = False


@frozen
class ServiceState:
    options: ServiceOptions
    phase: str = "starting"  # running: a workload runs; waiting: for (and setting up) a restart
    health: str = "none"
    streak: int = 0  # failed checks in a row
    ready: bool = False  # the service was ready (once per service)
    notified: int = 0  # how often the supervisor said READY=1
    stopping: bool = False  # stop asked: never start again
    unhealthy_end: bool = False  # the workload was ended because it was unhealthy
    restarts: int = 0
    row: int = 0  # restarts in a row, for the backoff
    log: tuple[Result, ...] = ()


def initial(options: ServiceOptions) -> ServiceState:
    return ServiceState(options, health="starting" if options.health is not None else "none")


def backoff(row: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * float(1 << min(row, 30)))


def _readiness_kind(options: ServiceOptions) -> bool:
    """Whether readiness waits for something besides the start."""
    r = options.readiness
    return r.exec is not None or r.tcp is not None or r.workload


def step(state: ServiceState, event: object) -> Step | Refused:
    o = state.options
    match event:
        case sv.Started():
            if state.phase not in ("starting", "waiting") or state.stopping:
                return Refused(f"cannot Started the service: it is {state.phase}")
            new = replace(state, phase="running", health="starting" if o.health else "none", streak=0,
                          unhealthy_end=False)
            if not state.ready and not _readiness_kind(o) and o.sd_notify:
                return Step(replace(new, ready=True, notified=state.notified + 1), (sv.NotifyReady("started"),))
            return Step(new)
        case sv.Ready():
            if state.phase != "running":
                return Refused(f"cannot Ready the service: it is {state.phase}")
            if state.ready:
                return Step(state)
            if o.sd_notify and not o.readiness.workload:
                return Step(replace(state, ready=True, notified=state.notified + 1), (sv.NotifyReady("ready"),))
            return Step(replace(state, ready=True))
        case sv.CheckDone(code=code, early=early, timed_out=timed_out, output=output, finished=finished):
            if state.phase != "running" or o.health is None:
                return Refused(f"cannot CheckDone the service: it is {state.phase}")
            log = (*state.log, Result(finished, code, output, timed_out))[-LOG_KEPT:]
            if code == 0 and not timed_out:
                return Step(replace(state, health="healthy", streak=0, log=log))
            if state.health == "starting" and early:
                return Step(replace(state, log=log))
            streak = state.streak + 1
            if streak < o.health.retries or state.health == "unhealthy":
                return Step(replace(state, streak=streak, log=log))
            new = replace(state, health="unhealthy", streak=streak, log=log)
            if o.on_unhealthy == "none" or state.stopping:
                return Step(new)
            reason = f"unhealthy: {streak} checks failed in a row"
            return Step(replace(new, unhealthy_end=True, stopping=o.on_unhealthy == "stop"),
                        (sv.Terminate(reason),))
        case sv.StopAsked():
            if state.phase == "finished":
                return Step(state)
            if state.phase == "waiting":
                return Step(replace(state, stopping=True, phase="finished"), (sv.Finish(-1),))
            return Step(replace(state, stopping=True))
        case sv.Ended(code=code, ran_for=ran_for):
            if state.phase == "finished":
                return Refused(f"cannot Ended the service: it is {state.phase}")
            if not _restarts(state, code):
                return Step(replace(state, phase="finished"), (sv.Finish(code),))
            row = 0 if ran_for >= BACKOFF_RESET else state.row
            return Step(replace(state, phase="waiting", restarts=state.restarts + 1, row=row + 1),
                        (sv.RestartAfter(backoff(row)),))
    return Refused(f"cannot {type(event).__name__} the service: not one of its events")


def _restarts(state: ServiceState, code: int) -> bool:
    policy = state.options.restart
    if state.stopping or policy.mode == "no":
        return False
    if policy.mode == "always":
        return True
    failed = code != 0 or state.unhealthy_end
    return failed and (policy.limit is None or state.restarts < policy.limit)


# --- the spec's abstraction (formal/Service.tla) ----------------------------------------------


def to_tla(state: ServiceState) -> dict[str, object]:
    """The spec's variables: the options as its parameters, the counts saturated at its bounds."""
    o = state.options
    retries = o.health.retries if o.health is not None else SPEC_RETRIES
    r = o.readiness
    return {
        "svc_checked": o.health is not None, "svc_policy": o.restart.mode,
        "svc_limit": -1 if o.restart.limit is None else o.restart.limit,
        "svc_on_unhealthy": o.on_unhealthy, "svc_notify": o.sd_notify,
        "svc_gated": "workload" if r.workload else "probe" if r.exec is not None or r.tcp is not None else "none",
        "svc_phase": state.phase, "svc_health": state.health, "svc_streak": min(state.streak, retries),
        "svc_ready": state.ready, "svc_notified": state.notified, "svc_stopping": state.stopping,
        "svc_unhealthy_end": state.unhealthy_end, "svc_restarts": min(state.restarts, MAX_COUNT),
    }


def from_tla(values: dict[str, object]) -> ServiceState:
    """A state with the spec's variables (a check of Retries failures, a TCP probe for a gate)."""
    limit = int(str(values["svc_limit"]))
    gated = values["svc_gated"]
    options = ServiceOptions(
        health=HealthCheck("true", retries=SPEC_RETRIES) if values["svc_checked"] else None,
        on_unhealthy=str(values["svc_on_unhealthy"]),
        restart=RestartPolicy(str(values["svc_policy"]), None if limit < 0 else limit),
        readiness=Readiness(tcp=1 if gated == "probe" else None, workload=gated == "workload"),
        sd_notify=bool(values["svc_notify"]))
    restarts = int(str(values["svc_restarts"]))
    return ServiceState(options, phase=str(values["svc_phase"]), health=str(values["svc_health"]),
                        streak=int(str(values["svc_streak"])), ready=bool(values["svc_ready"]),
                        notified=int(str(values["svc_notified"])), stopping=bool(values["svc_stopping"]),
                        unhealthy_end=bool(values["svc_unhealthy_end"]), restarts=restarts,
                        row=min(restarts, 1))


def is_initial(state: ServiceState) -> bool:
    return state == initial(state.options)


def candidate_events(state: ServiceState) -> list[object]:
    """Every kind of event, each once per argument of the spec's."""
    return [sv.Started(), sv.Ready(), sv.StopAsked(), sv.CheckDone(0), sv.CheckDone(1),
            sv.CheckDone(1, early=True), sv.CheckDone(1, timed_out=True), sv.Ended(0), sv.Ended(1)]


# --- the invariants ------------------------------------------------------------------------------


def TypeOK(state: ServiceState) -> bool:  # noqa: N802 - the spec's name
    return (state.phase in PHASES and state.health in HEALTH and state.streak >= 0
            and state.restarts >= 0 and 0 <= state.row <= state.restarts + 1
            and state.notified >= 0 and len(state.log) <= LOG_KEPT)


def HealthOnlyIfChecked(state: ServiceState) -> bool:  # noqa: N802
    """Health is reported only with a check, and then always."""
    return (state.health == "none") == (state.options.health is None)


def UnhealthyAfterRetries(state: ServiceState) -> bool:  # noqa: N802
    """Unhealthy only after `retries` failures in a row."""
    health = state.options.health
    return state.health != "unhealthy" or (health is not None and state.streak >= health.retries)


def BoundedRestarts(state: ServiceState) -> bool:  # noqa: N802
    """on-failure:N never restarts more than N times; `no` never restarts."""
    policy = state.options.restart
    if policy.mode == "no":
        return state.restarts == 0
    return policy.mode != "on-failure" or policy.limit is None or state.restarts <= policy.limit


def StoppedStaysStopped(state: ServiceState) -> bool:  # noqa: N802
    """A service asked to stop never waits for a restart."""
    return not (state.stopping and state.phase == "waiting")


def ReadyOnce(state: ServiceState) -> bool:  # noqa: N802
    """READY=1 is said at most once per service."""
    return state.notified <= 1


def ReadyOnlyWhenReady(state: ServiceState) -> bool:  # noqa: N802
    """READY=1 only once ready, only when asked, never for a workload that says it itself."""
    o = state.options
    return state.notified == 0 or (state.ready and o.sd_notify and not o.readiness.workload)


INVARIANTS = (TypeOK, HealthOnlyIfChecked, UnhealthyAfterRetries, BoundedRestarts, StoppedStaysStopped,
              ReadyOnce, ReadyOnlyWhenReady)
