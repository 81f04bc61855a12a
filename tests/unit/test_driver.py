"""The driver with the fake executor: a full System run with a failure scripted at every intent.

Whatever fails, `feed(Create()); settle()` ends with the container created (when the failure is
one the configuration tolerates) or failed and cleaned up: the Cleanup intent issued, the cgroup
released (its planned RemoveCgroup, whichever cgroup step failed: a failed creation may have left
part of it), CleanupDone taken. A run that gets that far exits and is cleaned up the same way. A
cgroup whose removal fails is kept (leaked) until a later Release succeeds. A supervisor that died
with an intent under way leaves a state that `rm --force` (Lost, settle) cleans up. Every
invariant holds after every recorded step.

The configurations: rootless or privileged, degraded security allowed or not, the chroot fallback
allowed or not, the cgroup required or optional, a strict mode (strict-agent, production: nothing
degrades) or not, the mount audit (production) or not; every combination. After a tolerated
pivot_root failure (the chroot fallback), every later intent is failed in turn too.
"""

from __future__ import annotations

from typing import Any

import pytest

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.errors import RuntimeFailure
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from nucleus.machines.base import Refused, Step
from tests.unit.machine_support import CGROUP, REMOVE
from tests.unit.system_support import WORKLOAD

# A mount plan with every kind of operation (each reports as the step "mount").
PLAN = (
    v.SetPropagation("/", "private", True),
    v.MountFs("tmpfs", "/new", ("nosuid", "nodev"), "size=64m"),
    v.MakeDirs("/new", ("dev", "proc", "tmp")),
    v.BindMount("/usr", "/new/usr", ("rdonly",), recursive=True),
    v.MakeDirs("/new", ("etc",)),
    v.RemountFs("/new/usr", ("rdonly", "nosuid", "nodev"), bind=True),
    v.MakeSymlinks("/new", (("bin", "usr/bin"),)),
    v.CopyTree("/ctx", "/new/app", (".git",)),
    v.VerifyTree("/new/app", (("main.py", "ab" * 32),)),
    v.KeepTree("/new/app"),
    v.MountVolume("/srv/out", "/new/out", ("nosuid", "nodev"), 5, 6, ((0, 100000), (0, 100000))),
    v.WriteSysctl("/new/proc", "net.ipv4.ip_forward", "1"),
    v.MaskPaths("/new/proc", ("kcore",), ("sys",)),
    v.WriteFile("/new/etc/hosts", "127.0.0.1\tlocalhost\n"),
    v.WriteSecret("/new/run/secrets/key", 0, 0o400, (0, 0)),
    v.BindSecret("/new/run/secrets/key", "/new", "/etc/key", ("rdonly", "nosuid", "nodev", "noexec")),
)
AUDIT = (("/", ("nosuid", "nodev"), True), ("/proc", ("nosuid", "nodev", "noexec"), True))
CGROUP_SETUP = ("CreateCgroup", "SetCgroupLimits", "AttachCgroup")
PIVOT_FAILS = {"PivotRoot": (22, "PivotRoot failed: Invalid argument")}


def _config_id(rootless, allow_degraded, allow_chroot, required, strict, audit) -> str:
    return (
        f"{'rootless' if rootless else 'privileged'}-degraded={allow_degraded}-chroot={allow_chroot}"
        f"-cgroup={'required' if required else 'optional'}-strict={strict}-audit={audit}"
    )


ALL_CONFIGS = [
    (rootless, allow_degraded, allow_chroot, required, strict, audit)
    for rootless in (False, True)
    for allow_degraded in (False, True)
    for allow_chroot in (False, True)
    for required in (False, True)
    for strict in (False, True)
    for audit in (False, True)
]
CONFIGS = [pytest.param(*c, id=_config_id(*c)) for c in ALL_CONFIGS]
FALLBACK_CONFIGS = [pytest.param(*c, id=_config_id(*c)) for c in ALL_CONFIGS if c[2]]
NAMES = "rootless,allow_degraded,allow_chroot,required,strict,audit"


