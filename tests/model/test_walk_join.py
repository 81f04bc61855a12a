"""The join's reachable states, walked exhaustively and compared with formal/Join.tla (see
tests/model/walking.py for what every walk checks): every restriction is in force before the
command starts, and only the controls the container itself runs without may be skipped."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import join
from tests.model.spec_constants import (
    JOIN_DEGRADABLE,
    JOIN_PLAN,
    JOIN_STEPS,
    PARAMETERS,
    spec_int,
    spec_strings,
    subsets,
)
from tests.model.spec_steps import (
    spec_init_join,
    spec_join,
)
from tests.model.walking import Walk, WalkedMachine

OTHER_STEPS = (
    v.JoinSpawn(), v.JoinCgroup(("/sys/fs/cgroup/nucleus/c9/cgroup.procs",)),
    v.EnterNamespaces((("pid", "/proc/9/ns/pid"), ("user", "/proc/9/ns/user")), clear_groups=True),
    v.JoinIdentity(), v.JoinFork(), v.JoinDropCapabilities(("CAP_CHOWN",)), v.JoinLoadSeccomp("ef" * 32, True),
    v.JoinApplyLandlock((("/", ("readdir",)),), 3),
)
OTHER_COMMAND = v.ExecCommand(("/usr/bin/env",), (("PATH", "/usr/bin"),), "/context", (64, 8, 65536))


def join_inits() -> list[join.JoinState]:
    return [
        state
        for degradable in subsets(JOIN_DEGRADABLE)
        for state in (join.initial(join.placeholder().steps, join.placeholder().command, degradable),
                      join.initial(OTHER_STEPS, OTHER_COMMAND, degradable))
    ]


JOIN = WalkedMachine(join, "Join", "join", spec_init_join, spec_join, join.candidate_events)


@pytest.fixture(scope="module")
def join_walk() -> Walk:
    return JOIN.walk(join_inits())


def test_join_spec_constants_match_the_code():
    assert join.PLAN == JOIN_PLAN and set(JOIN_STEPS) == set(JOIN_PLAN)
    assert spec_int("Join", "MaxSteps") == len(join.PLAN)
    assert set(join.DEGRADABLE) == set(JOIN_DEGRADABLE)
    assert set(join.PHASES) == set(spec_strings("Join", "Phases"))
    assert PARAMETERS["join"] == ("join_degradable",)


def test_join_invariants_hold_everywhere(join_walk):
    JOIN.check_invariants(join_walk)


def test_join_agrees_with_spec(join_walk):
    JOIN.check_agrees(join_walk)
    # Per set D of controls the container runs without: idle; running at each of the 8 steps
    # (and at landlock with seccomp skipped, when seccomp is in D); failed at each step not in D
    # (and at landlock after seccomp was skipped); ready, started and exited with each subset of
    # D skipped. D = {} 20, {seccomp} 24, {landlock} 22, both 28.
    assert len(join_walk.abstract_states()) == 20 + 24 + 22 + 28 == 94


def test_join_covers_every_action(join_walk):
    expected = {("Begin", ""), ("Start", ""), ("Exit", "")}
    expected |= {(a, s) for a in ("Done", "Fail") for s in JOIN_STEPS}
    JOIN.check_covers(join_walk, expected)


def test_join_runs_the_command_only_with_every_restriction(join_walk):
    """The command is issued only by Start, only once every step is done, and only with the
    container's own leniency: a skipped control is one the container runs without."""
    for s, e, r in join_walk.steps():
        commands = [i for i in r.intents if isinstance(i, v.ExecCommand)]
        if isinstance(e, v.JoinStart):
            assert commands == [s.command] and s.done == len(join.PLAN)
            assert s.degraded <= s.degradable
        else:
            assert commands == []


def test_join_issues_each_planned_step_in_order(join_walk):
    for s, _, r in join_walk.steps():
        steps = [i for i in r.intents if i in s.steps]
        if r.state.phase == "running":
            assert steps == [s.steps[r.state.done]] and r.intents[-1] == s.steps[r.state.done]
        else:
            assert steps == []
        if r.state.phase in ("failed", "exited") and s.phase != r.state.phase:
            assert r.intents == (v.Cleanup(),)


def test_join_failure_outcomes(join_walk):
    outcomes = {(e.step in s.degradable, r.state.phase == "failed")
                for s, e, r in join_walk.steps() if isinstance(e, v.JoinFailed)}
    assert outcomes == {(True, False), (False, True)}
    for s, e, r in join_walk.steps():
        if isinstance(e, v.JoinFailed) and e.step in s.degradable:
            assert isinstance(r.intents[0], v.Warn) and r.state.degraded == s.degraded | {e.step}


def test_join_abstraction(join_walk):
    JOIN.check_abstraction(join_walk)  # plans, commands and exit codes differ


def test_join_is_initial_holds_exactly_on_the_spec_init():
    states = [
        {"join_degradable": d, "join_phase": p, "join_done": n, "join_degraded": g}
        for d in subsets(JOIN_DEGRADABLE) for p in spec_strings("Join", "Phases")
        for n in range(len(JOIN_PLAN) + 1) for g in subsets(JOIN_DEGRADABLE)
    ]
    JOIN.check_is_initial(states)
