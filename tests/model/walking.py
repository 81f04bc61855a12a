"""Exhaustive breadth-first walks of a machine's reachable states, and the checks every walk
makes against its spec:

* every invariant of the machine holds in every reachable state;
* the code agrees with the spec: in every reachable state the set of accepted (action, argument,
  successor variables) equals what the spec's Next allows, and both reach the same set
  of spec states;
* every step the spec can take is taken, counted as the trace coverage counts it
  (tools/tla/behaviours.py): action, argument, the machine's phase after it, and the machine's
  parameters;
* ``to_tla`` is a sound abstraction: concrete states that look the same to the spec behave the
  same for every event, and ``from_tla`` rebuilds a state with the same variables (trace replay
  starts from it), keeping the planned parameters of a base state it is given.

The spec's side is the built-in checker's (tests/model/spec_steps.py), never a copy of the spec.
A walk of one machine makes these checks through its WalkedMachine; the System's walk
(test_walk_system.py) makes them across the composition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nucleus import vocab as v
from nucleus.config import modes
from nucleus.machines import filesystem
from nucleus.machines.base import Refused, Step
from tests.model.spec_constants import (
    BOOLS,
    PARAMETERS,
    Label,
    Vars,
    spec_next_actions,
)


def key(values: Vars) -> tuple:
    """A hashable, comparable form of a spec state."""
    return tuple(sorted((k, frozenset(x) if isinstance(x, (set, frozenset)) else x) for k, x in values.items()))


def show(values: Vars) -> str:
    return ", ".join(
        f"{k}={sorted(x) if isinstance(x, (set, frozenset)) else x!r}" for k, x in sorted(values.items())
    )


def label_of(event: v.Event, with_machine: bool) -> Label:
    base = (v.action_name(event), event.tla_arg())
    return (event.machine, *base) if with_machine else base


class Walk:
    """Every concrete state reachable from `inits` with `events(state)`, and every transition.

    `abstract[s]` is the spec state of `s` (key of to_tla); `outcomes[s]` is, per event offered,
    "refused" or the spec state of the successor."""

    def __init__(self, machine: Any, inits: Iterable[Any], events: Callable[[Any], list[v.Event]]) -> None:
        self.machine = machine
        self.inits = list(dict.fromkeys(inits))
        self.states: list[Any] = []
        self.transitions: dict[Any, list[tuple[v.Event, Step | Refused]]] = {}
        self.abstract: dict[Any, tuple] = {}
        self.outcomes: dict[Any, list[tuple[v.Event, Any]]] = {}
        queue: deque[Any] = deque()
        for s in self.inits:
            self.abstract[s] = key(machine.to_tla(s))
            queue.append(s)
        while queue:
            s = queue.popleft()
            self.states.append(s)
            outs = []
            for e in events(s):
                r = machine.step(s, e)
                assert isinstance(r, (Step, Refused)), f"step returned {r!r} for {e!r}"
                outs.append((e, r))
                if isinstance(r, Step) and r.state not in self.abstract:
                    self.abstract[r.state] = key(machine.to_tla(r.state))
                    queue.append(r.state)
            self.transitions[s] = outs
            self.outcomes[s] = [(e, "refused" if isinstance(r, Refused) else self.abstract[r.state]) for e, r in outs]

    def abstract_states(self) -> set[tuple]:
        return set(self.abstract.values())

    def taken(self, with_machine: bool) -> set[Label]:
        return {label_of(e, with_machine) for outs in self.transitions.values() for e, r in outs if isinstance(r, Step)}

    def steps(self) -> Iterable[tuple[Any, v.Event, Step]]:
        for s, outs in self.transitions.items():
            for e, r in outs:
                if isinstance(r, Step):
                    yield s, e, r


def spec_reachable(inits: list[Vars], nxt: Callable[[Vars], list[tuple[Label, Vars]]]) -> set[tuple]:
    seen = {key(s) for s in inits}
    queue = deque(inits)
    while queue:
        s = queue.popleft()
        for _, t in nxt(s):
            k = key(t)
            if k not in seen:
                seen.add(k)
                queue.append(t)
    return seen


# A step, as the trace coverage counts it (tools/tla/behaviours.py): the machine, action and
# argument, the machine's phase after the step, and the machine's parameters (the variables its
# Init picks freely: a seccomp failure that is fatal in a strict mode is another step than one
# that is fatal because degraded security is not allowed).
StepKey = tuple[str, str, str, str, tuple[Any, ...]]


def _step_key(machine: str, label: Label, after: Vars) -> StepKey:
    action, arg = label[-2:]
    phase = after[f"{machine}_status" if machine == "lc" else f"{machine}_phase"]
    return (machine, action, arg, phase, tuple(after[p] for p in PARAMETERS[machine]))


def step_keys(walk: Walk, machine: str | None = None) -> set[StepKey]:
    """The steps a walk takes (`machine`: the single machine walked; None: the System)."""
    return {
        _step_key(machine or e.machine, label_of(e, False), dict(walk.abstract[r.state]))
        for _, e, r in walk.steps()
    }


def spec_step_keys(
    inits: list[Vars], nxt: Callable[[Vars], list[tuple[Label, Vars]]], machine: str | None = None
) -> set[StepKey]:
    """The steps the spec can take from `inits` (`machine` as in step_keys)."""
    keys = set()
    seen = {key(s) for s in inits}
    queue = deque(inits)
    while queue:
        s = queue.popleft()
        for label, t in nxt(s):
            keys.add(_step_key(machine or label[0], label, t))
            k = key(t)
            if k not in seen:
                seen.add(k)
                queue.append(t)
    return keys


def check_invariants(walk: Walk, checks: list[tuple[str, Callable[[Any], bool]]]) -> None:
    broken = []
    for s in walk.states:
        for name, check in checks:
            if not check(s):
                broken.append(f"{name} fails in {show(walk.machine.to_tla(s))}")
    assert not broken, f"{len(broken)} invariant violations, first: " + "; ".join(broken[:5])


def check_agrees_with_spec(walk: Walk, nxt: Callable[[Vars], list[tuple[Label, Vars]]], with_machine: bool) -> None:
    problems = []
    for s, outs in walk.outcomes.items():
        here = walk.machine.to_tla(s)
        code = {(label_of(e, with_machine), o) for e, o in outs if o != "refused"}
        spec = {(label, key(t)) for label, t in nxt(here)}
        if code != spec:
            extra = sorted(lbl for lbl, _ in code - spec)
            missing = sorted(lbl for lbl, _ in spec - code)
            problems.append(f"in [{show(here)}]: the code takes {extra} where the spec does not"
                            f" and not {missing} where the spec does")
    assert not problems, f"{len(problems)} states where the code and the spec differ, first: " + "\n".join(problems[:5])


def groups(walk: Walk) -> dict[tuple, list[Any]]:
    out: dict[tuple, list[Any]] = {}
    for s in walk.states:
        out.setdefault(walk.abstract[s], []).append(s)
    return out


def check_abstraction(walk: Walk) -> int:
    """States with equal to_tla have equal outcomes for every event; returns how many groups had >1 state."""
    shared = 0
    for members in groups(walk).values():
        if len(members) < 2:
            continue
        shared += 1
        first = [(e.name, o) for e, o in walk.outcomes[members[0]]]
        for other in members[1:]:
            assert [(e.name, o) for e, o in walk.outcomes[other]] == first, (
                f"two states with the same spec variables behave differently:\n{members[0]}\n{other}"
            )
    return shared


def check_from_tla(walk: Walk, events: Callable[[Any], list[v.Event]], stride: int = 1) -> None:
    """from_tla(to_tla(s)) has the same variables as s and the same outcome for every event (a
    model checker's trace has nothing else to start from); from_tla(to_tla(s), s) is s itself
    (a recorded run's replay starts from its planned state, whose parameters are kept).

    One state per spec state is rebuilt without a base (check_abstraction shows that the others
    behave alike), or with `stride` n, one in every n spec states."""
    m = walk.machine
    for members in list(groups(walk).values())[::stride]:
        s = members[0]
        values = m.to_tla(s)
        rebuilt = m.from_tla(values)
        assert key(m.to_tla(rebuilt)) == walk.abstract[s], f"from_tla does not rebuild [{show(values)}]"
        offered = events(s)
        assert [e for e, _ in walk.outcomes[s]] == offered
        for e, expected in walk.outcomes[s]:
            r = m.step(rebuilt, e)
            got = "refused" if isinstance(r, Refused) else key(m.to_tla(r.state))
            assert got == expected, f"{e!r} in [{show(values)}]: {got} after from_tla, {expected} before"
        for member in members:
            assert m.from_tla(m.to_tla(member), member) == member, f"from_tla with a base changes [{show(values)}]"


def check_parameters_fixed(walk: Walk, machine: str) -> None:
    """No step changes a parameter (a variable the spec's Init picks)."""
    for s, _, r in walk.steps():
        before, after = dict(walk.abstract[s]), dict(walk.abstract[r.state])
        assert [after[p] for p in PARAMETERS[machine]] == [before[p] for p in PARAMETERS[machine]]


def check_is_initial(module: Any, states: list[Vars], inits: list[Vars]) -> None:
    """is_initial(from_tla(values)) holds exactly on the spec's initial states (trace replay
    accepts a trace only if its first state is initial)."""
    expected = {key(s) for s in inits}
    assert expected <= {key(s) for s in states}
    wrong = [show(values) for values in states if module.is_initial(module.from_tla(values)) != (key(values) in expected)]
    assert not wrong, f"is_initial disagrees with Init in {len(wrong)} states, first: {wrong[:3]}"


# ---------------------------------------------------------------------------------------------
# One machine against its own spec.


@dataclass(frozen=True)
class WalkedMachine:
    """A machine as its walk compares it with its own spec: the machine's module, the spec's name
    and the prefix of the machine's variables, the spec's Init and Next (from the built-in checker, tests/model/spec_steps.py)
    and the events offered in each state. Each check_* is one of the checks every walk makes."""

    module: Any
    spec: str
    prefix: str
    init: Callable[[], list[Vars]]
    nxt: Callable[[Vars], list[tuple[Label, Vars]]]
    events: Callable[[Any], list[v.Event]]

    def walk(self, inits: Iterable[Any]) -> Walk:
        return Walk(self.module, inits, self.events)

    def check_invariants(self, walk: Walk) -> None:
        check_invariants(walk, [(f.__name__, f) for f in self.module.INVARIANTS])

    def check_agrees(self, walk: Walk) -> None:
        """The code takes the spec's steps in every reachable state and reaches the spec's states."""
        check_agrees_with_spec(walk, self.nxt, with_machine=False)
        assert walk.abstract_states() == spec_reachable(self.init(), self.nxt)

    def check_covers(self, walk: Walk, expected: set[Label]) -> None:
        """`expected` (action, argument) pairs name every action of the spec's Next, the walk takes
        each of them, and it takes every step the spec can take."""
        assert {a for a, _ in expected} == spec_next_actions(self.spec)
        missing = expected - walk.taken(with_machine=False)
        assert not missing, f"actions never taken: {sorted(missing)}"
        assert step_keys(walk, self.prefix) == spec_step_keys(self.init(), self.nxt, self.prefix)

    def check_abstraction(self, walk: Walk) -> None:
        """Some spec states stand for several concrete ones, which behave alike; from_tla rebuilds
        them; no step changes a parameter."""
        assert check_abstraction(walk) > 0
        check_from_tla(walk, self.events)
        check_parameters_fixed(walk, self.prefix)

    def check_is_initial(self, states: list[Vars]) -> None:
        check_is_initial(self.module, states, self.init())


# ---------------------------------------------------------------------------------------------
# Sample concrete states (the filesystem's, which the System walk starts from too).

# The mount audit production asks for (as nucleus.plan.run builds it), and another set of rules:
# the spec sees only whether there is an audit (fs_audit), not which rules it checks.
AUDIT_RULES = tuple((r.path, tuple(r.flags), r.required) for r in modes.mount_audit("production"))
OTHER_AUDIT = (("/", ("nosuid",), True),)


# A bridge's planned intents (nucleus.plan.network), and an egress policy's steps.
NET_PLANNED: dict[str, Any] = {
    "bridge": v.NetBridge("nucleus0", ("10.88.0.0/16",), "/run/nucleus", "c" * 32),
    "veth": v.NetVeth("nucleus0", "ncccc", "npccc"),
    "nat": v.NetNat("nft", "nucleus0", ("10.88.0.0/16",), (), (("tcp", "", 8080, 80),), "c" * 32, "/run/nucleus"),
    "gateways": ("10.88.0.1",),
    "up": v.NetLinkUp("eth0", (("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"),)),
    "teardown": v.NetTeardown((), "nucleus0", "ncccc", "nft", (), "c" * 32, "/run/nucleus"),
}
NET_EGRESS: dict[str, Any] = {"rules": v.NetEgress("{}"), "proxy": v.NetProxy("{}")}
# More attachments (a compose service on several networks): up to the spec's MaxExtra.
NET_ATTACHMENTS = tuple(
    v.NetAttach(f"nt{k}", (f"10.{88 + k}.0.0/16",), "/run/nucleus", "c" * 32, f"ncccc{k}", f"npccc{k}", f"eth{k}")
    for k in (1, 2))
# A user-mode network (--network user), and its egress policy's proxy and rules inside.
NET_USER: dict[str, Any] = {
    "usernet": v.NetUser("pasta", "/usr/bin/pasta", "eth0", "10.0.2.100/24", "10.0.2.2", "10.0.2.3", (),
                         False, "c" * 32, "user-cccccccccccc", "/run/nucleus"),
    "addresses": ("10.0.2.100/24",), "gateways": ("10.0.2.2",),
    "up": v.NetLinkUp("eth0", (("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"),)),
    "teardown": v.NetTeardown((), "user-cccccccccccc", "", "", (), "c" * 32, "/run/nucleus"),
}
NET_USER_EGRESS: dict[str, Any] = {"proxy": v.NetProxy("user-cccccccccccc", gateway="127.0.0.1"),
                                   "filter_": v.NetFilter("/usr/sbin/nft", "10.0.2.2", "10.0.2.0/24")}


def fs_plans(n: int) -> list[tuple[v.Intent, ...]]:
    """Two plans of length n that differ in content (the spec sees only their length)."""
    a = tuple(v.MakeDirs("/new", (f"d{i}",)) for i in range(n))
    b = tuple((v.SetPropagation(), v.MountFs("tmpfs", "/new"), v.BindMount("/usr", "/new/usr"))[:n])
    return [a, b]


def fs_inits(max_total: int) -> list[filesystem.FilesystemState]:
    return [
        filesystem.initial(plan, root, allow_chroot=allow, audit=audit)
        for n in range(max_total + 1)
        for plan in fs_plans(n)
        for allow in BOOLS
        for root in ("/new", "/other")
        for audit in ((), AUDIT_RULES, OTHER_AUDIT)
    ]


def walk_spec(spec: str, machine: Any) -> dict[tuple, list[tuple[v.Event, Step | Refused]]]:
    """Every state of formal/<spec>.tla reachable from its initial states (as the built-in
    checker evaluates the spec), walked with `machine` side by side: in each, the code accepts
    exactly the (action, argument, successor variables) the spec's Next allows, and from_tla
    and to_tla agree. Returns, per spec state (`key`), the machine's outcome for each of its
    candidate events."""
    from pathlib import Path

    from nucleus.tla.model import Model

    model = Model(spec, Path(__file__).resolve().parents[2] / "formal")
    names = model.variables

    def spec_vars(state: tuple) -> Vars:
        return {n: x for n, x in zip(names, state, strict=True) if n != "event"}

    seen: dict[tuple, list[tuple[v.Event, Step | Refused]]] = {}
    queue: deque[tuple] = deque(model.initial_states())
    for init in queue:
        assert machine.is_initial(machine.from_tla(spec_vars(init))), spec_vars(init)
    while queue:
        spec_state = queue.popleft()
        values = spec_vars(spec_state)
        if key(values) in seen:
            continue
        s = machine.from_tla(values)
        assert machine.to_tla(s) == values, "from_tla and to_tla disagree"
        outs = [(e, machine.step(s, e)) for e in machine.candidate_events(s)]
        seen[key(values)] = outs
        allowed = {}
        for after in model.successors(spec_state):
            event = after[names.index("event")]
            fields = event.m if hasattr(event, "m") else event
            allowed[((fields["name"], fields["arg"]), key(spec_vars(after)))] = after
        code = {(label_of(e, False), key(machine.to_tla(r.state))) for e, r in outs if isinstance(r, Step)}
        assert code == set(allowed), f"the code and formal/{spec}.tla disagree in {show(values)}"
        queue.extend(allowed.values())
    return seen