class CheckingRecorder:
    """Records every step (with the intents it issued) and checks every System invariant in
    every recorded state."""

    def __init__(self) -> None:
        self.steps: list[tuple[v.Event | None, Any, tuple[v.Intent, ...]]] = []

    def record(self, event: v.Event | None, state: Any, intents: tuple[v.Intent, ...] = ()) -> None:
        broken = [name for name, check in system.all_invariants() if not check(state)]
        assert not broken, f"after {event!r}: {broken} in {system.to_tla(state)}"
        self.steps.append((event, state, intents))


def initial(
    rootless: bool, allow_degraded: bool, allow_chroot: bool, required: bool = False,
    strict: bool = False, audit: bool = False,
) -> system.SystemState:
    return system.initial(
        isolation.initial(rootless=rootless),
        filesystem.initial(PLAN, "/new", allow_chroot=allow_chroot, audit=AUDIT if audit else ()),
        security.initial(allow_degraded=allow_degraded, strict=strict),
        resources.initial(required, **CGROUP),
        lifecycle.initial(WORKLOAD),
    )


def full_run(d: Driver) -> None:
    """What `nucleus run` does: set up; if created, start, signal and exit; clean up."""
    assert isinstance(d.feed(v.Create()), Step)
    d.settle()
    if d.state.lc.status == "created":
        for e in (v.Start(), v.Kill("TERM"), v.Exit(143)):
            assert isinstance(d.feed(e), Step), e
        d.settle()


def failable_intents(config: tuple, fail: dict[str, tuple[int, str]] | None = None) -> list[str]:
    """'Name#n' for every intent a run (clean, or with the tolerated failures `fail`) carries out
    that can report a failure, after the last one `fail` names."""
    ex = FakeExecutor(fail=fail)
    d = Driver(system, initial(*config), ex)
    full_run(d)
    assert (d.state.lc.status, d.state.lc.cleaned, d.state.res.phase) == ("stopped", True, "released")
    counts: dict[str, int] = {}
    keys = []
    for intent in ex.performed:
        n = counts[intent.name] = counts.get(intent.name, 0) + 1
        if intent.name in v.REPORTING:
            keys.append(f"{intent.name}#{n}")
    if fail:
        last = max(keys.index(k if "#" in k else f"{k}#1") for k in fail)
        keys = keys[last + 1:]
    return keys


def tolerated(name: str, allow_degraded: bool, allow_chroot: bool, required: bool, strict: bool) -> bool:
    return (
        (name in ("LoadSeccomp", "ApplyLandlock") and allow_degraded and not strict)
        or (name == "PivotRoot" and allow_chroot)
        or (name in CGROUP_SETUP and not required)
    )


@pytest.mark.parametrize(NAMES, CONFIGS)
def test_clean_run_carries_out_every_step_once(rootless, allow_degraded, allow_chroot, required, strict, audit):
    keys = failable_intents((rootless, allow_degraded, allow_chroot, required, strict, audit))
    plan = isolation.ROOTLESS_PLAN if rootless else isolation.PRIVILEGED_PLAN
    # cgroup setup + isolation steps + mount plan + pivot + detach (+ audit) + three controls + removal
    assert len(keys) == 3 + len(plan) + len(PLAN) + 2 + audit + 3 + 1
    assert "MakeDirs#2" in keys and "MakeDirs#3" not in keys
    assert keys[:5] == ["CreateCgroup#1", "SetCgroupLimits#1", "SpawnChild#1", "AttachCgroup#1", "Unshare#1"]
    assert keys[-1] == "RemoveCgroup#1"
    if audit:
        audit_at = keys.index("AuditMounts#1")
        assert keys[audit_at - 1] == "DetachOldRoot#1"
        assert keys[audit_at + 1] == ("DropCapabilities#1" if rootless else "EnterUserNamespace#1")
    else:
        assert "AuditMounts#1" not in keys


