"""The resources machine's reachable states, walked exhaustively and compared with
formal/Resources.tla (see tests/model/walking.py for what every walk checks): a failed or
abandoned step holds what it may have made, and a removal that fails or is abandoned leaks."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import resources
from nucleus.machines.base import Refused, Step
from tests.model.spec_constants import (
    BOOLS,
    RES_SETTLED,
    RES_STEPS,
    RES_UNDER_WAY,
    spec_strings,
)
from tests.model.spec_steps import (
    spec_init_resources,
    spec_resources,
)
from tests.model.walking import Walk, WalkedMachine

PLANNED = {
    "create": v.CreateCgroup(("/sys/fs/cgroup/p",), (("/sys/fs/cgroup/p/cgroup.subtree_control", "+memory"),),
                             ("/sys/fs/cgroup/p/c-0123",)),
    "limits": v.SetCgroupLimits((("/sys/fs/cgroup/p/c-0123/memory.max", "1073741824", False),)),
    "attach": v.AttachCgroup(("/sys/fs/cgroup/p/c-0123/cgroup.procs",)),
    "remove": v.RemoveCgroup(dirs=("/sys/fs/cgroup/p/c-0123",), parents=("/sys/fs/cgroup/p",)),
}


def res_inits() -> list[resources.ResourcesState]:
    return [resources.initial(r, **params) for r in BOOLS for params in ({}, PLANNED)]


def res_events(s: resources.ResourcesState) -> list[v.Event]:
    # A release that saw the OOM killer differs from another only outside the spec (oom_killed).
    return resources.candidate_events(s) + [v.ResDone("release", v.OOM_KILLED)]


RES = WalkedMachine(resources, "Resources", "res", spec_init_resources, spec_resources, res_events)


@pytest.fixture(scope="module")
def res_walk() -> Walk:
    return RES.walk(res_inits())


def test_resources_invariants_hold_everywhere(res_walk):
    RES.check_invariants(res_walk)


def test_resources_agrees_with_spec(res_walk):
    RES.check_agrees(res_walk)
    phases = {(dict(k)["res_required"], dict(k)["res_phase"]) for k in res_walk.abstract_states()}
    # Each value of res_required reaches every phase but the other's failure outcome.
    assert phases == {(r, p) for r in BOOLS for p in resources.PHASES} - {(False, "failed"), (True, "degraded")}
    # Per res_required: idle, creating, limiting, waiting, attaching, ready, releasing, released
    # and leaked with the group held and limited or not as the path made it, and the failure
    # outcome (failed or degraded) after create, limits or attach (held; limited after limits).
    held = {(dict(k)["res_phase"], dict(k)["res_held"], dict(k)["res_limited"]) for k in res_walk.abstract_states()
            if not dict(k)["res_required"]}
    assert held == {
        ("idle", False, False), ("creating", False, False), ("limiting", True, False), ("waiting", True, True),
        ("attaching", True, True), ("ready", True, True), ("degraded", True, False), ("degraded", True, True),
        ("releasing", True, False), ("releasing", True, True), ("released", False, False),
        ("leaked", True, False), ("leaked", True, True),
    }
    # With the removals tried: releasing after 0, 1 or 2 failed, leaked after 1, 2 or 3 (then given
    # up), released after 0, 1 or 2 (8 + 3 * 2 + 3 * 2 + 3 per res_required).
    tries = {(dict(k)["res_phase"], dict(k)["res_tries"]) for k in res_walk.abstract_states()}
    assert {t for p, t in tries if p == "leaked"} == {1, 2, resources.MAX_RELEASE_TRIES}
    assert {t for p, t in tries if p in ("releasing", "released")} == {0, 1, 2}
    assert len(res_walk.abstract_states()) == 2 * 23


def test_resources_covers_every_action(res_walk):
    expected = {("Begin", ""), ("Attach", ""), ("Release", ""), ("Abandon", "")}
    expected |= {(a, s) for a in ("Done", "Fail") for s in RES_STEPS}
    RES.check_covers(res_walk, expected)


def test_resources_release_removes_whatever_may_exist(res_walk):
    """From every settled phase Release ends in released (nothing held) or asks to remove what
    may exist with the planned removal (a retry after a pause); a failed removal leaks, and
    Release is retried from there until MAX_RELEASE_TRIES removals failed. Only before creation
    was tried is nothing held."""
    for s in res_walk.states:
        r = resources.step(s, v.ResRelease())
        if s.phase not in RES_SETTLED or resources.gave_up(s):
            assert isinstance(r, Refused)
            continue
        assert isinstance(r, Step)
        if s.held:
            remove = s.remove.replace(pause=resources.RELEASE_PAUSES[s.tries])
            assert (r.state.phase, r.intents) == ("releasing", (remove,))
        else:
            assert (s.phase, r.state.phase, r.intents) == ("idle", "released", ())
    leaked = [s for s in res_walk.states if s.phase == "leaked"]
    assert leaked and all(s.held for s in leaked)


def test_resources_abandon_ends_a_step_as_its_failure_would(res_walk):
    """Abandon is taken exactly while a step is under way, and ends it in the state a failure of
    that step would, without the failure's warning (no workload runs on without limits)."""
    for s in res_walk.states:
        r = resources.step(s, v.ResAbandon())
        step = RES_UNDER_WAY.get(s.phase)
        if step is None:
            assert isinstance(r, Refused) and "Abandon is allowed only while a step is under way" in r.why
            continue
        failed = resources.step(s, v.ResFailed(step, 0, "the process carrying it out is gone"))
        assert r.state == failed.state and r.intents == ()
        assert r.state.held and r.state.phase in ("failed", "degraded", "leaked")


def test_resources_issues_only_the_planned_intents(res_walk):
    for s, _, r in res_walk.steps():
        planned = {s.create, s.limits, s.attach, *(s.remove.replace(pause=p) for p in resources.RELEASE_PAUSES)}
        assert all(i in planned or isinstance(i, v.Warn) for i in r.intents), r.intents
    assert any(s.oom_killed for s in res_walk.states if s.phase == "released")


def test_resources_abstraction(res_walk):
    RES.check_abstraction(res_walk)  # planned intents and oom_killed variants exist


def test_resources_is_initial_holds_exactly_on_the_spec_init():
    states = [
        {"res_required": r, "res_phase": p, "res_held": h, "res_limited": lim, "res_tries": n}
        for r in BOOLS for p in spec_strings("Resources", "Phases") for h in BOOLS for lim in BOOLS
        for n in range(resources.MAX_RELEASE_TRIES + 1)
    ]
    RES.check_is_initial(states)
