"""The lifecycle's reachable states, walked exhaustively and compared with formal/Lifecycle.tla
(see tests/model/walking.py for what every walk checks)."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import lifecycle
from nucleus.machines.base import Step
from tests.model.spec_constants import (
    BOOLS,
    LEVELS,
    SIGNALS,
    spec_strings,
)
from tests.model.spec_steps import (
    spec_init_lifecycle,
    spec_lifecycle,
)
from tests.model.walking import Walk, WalkedMachine

LC_PLAIN_ACTIONS = ("Create", "SetupFailed", "Start", "Abort", "Exit", "Lost", "Attach", "CleanupDone", "Remove")
WORKLOAD = v.ExecWorkload(("/bin/true",), (), "/", (1024, 64, 65536))


def lc_events(s: lifecycle.LifecycleState) -> list[v.Event]:
    # Exit(7) makes states that differ only outside the spec (exit_code), for the abstraction check.
    return lifecycle.candidate_events(s) + [v.Exit(7)]


LC = WalkedMachine(lifecycle, "Lifecycle", "lc", spec_init_lifecycle, spec_lifecycle, lc_events)


@pytest.fixture(scope="module")
def lc_walk() -> Walk:
    return LC.walk([lifecycle.initial(), lifecycle.initial(WORKLOAD)])


def test_lifecycle_invariants_hold_everywhere(lc_walk):
    LC.check_invariants(lc_walk)


def test_lifecycle_agrees_with_spec(lc_walk):
    LC.check_agrees(lc_walk)
    # none; creating; created and running at each level (enforced, degraded, traced); stopped
    # and failed at each level (none too, for failed), before and after cleanup; removed at each
    # level the lifecycle can fail or stop with.
    assert len(lc_walk.abstract_states()) == 1 + 1 + 3 * 2 + 2 * (3 + 4) + 4 == 26


def test_lifecycle_covers_every_action(lc_walk):
    expected = {(a, "") for a in LC_PLAIN_ACTIONS}
    expected |= {("Prepared", lvl) for lvl in LEVELS} | {("Kill", sig) for sig in SIGNALS}
    LC.check_covers(lc_walk, expected)


def test_lifecycle_lost_before_cleanup_starts_it_again(lc_walk):
    """Lost from stopped or failed before cleanup changes nothing and asks for Cleanup again;
    from an active status it fails the container; once cleaned up it is refused."""
    outcomes = set()
    for s, e, r in lc_walk.steps():
        if isinstance(e, v.Lost):
            assert r.intents == (v.Cleanup(),)
            outcomes.add((s.status, s.cleaned, r.state.status))
            if s.status in ("stopped", "failed"):
                assert r.state == s
    assert outcomes == {
        ("creating", False, "failed"), ("created", False, "failed"), ("running", False, "failed"),
        ("stopped", False, "stopped"), ("failed", False, "failed"),
    }


def test_lifecycle_starts_only_the_planned_workload(lc_walk):
    for s, e, r in lc_walk.steps():
        if isinstance(e, v.Start):
            assert r.intents == (s.workload,)
    assert {s.workload for s in lc_walk.states} == {v.ExecWorkload(), WORKLOAD}


def test_lifecycle_abstraction(lc_walk):
    LC.check_abstraction(lc_walk)  # exit_code and workload variants exist


def test_lifecycle_is_initial_holds_exactly_on_the_spec_init():
    states = [
        {"lc_status": st, "lc_security": lvl, "lc_cleaned": c, "lc_removed": r}
        for st in spec_strings("Lifecycle", "Statuses") for lvl in spec_strings("Lifecycle", "Levels")
        for c in BOOLS for r in BOOLS
    ]
    LC.check_is_initial(states)


def test_lifecycle_every_candidate_is_answered_with_a_step_or_a_reason(lc_walk):
    for s, outs in lc_walk.transitions.items():
        for e, r in outs:
            assert isinstance(r, Step) or (r.why and e.name in r.why), (s, e, r)
