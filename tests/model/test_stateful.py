"""Hypothesis state-machine tests over the production driver with the fake executor.

The System machine, in every configuration (strict modes and the mount audit included), gets
arbitrary sequences of: any event it could be offered, a scripted effect failure, a cgroup step
whose outcome is held back (the supervisor may die while it is under way), the supervisor lost,
and settle (the driver following setup and cleanup on its own). The spec's invariants are
checked after every step, along with what a user relies on: a refusal changes nothing, setup and
cleanup never get stuck (a cgroup whose removal failed or was abandoned is tried again, a few
times, then kept until `rm --force` takes the cleanup over), every failure, exit or loss asks for cleanup, a cgroup whose creation was
tried is removed before cleanup is done, a strict mode never runs degraded, nothing runs in a
root whose audit has not passed, a removed container never comes back.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from nucleus.machines.base import Refused, Step

SETTINGS = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
OPS = (v.SetPropagation(), v.MountFs("tmpfs", "/new"), v.MakeDirs("/new", ("dev",)))
CGROUP_INTENTS = ("CreateCgroup", "SetCgroupLimits", "AttachCgroup", "RemoveCgroup")
# The intents of the System's machines that report (the join's report to the Join machine).
SYSTEM_REPORTING = sorted(n for n in v.REPORTING if v.INTENTS[n].reports[0] in system.MACHINES)
PLANNED = {
    "create": v.CreateCgroup(("/sys/fs/cgroup/nucleus",), (), ("/sys/fs/cgroup/nucleus/c1",)),
    "limits": v.SetCgroupLimits((("/sys/fs/cgroup/nucleus/c1/pids.max", "64", False),)),
    "attach": v.AttachCgroup(("/sys/fs/cgroup/nucleus/c1/cgroup.procs",)),
    "remove": v.RemoveCgroup(dirs=("/sys/fs/cgroup/nucleus/c1",), parents=("/sys/fs/cgroup/nucleus",)),
}
WORKLOAD = v.ExecWorkload(("/bin/sh", "-c", "true"), (("PATH", "/bin"),), "/", (1024, 64, 65536))
AUDIT = (("/", ("nosuid", "nodev"), True), ("/proc", ("nosuid", "nodev", "noexec"), True))
# What runs inside the root once it is sealed: with the audit, only after it passed.
INSIDE_THE_ROOT = (v.EnterUserNamespace, v.DropCapabilities, v.ExecWorkload)
# The events that ask for cleanup: each accepted one issues one Cleanup.
ASKS_FOR_CLEANUP = (v.SetupFailed, v.Abort, v.Exit, v.Lost)


class ResTrail:
    """A recorder keeping the cgroup's phase after every step (and in the initial state)."""

    def __init__(self) -> None:
        self.phases: list[str] = []

    def record(self, event: v.Event | None, state: system.SystemState, intents: tuple[v.Intent, ...] = ()) -> None:
        self.phases.append(state.res.phase)


