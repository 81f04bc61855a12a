"""A command joining a running container (`nucleus attach`): formal/Join.tla.

The join is a plan of steps carried out in order by a process the machine spawns: spawn it, move
it into the container's cgroup, enter the container's namespaces, take the container's identity,
fork into its PID namespace, then drop capabilities, load the container's seccomp program and
apply its Landlock rules, exactly as its workload had them. Only then is the command started.
(What the command is refused is recorded in the container's violation stream: the spawn step
starts a violation monitor for it and the seccomp step loads the program's notify form, see
nucleus.plan.join; the steps are the same.)

A failure is fatal, except for a control that the container itself runs without (its security
was degraded there): a joined command never has fewer restrictions than the container's
workload, and never more leniency either.
"""

from __future__ import annotations

from dataclasses import field, replace

from nucleus import vocab as v
from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step, spec_set

PLAN = ("spawn", "cgroup", "enter", "identity", "fork", "caps", "seccomp", "landlock")
PHASES = ("idle", "running", "ready", "started", "exited", "failed")
DEGRADABLE = ("seccomp", "landlock")


@frozen
class JoinState:
    degradable: frozenset[str] = frozenset()  # the controls the container itself runs without
    phase: str = "idle"
    done: int = 0  # how many plan steps have completed
    degraded: frozenset[str] = frozenset()
    # Not part of the spec's abstraction: one intent per plan step, the command, its status.
    steps: tuple[v.Intent, ...] = ()
    command: v.ExecCommand = field(default_factory=v.ExecCommand)
    exit_code: int | None = None


def initial(steps: tuple[v.Intent, ...], command: v.ExecCommand,
            degradable: frozenset[str] = frozenset()) -> JoinState:
    reports = tuple(intent.reports for intent in steps)
    if reports != tuple(("join", name) for name in PLAN):
        raise ValueError(f"a join plan has the steps {PLAN} of the join machine, not {reports}")
    return JoinState(degradable=frozenset(degradable) & frozenset(DEGRADABLE), steps=steps,
                     command=command)


def _advance(state: JoinState, warn: tuple[v.Intent, ...] = ()) -> Step:
    if state.done == len(PLAN):
        return Step(replace(state, phase="ready"), warn)
    return Step(replace(state, phase="running"), warn + (state.steps[state.done],))


def step(state: JoinState, event: v.Event) -> Step | Refused:
    match event:
        case v.JoinBegin():
            if state.phase != "idle":
                return Refused(f"cannot Begin the join: it is {state.phase} (Begin is allowed only from idle)")
            return _advance(state)
        case v.JoinDone(step=name) | v.JoinFailed(step=name):
            if state.phase != "running":
                return Refused(
                    f"cannot {v.action_name(event)} join step {name!r}: it is {state.phase} "
                    "(steps finish only while running)"
                )
            expected = PLAN[state.done]
            if name != expected:
                return Refused(
                    f"cannot {v.action_name(event)} join step {name!r}: the step under way is {expected!r}"
                )
            if isinstance(event, v.JoinDone):
                return _advance(replace(state, done=state.done + 1))
            assert isinstance(event, v.JoinFailed)
            if name in state.degradable:
                warn = v.Warn(f"{name} could not be applied to the joining command ({event.message}); "
                              "the container runs without it too")
                return _advance(replace(state, done=state.done + 1, degraded=state.degraded | {name}),
                                (warn,))
            return Step(replace(state, phase="failed"), (v.Cleanup(),))
        case v.JoinStart():
            if state.phase != "ready":
                return Refused(f"cannot Start the joining command: it is {state.phase} (Start is allowed only from ready)")
            return Step(replace(state, phase="started"), (state.command,))
        case v.JoinExit(code=code):
            if state.phase != "started":
                return Refused(f"cannot Exit the joining command: it is {state.phase} (Exit is allowed only from started)")
            return Step(replace(state, phase="exited", exit_code=code), (v.Cleanup(),))
    return Refused(f"the join has no action {event.name}")


def is_initial(state: JoinState) -> bool:
    return state.phase == "idle" and state.done == 0 and not state.degraded


def to_tla(state: JoinState) -> dict[str, object]:
    return {"join_degradable": state.degradable, "join_phase": state.phase, "join_done": state.done,
            "join_degraded": state.degraded}


def from_tla(values: dict[str, object], base: JoinState | None = None) -> JoinState:
    """The state the spec's variables describe; the planned intents from `base` (placeholders
    without one)."""
    done = values["join_done"]
    assert isinstance(done, int)
    state = base or placeholder()
    return replace(
        state, degradable=spec_set(values["join_degradable"]),
        phase=str(values["join_phase"]), done=done,
        degraded=spec_set(values["join_degraded"]),
    )


def placeholder() -> JoinState:
    """A join of nothing in particular: what the model tests and trace replay drive."""
    return initial((v.JoinSpawn(), v.JoinCgroup(), v.EnterNamespaces(), v.JoinIdentity(), v.JoinFork(),
                    v.JoinDropCapabilities(), v.JoinLoadSeccomp(), v.JoinApplyLandlock()),
                   v.ExecCommand(argv=("/bin/sh",)))


def has_done(state: JoinState, name: str) -> bool:
    return PLAN.index(name) < state.done


# Invariants: the same names as in formal/Join.tla.
def TypeOK(s: JoinState) -> bool:  # noqa: N802
    return (s.phase in PHASES and 0 <= s.done <= len(PLAN) and s.degradable <= set(DEGRADABLE)
            and s.degraded <= set(DEGRADABLE))


def StartedOnlyRestricted(s: JoinState) -> bool:  # noqa: N802
    return s.phase not in ("ready", "started", "exited") or s.done == len(PLAN)


def NoWeakerThanContainer(s: JoinState) -> bool:  # noqa: N802
    return s.degraded <= s.degradable


def DegradedOnlyWhenReached(s: JoinState) -> bool:  # noqa: N802
    return all(has_done(s, name) for name in s.degraded)


def FailedNeverComplete(s: JoinState) -> bool:  # noqa: N802
    return s.phase != "failed" or s.done < len(PLAN)


INVARIANTS = (TypeOK, StartedOnlyRestricted, NoWeakerThanContainer, DegradedOnlyWhenReached,
              FailedNeverComplete)


def candidate_events(state: JoinState) -> list[v.Event]:
    return ([v.JoinBegin(), v.JoinStart(), v.JoinExit(0), v.JoinExit(1)]
            + [v.JoinDone(n) for n in PLAN] + [v.JoinFailed(n) for n in PLAN])
