"""Namespace setup: formal/Isolation.tla.

The setup is a plan of steps carried out in order. Two orders exist:

* privileged (the caller is host root): every namespace but the user namespace is created and
  owned by the host's user namespace; the filesystem is built as host root; only then does the
  setup enter a new user namespace whose ids map to an unprivileged host range. Container root then
  holds no capability over any namespace it lives in.
* rootless (an ordinary caller, or --rootless): the user namespace comes first and owns the rest;
  ids map to the caller.

Namespaces a container joins by path (an OCI config's, a pod's sandbox's) are joined at the
"unshare" step, before the new ones are made, in place of making them: the same step with a
different effect. A joined namespace belongs to its maker: nothing here tears one down.

The machine pauses at gates until Resume: before "unshare" until the setup process is in its
cgroup, and in the privileged order before "enter_user" until the filesystem is sealed.
"""

from __future__ import annotations

from dataclasses import replace

from nucleus import vocab as v
from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step

PRIVILEGED_PLAN = (
    "spawn", "unshare", "fork_init", "hostname", "loopback", "enter_user", "map_ids", "become_root",
)
ROOTLESS_PLAN = ("spawn", "unshare", "map_ids", "become_root", "fork_init", "hostname", "loopback")
PHASES = ("idle", "running", "waiting", "ready", "failed")
NAMESPACES = ("user", "pid", "mount", "net", "uts", "ipc", "cgroup", "time")


@frozen
class IsolationState:
    rootless: bool = False
    phase: str = "idle"
    done: int = 0  # how many plan steps have completed
    # Parameters of the intents (not part of the spec's abstraction).
    namespaces: tuple[str, ...] = ("pid", "mount", "net", "uts", "ipc", "cgroup")
    hostname: str = "nucleus"
    uid_map: tuple[tuple[int, int, int], ...] = ((0, 100000, 65536),)
    gid_map: tuple[tuple[int, int, int], ...] = ((0, 100000, 65536),)
    trace_log: str = ""  # seccomp trace mode: where the tracer started with the setup process writes
    terminal: bool = False  # -t: the setup process gets the socket its workload's terminal comes back on
    violations: str = ""  # the violation stream the monitor started with the setup process writes
    # Namespaces joined by path at "unshare" (v.Unshare.joins), and whether one may be the host's
    joins: tuple[tuple[str, str, str], ...] = ()
    join_host: bool = False

    @property
    def plan(self) -> tuple[str, ...]:
        return ROOTLESS_PLAN if self.rootless else PRIVILEGED_PLAN

    def has_done(self, step_name: str) -> bool:
        plan = self.plan
        return step_name in plan and plan.index(step_name) < self.done


def initial(
    rootless: bool = False,
    namespaces: tuple[str, ...] = ("pid", "mount", "net", "uts", "ipc", "cgroup"),
    hostname: str = "nucleus",
    uid_map: tuple[tuple[int, int, int], ...] = ((0, 100000, 65536),),
    gid_map: tuple[tuple[int, int, int], ...] = ((0, 100000, 65536),),
    trace_log: str = "",
    terminal: bool = False,
    violations: str = "",
    joins: tuple[tuple[str, str, str], ...] = (),
    join_host: bool = False,
) -> IsolationState:
    return IsolationState(
        rootless=rootless, namespaces=tuple(n for n in namespaces if n != "user"),
        hostname=hostname, uid_map=uid_map, gid_map=gid_map, trace_log=trace_log, terminal=terminal,
        violations=violations, joins=joins, join_host=join_host,
    )


def _intent(state: IsolationState, step_name: str) -> v.Intent:
    if step_name == "spawn":
        return v.SpawnChild(state.trace_log, state.terminal, violations=state.violations)
    if step_name == "unshare":
        extra = ("user",) if state.rootless else ()
        return v.Unshare(extra + state.namespaces, state.joins, state.join_host)
    if step_name == "fork_init":
        return v.ForkInit()
    if step_name == "hostname":
        return v.SetHostname(state.hostname)
    if step_name == "loopback":
        return v.LoopbackUp()
    if step_name == "enter_user":
        return v.EnterUserNamespace()
    if step_name == "map_ids":
        # An unprivileged writer must deny setgroups; host root's maps allow it, so that a user
        # of -u (or exec -u) gets its supplementary groups (the container's own gids only).
        return v.WriteIdMaps(state.uid_map, state.gid_map, "deny" if state.rootless else "allow")
    if step_name == "become_root":
        return v.BecomeRoot()
    raise ValueError(f"unknown isolation step {step_name!r}")


