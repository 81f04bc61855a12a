"""The lifecycle machine (formal/Lifecycle.tla), one behaviour at a time: the happy path, every
failure asking for cleanup, the supervisor lost before or during cleanup, and exact refusals."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import lifecycle
from nucleus.machines.base import Refused
from tests.unit.machine_support import ok, refused, run

LC_EVENTS = [
    v.Create(),
    v.Prepared("enforced"),
    v.SetupFailed(),
    v.Start(),
    v.Abort(),
    v.Exit(0),
    v.Kill("TERM"),
    v.Lost(),
    v.Attach(),
    v.CleanupDone(),
    v.Remove(),
]
WORKLOAD = v.ExecWorkload(("/bin/sh", "-c", "id"), (("PATH", "/usr/bin"), ("HOME", "/home/agent")),
                          "/context", (4096, 64, 65536))


def lc_at(status: str, cleaned: bool = False, workload: v.ExecWorkload | None = None) -> lifecycle.LifecycleState:
    """A lifecycle state reached the ordinary way; a stopped or failed one after its cleanup
    with `cleaned`."""
    paths = {
        "none": [],
        "creating": [v.Create()],
        "created": [v.Create(), v.Prepared("enforced")],
        "running": [v.Create(), v.Prepared("enforced"), v.Start()],
        "stopped": [v.Create(), v.Prepared("enforced"), v.Start(), v.Exit(0)],
        "failed": [v.Create(), v.SetupFailed()],
        "removed": [v.Create(), v.SetupFailed(), v.CleanupDone(), v.Remove()],
    }
    events = paths[status] + ([v.CleanupDone()] if cleaned and status in ("stopped", "failed") else [])
    state, _ = run(lifecycle, lifecycle.initial(workload), *events)
    assert state.status == status
    return state


def test_lifecycle_initial_holds_nothing():
    s = lifecycle.initial()
    assert (s.status, s.security, s.cleaned, s.removed, s.exit_code) == ("none", "none", True, False, None)
    assert s.workload == v.ExecWorkload()
    assert lifecycle.to_tla(s) == {
        "lc_status": "none", "lc_security": "none", "lc_cleaned": True, "lc_removed": False,
    }
    assert lifecycle.ACTIVE == ("creating", "created", "running")
    assert lifecycle.is_initial(lifecycle.initial(WORKLOAD))


def test_lifecycle_happy_path():
    s = lifecycle.initial()
    r = ok(lifecycle.step(s, v.Create()))
    assert (r.state.status, r.state.cleaned, r.intents) == ("creating", False, ())
    r = ok(lifecycle.step(r.state, v.Prepared("enforced")))
    assert (r.state.status, r.state.security, r.intents) == ("created", "enforced", ())
    r = ok(lifecycle.step(r.state, v.Start()))
    assert (r.state.status, r.intents) == ("running", (v.ExecWorkload(),))
    r = ok(lifecycle.step(r.state, v.Exit(0)))
    assert (r.state.status, r.state.exit_code, r.intents) == ("stopped", 0, (v.Cleanup(),))
    assert not r.state.cleaned
    r = ok(lifecycle.step(r.state, v.CleanupDone()))
    assert (r.state.status, r.state.cleaned, r.intents) == ("stopped", True, ())
    r = ok(lifecycle.step(r.state, v.Remove()))
    assert (r.state.status, r.state.removed, r.intents) == ("removed", True, ())
    assert all(f(r.state) for f in lifecycle.INVARIANTS)


def test_lifecycle_start_execs_the_planned_workload():
    """The workload (argv, exact environment, working directory, rlimits) is the lifecycle's
    parameter: Start issues it as it was planned, and nothing else changes it."""
    s = lc_at("created", workload=WORKLOAD)
    r = ok(lifecycle.step(s, v.Start()))
    assert r.intents == (WORKLOAD,)
    assert r.intents[0].argv == ("/bin/sh", "-c", "id") and r.intents[0].cwd == "/context"
    assert r.state.workload == WORKLOAD
    assert v.done(WORKLOAD) is None  # its outcome arrives as Exit


def test_lifecycle_prepared_records_a_degraded_level():
    s = ok(lifecycle.step(lc_at("creating"), v.Prepared("degraded"))).state
    assert (s.status, s.security) == ("created", "degraded")


def test_lifecycle_prepared_refuses_an_unknown_level():
    why = refused(lifecycle.step(lc_at("creating"), v.Prepared("full")))
    assert why == "cannot Prepared the container: unknown security level 'full'"


def test_lifecycle_exact_refusals():
    assert refused(lifecycle.step(lc_at("none"), v.Start())) == (
        "cannot Start the container: it is none (Start is allowed only from created)"
    )
    assert refused(lifecycle.step(lc_at("running"), v.Start())) == (
        "cannot Start the container: it is running (Start is allowed only from created)"
    )
    assert refused(lifecycle.step(lc_at("created"), v.Kill("TERM"))) == (
        "cannot Kill the container: it is created (Kill is allowed only from running)"
    )
    assert refused(lifecycle.step(lc_at("stopped"), v.Remove())) == (
        "cannot Remove the container: it is stopped (Remove is allowed only from stopped or failed after cleanup)"
    )
    assert refused(lifecycle.step(lc_at("running"), v.Create())) == (
        "cannot Create the container: it is running (Create is allowed only before it exists)"
    )
    assert refused(lifecycle.step(lc_at("none"), v.IsoBegin())) == "the lifecycle has no action IsoBegin"


@pytest.mark.parametrize("status", lifecycle.STATUSES)
@pytest.mark.parametrize("cleaned", [False, True])
def test_lifecycle_every_refusal_names_action_and_status(status, cleaned):
    state = lc_at(status, cleaned)
    for e in LC_EVENTS:
        r = lifecycle.step(state, e)
        if isinstance(r, Refused):
            assert r.why.startswith(f"cannot {e.name} the container: it is {status} ("), r.why
            assert r.why.endswith(")"), r.why


def test_lifecycle_removed_never_runs_again():
    s = lc_at("removed")
    for e in [*LC_EVENTS, v.Prepared("degraded"), v.Kill("KILL"), v.Exit(1)]:
        r = lifecycle.step(s, e)
        assert isinstance(r, Refused), f"{e!r} accepted after Remove"
        assert "it is removed" in r.why


@pytest.mark.parametrize("how", ["stopped", "failed"])
def test_lifecycle_remove_refused_before_cleanup_done(how):
    s = lc_at(how)
    assert not s.cleaned
    why = refused(lifecycle.step(s, v.Remove()))
    assert why == (
        f"cannot Remove the container: it is {how} (Remove is allowed only from stopped or failed after cleanup)"
    )
    s = ok(lifecycle.step(s, v.CleanupDone())).state
    assert ok(lifecycle.step(s, v.Remove())).state.status == "removed"


def test_lifecycle_cleanup_done_only_once():
    s = ok(lifecycle.step(lc_at("failed"), v.CleanupDone())).state
    assert refused(lifecycle.step(s, v.CleanupDone())) == (
        "cannot CleanupDone the container: it is failed (CleanupDone is allowed only from stopped or failed, once)"
    )


@pytest.mark.parametrize("status", [s for s in lifecycle.STATUSES if s != "running"])
def test_lifecycle_kill_only_when_running(status):
    why = refused(lifecycle.step(lc_at(status), v.Kill("KILL")))
    assert f"it is {status}" in why and "Kill is allowed only from running" in why


def test_lifecycle_kill_forwards_the_signal_and_changes_nothing():
    s = lc_at("running")
    for sig in ("TERM", "KILL", "INT", "HUP"):
        r = ok(lifecycle.step(s, v.Kill(sig)))
        assert r.state == s
        assert r.intents == (v.SendSignal(sig),)
    assert refused(lifecycle.step(s, v.Kill("SIGFOO"))) == "cannot Kill the container: unknown signal 'SIGFOO'"


@pytest.mark.parametrize("code", [0, 1, 137, 255])
def test_lifecycle_exit_carries_exit_code(code):
    r = ok(lifecycle.step(lc_at("running"), v.Exit(code)))
    assert r.state.exit_code == code
    assert r.intents == (v.Cleanup(),)
    assert lifecycle.to_tla(r.state)["lc_status"] == "stopped"  # the code is not a spec variable


@pytest.mark.parametrize("status", [s for s in lifecycle.STATUSES if s != "running"])
def test_lifecycle_exit_only_when_running(status):
    assert "Exit is allowed only from running" in refused(lifecycle.step(lc_at(status), v.Exit(0)))


def test_lifecycle_every_failure_asks_for_cleanup():
    assert ok(lifecycle.step(lc_at("creating"), v.SetupFailed("x"))).intents == (v.Cleanup(),)
    assert ok(lifecycle.step(lc_at("created"), v.Abort("x"))).intents == (v.Cleanup(),)
    assert ok(lifecycle.step(lc_at("running"), v.Exit(3))).intents == (v.Cleanup(),)
    for status in ("creating", "created", "running", "stopped", "failed"):
        assert ok(lifecycle.step(lc_at(status), v.Lost())).intents == (v.Cleanup(),)


@pytest.mark.parametrize("status", ["creating", "created", "running"])
def test_lifecycle_lost_supervisor_fails_and_keeps_resources_until_cleanup(status):
    before = lc_at(status)
    s = ok(lifecycle.step(before, v.Lost())).state
    assert (s.status, s.cleaned, s.security, s.exit_code) == ("failed", False, before.security, None)
    assert "Remove is allowed only from stopped or failed after cleanup" in refused(lifecycle.step(s, v.Remove()))
    s = ok(lifecycle.step(s, v.CleanupDone())).state
    assert ok(lifecycle.step(s, v.Remove())).state.status == "removed"


@pytest.mark.parametrize("status", ["stopped", "failed"])
def test_lifecycle_lost_during_cleanup_starts_the_cleanup_again(status):
    """The supervisor died after the container stopped or failed but before its cleanup was
    done (`rm --force` sees it): the status stays, the exit code stays, Cleanup is asked again."""
    before = lc_at(status)
    r = ok(lifecycle.step(before, v.Lost()))
    assert r.state == before and r.intents == (v.Cleanup(),)
    # It may happen more than once (rm --force interrupted in turn); cleanup still completes.
    r = ok(lifecycle.step(r.state, v.Lost()))
    assert r.state == before and r.intents == (v.Cleanup(),)
    s = ok(lifecycle.step(r.state, v.CleanupDone())).state
    assert (s.status, s.cleaned) == (status, True)
    assert ok(lifecycle.step(s, v.Remove())).state.status == "removed"


@pytest.mark.parametrize("status,cleaned", [
    ("none", True), ("stopped", True), ("failed", True), ("removed", True),
])
def test_lifecycle_lost_only_while_something_is_left_to_clean_up(status, cleaned):
    s = lc_at(status, cleaned)
    assert s.cleaned == cleaned
    assert refused(lifecycle.step(s, v.Lost())) == (
        f"cannot Lost the container: it is {status} "
        "(Lost is allowed only from creating, created or running, or before cleanup)"
    )


def test_lifecycle_attach_changes_nothing_and_only_while_running():
    s = lc_at("running")
    r = ok(lifecycle.step(s, v.Attach()))
    assert r.state == s and r.intents == ()
    for status in ("none", "creating", "created", "stopped", "failed", "removed"):
        assert refused(lifecycle.step(lc_at(status), v.Attach())) == (
            f"cannot Attach the container: it is {status} (Attach is allowed only from running)"
        )


def test_lifecycle_abort_from_created_fails_and_keeps_resources_until_cleanup():
    s = ok(lifecycle.step(lc_at("created"), v.Abort())).state
    assert (s.status, s.cleaned) == ("failed", False)
    assert "Abort is allowed only from created" in refused(lifecycle.step(lc_at("running"), v.Abort()))


def test_lifecycle_from_tla_round_trip():
    for status in lifecycle.STATUSES:
        for cleaned in (False, True):
            s = lc_at(status, cleaned)
            assert lifecycle.to_tla(lifecycle.from_tla(lifecycle.to_tla(s))) == lifecycle.to_tla(s)


def test_lifecycle_from_tla_takes_the_workload_from_the_base():
    """Replay rebuilds a state from the spec's variables; the workload Start execs is a
    parameter, taken from the planned state (without one: the default)."""
    s = lc_at("created", workload=WORKLOAD)
    rebuilt = lifecycle.from_tla(lifecycle.to_tla(s), lifecycle.initial(WORKLOAD))
    assert rebuilt == s
    assert ok(lifecycle.step(rebuilt, v.Start())).intents == (WORKLOAD,)
    assert lifecycle.from_tla(lifecycle.to_tla(s)).workload == v.ExecWorkload()