class Holding(FakeExecutor):
    """A fake executor that can hold back the outcome of the next occurrence of one cgroup intent
    (each is issued alone): the step stays under way until the outcome is delivered, or forever
    if the supervisor carrying it out is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: str | None = None
        self.held: v.Intent | None = None

    def perform(self, intents: tuple[v.Intent, ...]) -> list[v.Event]:
        if self.hold is not None and [i.name for i in intents] == [self.hold]:
            self.performed.append(intents[0])
            self.hold, self.held = None, intents[0]
            return []
        return super().perform(intents)


def _abandons_alone() -> bool:
    """Whether the System takes the cgroup's Abandon on its own, which formal/System.tla does not
    (test_machine_system's xfail): it is offered here only once the code agrees."""
    s = system.initial(isolation.initial(), filesystem.initial((), "/new"), security.initial())
    for e in (v.Create(), v.ResBegin()):
        s = system.step(s, e).state
    return isinstance(system.step(s, v.ResAbandon()), Step)


OFFER_ABANDON = not _abandons_alone()


class SystemModel(RuleBasedStateMachine):
    @initialize(
        rootless=st.booleans(),
        allow_degraded=st.booleans(),
        allow_chroot=st.booleans(),
        required=st.booleans(),
        strict=st.booleans(),
        audit=st.booleans(),
        n_ops=st.integers(0, len(OPS)),
    )
    def start(self, rootless, allow_degraded, allow_chroot, required, strict, audit, n_ops):
        self.ex = Holding()
        state = system.initial(
            isolation.initial(rootless=rootless),
            filesystem.initial(OPS[:n_ops], "/new", allow_chroot=allow_chroot, audit=AUDIT if audit else ()),
            security.initial(allow_degraded=allow_degraded, strict=strict),
            resources.initial(required, **PLANNED),
            lifecycle.initial(WORKLOAD),
        )
        self.trail = ResTrail()
        self.driver = Driver(system, state, self.ex, self.trail)
        self.ever_running = False
        self.removed = False

    def _feed(self, event: v.Event) -> Step | Refused:
        before, steps, performed = self.driver.state, len(self.driver.history), len(self.ex.performed)
        result = self.driver.feed(event)
        if isinstance(result, Refused):
            assert result.why, "a refusal says why"
            assert self.driver.state is before
            assert len(self.driver.history) == steps and len(self.ex.performed) == performed
        else:
            assert isinstance(result, Step)
            assert self.driver.history[steps][0] is event
            held = self.ex.held
            if held is not None and isinstance(event, (v.ResDone, v.ResFailed, v.ResAbandon)) and (
                    getattr(event, "step", held.reports[1]) == held.reports[1]):
                self.ex.held = None  # the held step's outcome came (or it was abandoned) another way
        if self.driver.state.lc.status == "running":
            self.ever_running = True
        return result

    def _candidates(self) -> list[v.Event]:
        return [e for e in system.candidate_events(self.driver.state)
                if OFFER_ABANDON or not isinstance(e, v.ResAbandon)]

    @rule(data=st.data())
    def feed_a_candidate(self, data):
        self._feed(data.draw(st.sampled_from(self._candidates()), label="event"))

    def _enabled(self) -> list[v.Event]:
        s = self.driver.state
        return [e for e in self._candidates() if isinstance(system.step(s, e), Step)]

    @precondition(lambda self: self._enabled())
    @rule(data=st.data())
    def feed_an_enabled_event(self, data):
        self._feed(data.draw(st.sampled_from(self._enabled()), label="enabled event"))

    @rule(
        event=st.one_of(
            st.integers(0, 255).map(v.Exit),
            st.sampled_from(lifecycle.SIGNALS + ("BOGUS",)).map(v.Kill),
            st.sampled_from([v.Prepared("full"), v.IsoDone("bogus"), v.FsFailed("bogus"), v.SecDone("bogus"),
                             v.ResDone("bogus"), v.ResFailed("bogus")]),
        )
    )
    def feed_with_any_argument(self, event):
        self._feed(event)

    @rule(
        # Half of the scripted failures are the cgroup's (four of the many intents that report).
        intent=st.sampled_from(CGROUP_INTENTS) | st.sampled_from(SYSTEM_REPORTING),
        errno=st.integers(1, 133),
        nth=st.sampled_from(["", "#1", "#2"]),
    )
    def script_a_failure(self, intent, errno, nth):
        self.ex.fail[intent + nth] = (errno, f"{intent}: scripted failure")

    @precondition(lambda self: self.ex.held is None and self.ex.hold is None)
    @rule(intent=st.sampled_from(CGROUP_INTENTS))
    def hold_back_a_cgroup_step(self, intent):
        self.ex.hold = intent

    @precondition(lambda self: self.ex.held is not None)
    @rule(succeeds=st.booleans())
    def deliver_the_held_outcome(self, succeeds):
        intent, self.ex.held = self.ex.held, None
        outcome = v.done(intent) if succeeds else v.failed(intent, 5, "I/O error")
        under_way = resources.UNDER_WAY.get(self.driver.state.res.phase)
        result = self._feed(outcome)
        # Accepted exactly while its step is still under way (not abandoned by Lost meanwhile).
        assert isinstance(result, Step) == (under_way == intent.reports[1]), (intent, result)
        event(f"delivered {intent.name}: {'accepted' if isinstance(result, Step) else 'refused, abandoned'}")

    @precondition(lambda self: self.driver.state.lc.status in lifecycle.ACTIVE
                  or (self.driver.state.lc.status in ("stopped", "failed") and not self.driver.state.lc.cleaned))
    @rule()
    def lose_the_supervisor(self):
        """The supervisor is gone (rm --force sees it): Lost, then the driver cleans up."""
        before = self.driver.state
        assert isinstance(self._feed(v.Lost()), Step)
        s = self.driver.state
        assert s.lc.status == ("failed" if before.lc.status in lifecycle.ACTIVE else before.lc.status)
        assert s.res.phase not in resources.UNDER_WAY  # a step under way was abandoned with it
        if before.res.phase in resources.UNDER_WAY:
            assert s.res.held and self.ex.held is not None
            event(f"lost with {before.res.phase} under way")
        self.driver.settle()

    # What a user does most (the rules above reach it too, only seldom).
    @precondition(lambda self: self.driver.state.lc.status == "none")
    @rule()
    def create(self):
        self._feed(v.Create())

    @precondition(lambda self: self.driver.state.lc.status == "created")
    @rule(code=st.integers(0, 255))
    def start_and_exit(self, code):
        self._feed(v.Start())
        self._feed(v.Exit(code))
        assert self.driver.state.lc.status == "stopped"

    @rule()
    def settle(self):
        was = self.driver.state.lc.status
        self.driver.settle()
        s = self.driver.state
        assert system.advance(s) is None
        waiting = s.res.phase in resources.UNDER_WAY  # for a held-back outcome
        if was == "creating" and not waiting:
            assert s.lc.status in ("created", "failed"), f"setup stopped half way: {system.to_tla(s)}"
        if s.lc.status in ("stopped", "failed") and not waiting:
            assert s.lc.cleaned or resources.gave_up(s.res), f"cleanup stopped half way: {system.to_tla(s)}"
        event(f"settled: {s.lc.status}, cgroup {s.res.phase}")

    @precondition(lambda self: self.driver.state.lc.status in ("stopped", "failed")
                  and resources.gave_up(self.driver.state.res))
    @rule()
    def take_over_a_cleanup_given_up(self):
        """`rm --force` after every removal cleanup tried failed: no Release on its own; Lost
        (the cleanup taken over) starts the tries afresh, then cleanup goes on by itself."""
        removals = self._removals()
        assert isinstance(self.driver.feed(v.ResRelease()), Refused)
        assert isinstance(self._feed(v.Lost()), Step) and self.driver.state.res.tries == 0
        self.driver.settle()
        s = self.driver.state
        assert self._removals() > removals
        assert s.lc.cleaned or s.res.phase in ("leaked", "releasing")
        event(f"taken over: {'cleaned' if s.lc.cleaned else s.res.phase}")

    def _removals(self) -> int:
        return sum(isinstance(i, v.RemoveCgroup) for i in self.ex.performed)

    @invariant()
    def spec_invariants(self):
        s = self.driver.state
        broken = [name for name, check in system.all_invariants() if not check(s)]
        assert not broken, f"{broken} in {system.to_tla(s)}"

    @invariant()
    def failure_exit_or_loss_asks_for_cleanup(self):
        """Each accepted SetupFailed, Abort, Exit or Lost issues one Cleanup, and only those; a
        container that stopped or failed asked at least once, an active one never."""
        lc = self.driver.state.lc
        asked = sum(isinstance(e, ASKS_FOR_CLEANUP) for e, _ in self.driver.history)
        issued = sum(isinstance(i, v.Cleanup) for _, intents in self.driver.history for i in intents)
        assert issued == asked == sum(isinstance(i, v.Cleanup) for i in self.ex.performed)
        assert (asked > 0) == (lc.status in ("stopped", "failed", "removed")), f"{asked} for a {lc.status} container"

    @invariant()
    def a_tried_cgroup_is_removed_before_cleanup_is_done(self):
        """Once creation was tried (even if it failed or was abandoned), the cgroup counts as held
        until a removal completed; cleanup is done only after that removal."""
        s = self.driver.state
        events = [e for e, _ in self.driver.history]
        tried, removed = events.count(v.ResBegin()), events.count(v.ResDone("release"))
        assert tried <= 1 and removed <= tried
        if s.lc.cleaned and s.lc.status != "none":
            assert removed == tried, f"cleaned with creation tried {tried} times and {removed} removals"
        assert s.res.held == (tried == 1 and removed == 0 and s.res.phase != "creating")
        assert self._removals() >= removed

    @invariant()
    def a_held_step_is_under_way_until_abandoned(self):
        held = self.ex.held
        if held is not None:
            phase = self.driver.state.res.phase
            abandoned = v.Lost() in [e for e, _ in self.driver.history]
            assert resources.UNDER_WAY.get(phase) == held.reports[1] or abandoned, (held, phase)

    @invariant()
    def namespaces_only_inside_the_cgroup(self):
        """Unshare is asked for only once the setup process is in its cgroup, or once an optional
        cgroup failed or was abandoned with a lost supervisor (it runs without one)."""
        history = self.driver.history
        for i, (_, intents) in enumerate(history):
            if any(isinstance(x, v.Unshare) for x in intents):
                before = [e for e, _ in history[:i]]
                attached = v.ResDone("attach") in before
                # trail.phases[j] is the cgroup's phase before history[j] (after history[j - 1]).
                abandoned = any(e == v.Lost() and self.trail.phases[j] in resources.UNDER_WAY
                                for j, e in enumerate(before))
                skipped = not self.driver.state.res.required and (
                    abandoned or any(isinstance(e, v.ResFailed) for e in before))
                assert attached or skipped, f"Unshare asked for after {before}"
                break

    @invariant()
    def a_strict_mode_never_degrades(self):
        s = self.driver.state
        if s.sec.strict:
            assert not s.sec.degraded and s.lc.security != "degraded"
            assert not [i for i in self.ex.performed if isinstance(i, v.Warn) and "degraded security" in i.message]

    @invariant()
    def nothing_runs_in_an_unaudited_root(self):
        """With the audit, nothing is asked for inside the sealed root before the audit passed;
        without it, no audit is ever asked for."""
        fs = self.driver.state.fs
        audited = False
        for e, intents in self.driver.history:
            audited = audited or e == v.FsDone("audit")
            for intent in intents:
                if isinstance(intent, v.AuditMounts):
                    assert fs.audits and intent.rules == fs.audit
                if fs.audits and isinstance(intent, INSIDE_THE_ROOT):
                    assert audited, f"{intent!r} asked for before the audit passed"
        assert fs.audited == audited

    @invariant()
    def only_planned_intents_are_issued(self):
        planned = set(PLANNED.values()) | {WORKLOAD}
        for intent in self.ex.performed:
            if isinstance(intent, v.RemoveCgroup):  # a retry waits a little longer each time
                assert intent.pause in resources.RELEASE_PAUSES, intent
                intent = intent.replace(pause=0.0)
            if isinstance(intent, (v.CreateCgroup, v.SetCgroupLimits, v.AttachCgroup, v.RemoveCgroup, v.ExecWorkload)):
                assert intent in planned, intent

    @invariant()
    def workload_runs_only_when_started(self):
        execs = sum(isinstance(i, v.ExecWorkload) for i in self.ex.performed)
        assert execs == (1 if self.ever_running else 0)

    @invariant()
    def removed_stays_removed(self):
        if self.removed:
            assert self.driver.state.lc.status == "removed"
        self.removed = self.driver.state.lc.removed


TestSystemModel = SystemModel.TestCase
TestSystemModel.settings = SETTINGS


# Lifecycle alone: the driver against a small reference table of the spec's guards.
NEXT_STATUS = {
    "Create": ({"none"}, "creating"),
    "Prepared": ({"creating"}, "created"),
    "SetupFailed": ({"creating"}, "failed"),
    "Start": ({"created"}, "running"),
    "Abort": ({"created"}, "failed"),
    "Exit": ({"running"}, "stopped"),
    "Kill": ({"running"}, None),
    # From an active status the container fails; from stopped or failed before cleanup it stays.
    "Lost": ({"creating", "created", "running", "stopped", "failed"}, None),
    "Attach": ({"running"}, None),
    "CleanupDone": ({"stopped", "failed"}, None),
    "Remove": ({"stopped", "failed"}, "removed"),
}


class LifecycleModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ex = FakeExecutor()
        self.driver = Driver(lifecycle, lifecycle.initial(WORKLOAD), self.ex)
        self.status, self.cleaned, self.exit_code, self.level = "none", True, None, "none"
        self.cleanups = 0

    def _expect_enabled(self, event: v.Event) -> bool:
        sources, _ = NEXT_STATUS[event.name]
        if self.status not in sources:
            return False
        if event.name == "CleanupDone":
            return not self.cleaned
        if event.name == "Remove":
            return self.cleaned
        if event.name == "Lost" and self.status in ("stopped", "failed"):
            return not self.cleaned
        if isinstance(event, v.Prepared):
            return event.level in lifecycle.PREPARED_LEVELS
        if isinstance(event, v.Kill):
            return event.signal in lifecycle.SIGNALS
        return True

    @rule(
        event=st.one_of(
            st.sampled_from([v.Create(), v.SetupFailed(), v.Start(), v.Abort(), v.Lost(), v.Attach(),
                             v.CleanupDone(), v.Remove()]),
            st.sampled_from(["enforced", "degraded", "traced", "strict"]).map(v.Prepared),
            st.integers(0, 255).map(v.Exit),
            st.sampled_from(lifecycle.SIGNALS + ("STOP",)).map(v.Kill),
        )
    )
    def feed(self, event):
        before = self.driver.state
        result = self.driver.feed(event)
        if not self._expect_enabled(event):
            assert isinstance(result, Refused), f"{event!r} accepted while {self.status}"
            assert event.name in result.why and self.driver.state is before
            return
        assert isinstance(result, Step), f"{event!r} refused while {self.status}: {getattr(result, 'why', '')}"
        _, target = NEXT_STATUS[event.name]
        if target is not None:
            self.status = target
        if event.name == "Lost" and self.status in lifecycle.ACTIVE:
            self.status = "failed"
        if event.name == "Create":
            self.cleaned = False
        if event.name == "CleanupDone":
            self.cleaned = True
        if isinstance(event, v.Prepared):
            self.level = event.level
        if isinstance(event, v.Exit):
            self.exit_code = event.code
        if event.name in ("SetupFailed", "Abort", "Exit", "Lost"):
            self.cleanups += 1
            assert self.ex.performed[-1] == v.Cleanup()
        if isinstance(event, v.Start):
            assert self.ex.performed[-1] == WORKLOAD
        if isinstance(event, v.Kill):
            assert self.ex.performed[-1] == v.SendSignal(event.signal)
        if isinstance(event, v.Attach):
            assert self.driver.state == before and self.driver.history[-1] == (event, ())

    @invariant()
    def agrees_with_the_reference(self):
        s = self.driver.state
        assert (s.status, s.cleaned, s.exit_code, s.security) == (self.status, self.cleaned, self.exit_code, self.level)
        assert s.removed == (self.status == "removed")
        assert sum(isinstance(i, v.Cleanup) for i in self.ex.performed) == self.cleanups

    @invariant()
    def spec_invariants(self):
        s = self.driver.state
        broken = [f.__name__ for f in lifecycle.INVARIANTS if not f(s)]
        assert not broken, f"{broken} in {lifecycle.to_tla(s)}"


TestLifecycleModel = LifecycleModel.TestCase
TestLifecycleModel.settings = SETTINGS
