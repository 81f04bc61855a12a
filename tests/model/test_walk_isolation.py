"""Isolation's reachable states, walked exhaustively and compared with formal/Isolation.tla
(see tests/model/walking.py for what every walk checks)."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import isolation
from nucleus.machines.base import Step
from tests.model.spec_model import (
    BOOLS,
    ISO_STEPS,
    PRIVILEGED_PLAN,
    ROOTLESS_PLAN,
    spec_init_isolation,
    spec_isolation,
    spec_next_actions,
    spec_strings,
)
from tests.model.walking import (
    Walk,
    check_abstraction,
    check_agrees_with_spec,
    check_from_tla,
    check_invariants,
    check_is_initial,
    check_parameters_fixed,
    spec_reachable,
    spec_step_keys,
    step_keys,
)


def iso_inits() -> list[isolation.IsolationState]:
    out = []
    for rootless in BOOLS:
        out.append(isolation.initial(rootless=rootless))
        out.append(isolation.initial(rootless=rootless, namespaces=("pid", "mount"), hostname="other",
                                     uid_map=((0, 1000, 1),), gid_map=((0, 1000, 1),), trace_log="/tmp/t.ndjson"))
    return out


@pytest.fixture(scope="module")
def iso_walk() -> Walk:
    return Walk(isolation, iso_inits(), isolation.candidate_events)


def test_isolation_invariants_hold_everywhere(iso_walk):
    check_invariants(iso_walk, [(f.__name__, f) for f in isolation.INVARIANTS])


def test_isolation_agrees_with_spec(iso_walk):
    check_agrees_with_spec(iso_walk, spec_isolation, with_machine=False)
    assert iso_walk.abstract_states() == spec_reachable(spec_init_isolation(), spec_isolation)
    # per plan: idle, ready, running and failed at each step, and waiting before each gate
    # (unshare in both plans, enter_user in the privileged one): 37 in all, as TLC finds
    gates = {False: 2, True: 1}
    expected = sum(2 + 2 * len(plan) + gates[rootless]
                   for rootless, plan in ((False, PRIVILEGED_PLAN), (True, ROOTLESS_PLAN)))
    assert len(iso_walk.abstract_states()) == expected == 37


def test_isolation_waits_only_at_its_gates(iso_walk):
    waits = {(s.rootless, s.plan[s.done]) for s in iso_walk.states if s.phase == "waiting"}
    assert waits == {(False, "unshare"), (False, "enter_user"), (True, "unshare")}
    for s in iso_walk.states:
        if s.phase == "waiting":
            r = isolation.step(s, v.IsoResume())
            assert isinstance(r, Step) and r.state.phase == "running"
            assert [i.name for i in r.intents] == [
                {"unshare": "Unshare", "enter_user": "EnterUserNamespace"}[s.plan[s.done]]
            ]


def test_isolation_issues_each_step_with_its_parameters(iso_walk):
    """Every intent reports the step the machine asks for, and carries the state's parameters."""
    for s, _, r in iso_walk.steps():
        for intent in r.intents:
            assert intent.reports == ("iso", r.state.plan[r.state.done])
            if isinstance(intent, v.SpawnChild):
                assert intent.trace_log == s.trace_log
            if isinstance(intent, v.SetHostname):
                assert intent.hostname == s.hostname
            if isinstance(intent, v.WriteIdMaps):
                assert (intent.uid_map, intent.gid_map) == (s.uid_map, s.gid_map)


def test_isolation_covers_every_action(iso_walk):
    expected = {("Begin", ""), ("Resume", "")}
    expected |= {(a, s) for a in ("Done", "Fail") for s in ISO_STEPS}
    assert {a for a, _ in expected} == spec_next_actions("Isolation")
    missing = expected - iso_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"
    assert step_keys(iso_walk, "iso") == spec_step_keys(spec_init_isolation(), spec_isolation, "iso")


def test_isolation_abstraction(iso_walk):
    assert check_abstraction(iso_walk) > 0
    check_from_tla(iso_walk, isolation.candidate_events)
    check_parameters_fixed(iso_walk, "iso")


def test_isolation_is_initial_holds_exactly_on_the_spec_init():
    states = [
        {"iso_rootless": r, "iso_phase": p, "iso_done": d}
        for r in BOOLS for p in spec_strings("Isolation", "Phases")
        for d in range((len(ROOTLESS_PLAN) if r else len(PRIVILEGED_PLAN)) + 1)
    ]
    check_is_initial(isolation, states, spec_init_isolation())
