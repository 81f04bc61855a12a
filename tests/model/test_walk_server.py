"""The Server machine in every reachable state of formal/Server.tla (the built-in checker's
graph, tests/model/spec_steps.py): it refuses exactly the requests the spec counts as refused,
keeps every invariant, and takes every action into every phase. That it takes exactly the spec's
steps there is tests/model/test_code_matches_spec.py's."""

from __future__ import annotations

import pytest

from nucleus.machines import server
from nucleus.machines.base import Step
from nucleus.vocab import server as sv
from tests.model.spec_steps import graph


def key(values: dict[str, object]) -> tuple:
    return tuple(sorted((k, tuple(sorted(x.items())) if isinstance(x, dict) else x) for k, x in values.items()))


@pytest.fixture(scope="module")
def walk() -> dict[tuple, list[tuple[object, object]]]:
    """Each state's variables (as sorted items), and what the code does with each candidate event."""
    g = graph("Server")
    for here in g.initial:
        assert server.is_initial(server.from_tla(g.values(here))), g.show(here)
    seen: dict[tuple, list[tuple[object, object]]] = {}
    for here in g.steps:
        values = g.values(here)
        s = server.from_tla(values)
        assert key(server.to_tla(s)) == key(values), "from_tla and to_tla disagree"
        outs = [(e, server.step(s, e)) for e in server.candidate_events(s)]
        for e, r in outs:
            if isinstance(r, Step):
                denied = sum(isinstance(i, sv.Deny) for i in r.intents)
                assert denied == r.state.refused - s.refused, (values, e)
        seen[key(values)] = outs
    return seen


def test_server_keeps_its_invariants_in_every_spec_state(walk):
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
