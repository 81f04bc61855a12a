"""The System machine (formal/System.tla), failures and cleanup: a failed step fails the setup
and cleans up; the cgroup (whatever may exist of it) is removed before cleanup is done; a
removal that fails is tried again, a few times, and then keeps the container; the supervisor lost at any point, including while a
cgroup step is under way (that step is abandoned in the same step) or during cleanup."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import resources, system
from tests.unit.machine_support import AUDIT, REMOVE, ok, refused, run
from tests.unit.system_support import at_unshare_gate, follow, sys_initial

CGROUP_STEPS = {"CreateCgroup": "create", "SetCgroupLimits": "limits", "AttachCgroup": "attach"}


def test_system_cleanup_done_waits_for_the_released_cgroup():
    s = ok(system.step(at_unshare_gate(), v.Lost())).state
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("failed", False, "waiting")
    assert refused(system.step(s, v.CleanupDone())) == (
        "cannot CleanupDone (lc): cleanup is done only once the cgroup is released (the container is "
        "failed; isolation waiting, filesystem idle, security idle, cgroup waiting)"
    )
    assert system.advance(s) == v.ResRelease()
    r = ok(system.step(s, v.ResRelease()))
    assert (r.state.res.phase, r.intents) == ("releasing", (REMOVE,))
    assert system.advance(r.state) is None  # the removal is under way
    assert "cleanup is done only once the cgroup is released" in refused(system.step(r.state, v.CleanupDone()))
    s = ok(system.step(r.state, v.ResDone("release"))).state
    assert system.advance(s) == v.NetRelease()  # no bridge: nothing to tear down
    s = ok(system.step(s, v.NetRelease())).state
    assert system.advance(s) == v.CleanupDone()
    s = ok(system.step(s, v.CleanupDone())).state
    assert (s.lc.cleaned, s.res.phase, system.advance(s)) == (True, "released", None)


@pytest.mark.parametrize("failing", list(CGROUP_STEPS))
@pytest.mark.parametrize("required", [False, True])
def test_system_cgroup_failure(failing, required):
    step = v.INTENTS[failing].reports[1]
    assert step == CGROUP_STEPS[failing]
    intents: list[v.Intent] = []
    start = ok(system.step(sys_initial(required=required), v.Create())).state
    s = follow(start, {failing: v.ResFailed(step, 1, "Operation not permitted")}, intents=intents)
    names = [i.name for i in intents]
    if not required:
        assert (s.lc.status, s.res.phase, s.res.held) == ("created", "degraded", True)
        assert (s.iso.phase, s.sec.phase) == ("ready", "locked")
        assert [i for i in intents if isinstance(i, v.Warn)] == [
            v.Warn(f"cgroup {step} failed (Operation not permitted); running without resource limits")
        ]
        assert names.index("Unshare") > names.index(failing)
        return
    # Required: setup fails before any namespace is created, and cleanup removes whatever the
    # failed step may have left (a failed creation too: it may have made a parent).
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("failed", True, "released")
    assert "Unshare" not in names and "Warn" not in names
    assert names.count("Cleanup") == 1
    assert names[names.index(failing) + 1:] == ["Cleanup", "RemoveCgroup"]
    assert intents[-1] == REMOVE
    assert system.advance(s) is None
    assert ok(system.step(s, v.Remove())).state.lc.status == "removed"


def test_system_advance_reports_a_failure_as_setup_failed_then_cleans_up():
    s = ok(system.step(sys_initial(), v.Create())).state
    s = follow(s, {"MountFs": v.FsFailed("mount", 19, "No such device")}, stop_before=v.ResRelease)
    assert (s.lc.status, s.lc.cleaned, s.fs.phase, s.iso.phase) == ("failed", False, "failed", "waiting")
    assert system.advance(s) == v.ResRelease()
    s = follow(s)
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("failed", True, "released")
    assert system.advance(s) is None


def test_system_cleanup_after_exit_releases_the_cgroup_first():
    s = follow(ok(system.step(sys_initial(), v.Create())).state)
    s, intents = run(system, s, v.Start(), v.Attach(), v.Kill("TERM"), v.Exit(143))
    assert [i.name for i in intents] == ["ExecWorkload", "SendSignal", "Cleanup"]
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("stopped", False, "ready")
    assert refused(system.step(s, v.Remove())) == (
        "cannot Remove the container: it is stopped (Remove is allowed only from stopped or failed after cleanup)"
    )
    done: list[v.Intent] = []
    s = follow(s, intents=done)
    assert done == [REMOVE]
    assert (s.lc.cleaned, s.res.phase, s.res.oom_killed) == (True, "released", False)


def test_system_notes_an_oom_kill_seen_at_release():
    s = follow(ok(system.step(sys_initial(), v.Create())).state)
    s, _ = run(system, s, v.Start(), v.Exit(137), v.ResRelease(), v.ResDone("release", v.OOM_KILLED))
    assert (s.res.phase, s.res.oom_killed, s.lc.exit_code) == ("released", True, 137)
    assert system.advance(s) == v.NetRelease()


def test_system_a_failed_removal_is_tried_again_then_given_up_until_rm_force():
    """A removal that fails is tried again on its own, after a growing pause, MAX_RELEASE_TRIES
    removals in all; then cleanup gives up and the container stays (GaveUp) until `rm --force`
    takes the cleanup over (Lost: the tries start afresh, Reclaim)."""
    s = follow(ok(system.step(sys_initial(required=True), v.Create())).state)
    s, _ = run(system, s, v.Start(), v.Exit(0))
    busy = v.ResFailed("release", 16, "Device or resource busy")
    pauses = []
    for _ in range(resources.MAX_RELEASE_TRIES):
        assert system.advance(s) == v.ResRelease()
        r = ok(system.step(s, v.ResRelease()))
        (remove,) = r.intents
        assert remove == REMOVE.replace(pause=remove.pause)
        pauses.append(remove.pause)
        s = ok(system.step(r.state, busy)).state
    assert pauses == list(resources.RELEASE_PAUSES) and pauses == sorted(pauses)
    assert (s.lc.status, s.lc.cleaned, s.res.phase, s.res.held, s.res.tries) == (
        "stopped", False, "leaked", True, resources.MAX_RELEASE_TRIES,
    )
    assert resources.gave_up(s.res) and system.advance(s) is None  # nothing more on its own
    assert f"all {resources.MAX_RELEASE_TRIES} removals of the cgroup failed" in refused(system.step(s, v.ResRelease()))
    assert "Remove is allowed only from stopped or failed after cleanup" in refused(system.step(s, v.Remove()))
    assert "cleanup is done only once the cgroup is released" in refused(system.step(s, v.CleanupDone()))
    r = ok(system.step(s, v.Lost()))  # rm --force
    assert (r.state.lc, r.state.res.phase, r.state.res.tries, r.intents) == (s.lc, "leaked", 0, (v.Cleanup(),))
    assert system.advance(r.state) == v.ResRelease()
    s = follow(r.state)
    assert (s.lc.cleaned, s.res.phase, s.res.tries) == (True, "released", 0)
    assert ok(system.step(s, v.Remove())).state.lc.status == "removed"


def test_system_rm_force_after_a_failed_removal_lets_the_retries_go_on():
    """`rm --force` of a container whose removal failed once: Lost (the supervisor is gone before
    cleanup) asks for Cleanup again and leaves the cgroup and its tries as they are; the next
    removal, after its pause, completes the cleanup."""
    s = follow(ok(system.step(sys_initial(), v.Create())).state)
    s, _ = run(system, s, v.Start(), v.Exit(0))
    s, _ = run(system, s, v.ResRelease(), v.ResFailed("release", 16, "busy"))
    assert (s.res.phase, s.res.tries) == ("leaked", 1)
    r = ok(system.step(s, v.Lost()))
    assert (r.state, r.intents) == (s, (v.Cleanup(),))
    assert system.advance(r.state) == v.ResRelease()
    r = ok(system.step(r.state, v.ResRelease()))
    assert r.intents == (REMOVE.replace(pause=resources.RELEASE_PAUSES[1]),)
    s = follow(ok(system.step(r.state, v.ResDone("release"))).state)
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("stopped", True, "released")
    assert refused(system.step(s, v.Lost())) == (
        "cannot Lost the container: it is stopped (Lost is allowed only from creating, created or "
        "running, or before cleanup)"
    )


@pytest.mark.parametrize("status", ["creating", "created", "running"])
def test_system_lost_supervisor_fails_and_is_cleaned_up(status):
    s = ok(system.step(sys_initial(), v.Create())).state
    if status != "creating":
        s = follow(s)
    if status == "running":
        s = ok(system.step(s, v.Start())).state
    r = ok(system.step(s, v.Lost()))
    assert r.state.lc.status == "failed" and r.intents == (v.Cleanup(),)
    assert r.state.res == s.res  # no cgroup step was under way: the cgroup is as it was
    done: list[v.Intent] = []
    s = follow(r.state, intents=done)
    assert done == ([] if status == "creating" else [REMOVE])
    assert (s.lc.cleaned, s.res.phase) == (True, "released")


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize("under_way", ["create", "limits", "attach"])
def test_system_lost_while_a_cgroup_step_is_under_way_abandons_it(required, under_way):
    """The supervisor carrying out a cgroup step is gone: the step will never report. The same
    step of System fails the container and abandons the cgroup step (held: whatever it made is
    removed at cleanup), and cleanup goes on at once instead of waiting for an outcome."""
    s = ok(system.step(sys_initial(required=required), v.Create())).state
    s, _ = run(system, s, *{
        "create": [v.ResBegin()],
        "limits": [v.ResBegin(), v.ResDone("create")],
        "attach": [v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.IsoBegin(),
                   v.IsoDone("spawn"), v.ResAttach()],
    }[under_way])
    r = ok(system.step(s, v.Lost()))
    assert (r.state.lc.status, r.state.res.phase, r.state.res.held) == (
        "failed", "failed" if required else "degraded", True,
    )
    assert r.intents == (v.Cleanup(),)  # and no warning of running without limits
    assert all(check(r.state) for _, check in system.all_invariants())
    # The late outcome of the abandoned step is refused; cleanup removes the group.
    assert "it is " in refused(system.step(r.state, v.ResDone(under_way)))
    assert system.advance(r.state) == v.ResRelease()
    done: list[v.Intent] = []
    s = follow(r.state, intents=done)
    assert done == [REMOVE]
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("failed", True, "released")
    assert ok(system.step(s, v.Remove())).state.lc.removed


@pytest.mark.parametrize("status", ["stopped", "failed"])
def test_system_lost_while_the_removal_is_under_way_leaks_it(status):
    """Lost during cleanup, while RemoveCgroup is under way: the removal is abandoned (a try
    spent), the cgroup counts as leaked, and the removal is tried again (rm --force)."""
    s = ok(system.step(sys_initial(), v.Create())).state
    if status == "stopped":
        s, _ = run(system, follow(s), v.Start(), v.Exit(0))
    else:
        s = follow(s, {"MountFs": v.FsFailed("mount", 19, "No such device")}, stop_before=v.ResRelease)
    s = ok(system.step(s, v.ResRelease())).state
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == (status, False, "releasing")
    r = ok(system.step(s, v.Lost()))
    assert (r.state.lc, r.state.res.phase, r.state.res.held) == (s.lc, "leaked", True)
    assert r.intents == (v.Cleanup(),)
    assert r.state.res.tries == 1 and system.advance(r.state) == v.ResRelease()
    r = ok(system.step(r.state, v.ResRelease()))
    assert r.intents == (REMOVE.replace(pause=resources.RELEASE_PAUSES[1]),)
    s = follow(ok(system.step(r.state, v.ResDone("release"))).state)
    assert (s.lc.cleaned, s.res.phase) == (True, "released")


def test_system_lost_after_exit_before_the_release_starts_it_again():
    s = follow(ok(system.step(sys_initial(), v.Create())).state)
    s, _ = run(system, s, v.Start(), v.Exit(0))
    r = ok(system.step(s, v.Lost()))
    assert (r.state, r.intents) == (s, (v.Cleanup(),))
    assert system.advance(r.state) == v.ResRelease()


@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize("allow_chroot", [False, True])
def test_system_a_failed_audit_fails_setup_and_cleans_up(rootless, allow_chroot):
    intents: list[v.Intent] = []
    fail = {"AuditMounts": v.FsFailed("audit", 1, "mount audit: /proc: lacks noexec")}
    if allow_chroot:
        fail["PivotRoot"] = v.FsFailed("pivot", 22, "Invalid argument")
    start = ok(system.step(sys_initial(rootless, allow_chroot=allow_chroot, audit=AUDIT, required=True),
                           v.Create())).state
    s = follow(start, fail, intents=intents)
    assert (s.lc.status, s.lc.cleaned, s.fs.phase, s.fs.audited, s.res.phase) == (
        "failed", True, "failed", False, "released",
    )
    assert s.fs.chrooted == allow_chroot
    names = [i.name for i in intents]
    assert names[names.index("AuditMounts"):] == ["AuditMounts", "Cleanup", "RemoveCgroup"]
    assert "DropCapabilities" not in names and "EnterUserNamespace" not in names
    assert ok(system.step(s, v.Remove())).state.lc.status == "removed"


@pytest.mark.parametrize("failing", ["LoadSeccomp", "ApplyLandlock"])
def test_system_strict_security_failure_fails_setup_even_with_allow_degraded(failing):
    intents: list[v.Intent] = []
    step = "seccomp" if failing == "LoadSeccomp" else "landlock"
    start = ok(system.step(sys_initial(allow_degraded=True, strict=True), v.Create())).state
    s = follow(start, {failing: v.SecFailed(step, 22, "Invalid argument")}, intents=intents)
    assert (s.lc.status, s.lc.cleaned, s.sec.phase, s.sec.degraded) == ("failed", True, "failed", frozenset())
    names = [i.name for i in intents]
    assert "Warn" not in names and "ExecWorkload" not in names
    assert names[names.index(failing):] == [failing, "Cleanup", "RemoveCgroup"]
    # The same failure without strict degrades the container instead.
    s = follow(ok(system.step(sys_initial(allow_degraded=True), v.Create())).state,
               {failing: v.SecFailed(step, 22, "Invalid argument")})
    assert (s.lc.status, s.lc.security) == ("created", "degraded")
