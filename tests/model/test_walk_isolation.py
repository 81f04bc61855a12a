"""Isolation's reachable states, walked exhaustively and compared with formal/Isolation.tla
(see tests/model/walking.py for what every walk checks)."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import isolation
from nucleus.machines.base import Step
from tests.model.spec_constants import (
    BOOLS,
    ISO_STEPS,
    PRIVILEGED_PLAN,
    ROOTLESS_PLAN,
    spec_strings,
)
from tests.model.spec_steps import (
    spec_init_isolation,
    spec_isolation,
)
from tests.model.walking import Walk, WalkedMachine


def iso_inits() -> list[isolation.IsolationState]:
    out = []
    for rootless in BOOLS:
        out.append(isolation.initial(rootless=rootless))
        out.append(isolation.initial(rootless=rootless, namespaces=("pid", "mount"), hostname="other",
                                     uid_map=((0, 1000, 1),), gid_map=((0, 1000, 1),), trace_log="/tmp/t.ndjson"))
    return out


ISO = WalkedMachine(
    isolation, "Isolation", "iso",
    spec_init_isolation, spec_isolation, isolation.candidate_events,
)


@pytest.fixture(scope="module")
def iso_walk() -> Walk:
    return ISO.walk(iso_inits())


def test_isolation_invariants_hold_everywhere(iso_walk):
    ISO.check_invariants(iso_walk)


def test_isolation_agrees_with_spec(iso_walk):
    ISO.check_agrees(iso_walk)
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
    ISO.check_covers(iso_walk, expected)


def test_isolation_abstraction(iso_walk):
    ISO.check_abstraction(iso_walk)


def test_isolation_is_initial_holds_exactly_on_the_spec_init():
    states = [
        {"iso_rootless": r, "iso_phase": p, "iso_done": d}
        for r in BOOLS for p in spec_strings("Isolation", "Phases")
        for d in range((len(ROOTLESS_PLAN) if r else len(PRIVILEGED_PLAN)) + 1)
    ]
    ISO.check_is_initial(states)