def test_every_intent_that_reports_is_failed_somewhere():
    failed = {k.split("#")[0] for c in ALL_CONFIGS for k in failable_intents(c)}
    failed |= {k.split("#")[0] for c in ALL_CONFIGS if c[2] for k in failable_intents(c, PIVOT_FAILS)}
    # Every intent the System's machines issue that reports (the join's are the Join machine's;
    # the network's, issued only with a bridge, are failed in test_driver_network.py).
    assert failed == {name for name in v.REPORTING
                      if v.INTENTS[name].reports[0] in set(system.MACHINES) - {"net"}}


def check_a_failure(config: tuple, key: str, fail: dict[str, tuple[int, str]] | None = None) -> None:
    """Fail `key` (after the tolerated failures `fail`): the container is created if the failure
    is tolerated, else it failed and was cleaned up; then it runs or is removed."""
    rootless, allow_degraded, allow_chroot, required, strict, audit = config
    name = key.split("#")[0]
    ex = FakeExecutor(fail={**(fail or {}), key: (1, f"{name} failed: Operation not permitted")})
    rec = CheckingRecorder()
    d = Driver(system, initial(*config), ex, rec)
    assert isinstance(d.feed(v.Create()), Step)
    d.settle()
    lc = d.state.lc
    performed = [i.name for i in ex.performed]
    if name == "RemoveCgroup":
        check_a_leaked_cgroup(d, ex)
        return
    assert name in performed, key
    warns = [i for i in ex.performed if isinstance(i, v.Warn)]
    assert len(warns) == bool(fail) + tolerated(name, allow_degraded, allow_chroot, required, strict), key
    if fail:  # the chroot fallback went before (and is what failed, for Chroot)
        assert "Chroot" in performed and "DetachOldRoot" not in performed
        assert d.state.fs.chrooted == (name != "Chroot")
    if tolerated(name, allow_degraded, allow_chroot, required, strict):
        assert lc.status == "created", f"{key}: {lc.status}"
        assert "Cleanup" not in performed
        assert "Operation not permitted" in warns[-1].message, key
        assert (d.state.fs.phase, d.state.fs.audited) == ("sealed", audit)
        if name == "PivotRoot":
            assert d.state.fs.chrooted and lc.security == "enforced"
            assert "Chroot" in performed and "DetachOldRoot" not in performed
            if audit:
                assert performed.index("AuditMounts") == performed.index("Chroot") + 1
        elif name in CGROUP_SETUP:
            assert d.state.res.phase == "degraded" and lc.security == "enforced"
            assert warns[-1].message.endswith("running without resource limits")
            # Namespaces are created only after the cgroup step failed (or succeeded).
            assert performed.index("Unshare") > performed.index(name)
        else:
            assert not strict
            assert lc.security == "degraded" and d.state.sec.degraded == {
                "seccomp" if name == "LoadSeccomp" else "landlock"
            }
        # The run goes on, and cleanup removes the cgroup: whatever a failed creation may have
        # made as well.
        for e in (v.Start(), v.Exit(0)):
            assert isinstance(d.feed(e), Step)
        d.settle()
        performed = [i.name for i in ex.performed]
        assert (d.state.lc.status, d.state.lc.cleaned, d.state.res.phase) == ("stopped", True, "released")
        assert performed.count("RemoveCgroup") == 1, key
        assert ex.performed[-1] == REMOVE, key
        return
    assert lc.status == "failed", f"{key}: {lc.status}"
    if name in ("LoadSeccomp", "ApplyLandlock"):  # not degraded: not allowed, or a strict mode
        assert (d.state.sec.phase, d.state.sec.degraded) == ("failed", frozenset())
        assert strict or not allow_degraded
    # The failure was reported, nothing after it ran but the cleanup, which completed; the
    # cgroup is removed whatever step failed (a failed creation may have made part of it).
    assert performed.count("Cleanup") == 1
    after = performed[performed.index("Cleanup") - 1:]
    assert after == [name, "Cleanup", "RemoveCgroup"], f"{key}: {performed}"
    assert "ExecWorkload" not in performed
    if name == "AuditMounts":
        assert (d.state.fs.phase, d.state.fs.audited) == ("failed", False)
        assert "DropCapabilities" not in performed and "EnterUserNamespace" not in performed
    events = [e for e, _, _ in rec.steps]
    setup_failed = events.index(v.SetupFailed())
    assert [type(e).__name__ for e in events[setup_failed:]] == [
        "SetupFailed", "ResRelease", "ResDone", "NetRelease", "CleanupDone",
    ], key
    assert (lc.cleaned, d.state.res.phase, d.state.res.held) == (True, "released", False)
    assert system.advance(d.state) is None
    assert isinstance(d.feed(v.Remove()), Step)
    assert d.state.lc.status == "removed"
    assert isinstance(d.feed(v.Start()), Refused)


