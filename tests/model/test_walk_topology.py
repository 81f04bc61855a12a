"""The Topology machine's reachable states, walked exhaustively from every initial state of
formal/Topology.tla and compared, step by step, with the spec itself as the built-in checker
evaluates it (no transliteration): in every reachable state the code accepts exactly the steps
the spec allows, with the same successor variables, and every invariant holds. Then the
properties the machine exists for, said directly: up waits for healthy dependencies, down stops
dependents first, reconciliation leaves an unchanged service running, a failure rolls back
what up started unless keep-going."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from nucleus.machines import topology
from nucleus.machines.base import Refused, Step
from nucleus.tla.model import Model
from nucleus.tla.values import Fn
from nucleus.vocab import topology as t

FORMAL = Path(__file__).resolve().parents[2] / "formal"
# The spec's graph: api waits for db to be healthy, web for api to be started.
ORDER = ("db", "api", "web")
DEPS = (("api", "db", "healthy"), ("web", "api", "started"))
BASE = topology.initial(ORDER, DEPS, frozenset({"db"}), frozenset(), {})


def plain(value: object) -> object:
    if isinstance(value, Fn):
        return {k: plain(x) for k, x in value.m.items()}
    return value


def key(values: dict[str, object]) -> tuple:
    return tuple(sorted((k, tuple(sorted(x.items())) if isinstance(x, dict) else x) for k, x in values.items()))


class SpecWalk:
    """The spec's initial states, and each state's successors labelled by the `event` variable."""

    def __init__(self) -> None:
        self.model = Model("Topology", FORMAL)
        self.names = self.model.variables

    def vars(self, state: tuple) -> dict[str, object]:
        return {n: plain(x) for n, x in zip(self.names, state, strict=True) if n != "event"}

    def inits(self) -> list[tuple]:
        return self.model.initial_states()

    def steps(self, state: tuple) -> set[tuple]:
        out = set()
        for after in self.model.successors(state):
            event = plain(after[self.names.index("event")])
            assert isinstance(event, dict)
            out.add(((event["name"], event["arg"]), key(self.vars(after))))
        return out


@pytest.fixture(scope="module")
def walk() -> tuple[SpecWalk, dict[topology.TopologyState, list[tuple[t.Event, Step | Refused]]]]:
    spec = SpecWalk()
    seen: dict[topology.TopologyState, list[tuple[t.Event, Step | Refused]]] = {}
    queue: deque[tuple[topology.TopologyState, tuple]] = deque()
    for init in spec.inits():
        s = topology.from_tla(spec.vars(init), BASE)
        assert topology.is_initial(s), s
        queue.append((s, init))
    spec_states: dict[tuple, tuple] = {}
    while queue:
        s, spec_state = queue.popleft()
        if s in seen:
            continue
        outs = [(e, topology.step(s, e)) for e in topology.candidate_events(s)]
        seen[s] = outs
        code_steps = {((e.name, e.tla_arg()), key(topology.to_tla(r.state))) for e, r in outs if isinstance(r, Step)}
        assert code_steps == spec.steps(spec_state), f"the code and formal/Topology.tla disagree in {topology.to_tla(s)}"
        successors = {key(spec.vars(a)): a for a in spec.model.successors(spec_state)}
        for _, r in outs:
            if isinstance(r, Step):
                spec_states[key(topology.to_tla(r.state))] = successors[key(topology.to_tla(r.state))]
                queue.append((r.state, successors[key(topology.to_tla(r.state))]))
    return spec, seen


def test_topology_agrees_with_spec_and_keeps_its_invariants(walk):
    _, seen = walk
    assert len(seen) > 1000  # the spec has 1,406 states; the walk reaches each (event aside)
    for s in seen:
        for inv in topology.INVARIANTS:
            assert inv(s), f"{inv.__name__} fails in {topology.to_tla(s)}"


def test_topology_covers_every_action(walk):
    _, seen = walk
    taken = {(e.name, r.state.phase) for outs in seen.values() for e, r in outs if isinstance(r, Step)}
    for action in ("Up", "Down", "Started", "Healthy", "Failed", "Stopped"):
        assert any(a == action for a, _ in taken), action
    assert {p for _, p in taken} >= {"running", "partial", "failed", "stopped", "rollback"}


def run_to_rest(s: topology.TopologyState, event: t.Event, outcome=lambda intent: None) -> tuple[
        topology.TopologyState, list[object]]:
    """Drive the machine as compose does: each intent answered at once (Started, Healthy,
    Stopped, or what `outcome` returns for it)."""
    issued: list[object] = []
    pending: deque[t.Event] = deque([event])
    while pending:
        r = topology.step(s, pending.popleft())
        assert isinstance(r, Step), r
        s = r.state
        for intent in r.intents:
            issued.append(intent)
            answer = outcome(intent)
            if answer is None:
                answer = {t.StartService: t.Started, t.AwaitHealthy: t.Healthy,
                          t.StopService: t.Stopped}[type(intent)](intent.service)
            pending.append(answer)
    return s, issued


def three(running: dict[str, str] | None = None, stale: frozenset[str] = frozenset(), keep_going: bool = False):
    return topology.initial(ORDER, DEPS, frozenset({"db"}), frozenset(ORDER), running or {}, stale, keep_going)


def test_up_starts_in_dependency_order_after_health():
    s, issued = run_to_rest(three(), t.Up())
    assert s.phase == "running"
    assert issued == [t.StartService("db"), t.AwaitHealthy("db"), t.StartService("api"), t.StartService("web")]


def test_down_stops_dependents_first():
    s, issued = run_to_rest(three({"db": "healthy", "api": "started", "web": "started"}), t.Down())
    assert s.phase == "stopped"
    assert issued == [t.StopService("web"), t.StopService("api"), t.StopService("db")]


def test_reconciliation_recreates_only_what_changed():
    s, issued = run_to_rest(three({"db": "healthy", "api": "started", "web": "started"}, frozenset({"web"})),
                            t.Up())
    assert s.phase == "running"
    assert issued == [t.StopService("web"), t.StartService("web")]


def test_a_removed_service_is_stopped():
    s = topology.initial(ORDER, DEPS, frozenset({"db"}), frozenset({"db", "api"}),
                         {"db": "healthy", "api": "started", "web": "started"})
    s, issued = run_to_rest(s, t.Up())
    assert (s.phase, issued) == ("running", [t.StopService("web")])


def test_a_health_check_that_never_passes_rolls_back():
    def unhealthy(intent):
        return t.Failed("db", "not healthy in time") if isinstance(intent, t.AwaitHealthy) else None

    s, issued = run_to_rest(three(), t.Up(), unhealthy)
    assert s.phase == "failed" and s.statuses == ("absent",) * 3
    assert issued == [t.StartService("db"), t.AwaitHealthy("db"), t.StopService("db")]


def test_keep_going_keeps_the_rest():
    def refused(intent):
        return t.Failed("web", "refused") if intent == t.StartService("web") else None

    s, _ = run_to_rest(three(keep_going=True), t.Up(), refused)
    assert s.phase == "partial" and s.statuses == ("healthy", "started", "absent")
    s, _ = run_to_rest(three(), t.Up(), refused)
    assert s.phase == "failed" and s.statuses == ("absent",) * 3


def test_refusals_say_why():
    r = topology.step(three(), t.Started("db"))
    assert isinstance(r, Refused) and "cannot Started 'db': it is absent" in r.why
    assert isinstance(topology.step(three(), t.Stopped("nope")), Refused)
