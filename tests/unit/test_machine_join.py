"""The join machine (formal/Join.tla): a command entering a running container takes every step
of the plan in order (spawn, cgroup, enter, identity, fork, caps, seccomp, landlock), each with
the intent planned for it, before its command is exec'd; a failure is fatal unless the container
itself runs without that control."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.machines import join
from tests.unit.machine_support import ok, refused, run

GROUP = "/sys/fs/cgroup/nucleus/c1"
STEPS = (
    v.JoinSpawn(),
    v.JoinCgroup((f"{GROUP}/cgroup.procs",)),
    v.EnterNamespaces((("user", "/proc/42/ns/user"), ("pid", "/proc/42/ns/pid"), ("mnt", "/proc/42/ns/mnt"))),
    v.JoinIdentity(),
    v.JoinFork(),
    v.JoinDropCapabilities(("CAP_NET_BIND_SERVICE",)),
    v.JoinLoadSeccomp("ab" * 32, True),
    v.JoinApplyLandlock((("/usr", ("execute", "read")),), 2),
)
COMMAND = v.ExecCommand(("/bin/sh", "-c", "id"), (("PATH", "/usr/bin"),), "/context", (1024, 64, 65536))


def join_at(done: int, degradable=frozenset(), failures=()) -> join.JoinState:
    """Begun, with the first `done` steps reported (a step in `failures` reported as failed)."""
    s = ok(join.step(join.initial(STEPS, COMMAND, degradable), v.JoinBegin())).state
    for name in join.PLAN[:done]:
        event = v.JoinFailed(name, 1, "EPERM") if name in failures else v.JoinDone(name)
        s = ok(join.step(s, event)).state
    return s


def test_join_initial_holds_the_plan_and_the_command():
    s = join.initial(STEPS, COMMAND, frozenset({"seccomp"}))
    assert (s.phase, s.done, s.degraded, s.degradable, s.exit_code) == ("idle", 0, frozenset(), {"seccomp"}, None)
    assert (s.steps, s.command) == (STEPS, COMMAND)
    assert join.is_initial(s)
    assert join.to_tla(s) == {
        "join_degradable": frozenset({"seccomp"}), "join_phase": "idle", "join_done": 0,
        "join_degraded": frozenset(),
    }
    # Only seccomp and Landlock can be run without (a container never runs without caps).
    assert join.initial(STEPS, COMMAND, frozenset({"caps", "landlock", "x"})).degradable == {"landlock"}


def test_join_happy_path_issues_each_planned_step_then_the_command():
    s = join.initial(STEPS, COMMAND)
    r = ok(join.step(s, v.JoinBegin()))
    assert (r.state.phase, r.state.done, r.intents) == ("running", 0, (STEPS[0],))
    issued = list(r.intents)
    s = r.state
    for i, name in enumerate(join.PLAN):
        r = ok(join.step(s, v.JoinDone(name)))
        s = r.state
        assert s.done == i + 1
        issued.extend(r.intents)
        if i + 1 < len(join.PLAN):
            assert (s.phase, r.intents) == ("running", (STEPS[i + 1],))
    assert (s.phase, r.intents) == ("ready", ())
    assert tuple(issued) == STEPS
    r = ok(join.step(s, v.JoinStart()))
    assert (r.state.phase, r.intents) == ("started", (COMMAND,))
    r = ok(join.step(r.state, v.JoinExit(3)))
    assert (r.state.phase, r.state.exit_code, r.intents) == ("exited", 3, (v.Cleanup(),))
    assert all(f(r.state) for f in join.INVARIANTS)
    for e in join.candidate_events(r.state):
        assert "it is exited" in refused(join.step(r.state, e))


def test_join_each_step_is_reported_by_its_own_intent():
    assert [i.reports for i in STEPS] == [("join", name) for name in join.PLAN]
    assert [i.where for i in STEPS] == ["host", "host", "child", "child", "child", "child", "child", "child"]
    assert [v.done(i) for i in STEPS] == [v.JoinDone(name) for name in join.PLAN]
    # The join's intents are the run's, reporting to the join machine.
    assert isinstance(STEPS[0], v.SpawnChild) and isinstance(STEPS[1], v.AttachCgroup)
    assert isinstance(STEPS[6], v.LoadSeccomp) and STEPS[6].program_sha256 == "ab" * 32
    assert v.done(COMMAND) is None  # its outcome arrives as JoinExit


@pytest.mark.parametrize("index", range(len(join.PLAN)))
def test_join_a_failure_is_fatal_when_the_container_has_that_control(index):
    name = join.PLAN[index]
    s = join_at(index)
    r = ok(join.step(s, v.JoinFailed(name, 1, "Operation not permitted")))
    assert (r.state.phase, r.state.done, r.state.degraded, r.intents) == ("failed", index, frozenset(), (v.Cleanup(),))
    assert all(f(r.state) for f in join.INVARIANTS)
    for e in join.candidate_events(r.state):
        assert "it is failed" in refused(join.step(r.state, e))


@pytest.mark.parametrize("name", join.DEGRADABLE)
def test_join_a_control_the_container_runs_without_is_skipped_with_a_warning(name):
    s = join_at(join.PLAN.index(name), frozenset({name}))
    r = ok(join.step(s, v.JoinFailed(name, 22, "Invalid argument")))
    assert r.state.degraded == {name} and r.state.done == join.PLAN.index(name) + 1
    warn = v.Warn(f"{name} could not be applied to the joining command (Invalid argument); "
                  "the container runs without it too")
    assert r.intents[0] == warn
    if name == "seccomp":
        assert (r.state.phase, r.intents[1:]) == ("running", (STEPS[-1],))
    else:
        assert (r.state.phase, r.intents[1:]) == ("ready", ())
    assert all(f(r.state) for f in join.INVARIANTS)


def test_join_both_controls_skipped_then_the_command_runs():
    s = join_at(len(join.PLAN), frozenset(join.DEGRADABLE), failures=join.DEGRADABLE)
    assert (s.phase, s.degraded) == ("ready", frozenset(join.DEGRADABLE))
    s, intents = run(join, s, v.JoinStart(), v.JoinExit(0))
    assert intents == [COMMAND, v.Cleanup()] and s.phase == "exited"


@pytest.mark.parametrize("name", join.DEGRADABLE)
def test_join_never_more_lenient_than_the_container(name):
    """A control the container enforces is enforced on the joining command: its failure is
    fatal, even though the other control may be skipped."""
    other = ({"seccomp", "landlock"} - {name}).pop()
    s = join_at(join.PLAN.index(name), frozenset({other}))
    r = ok(join.step(s, v.JoinFailed(name, 22, "Invalid argument")))
    assert (r.state.phase, r.intents) == ("failed", (v.Cleanup(),))


def test_join_exact_refusals():
    idle = join.initial(STEPS, COMMAND)
    assert refused(join.step(idle, v.JoinDone("spawn"))) == (
        "cannot Done join step 'spawn': it is idle (steps finish only while running)"
    )
    assert refused(join.step(idle, v.JoinStart())) == (
        "cannot Start the joining command: it is idle (Start is allowed only from ready)"
    )
    running = join_at(0)
    assert refused(join.step(running, v.JoinBegin())) == (
        "cannot Begin the join: it is running (Begin is allowed only from idle)"
    )
    assert refused(join.step(running, v.JoinDone("enter"))) == (
        "cannot Done join step 'enter': the step under way is 'spawn'"
    )
    assert refused(join.step(running, v.JoinFailed("cgroup", 1, "x"))) == (
        "cannot Fail join step 'cgroup': the step under way is 'spawn'"
    )
    ready = join_at(len(join.PLAN))
    assert refused(join.step(ready, v.JoinExit(0))) == (
        "cannot Exit the joining command: it is ready (Exit is allowed only from started)"
    )
    assert refused(join.step(ready, v.JoinDone("landlock"))) == (
        "cannot Done join step 'landlock': it is ready (steps finish only while running)"
    )
    assert refused(join.step(ready, v.Start())) == "the join has no action Start"
    assert refused(join.step(ready, v.Attach())) == "the join has no action Attach"


def test_join_initial_refuses_a_plan_of_other_steps():
    with pytest.raises(ValueError, match=r"a join plan has the steps \('spawn', 'cgroup'"):
        join.initial(STEPS[:-1], COMMAND)
    with pytest.raises(ValueError, match="a join plan has the steps"):
        join.initial((STEPS[1], STEPS[0]) + STEPS[2:], COMMAND)
    with pytest.raises(ValueError, match="a join plan has the steps"):
        join.initial(STEPS[:-1] + (v.Warn("x"),), COMMAND)


def test_join_initial_refuses_the_runs_intents_in_place_of_the_joins():
    with pytest.raises(ValueError, match="a join plan has the steps"):
        join.initial(STEPS[:5] + (v.DropCapabilities(), v.LoadSeccomp(), v.ApplyLandlock()), COMMAND)


def test_join_placeholder_is_a_plan_of_nothing_in_particular():
    s = join.placeholder()
    assert join.is_initial(s) and s.degradable == frozenset()
    assert [i.reports for i in s.steps] == [("join", n) for n in join.PLAN]
    assert s.command.argv == ("/bin/sh",)


def test_join_to_tla_and_from_tla():
    s = join_at(7, frozenset({"seccomp", "landlock"}), failures=("seccomp",))
    values = join.to_tla(s)
    assert values == {
        "join_degradable": frozenset({"seccomp", "landlock"}), "join_phase": "running", "join_done": 7,
        "join_degraded": frozenset({"seccomp"}),
    }
    base = join.initial(STEPS, COMMAND, frozenset(join.DEGRADABLE))
    rebuilt = join.from_tla(values, base)
    assert rebuilt == s
    assert ok(join.step(rebuilt, v.JoinDone("landlock"))).state.phase == "ready"
    plain = join.from_tla(values)  # no base: the placeholder's intents
    assert join.to_tla(plain) == values and plain.steps == join.placeholder().steps
    assert join.is_initial(join.from_tla(join.to_tla(base)))
    assert not join.is_initial(join.from_tla({**join.to_tla(base), "join_degraded": frozenset({"seccomp"})}))


def test_join_invariants_catch_what_the_spec_forbids():
    ready = join_at(len(join.PLAN))
    assert all(f(ready) for f in join.INVARIANTS)
    short = dataclasses.replace(ready, done=5)
    assert not join.StartedOnlyRestricted(short)
    lenient = dataclasses.replace(ready, degraded=frozenset({"seccomp"}))
    assert not join.NoWeakerThanContainer(lenient)
    early = dataclasses.replace(join_at(2, frozenset({"seccomp"})), degraded=frozenset({"seccomp"}))
    assert not join.DegradedOnlyWhenReached(early)
    assert not join.FailedNeverComplete(dataclasses.replace(ready, phase="failed"))
    assert not join.TypeOK(dataclasses.replace(ready, degradable=frozenset({"caps"})))
    assert join.has_done(ready, "landlock") and not join.has_done(join_at(7), "landlock")