@pytest.mark.parametrize(NAMES, CONFIGS)
def test_a_failure_at_every_intent_ends_created_or_failed_and_cleaned(
    rootless, allow_degraded, allow_chroot, required, strict, audit
):
    config = (rootless, allow_degraded, allow_chroot, required, strict, audit)
    keys = failable_intents(config)
    assert {k.split("#")[0] for k in keys} >= {*CGROUP_SETUP, "RemoveCgroup"}
    assert ("AuditMounts#1" in keys) == audit
    for key in keys:
        check_a_failure(config, key)


@pytest.mark.parametrize(NAMES, FALLBACK_CONFIGS)
def test_a_failure_at_every_intent_after_the_chroot_fallback(
    rootless, allow_degraded, allow_chroot, required, strict, audit
):
    config = (rootless, allow_degraded, allow_chroot, required, strict, audit)
    keys = failable_intents(config, PIVOT_FAILS)
    assert keys[0] == "Chroot#1" and ("AuditMounts#1" in keys) == audit
    for key in keys:
        check_a_failure(config, key, PIVOT_FAILS)


def check_a_leaked_cgroup(d: Driver, ex: FakeExecutor) -> None:
    """The removal failed at cleanup: cleanup tries it again, after a pause, and it succeeds."""
    assert d.state.lc.status == "created"
    for e in (v.Start(), v.Exit(0)):
        assert isinstance(d.feed(e), Step)
    d.settle()
    removals = [i for i in ex.performed if isinstance(i, v.RemoveCgroup)]
    assert [r.pause for r in removals] == [0.0, resources.RELEASE_PAUSES[1]]
    assert removals[1].replace(pause=0.0) == removals[0]  # the same removal, later
    s = d.state
    assert (s.lc.status, s.lc.cleaned, s.res.phase, s.res.held, s.res.tries) == ("stopped", True, "released", False, 1)
    assert isinstance(d.feed(v.Remove()), Step) and d.state.lc.removed


def test_cleanup_gives_up_on_a_cgroup_after_its_tries_and_rm_force_tries_again():
    ex = FakeExecutor(fail={"RemoveCgroup": (16, "rmdir: Device or resource busy")})
    d = Driver(system, initial(True, False, False), ex, CheckingRecorder())
    full_run(d)
    s = d.state
    assert (s.lc.status, s.lc.cleaned, s.res.phase, s.res.tries) == ("stopped", False, "leaked", 3)
    assert resources.gave_up(s.res) and system.advance(s) is None
    removals = [i for i in ex.performed if isinstance(i, v.RemoveCgroup)]
    assert [r.pause for r in removals] == list(resources.RELEASE_PAUSES) and len(removals) == resources.MAX_RELEASE_TRIES
    refused = d.feed(v.ResRelease())
    assert isinstance(refused, Refused) and "all 3 removals of the cgroup failed" in refused.why
    assert isinstance(d.feed(v.Remove()), Refused) and d.state is s
    # `rm --force` takes the cleanup over (Lost): its tries start afresh; this time one works.
    ex.fail = {f"RemoveCgroup#{resources.MAX_RELEASE_TRIES + 1}": (16, "rmdir: Device or resource busy")}
    d.require(v.Lost())
    assert (d.state.res.phase, d.state.res.tries) == ("leaked", 0)
    d.settle()
    assert [i.pause for i in ex.performed if isinstance(i, v.RemoveCgroup)][3:] == [0.0, resources.RELEASE_PAUSES[1]]
    assert (d.state.lc.cleaned, d.state.res.phase) == (True, "released")
    assert isinstance(d.feed(v.Remove()), Step) and d.state.lc.removed


