"""The resources machine (formal/Resources.tla): the container's cgroup created, limited,
entered and removed, with the intents planned by nucleus.plan.cgroups; what a failed or
abandoned step leaves (it counts as held: a partial creation is removed at cleanup); a removal
that fails (leaked until a later Release); whether the OOM killer acted."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.machines import resources
from tests.unit.machine_support import ATTACH, CGROUP, CREATE, LIMITS, REMOVE, ok, refused, run

UNDER_WAY = {"create": "creating", "limits": "limiting", "attach": "attaching", "release": "releasing"}
PATH = {
    "creating": [v.ResBegin()],
    "limiting": [v.ResBegin(), v.ResDone("create")],
    "waiting": [v.ResBegin(), v.ResDone("create"), v.ResDone("limits")],
    "attaching": [v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.ResAttach()],
    "ready": [v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.ResAttach(), v.ResDone("attach")],
}


def res_at(phase: str, required: bool = False, fail_at: str | None = None) -> resources.ResourcesState:
    """A resources state reached the ordinary way (failing the step `fail_at` if given)."""
    s = resources.initial(required, **CGROUP)
    if phase == "idle":
        return s
    if fail_at is not None:
        s, _ = run(resources, s, *PATH[UNDER_WAY[fail_at]], v.ResFailed(fail_at, 1, "EPERM"))
    elif phase in ("releasing", "released", "leaked"):
        s, _ = run(resources, s, *PATH["ready"], v.ResRelease())
        if phase != "releasing":
            s, _ = run(resources, s, v.ResDone("release") if phase == "released" else v.ResFailed("release"))
    else:
        s, _ = run(resources, s, *PATH[phase])
    assert s.phase == phase, s
    return s


def test_resources_initial_holds_nothing():
    s = resources.initial(True, CREATE, LIMITS, ATTACH, REMOVE)
    assert (s.required, s.phase, s.held, s.limited, s.oom_killed) == (True, "idle", False, False, False)
    assert (s.create, s.limits, s.attach, s.remove) == (CREATE, LIMITS, ATTACH, REMOVE)
    assert resources.is_initial(s) and resources.is_initial(resources.initial())
    assert resources.to_tla(s) == {
        "res_required": True, "res_phase": "idle", "res_held": False, "res_limited": False, "res_tries": 0,
    }
    # Without a plan: intents of nothing (a machine of its own, as the model tests drive it).
    empty = resources.initial()
    assert (empty.create, empty.limits, empty.attach, empty.remove) == (
        v.CreateCgroup(), v.SetCgroupLimits(), v.AttachCgroup(), v.RemoveCgroup(),
    )


@pytest.mark.parametrize("required", [False, True])
def test_resources_happy_path_issues_the_planned_intents(required):
    s = resources.initial(required, **CGROUP)
    r = ok(resources.step(s, v.ResBegin()))
    assert (r.state.phase, r.state.held, r.intents) == ("creating", False, (CREATE,))
    r = ok(resources.step(r.state, v.ResDone("create", "/sys/fs/cgroup/nucleus/c1")))
    assert (r.state.phase, r.state.held, r.state.limited, r.intents) == ("limiting", True, False, (LIMITS,))
    r = ok(resources.step(r.state, v.ResDone("limits")))
    assert (r.state.phase, r.state.limited, r.intents) == ("waiting", True, ())
    r = ok(resources.step(r.state, v.ResAttach()))
    assert (r.state.phase, r.intents) == ("attaching", (ATTACH,))
    r = ok(resources.step(r.state, v.ResDone("attach")))
    assert (r.state.phase, r.state.held, r.state.limited, r.intents) == ("ready", True, True, ())
    r = ok(resources.step(r.state, v.ResRelease()))
    assert (r.state.phase, r.intents) == ("releasing", (REMOVE,))
    r = ok(resources.step(r.state, v.ResDone("release")))
    assert (r.state.phase, r.state.held, r.state.limited, r.intents) == ("released", False, False, ())
    assert (r.state.required, r.state.oom_killed) == (required, False)
    assert all(f(r.state) for f in resources.INVARIANTS)


def test_resources_each_intent_reports_its_step():
    assert [i.reports for i in (CREATE, LIMITS, ATTACH, REMOVE)] == [
        ("res", "create"), ("res", "limits"), ("res", "attach"), ("res", "release"),
    ]
    assert {i.where for i in (CREATE, LIMITS, ATTACH, REMOVE)} == {"host"}  # the supervisor's


@pytest.mark.parametrize("detail,oom", [(v.OOM_KILLED, True), ("", False), ("removed", False)])
def test_resources_release_notes_whether_the_oom_killer_acted(detail, oom):
    s = ok(resources.step(res_at("releasing"), v.ResDone("release", detail))).state
    assert (s.phase, s.held, s.oom_killed) == ("released", False, oom)
    assert resources.to_tla(s) == resources.to_tla(ok(resources.step(res_at("releasing"), v.ResDone("release"))).state)
    assert v.OOM_KILLED == "oom-killed"


def test_resources_oom_noted_at_a_retried_release_is_kept():
    s = ok(resources.step(res_at("leaked"), v.ResRelease())).state
    s = ok(resources.step(s, v.ResDone("release", v.OOM_KILLED))).state
    assert s.oom_killed
    again = dataclasses.replace(res_at("releasing"), oom_killed=True)
    assert ok(resources.step(again, v.ResDone("release", ""))).state.oom_killed  # never forgotten


@pytest.mark.parametrize("step_name", ["create", "limits", "attach"])
def test_resources_failure_is_fatal_when_required_and_holds_what_may_exist(step_name):
    s = res_at(UNDER_WAY[step_name], True)
    r = ok(resources.step(s, v.ResFailed(step_name, 1, "Operation not permitted")))
    # A failed creation may have made some directories (a parent, one v1 hierarchy of several):
    # the group counts as held, so cleanup removes what is there.
    assert (r.state.phase, r.state.held, r.state.limited, r.intents) == ("failed", True, s.limited, ())
    assert all(f(r.state) for f in resources.INVARIANTS)


@pytest.mark.parametrize("step_name", ["create", "limits", "attach"])
def test_resources_failure_degrades_with_a_warning_when_optional(step_name):
    s = res_at(UNDER_WAY[step_name], False)
    r = ok(resources.step(s, v.ResFailed(step_name, 95, "Operation not supported")))
    assert (r.state.phase, r.state.held, r.state.limited) == ("degraded", True, s.limited)
    assert r.intents == (
        v.Warn(f"cgroup {step_name} failed (Operation not supported); running without resource limits"),
    )
    assert all(f(r.state) for f in resources.INVARIANTS)


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize("fail_at", ["create", "limits", "attach"])
def test_resources_release_after_a_failure_removes_whatever_may_exist(required, fail_at):
    s = res_at("failed" if required else "degraded", required, fail_at)
    assert s.held
    r = ok(resources.step(s, v.ResRelease()))
    # Even a failed create: the planned removal (rmdir where present, gone is fine) runs.
    assert (r.state.phase, r.intents) == ("releasing", (REMOVE,))
    r = ok(resources.step(r.state, v.ResDone("release")))
    assert (r.state.phase, r.state.held, r.state.limited) == ("released", False, False)


@pytest.mark.parametrize("phase", ["idle", "waiting", "ready"])
def test_resources_release_from_every_settled_phase(phase):
    s = res_at(phase)
    r = ok(resources.step(s, v.ResRelease()))
    if s.held:
        assert (r.state.phase, r.intents) == ("releasing", (REMOVE,))
    else:
        assert (phase, r.state.phase, r.intents) == ("idle", "released", ())


@pytest.mark.parametrize("required", [False, True])
def test_resources_failed_removal_leaks_until_a_later_release(required):
    s = res_at("releasing", required)
    r = ok(resources.step(s, v.ResFailed("release", 16, "Device or resource busy")))
    assert (r.state.phase, r.state.held, r.state.tries, r.intents) == ("leaked", True, 1, ())  # never degraded or failed
    assert all(f(r.state) for f in resources.INVARIANTS)
    r = ok(resources.step(r.state, v.ResRelease()))
    assert (r.state.phase, r.intents) == ("releasing", (REMOVE.replace(pause=resources.RELEASE_PAUSES[1]),))
    r = ok(resources.step(r.state, v.ResDone("release")))
    assert (r.state.phase, r.state.held) == ("released", False)


@pytest.mark.parametrize("required", [False, True])
def test_resources_a_removal_is_tried_max_release_tries_times_then_given_up(required):
    s = res_at("releasing", required)
    pauses = []
    for n in range(1, resources.MAX_RELEASE_TRIES + 1):
        s = ok(resources.step(s, v.ResFailed("release", 16, "Device or resource busy"))).state
        assert (s.phase, s.tries, resources.gave_up(s)) == ("leaked", n, n == resources.MAX_RELEASE_TRIES)
        if not resources.gave_up(s):
            r = ok(resources.step(s, v.ResRelease()))
            pauses += [i.pause for i in r.intents if isinstance(i, v.RemoveCgroup)]
            s = r.state
    assert pauses == list(resources.RELEASE_PAUSES[1:]) and pauses == sorted(pauses) and pauses[0] > 0
    assert refused(resources.step(s, v.ResRelease())) == (
        "cannot Release resources: all 3 removals of the cgroup failed "
        "(it is tried again once another process takes the cleanup over)"
    )
    assert all(f(s) for f in resources.INVARIANTS)
    again = resources.reclaim(s)
    assert (again.phase, again.tries) == ("leaked", 0)
    assert ok(resources.step(again, v.ResRelease())).intents == (REMOVE,)
    assert resources.reclaim(again) == again  # only a cleanup given up on starts afresh


# ---------------------------------------------------------------------------------------------
# Abandon: the process carrying a step out is gone, the step will never report.


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize("step_name", ["create", "limits", "attach"])
def test_resources_abandoned_step_ends_like_a_failure(required, step_name):
    s = res_at(UNDER_WAY[step_name], required)
    r = ok(resources.step(s, v.ResAbandon()))
    failed = ok(resources.step(s, v.ResFailed(step_name, 0, "the process carrying it out is gone")))
    assert r.state == failed.state  # the state a failure of the step leads to
    assert (r.state.phase, r.state.held, r.state.limited) == (
        "failed" if required else "degraded", True, s.limited,
    )
    assert r.intents == ()  # no warning: no workload runs on without limits
    # What may have been made is removed at cleanup; the late outcome of the step is refused.
    assert ok(resources.step(r.state, v.ResRelease())).intents == (REMOVE,)
    assert refused(resources.step(r.state, v.ResDone(step_name))) == (
        f"cannot Done resources step {step_name!r}: it is {r.state.phase}"
    )
    assert all(f(r.state) for f in resources.INVARIANTS)


@pytest.mark.parametrize("required", [False, True])
def test_resources_abandoned_release_leaks_until_a_later_release(required):
    s = res_at("releasing", required)
    r = ok(resources.step(s, v.ResAbandon()))
    assert (r.state.phase, r.state.held, r.state.tries, r.intents) == ("leaked", True, 1, ())
    r = ok(resources.step(r.state, v.ResRelease()))
    assert r.intents == (REMOVE.replace(pause=resources.RELEASE_PAUSES[1]),)
    assert ok(resources.step(r.state, v.ResDone("release"))).state.phase == "released"


@pytest.mark.parametrize("phase", ["idle", "waiting", "ready", "degraded", "failed", "released", "leaked"])
def test_resources_abandon_only_while_a_step_is_under_way(phase):
    required = phase == "failed"
    s = res_at(phase, required, "limits" if phase in ("degraded", "failed") else None)
    assert refused(resources.step(s, v.ResAbandon())) == (
        f"cannot Abandon resources: it is {phase} (Abandon is allowed only while a step is under way)"
    )


def test_resources_nothing_created_is_forgotten_invariant():
    """Once creation was tried, the group counts as held until a release completes."""
    assert resources.NothingCreatedIsForgotten in resources.INVARIANTS
    for phase in resources.PHASES:
        forgotten = dataclasses.replace(resources.initial(), phase=phase, held=False)
        assert resources.NothingCreatedIsForgotten(forgotten) == (phase in ("idle", "creating", "released"))
        assert resources.NothingCreatedIsForgotten(dataclasses.replace(forgotten, held=True))


def test_resources_exact_refusals():
    assert refused(resources.step(res_at("creating"), v.ResBegin())) == (
        "cannot Begin resources: it is creating (Begin is allowed only from idle)"
    )
    assert refused(resources.step(res_at("limiting"), v.ResAttach())) == (
        "cannot Attach resources: it is limiting (Attach is allowed only from waiting)"
    )
    assert refused(resources.step(res_at("ready"), v.ResAttach())) == (
        "cannot Attach resources: it is ready (Attach is allowed only from waiting)"
    )
    for phase in ("creating", "limiting", "attaching", "releasing", "released"):
        assert refused(resources.step(res_at(phase), v.ResRelease())) == (
            f"cannot Release resources: it is {phase} (Release is allowed only when no step is under way)"
        )
    assert refused(resources.step(res_at("idle"), v.ResDone("create"))) == "cannot Done resources step 'create': it is idle"
    assert refused(resources.step(res_at("limiting"), v.ResDone("attach"))) == (
        "cannot Done resources step 'attach': it is limiting (the step under way is 'limits')"
    )
    assert refused(resources.step(res_at("releasing"), v.ResFailed("create", 1, "x"))) == (
        "cannot Fail resources step 'create': it is releasing (the step under way is 'release')"
    )
    assert refused(resources.step(res_at("idle"), v.Create())) == "resources have no action Create"


def test_resources_released_is_final():
    s = res_at("released", True)
    for e in resources.candidate_events(s):
        assert "it is released" in refused(resources.step(s, e))


def test_resources_from_tla_round_trip():
    for phase in ("idle", "creating", "limiting", "waiting", "attaching", "ready", "releasing",
                  "released", "leaked"):
        for required in (False, True):
            s = res_at(phase, required)
            assert resources.to_tla(resources.from_tla(resources.to_tla(s))) == resources.to_tla(s)


def test_resources_from_tla_takes_the_planned_intents_from_the_base():
    base = resources.initial(True, **CGROUP)
    s = res_at("limiting", True)
    rebuilt = resources.from_tla(resources.to_tla(s), base)
    assert rebuilt == s
    assert ok(resources.step(rebuilt, v.ResDone("limits"))).state.phase == "waiting"
    waiting = resources.from_tla(resources.to_tla(res_at("waiting", True)), base)
    assert ok(resources.step(waiting, v.ResAttach())).intents == (ATTACH,)
    assert resources.from_tla(resources.to_tla(s)).create == v.CreateCgroup()
