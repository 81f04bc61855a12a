"""The driver with the fake executor: a full System setup with a failure scripted at every intent.

Whatever fails, `feed(Create()); settle()` ends with the container created (when the failure is
one the configuration tolerates) or failed with a Cleanup intent issued, and CleanupDone then
releases everything. Every invariant holds after every recorded step.
"""

from __future__ import annotations

from typing import Any

import pytest

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.errors import RuntimeFailure
from nucleus.machines import filesystem, isolation, lifecycle, security, system
from nucleus.machines.base import Refused, Step

PLAN = (
    v.SetPropagation("/", "private", True),
    v.MountFs("tmpfs", "/new", ("nosuid", "nodev"), "size=64m"),
    v.MakeDirs("/new", ("dev", "proc", "tmp")),
    v.BindMount("/usr", "/new/usr", ("rdonly",), recursive=True),
    v.MakeDirs("/new", ("etc",)),
)
CONFIGS = [
    pytest.param(
        rootless,
        allow_degraded,
        allow_chroot,
        id=f"{'rootless' if rootless else 'privileged'}"
        f"-degraded={allow_degraded}-chroot={allow_chroot}",
    )
    for rootless in (False, True)
    for allow_degraded in (False, True)
    for allow_chroot in (False, True)
]


class CheckingRecorder:
    """Records every step and checks every System invariant in every recorded state."""

    def __init__(self) -> None:
        self.steps: list[tuple[v.Event | None, Any]] = []

    def record(self, event: v.Event | None, state: Any) -> None:
        broken = [name for name, check in system.all_invariants() if not check(state)]
        assert not broken, f"after {event!r}: {broken} in {system.to_tla(state)}"
        self.steps.append((event, state))


def initial(rootless: bool, allow_degraded: bool, allow_chroot: bool) -> system.SystemState:
    return system.initial(
        isolation.initial(rootless=rootless),
        filesystem.initial(PLAN, "/new", allow_chroot=allow_chroot),
        security.initial(allow_degraded=allow_degraded),
    )


def failable_intents(rootless: bool, allow_degraded: bool, allow_chroot: bool) -> list[str]:
    """'Name#n' for every intent a clean setup carries out that can report a failure."""
    ex = FakeExecutor()
    d = Driver(system, initial(rootless, allow_degraded, allow_chroot), ex)
    d.feed(v.Create())
    d.settle()
    assert d.state.lc.status == "created"
    counts: dict[str, int] = {}
    keys = []
    for intent in ex.performed:
        n = counts[intent.name] = counts.get(intent.name, 0) + 1
        if intent.name in v.OUTCOME:
            keys.append(f"{intent.name}#{n}")
    return keys


def tolerated(name: str, allow_degraded: bool, allow_chroot: bool) -> bool:
    return (name in ("LoadSeccomp", "ApplyLandlock") and allow_degraded) or (
        name == "PivotRoot" and allow_chroot
    )


@pytest.mark.parametrize("rootless,allow_degraded,allow_chroot", CONFIGS)
def test_clean_setup_carries_out_every_step_once(rootless, allow_degraded, allow_chroot):
    keys = failable_intents(rootless, allow_degraded, allow_chroot)
    plan = isolation.ROOTLESS_PLAN if rootless else isolation.PRIVILEGED_PLAN
    # isolation steps + mount plan + pivot + detach + three security controls
    assert len(keys) == len(plan) + len(PLAN) + 2 + 3
    assert "MakeDirs#2" in keys and "MakeDirs#3" not in keys