@pytest.mark.parametrize(NAMES, CONFIGS)
def test_full_run_after_setup(rootless, allow_degraded, allow_chroot, required, strict, audit):
    ex = FakeExecutor()
    rec = CheckingRecorder()
    d = Driver(system, initial(rootless, allow_degraded, allow_chroot, required, strict, audit), ex, rec)
    d.feed(v.Create())
    d.settle()
    assert isinstance(d.feed(v.Start()), Step)
    assert ex.performed[-1] == WORKLOAD
    assert isinstance(d.feed(v.Attach()), Step)
    assert ex.performed[-1] == WORKLOAD  # attaching asks for nothing
    assert isinstance(d.feed(v.Kill("TERM")), Step)
    assert ex.performed[-1] == v.SendSignal("TERM")
    assert isinstance(d.feed(v.Exit(143)), Step)
    assert ex.performed[-1] == v.Cleanup()
    assert (d.state.lc.status, d.state.lc.exit_code) == ("stopped", 143)
    # The Cleanup intent reports nothing: cleanup is done once the cgroup is released.
    assert isinstance(d.feed(v.CleanupDone()), Refused)
    assert isinstance(d.feed(v.Remove()), Refused)
    d.settle()
    assert ex.performed[-1] == REMOVE
    d.feed(v.Remove())
    assert d.state.lc.removed
    assert [type(e).__name__ for e, _ in d.history[-10:]] == [
        "Prepared",
        "Start",
        "Attach",
        "Kill",
        "Exit",
        "ResRelease",
        "ResDone",
        "NetRelease",
        "CleanupDone",
        "Remove",
    ]


def test_a_tolerated_failure_and_a_fatal_one_together():
    ex = FakeExecutor(
        fail={"LoadSeccomp": (22, "Invalid argument"), "ApplyLandlock": (95, "not supported")}
    )
    d = Driver(system, initial(True, True, False), ex, CheckingRecorder())
    d.feed(v.Create())
    d.settle()
    assert (d.state.lc.status, d.state.lc.security) == ("created", "degraded")
    assert d.state.sec.degraded == {"seccomp", "landlock"}
    ex = FakeExecutor(
        fail={"LoadSeccomp": (22, "Invalid argument"), "DropCapabilities": (1, "EPERM")}
    )
    d = Driver(system, initial(True, True, False), ex, CheckingRecorder())
    d.feed(v.Create())
    d.settle()
    assert d.state.lc.status == "failed"
    assert "LoadSeccomp" not in [i.name for i in ex.performed]  # nothing after the fatal failure


def test_an_optional_cgroup_and_degraded_security_together():
    ex = FakeExecutor(fail={"AttachCgroup": (1, "EPERM"), "LoadSeccomp": (22, "Invalid argument")})
    d = Driver(system, initial(False, True, False, required=False), ex, CheckingRecorder())
    d.feed(v.Create())
    d.settle()
    s = d.state
    assert (s.lc.status, s.lc.security, s.res.phase, s.res.held) == ("created", "degraded", "degraded", True)
    assert [i.message.split(" (")[0] for i in ex.performed if isinstance(i, v.Warn)] == [
        "cgroup attach failed", "seccomp could not be applied",
    ]
    # A fatal failure later still removes the cgroup that was created.
    ex = FakeExecutor(fail={"SetCgroupLimits": (22, "Invalid argument"), "DropCapabilities": (1, "EPERM")})
    d = Driver(system, initial(False, True, False, required=False), ex, CheckingRecorder())
    d.feed(v.Create())
    d.settle()
    assert (d.state.lc.status, d.state.lc.cleaned, d.state.res.phase) == ("failed", True, "released")
    names = [i.name for i in ex.performed]
    assert "AttachCgroup" not in names  # no limits: the setup process is not moved into the cgroup
    assert names[-3:] == ["DropCapabilities", "Cleanup", "RemoveCgroup"]