def is_gate(state: IsolationState, step_name: str) -> bool:
    """Steps that wait for Resume: "unshare" until the setup process is in its cgroup (so the
    cgroup namespace is rooted there); in the privileged order "enter_user" until the root
    filesystem is sealed."""
    return step_name == "unshare" or (step_name == "enter_user" and not state.rootless)


def next_step(state: IsolationState) -> str | None:
    return state.plan[state.done] if state.done < len(state.plan) else None


def _advance(state: IsolationState) -> Step:
    """After a step completed: finish, pause at a gate, or ask for the next step."""
    nxt = next_step(state)
    if nxt is None:
        return Step(replace(state, phase="ready"))
    if is_gate(state, nxt):
        return Step(replace(state, phase="waiting"))
    return Step(replace(state, phase="running"), (_intent(state, nxt),))


def step(state: IsolationState, event: v.Event) -> Step | Refused:
    plan = state.plan
    match event:
        case v.IsoBegin():
            if state.phase != "idle":
                return Refused(f"cannot Begin isolation: it is {state.phase} (Begin is allowed only from idle)")
            return _advance(state)
        case v.IsoDone(step=name) | v.IsoFailed(step=name):
            if state.phase != "running":
                return Refused(
                    f"cannot {v.action_name(event)} isolation step {name!r}: it is {state.phase} "
                    "(steps finish only while running)"
                )
            expected = plan[state.done]
            if name != expected:
                return Refused(
                    f"cannot {v.action_name(event)} isolation step {name!r}: the step under way is {expected!r}"
                )
            if isinstance(event, v.IsoFailed):
                return Step(replace(state, phase="failed"))
            return _advance(replace(state, done=state.done + 1))
        case v.IsoResume():
            if state.phase != "waiting":
                return Refused(f"cannot Resume isolation: it is {state.phase} (Resume is allowed only from waiting)")
            return Step(replace(state, phase="running"), (_intent(state, plan[state.done]),))
    return Refused(f"isolation has no action {event.name}")


def is_initial(state: IsolationState) -> bool:
    return state.phase == "idle" and state.done == 0


def to_tla(state: IsolationState) -> dict[str, object]:
    return {"iso_rootless": state.rootless, "iso_phase": state.phase, "iso_done": state.done}


def from_tla(values: dict[str, object], base: IsolationState | None = None) -> IsolationState:
    """The state the spec's variables describe; parameters from `base`."""
    done = values["iso_done"]
    assert isinstance(done, int)
    return replace(base or IsolationState(), rootless=bool(values["iso_rootless"]),
                   phase=str(values["iso_phase"]), done=done)


# Invariants: the same names as in formal/Isolation.tla.
def TypeOK(s: IsolationState) -> bool:  # noqa: N802
    return s.phase in PHASES and 0 <= s.done <= len(s.plan)


def ReadyMeansComplete(s: IsolationState) -> bool:  # noqa: N802
    return s.phase != "ready" or s.done == len(s.plan)


def MapsNeedUserNamespace(s: IsolationState) -> bool:  # noqa: N802
    user_step = "unshare" if s.rootless else "enter_user"
    return not s.has_done("map_ids") or s.has_done(user_step)


def RootOnlyAfterMaps(s: IsolationState) -> bool:  # noqa: N802
    return not s.has_done("become_root") or s.has_done("map_ids")


def InitInNewPidNamespace(s: IsolationState) -> bool:  # noqa: N802
    return not s.has_done("fork_init") or s.has_done("unshare")


def WaitOnlyAtGates(s: IsolationState) -> bool:  # noqa: N802
    nxt = next_step(s)
    return s.phase != "waiting" or (nxt is not None and is_gate(s, nxt))


INVARIANTS = (
    TypeOK, ReadyMeansComplete, MapsNeedUserNamespace, RootOnlyAfterMaps, InitInNewPidNamespace,
    WaitOnlyAtGates,
)


def candidate_events(state: IsolationState) -> list[v.Event]:
    names = sorted(set(PRIVILEGED_PLAN) | set(ROOTLESS_PLAN))
    return [v.IsoBegin(), v.IsoResume()] + [v.IsoDone(n) for n in names] + [v.IsoFailed(n) for n in names]
