"""The Server machine's reachable states, walked exhaustively from every initial state of
formal/Server.tla and compared, step by step, with the spec itself as the built-in checker
evaluates it: in every reachable state the code accepts exactly the steps the spec allows, with
the same successor variables, refuses exactly the requests the spec counts as refused, and keeps
every invariant."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from nucleus.machines import server
from nucleus.machines.base import Step
from nucleus.tla.model import Model
from nucleus.vocab import server as sv

FORMAL = Path(__file__).resolve().parents[2] / "formal"


def plain(value: object) -> object:
    return dict(value.m) if hasattr(value, "m") else value


def key(values: dict[str, object]) -> tuple:
    return tuple(sorted((k, tuple(sorted(x.items())) if isinstance(x, dict) else x) for k, x in values.items()))


class SpecWalk:
    def __init__(self) -> None:
        self.model = Model("Server", FORMAL)
        self.names = self.model.variables

    def vars(self, state: tuple) -> dict[str, object]:
        return {n: plain(x) for n, x in zip(self.names, state, strict=True) if n != "event"}

    def steps(self, state: tuple) -> dict[tuple, tuple]:
        out = {}
        for after in self.model.successors(state):
            event = plain(after[self.names.index("event")])
            out[((event["name"], event["arg"]), key(self.vars(after)))] = after
        return out


@pytest.fixture(scope="module")
def walk() -> dict[tuple, list[tuple[object, object]]]:
    spec = SpecWalk()
    seen: dict[tuple, list[tuple[object, object]]] = {}
    queue: deque[tuple] = deque(spec.model.initial_states())
    for init in queue:
        assert server.is_initial(server.from_tla(spec.vars(init))), spec.vars(init)
    while queue:
        spec_state = queue.popleft()
        values = spec.vars(spec_state)
        if key(values) in seen:
            continue
        s = server.from_tla(values)
        assert key(server.to_tla(s)) == key(values), "from_tla and to_tla disagree"
        outs = [(e, server.step(s, e)) for e in server.candidate_events(s)]
        seen[key(values)] = outs
        code = {((e.name, e.tla_arg()), key(server.to_tla(r.state))): r for e, r in outs if isinstance(r, Step)}
        allowed = spec.steps(spec_state)
        assert set(code) == set(allowed), f"the code and formal/Server.tla disagree in {values}"
        for label, r in code.items():
            denied = sum(isinstance(i, sv.Deny) for i in r.intents)
            assert denied == r.state.refused - s.refused, (values, label)
            queue.append(allowed[label])
    return seen


def test_server_agrees_with_spec_and_keeps_its_invariants(walk):
    assert len(walk) > 500  # the spec's 2,242 distinct states, without the event variable
    for values in walk:
        s = server.from_tla({k: dict(x) if isinstance(x, tuple) else x for k, x in values})
        for inv in server.INVARIANTS:
            assert inv(s), f"{inv.__name__} fails in {values}"


def test_server_covers_every_action_and_phase(walk):
    taken = {(e.name, e.tla_arg(), r.state.phase) for outs in walk.values() for e, r in outs if isinstance(r, Step)}
    assert {a for a, _, _ in taken} == {e.__name__ for e in sv.EVENTS}
    assert {p for _, _, p in taken} == set(server.PHASES)
    assert ("Create", sv.OTHER, "serving") in taken  # served by a root server


def test_a_server_not_run_as_root_refuses_other_users_and_says_why():
    result = server.step(server.initial(root=False), sv.Create(sv.OTHER))
    assert isinstance(result, Step) and result.state.sandboxes == () and result.state.refused == 1
    assert result.intents == (sv.Deny("the server serves only its own uid (a server run as root "
                                      "serves every user)"),)
    served = server.step(server.initial(root=True), sv.Create(sv.OTHER))
    assert isinstance(served, Step) and served.intents == (sv.Accept("s1"),)


def test_a_crash_leaves_the_running_supervisors_as_orphans():
    s = server.initial(root=True)
    for event in (sv.Create(sv.OWNER), sv.Start("s1"), sv.Create(sv.OWNER)):
        s = server.step(s, event).state
    crashed = server.step(s, sv.Crash()).state
    assert crashed.orphans == {"s1"} and crashed.sandboxes == () and crashed.socket == "stale"
    successor = server.step(crashed, sv.Reclaim()).state
    assert server.step(successor, sv.Create(sv.OWNER)).intents == (sv.Accept("s2"),)  # s1 is ps's
