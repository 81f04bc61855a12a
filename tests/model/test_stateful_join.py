"""Hypothesis state-machine test of the Join machine over the production driver with the fake
executor: what `nucleus attach` drives. Arbitrary sequences of any join event, scripted failures
of its steps, Begin, Start and Exit; the spec's invariants after every step, and what a user
relies on: a refusal changes nothing, the steps are carried out in the planned order with the
planned data, the command runs only once every restriction is in force, a control is skipped
only where the container itself runs without it (with a warning), and a failure or an exit asks
for cleanup once."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.machines import join
from nucleus.machines.base import Refused, Step
from nucleus.plan import join as join_plan
from nucleus.plan.run import JoinPolicy

SETTINGS = settings(max_examples=200, stateful_step_count=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
JOIN_INTENTS = sorted(n for n in v.REPORTING if v.INTENTS[n].reports[0] == "join")
POLICY = JoinPolicy(
    rootless=False, namespaces=("user", "cgroup", "ipc", "uts", "net", "pid", "mnt"), seccomp_sha256="ab" * 32, seccomp_log_denied=True, seccomp_mode="enforce",
    caps_keep=("CAP_CHOWN",), landlock_rules=(("/usr", ("execute", "read")),), landlock_min_abi=2,
    env=(("PATH", "/usr/bin"),), cwd="/context", rlimits=(1024, 64, 65536),
    cgroup_procs=("/sys/fs/cgroup/nucleus/c1/cgroup.procs",),
)
DEGRADABLE_SETS = [frozenset(), frozenset({"seccomp"}), frozenset({"landlock"}), frozenset({"seccomp", "landlock"}),
                   frozenset({"caps", "seccomp"})]


class JoinModel(RuleBasedStateMachine):
    @initialize(
        degraded=st.sampled_from(DEGRADABLE_SETS),
        rootless=st.booleans(),
        held=st.booleans(),
        argv=st.sampled_from([(), ("/bin/ls", "-l")]),
    )
    def start(self, degraded, rootless, held, argv):
        policy = dataclasses.replace(POLICY, rootless=rootless)
        self.plan = join_plan.plan(policy, 42, 1000, argv, degraded, held, "web")
        self.ex = FakeExecutor()
        self.driver = Driver(join, self.plan, self.ex)
        self.exit_code: int | None = None

    def _feed(self, event: v.Event) -> Step | Refused:
        before, steps, performed = self.driver.state, len(self.driver.history), len(self.ex.performed)
        result = self.driver.feed(event)
        if isinstance(result, Refused):
            assert result.why.startswith("cannot ") or "has no action" in result.why
            assert self.driver.state is before
            assert len(self.driver.history) == steps and len(self.ex.performed) == performed
        elif isinstance(event, v.JoinExit):
            self.exit_code = event.code
        return result

    @rule(data=st.data())
    def feed_a_candidate(self, data):
        self._feed(data.draw(st.sampled_from(join.candidate_events(self.driver.state)), label="event"))

    @rule(event=st.one_of(st.integers(0, 255).map(v.JoinExit),
                          st.sampled_from([v.JoinDone("bogus"), v.JoinFailed("bogus"), v.Start(), v.Exit(0)])))
    def feed_with_any_argument(self, event):
        self._feed(event)

    @rule(intent=st.sampled_from(JOIN_INTENTS), errno=st.integers(1, 133))
    def script_a_failure(self, intent, errno):
        self.ex.fail[intent] = (errno, f"{intent}: scripted failure")

    @precondition(lambda self: self.driver.state.phase == "idle")
    @rule()
    def begin(self):
        """The executor reports each step and the machine asks for the next, to the end."""
        self.driver.require(v.JoinBegin())
        s = self.driver.state
        assert s.phase in ("ready", "failed")
        failing = [i for i in self.plan.steps if i.name in self.ex.fail]
        fatal = [i for i in failing if i.reports[1] not in s.degradable]
        if fatal:
            first = fatal[0]
            assert s.phase == "failed" and s.done == self.plan.steps.index(first)
        else:
            assert s.phase == "ready" and s.degraded == {i.reports[1] for i in failing}

    @precondition(lambda self: self.driver.state.phase == "ready")
    @rule(code=st.integers(0, 255))
    def start_and_exit(self, code):
        self._feed(v.JoinStart())
        assert self.ex.performed[-1] == self.plan.command
        self._feed(v.JoinExit(code))
        assert (self.driver.state.phase, self.driver.state.exit_code) == ("exited", code)

    @invariant()
    def spec_invariants(self):
        s = self.driver.state
        broken = [f.__name__ for f in join.INVARIANTS if not f(s)]
        assert not broken, f"{broken} in {join.to_tla(s)}"

    @invariant()
    def the_planned_steps_are_carried_out_in_order(self):
        s = self.driver.state
        steps = [i for i in self.ex.performed if i in self.plan.steps]
        expected = list(self.plan.steps[: s.done + (1 if s.phase in ("running", "failed") else 0)])
        assert steps == expected

    @invariant()
    def the_command_runs_only_with_every_restriction(self):
        s = self.driver.state
        commands = [i for i in self.ex.performed if isinstance(i, v.ExecCommand)]
        assert commands == ([self.plan.command] if s.phase in ("started", "exited") else [])
        if commands:
            first = self.ex.performed.index(commands[0])
            assert [i for i in self.ex.performed[:first] if i in self.plan.steps] == list(self.plan.steps)
            assert self.plan.command.argv in (("/bin/sh",), ("/bin/ls", "-l"))

    @invariant()
    def skipped_only_where_the_container_runs_without(self):
        s = self.driver.state
        warns = [i for i in self.ex.performed if isinstance(i, v.Warn)]
        assert len(warns) == len(s.degraded)
        assert s.degraded <= s.degradable <= {"seccomp", "landlock"}
        assert all(w.message.endswith("the container runs without it too") for w in warns)

    @invariant()
    def a_failure_or_an_exit_asks_for_cleanup_once(self):
        s = self.driver.state
        cleanups = sum(isinstance(i, v.Cleanup) for i in self.ex.performed)
        assert cleanups == (1 if s.phase in ("failed", "exited") else 0)
        assert s.exit_code == self.exit_code


TestJoinModel = JoinModel.TestCase
TestJoinModel.settings = SETTINGS
