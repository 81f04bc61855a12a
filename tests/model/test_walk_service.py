"""The Service machine in every reachable state of formal/Service.tla (the built-in checker's
graph, tests/model/spec_steps.py): it says READY=1 exactly where the spec counts it, keeps every
invariant, and takes every action into every phase. That it takes exactly the spec's steps there
is tests/model/test_code_matches_spec.py's."""

from __future__ import annotations

import pytest

from nucleus.machines import service
from nucleus.machines.base import Step
from nucleus.vocab import service as sv
from tests.model.spec_steps import graph


@pytest.fixture(scope="module")
def walk() -> dict[tuple, list[tuple[object, object]]]:
    """Each state's variables (as sorted items), and what the code does with each candidate event."""
    g = graph("Service")
    for here in g.initial:
        assert service.is_initial(service.from_tla(g.values(here))), g.show(here)
    seen: dict[tuple, list[tuple[object, object]]] = {}
    for here in g.steps:
        values = g.values(here)
        s = service.from_tla(values)
        assert service.to_tla(s) == values, "from_tla and to_tla disagree"
        outs = [(e, service.step(s, e)) for e in service.candidate_events(s)]
        for e, r in outs:
            if isinstance(r, Step):
                said = sum(isinstance(i, sv.NotifyReady) for i in r.intents)
                assert said == r.state.notified - s.notified, (values, e)
        seen[tuple(sorted(values.items()))] = outs
    return seen


def test_service_keeps_its_invariants_in_every_spec_state(walk):
    assert len(walk) > 1000
    for values in walk:
        s = service.from_tla(dict(values))
        for inv in service.INVARIANTS:
            assert inv(s), f"{inv.__name__} fails in {dict(values)}"


def test_service_covers_every_action_and_phase(walk):
    taken = {(e.name, e.tla_arg(), r.state.phase) for outs in walk.values() for e, r in outs if isinstance(r, Step)}
    assert {(a, arg) for a, arg, _ in taken} >= {
        ("Started", ""), ("Ready", ""), ("StopAsked", ""), ("CheckDone", "pass"), ("CheckDone", "fail"),
        ("CheckDone", "early"), ("Ended", "ok"), ("Ended", "failed")}
    assert {p for _, _, p in taken} == set(service.PHASES)
    states = [dict(v) for v in walk]
    assert any(v["svc_health"] == "unhealthy" and v["svc_phase"] == "waiting" for v in states)
    assert any(v["svc_notified"] == 1 and v["svc_restarts"] == service.MAX_COUNT for v in states)
