"""The code compared with the specs themselves, in both directions.

The spec's side comes from the built-in checker (nucleus/tla), which reads formal/*.tla and
evaluates Init and Next: `SpecGraph` holds every reachable state of a spec and, for each, the
steps Next allows, as (label, outcome) pairs: the label is the `event` the step records
(machine, action, argument), the outcome the state after it. The code's side: from the same
state, rebuilt with the machine's `from_tla`, every event the machine might take (its
`candidate_events`, the events the spec's steps name, and `PROBES`, arguments outside the
spec's) through the machine's `step`; an accepted event gives its label and `to_tla` of the new
state. `differences` lists the states where the two sets are not equal: a spec step the code
refuses or ends elsewhere, or a step the code takes that the spec does not.

States are compared without `event`: the specs write it (what led here) but never read it, so
states that differ only in it have the same steps. The graphs are cached for the test session.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nucleus import vocab as v
from nucleus.machines.base import Step
from nucleus.tla.model import Model, State
from nucleus.tla.values import Fn
from nucleus.trace.replay import MODULES

FORMAL = Path(__file__).resolve().parents[2] / "formal"

Label = tuple[str, str, str]  # machine, action, argument: the step's `event`
Vars = tuple[Any, ...]  # a state's variables but `event`, in the model's order
Steps = frozenset[tuple[Label, Vars]]

MACHINES: dict[str, Any] = MODULES  # the spec's name -> the machine that mirrors it

# Events outside every spec's domain, offered in every state: a machine that takes one takes a
# step no spec has (a signal nucleus does not send, a security level that is not one).
PROBES: tuple[v.Event, ...] = (v.Kill("STOP"), v.Kill("SEGV"), v.Prepared("none"))

# Events a single machine is not offered: the network's Abandon is an operator of Network.tla
# that only System's LostStep takes (the lifecycle's Lost, with a network step under way), so
# the machine takes it when System's Lost asks; the comparison of System checks that.
NOT_OFFERED: dict[str, tuple[type[v.Event], ...]] = {"Network": (v.NetAbandon,)}


class SpecGraph:
    """Every state of `spec` reachable from Init (at its .cfg's bounds, or `defines`), and the
    steps Next allows from each."""

    def __init__(self, spec: str, formal: Path = FORMAL, defines: tuple[tuple[str, str], ...] = (),
                 starts: int | None = None) -> None:
        self.spec = spec
        self.model = Model(spec, formal, dict(defines))
        variables = self.model.variables
        self.at = variables.index("event")
        self.names = variables[: self.at] + variables[self.at + 1:]
        self.initial: list[Vars] = []
        self.steps: dict[Vars, Steps] = {}
        queue: deque[State] = deque()
        for state in covering(self.model, self.model.initial_states(), starts):
            here = self.strip(state)
            if here not in self.steps:
                self.steps[here] = frozenset()
                self.initial.append(here)
                queue.append(state)
        while queue:
            state = queue.popleft()
            found = set()
            for after in self.model.successors(state):
                there = self.strip(after)
                found.add((self.label(after), there))
                if there not in self.steps:
                    self.steps[there] = frozenset()
                    queue.append(after)
            self.steps[self.strip(state)] = frozenset(found)

    def strip(self, state: State) -> Vars:
        return state[: self.at] + state[self.at + 1:]

    def label(self, state: State) -> Label:
        event = state[self.at]
        assert isinstance(event, Fn)
        return (event.m["m"], event.m["name"], event.m["arg"])

    def values(self, here: Vars) -> dict[str, Any]:
        return {n: _dict(x) for n, x in zip(self.names, here, strict=True)}

    def vars_of(self, values: dict[str, Any]) -> Vars:
        return tuple(_plain(values[n]) for n in self.names)

    def show(self, here: Vars) -> str:
        return ", ".join(f"{n}={_text(x)}" for n, x in zip(self.names, here, strict=True))


@functools.cache
def graph(spec: str, formal: Path = FORMAL, defines: tuple[tuple[str, str], ...] = (),
          starts: int | None = None) -> SpecGraph:
    return SpecGraph(spec, formal, defines, starts)


def covering(model: Model, initial: list[State], starts: int | None) -> list[State]:
    """All of `initial`, or (`starts`) a sample of it in which every pair of parameter values
    (any two variables, any two values each takes in Init) occurs in some state: a greedy
    pairwise covering, topped up to `starts` states in Init's order."""
    if starts is None:
        return initial
    varying = [i for i in range(len(model.variables)) if len({s[i] for s in initial}) > 1]

    def pairs(s: State) -> set[tuple[int, Any, int, Any]]:
        return {(i, s[i], j, s[j]) for i in varying for j in varying if i < j}
    wanted = set().union(*(pairs(s) for s in initial))
    chosen: list[State] = []
    while wanted:
        best = max(initial, key=lambda s: len(pairs(s) & wanted))
        chosen.append(best)
        wanted -= pairs(best)
    chosen += [s for s in initial if s not in chosen][: max(0, starts - len(chosen))]
    return chosen


def _plain(value: Any) -> Any:
    """A machine's value as the spec's: sets frozen, records and maps as functions."""
    if isinstance(value, dict):
        return Fn({k: _plain(x) for k, x in value.items()})
    return frozenset(value) if isinstance(value, set | frozenset | list) else value


def _dict(value: Any) -> Any:
    """A spec's function as the machines take it: a dict."""
    return {k: _dict(x) for k, x in value.m.items()} if isinstance(value, Fn) else value


def _text(value: Any) -> str:
    return "{" + ", ".join(sorted(map(str, value))) + "}" if isinstance(value, frozenset) else repr(value)


def label_of(event: v.Event) -> Label:
    return (event.machine, v.action_name(event), event.tla_arg())


def _named(labels: Iterable[Label]) -> list[v.Event]:
    """The events the spec's steps name; an action the vocabulary has no event for is one the
    code cannot take (the comparison reports it)."""
    events = []
    for label in labels:
        try:
            events.append(v.event_from_tla(*label))
        except (KeyError, ValueError):
            continue
    return events


def code_steps(machine: Any, g: SpecGraph, here: Vars, probes: Iterable[v.Event] = PROBES) -> Steps:
    """The steps `machine` takes from the state the spec's variables `here` describe."""
    state = machine.from_tla(g.values(here))
    offered = [*machine.candidate_events(state), *_named(label for label, _ in g.steps[here]), *probes]
    found = set()
    for event in dict.fromkeys(offered):
        if isinstance(event, NOT_OFFERED.get(g.spec, ())):
            continue
        result = machine.step(state, event)
        if isinstance(result, Step):
            found.add((label_of(event), g.vars_of(machine.to_tla(result.state))))
    return frozenset(found)


def _describe(g: SpecGraph, steps: Iterable[tuple[Label, Vars]], here: Vars) -> str:
    out = []
    for (m, name, arg), after in sorted(steps, key=repr):
        changed = [f"{n}={_text(b)}" for n, a, b in zip(g.names, here, after, strict=True) if a != b]
        out.append(f"{m}.{name}({arg}) -> " + (", ".join(changed) or "unchanged"))
    return "; ".join(out)


def differences(machine: Any, g: SpecGraph, states: Iterable[Vars] | None = None,
                probes: Iterable[v.Event] = PROBES) -> list[str]:
    """Where the code and the spec differ (every reachable state, or `states`): one line each."""
    probes = tuple(probes)
    found = []
    for here in g.steps if states is None else states:
        spec, code = g.steps[here], code_steps(machine, g, here, probes)
        if spec != code:
            found.append(f"in [{g.show(here)}]: the code takes [{_describe(g, code - spec, here)}] "
                         f"which the spec does not; the spec takes [{_describe(g, spec - code, here)}] "
                         "which the code does not")
    return found


def assert_same_steps(machine: Any, g: SpecGraph, states: Iterable[Vars] | None = None,
                      probes: Iterable[v.Event] = PROBES) -> None:
    found = differences(machine, g, states, probes)
    assert not found, f"{g.spec}: the code and the spec differ in {len(found)} states, first:\n" + "\n".join(found[:3])


# ---------------------------------------------------------------------------------------------
# The specs' Init and Next in the walks' shape (tests/model/walking.py): variables as a dict,
# steps as ((action, argument), next variables), or ((machine, action, argument), ...) for System.


@functools.cache
def _model(spec: str, defines: tuple[tuple[str, str], ...] = ()) -> Model:
    return Model(spec, FORMAL, dict(defines))


def spec_init(spec: str, defines: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
    """The spec's initial states (without `event`), from its Init alone."""
    model = _model(spec, defines)
    return [{n: _plain(x) for n, x in zip(model.variables, state, strict=True) if n != "event"}
            for state in model.initial_states()]


def spec_next(spec: str, defines: tuple[tuple[str, str], ...] = (), with_machine: bool = False) -> Any:
    """Next from a state given as a dict of the spec's variables (as walking.Walk's nxt)."""
    g = graph(spec, FORMAL, defines)

    def nxt(values: dict[str, Any]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        return [(label if with_machine else label[1:], g.values(after)) for label, after in g.steps[g.vars_of(values)]]
    return nxt


def spec_init_lifecycle() -> list[dict[str, Any]]:
    return spec_init("Lifecycle")


def spec_init_isolation() -> list[dict[str, Any]]:
    return spec_init("Isolation")


def spec_init_filesystem(max_total: int) -> list[dict[str, Any]]:
    return spec_init("Filesystem", (("MaxMounts", str(max_total)),))


def spec_init_security() -> list[dict[str, Any]]:
    return spec_init("Security")


def spec_init_resources() -> list[dict[str, Any]]:
    return spec_init("Resources")


def spec_init_network() -> list[dict[str, Any]]:
    return spec_init("Network")


def spec_init_join() -> list[dict[str, Any]]:
    return spec_init("Join")


def spec_init_system(max_total: int) -> list[dict[str, Any]]:
    return spec_init("System", (("MaxMounts", str(max_total)),))


spec_lifecycle = spec_next("Lifecycle")
spec_isolation = spec_next("Isolation")
spec_filesystem = spec_next("Filesystem")
spec_security = spec_next("Security")
spec_resources = spec_next("Resources")
spec_network = spec_next("Network")
spec_join = spec_next("Join")
