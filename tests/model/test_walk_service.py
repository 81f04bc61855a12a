"""The Service machine's reachable states, walked exhaustively from every initial state of
formal/Service.tla and compared, step by step, with the spec itself as the built-in checker
evaluates it (no transliteration): in every reachable state the code accepts exactly the steps
the spec allows, with the same successor variables, says READY=1 exactly where the spec counts
it, and keeps every invariant."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from nucleus.machines import service
from nucleus.machines.base import Step
from nucleus.tla.model import Model
from nucleus.vocab import service as sv

FORMAL = Path(__file__).resolve().parents[2] / "formal"


def key(values: dict[str, object]) -> tuple:
    return tuple(sorted(values.items()))


class SpecWalk:
    def __init__(self) -> None:
        self.model = Model("Service", FORMAL)
        self.names = self.model.variables

    def vars(self, state: tuple) -> dict[str, object]:
        return {n: x for n, x in zip(self.names, state, strict=True) if n != "event"}

    def steps(self, state: tuple) -> dict[tuple, tuple]:
        out = {}
        for after in self.model.successors(state):
            event = after[self.names.index("event")]
            label = (event.m["name"], event.m["arg"]) if hasattr(event, "m") else (event["name"], event["arg"])
            out[(label, key(self.vars(after)))] = after
        return out


@pytest.fixture(scope="module")
def walk() -> dict[tuple, list[tuple[object, object]]]:
    spec = SpecWalk()
    seen: dict[tuple, list[tuple[object, object]]] = {}
    queue: deque[tuple] = deque(spec.model.initial_states())
    for init in queue:
        assert service.is_initial(service.from_tla(spec.vars(init))), spec.vars(init)
    while queue:
        spec_state = queue.popleft()
        values = spec.vars(spec_state)
        if key(values) in seen:
            continue
        s = service.from_tla(values)
        assert service.to_tla(s) == values, "from_tla and to_tla disagree"
        outs = [(e, service.step(s, e)) for e in service.candidate_events(s)]
        seen[key(values)] = outs
        code = {((e.name, e.tla_arg()), key(service.to_tla(r.state))): r for e, r in outs if isinstance(r, Step)}
        allowed = spec.steps(spec_state)
        assert set(code) == set(allowed), f"the code and formal/Service.tla disagree in {values}"
        for label, r in code.items():
            said = sum(isinstance(i, sv.NotifyReady) for i in r.intents)
            assert said == r.state.notified - s.notified, (values, label)
            queue.append(allowed[label])
    return seen


def test_service_agrees_with_spec_and_keeps_its_invariants(walk):
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