def test_chroot_fallback_that_also_fails():
    ex = FakeExecutor(
        fail={"PivotRoot": (22, "Invalid argument"), "Chroot": (1, "Operation not permitted")}
    )
    d = Driver(system, initial(False, False, True), ex, CheckingRecorder())
    d.feed(v.Create())
    d.settle()
    assert (d.state.lc.status, d.state.fs.phase, d.state.lc.cleaned) == ("failed", "failed", True)
    assert [i.name for i in ex.performed[-3:]] == ["Chroot", "Cleanup", "RemoveCgroup"]


def test_a_scripted_nth_occurrence_fails_only_that_one():
    ex = FakeExecutor(fail={"MakeDirs#2": (28, "No space left on device")})
    d = Driver(system, initial(True, False, False), ex)
    d.feed(v.Create())
    d.settle()
    assert d.state.fs.phase == "failed" and d.state.fs.mounted == 4
    names = [i.name for i in ex.performed]
    assert names.count("MakeDirs") == 2
    fails = [e for e, _ in d.history if isinstance(e, v.FsFailed)]
    assert fails == [v.FsFailed("mount", 28, "No space left on device")]


def test_fake_executor_stops_at_the_first_failure():
    ex = FakeExecutor(fail={"MountFs": (19, "No such device")})
    events = ex.perform(PLAN)
    assert events == [v.FsDone("mount"), v.FsFailed("mount", 19, "No such device")]
    assert ex.performed == list(PLAN[:2])
    assert FakeExecutor().perform((v.Warn("x"), v.Cleanup(), v.ExecWorkload())) == []
    ex = FakeExecutor(fail={"SetCgroupLimits": (22, "Invalid argument")})
    assert ex.perform((CGROUP["create"], CGROUP["limits"], CGROUP["attach"])) == [
        v.ResDone("create"), v.ResFailed("limits", 22, "Invalid argument"),
    ]
    assert FakeExecutor().perform((v.AttachCgroup(), v.RemoveCgroup())) == [
        v.ResDone("attach"), v.ResDone("release"),
    ]


def test_fake_executor_scripts_only_intents_that_report():
    with pytest.raises(ValueError, match=r"cannot script a failure of 'Cleanup#1': only .*RemoveCgroup"):
        FakeExecutor(fail={"Cleanup#1": (1, "x")})
    FakeExecutor(fail={"RemoveCgroup#2": (16, "busy"), "CreateCgroup": (13, "denied")})


# ---------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    "event",
    [
        v.Start(),
        v.IsoBegin(),
        v.IsoResume(),
        v.FsBegin(),
        v.SecBegin(),
        v.ResBegin(),
        v.ResAttach(),
        v.ResRelease(),
        v.Prepared("enforced"),
        v.SetupFailed(),
        v.ResAbandon(),
        v.Lost(),
        v.Attach(),
        v.CleanupDone(),
        v.Remove(),
    ],
    ids=lambda e: e.name,
)
def test_a_refused_first_event_changes_nothing(event):
    ex = FakeExecutor()
    rec = CheckingRecorder()
    start = initial(False, False, False)
    d = Driver(system, start, ex, rec)
    result = d.feed(event)
    assert isinstance(result, Refused)
    assert result.why.startswith("cannot ")
    assert d.state is start
    assert d.history == [] and ex.performed == [] and len(rec.steps) == 1  # only the initial state