@pytest.mark.parametrize("rootless,allow_degraded,allow_chroot", CONFIGS)
def test_a_failure_at_every_intent_ends_created_or_failed_and_cleaned(
    rootless, allow_degraded, allow_chroot
):
    keys = failable_intents(rootless, allow_degraded, allow_chroot)
    assert keys
    for key in keys:
        name = key.split("#")[0]
        ex = FakeExecutor(fail={key: (1, f"{name} failed: Operation not permitted")})
        rec = CheckingRecorder()
        d = Driver(system, initial(rootless, allow_degraded, allow_chroot), ex, rec)
        assert isinstance(d.feed(v.Create()), Step)
        d.settle()
        lc = d.state.lc
        performed = [i.name for i in ex.performed]
        assert name in performed, key
        if tolerated(name, allow_degraded, allow_chroot):
            assert lc.status == "created", f"{key}: {lc.status}"
            assert "Cleanup" not in performed
            warns = [i for i in ex.performed if isinstance(i, v.Warn)]
            assert len(warns) == 1 and "Operation not permitted" in warns[0].message, key
            if name == "PivotRoot":
                assert d.state.fs.chrooted and lc.security == "enforced"
                assert "Chroot" in performed and "DetachOldRoot" not in performed
            else:
                assert lc.security == "degraded" and d.state.sec.degraded == {
                    "seccomp" if name == "LoadSeccomp" else "landlock"
                }
            continue
        assert lc.status == "failed", f"{key}: {lc.status}"
        assert not lc.cleaned
        # The failure was reported, nothing after it ran, and the last thing asked was Cleanup.
        assert performed[-1] == "Cleanup", f"{key}: {performed}"
        assert performed.count("Cleanup") == 1
        assert performed[-2] == name, f"{key}: {performed}"
        assert "ExecWorkload" not in performed
        assert rec.steps[-1][0] == v.SetupFailed()
        assert system.advance(d.state) is None
        # The executor's Cleanup completes: CleanupDone releases everything, then Remove.
        assert isinstance(d.feed(v.CleanupDone()), Step)
        assert d.state.lc.status == "failed" and d.state.lc.cleaned
        assert isinstance(d.feed(v.Remove()), Step)
        assert d.state.lc.status == "removed"
        assert isinstance(d.feed(v.Start()), Refused)


@pytest.mark.parametrize("rootless,allow_degraded,allow_chroot", CONFIGS)
def test_full_run_after_setup(rootless, allow_degraded, allow_chroot):
    ex = FakeExecutor()
    rec = CheckingRecorder()
    d = Driver(system, initial(rootless, allow_degraded, allow_chroot), ex, rec)
    d.feed(v.Create())
    d.settle()
    assert isinstance(d.feed(v.Start()), Step)
    assert ex.performed[-1] == v.ExecWorkload()
    assert isinstance(d.feed(v.Kill("TERM")), Step)
    assert ex.performed[-1] == v.SendSignal("TERM")
    assert isinstance(d.feed(v.Exit(143)), Step)
    assert ex.performed[-1] == v.Cleanup()
    assert (d.state.lc.status, d.state.lc.exit_code) == ("stopped", 143)
    assert isinstance(d.feed(v.Remove()), Refused)
    d.feed(v.CleanupDone())
    d.feed(v.Remove())
    assert d.state.lc.removed
    assert [type(e).__name__ for e, _ in d.history[-6:]] == [
        "Prepared",
        "Start",
        "Kill",
        "Exit",
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


def test_chroot_fallback_that_also_fails():
    ex = FakeExecutor(
        fail={"PivotRoot": (22, "Invalid argument"), "Chroot": (1, "Operation not permitted")}
    )
    d = Driver(system, initial(False, False, True), ex, CheckingRecorder())
    d.feed(v.Create())
    d.settle()
    assert (d.state.lc.status, d.state.fs.phase) == ("failed", "failed")
    assert ex.performed[-1] == v.Cleanup()


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


# ---------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    "event",
    [
        v.Start(),
        v.IsoBegin(),
        v.FsBegin(),
        v.SecBegin(),
        v.Prepared("enforced"),
        v.SetupFailed(),
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
    assert isinstance(d.feed(v.Create()), Refused)
    assert isinstance(d.feed(v.IsoBegin()), Refused)
    assert d.state is before and d.history == history


def test_lifecycle_alone_through_the_driver():
    ex = FakeExecutor()
    d = Driver(lifecycle, lifecycle.initial(), ex)
    assert isinstance(d.feed(v.Start()), Refused) and d.state == lifecycle.initial()
    d.feed(v.Create())
    d.settle()  # the lifecycle has no advance: nothing happens on its own
    assert d.state.status == "creating"
    d.feed(v.SetupFailed())
    assert ex.performed == [v.Cleanup()]


def test_an_observation_the_machine_refuses_is_an_internal_error():
    class Confused:
        def perform(self, intents):
            return [v.IsoDone("become_root")]

    d = Driver(system, initial(False, False, False), Confused())
    d.feed(v.Create())
    with pytest.raises(RuntimeFailure, match="internal: an observation was refused"):
        d.feed(v.IsoBegin())