def test_a_refused_event_mid_run_changes_nothing():
    d = Driver(system, initial(True, False, False), FakeExecutor())
    d.feed(v.Create())
    d.settle()
    before, history = d.state, list(d.history)
    for e in (v.Create(), v.IsoBegin(), v.ResBegin(), v.ResAttach(), v.ResRelease(), v.ResAbandon(),
              v.CleanupDone()):
        assert isinstance(d.feed(e), Refused), e
    assert d.state is before and d.history == history


def test_an_observation_the_machine_refuses_is_an_internal_error():
    class Confused:
        def perform(self, intents):
            return [v.IsoDone("become_root")]

    d = Driver(system, initial(False, False, False), Confused())
    d.feed(v.Create())
    with pytest.raises(RuntimeFailure, match="internal: an observation was refused"):
        d.feed(v.ResBegin())


# ---------------------------------------------------------------------------------------------
# The recorder, and the supervisor lost while an intent is under way


def test_the_recorder_sees_the_initial_state_then_every_step_with_its_intents():
    rec = CheckingRecorder()
    ex = FakeExecutor()
    d = Driver(system, initial(True, False, False), ex, rec)
    assert [(e, intents) for e, _, intents in rec.steps] == [(None, ())]
    d.feed(v.Create())
    d.settle()
    assert [e for e, _, _ in rec.steps[1:]] == [e for e, _ in d.history]
    assert [intents for _, _, intents in rec.steps[1:]] == [intents for _, intents in d.history]
    assert rec.steps[-1][1] is d.state


class Withholding(FakeExecutor):
    """A fake executor whose process dies while carrying out `name`: no outcome ever comes."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def perform(self, intents: tuple[v.Intent, ...]) -> list[v.Event]:
        for i, intent in enumerate(intents):
            if intent.name == self.name:
                events = super().perform(intents[:i])
                self.performed.append(intent)
                return events
        return super().perform(intents)


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize("name", ["CreateCgroup", "SetCgroupLimits", "AttachCgroup"])
def test_rm_force_after_the_supervisor_died_during_a_cgroup_step(required, name):
    """The supervisor died while a cgroup step was under way: the state it left says so. What
    `rm --force` does (Lost, then settle) abandons that step, removes whatever of the cgroup may
    exist, and completes the cleanup."""
    d = Driver(system, initial(False, False, False, required), Withholding(name), CheckingRecorder())
    d.feed(v.Create())
    d.settle()
    assert d.state.lc.status == "creating" and d.state.res.phase in ("creating", "limiting", "attaching")
    assert system.advance(d.state) is None  # waiting for an outcome that never comes
    ex = FakeExecutor()
    d.executor = ex
    d.require(v.Lost())
    d.settle()
    s = d.state
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("failed", True, "released")
    assert [i.name for i in ex.performed if i.name != "Warn"] == ["Cleanup", "RemoveCgroup"]
    # An abandoned step warns of nothing: no workload runs on without limits.
    assert [i.name for i in ex.performed].count("Warn") == 0
    assert [type(e).__name__ for e, _ in d.history[-5:]] == [
        "Lost", "ResRelease", "ResDone", "NetRelease", "CleanupDone"]
    assert isinstance(d.feed(v.Remove()), Step) and d.state.lc.removed


def test_rm_force_after_the_supervisor_died_during_the_removal():
    d = Driver(system, initial(True, False, False), Withholding("RemoveCgroup"), CheckingRecorder())
    full_run(d)
    assert (d.state.lc.status, d.state.res.phase) == ("stopped", "releasing")
    d.require(v.Lost())
    assert (d.state.lc.cleaned, d.state.res.phase, d.state.res.tries) == (False, "leaked", 1)
    d.executor = FakeExecutor()
    d.settle()  # the abandoned removal counts as one tried: the next comes after a pause
    assert [i.pause for i in d.executor.performed] == [resources.RELEASE_PAUSES[1]]
    assert (d.state.lc.cleaned, d.state.res.phase) == (True, "released")
