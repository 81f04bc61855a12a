"""The pure machines, one behaviour at a time: happy paths, failure paths and refusals.

A refusal is what a user reads when they ask for something the container cannot do now, so the
exact text of several is pinned here; all of them must name the action and the state.
"""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import filesystem, isolation, lifecycle, security, system
from nucleus.machines.base import Refused, Step


def ok(result: Step | Refused) -> Step:
    assert isinstance(result, Step), (
        f"refused: {result.why}" if isinstance(result, Refused) else result
    )
    return result


def without_state(why: str) -> str:
    """A composition refusal without its trailing description of the current phases."""
    return why.split(" (the container is ")[0]


def without_state(why: str) -> str:
    """A composition refusal without its trailing description of the current phases."""
    return why.split(" (the container is ")[0]


def refused(result: Step | Refused) -> str:
    assert isinstance(result, Refused), f"expected a refusal, got {result!r}"
    assert result.why.startswith("cannot ") or " has no action " in result.why, result.why
    return result.why


def run(machine, state, *events):
    """Apply events in order (each must be accepted); return the final state and all intents."""
    intents: list[v.Intent] = []
    for e in events:
        r = ok(machine.step(state, e))
        state = r.state
        intents.extend(r.intents)
    return state, intents


# ---------------------------------------------------------------------------------------------
# Lifecycle

LC_EVENTS = [
    v.Create(),
    v.Prepared("enforced"),
    v.SetupFailed(),
    v.Start(),
    v.Abort(),
    v.Exit(0),
    v.Kill("TERM"),
    v.CleanupDone(),
    v.Remove(),
]


def lc_at(status: str) -> lifecycle.LifecycleState:
    """A lifecycle state reached the ordinary way."""
    paths = {
        "none": [],
        "creating": [v.Create()],
        "created": [v.Create(), v.Prepared("enforced")],
        "running": [v.Create(), v.Prepared("enforced"), v.Start()],
        "stopped": [v.Create(), v.Prepared("enforced"), v.Start(), v.Exit(0)],
        "failed": [v.Create(), v.SetupFailed()],
        "removed": [v.Create(), v.SetupFailed(), v.CleanupDone(), v.Remove()],
    }
    state, _ = run(lifecycle, lifecycle.initial(), *paths[status])
    assert state.status == status
    return state


def test_lifecycle_initial_holds_nothing():
    s = lifecycle.initial()
    assert (s.status, s.security, s.cleaned, s.removed, s.exit_code) == (
        "none",
        "none",
        True,
        False,
        None,
    )
    assert lifecycle.to_tla(s) == {
        "lc_status": "none",
        "lc_security": "none",
        "lc_cleaned": True,
        "lc_removed": False,
    }


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
    assert (
        refused(lifecycle.step(lc_at("none"), v.IsoBegin()))
        == "the lifecycle has no action IsoBegin"
    )


@pytest.mark.parametrize("status", lifecycle.STATUSES)
def test_lifecycle_every_refusal_names_action_and_status(status):
    state = lc_at(status)
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
    assert (
        refused(lifecycle.step(s, v.Kill("SIGFOO")))
        == "cannot Kill the container: unknown signal 'SIGFOO'"
    )


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


def test_lifecycle_abort_from_created_fails_and_keeps_resources_until_cleanup():
    s = ok(lifecycle.step(lc_at("created"), v.Abort())).state
    assert (s.status, s.cleaned) == ("failed", False)
    assert "Abort is allowed only from created" in refused(
        lifecycle.step(lc_at("running"), v.Abort())
    )


def test_lifecycle_from_tla_round_trip():
    for status in lifecycle.STATUSES:
        s = lc_at(status)
        assert lifecycle.to_tla(lifecycle.from_tla(lifecycle.to_tla(s))) == lifecycle.to_tla(s)


# ---------------------------------------------------------------------------------------------
# Isolation


def iso_drive(state: isolation.IsolationState):
    """Run a plan to its end by reporting each asked-for step done; Resume when it waits."""
    intents: list[v.Intent] = []
    waits: list[int] = []
    r = ok(isolation.step(state, v.IsoBegin()))
    state = r.state
    intents.extend(r.intents)
    while state.phase != "ready":
        if state.phase == "waiting":
            waits.append(state.done)
            r = ok(isolation.step(state, v.IsoResume()))
        else:
            r = ok(isolation.step(state, v.IsoDone(state.plan[state.done])))
        state = r.state
        intents.extend(r.intents)
    return state, intents, waits


def test_isolation_rootless_plan_has_no_pause():
    s = isolation.initial(
        rootless=True, hostname="box", uid_map=((0, 1000, 1),), gid_map=((0, 1000, 1),)
    )
    end, intents, waits = iso_drive(s)
    assert waits == []
    assert end.done == len(isolation.ROOTLESS_PLAN)
    assert intents == [
        v.SpawnChild(),
        v.Unshare(("user", "pid", "mount", "net", "uts", "ipc", "cgroup")),
        v.WriteIdMaps(((0, 1000, 1),), ((0, 1000, 1),)),
        v.BecomeRoot(),
        v.ForkInit(),
        v.SetHostname("box"),
        v.LoopbackUp(),
    ]


def test_isolation_privileged_plan_pauses_before_enter_user_until_resume():
    s = ok(isolation.step(isolation.initial(rootless=False), v.IsoBegin())).state
    for name in ("spawn", "unshare", "fork_init", "hostname"):
        s = ok(isolation.step(s, v.IsoDone(name))).state
    r = ok(isolation.step(s, v.IsoDone("loopback")))
    assert (r.state.phase, r.state.done, r.intents) == ("waiting", 5, ())
    waiting = r.state
    # Nothing finishes while it waits, and enter_user is not asked for.
    assert refused(isolation.step(waiting, v.IsoDone("enter_user"))) == (
        "cannot Done isolation step 'enter_user': it is waiting (steps finish only while running)"
    )
    assert refused(isolation.step(waiting, v.IsoBegin())) == (
        "cannot Begin isolation: it is waiting (Begin is allowed only from idle)"
    )
    r = ok(isolation.step(waiting, v.IsoResume()))
    assert (r.state.phase, r.intents) == ("running", (v.EnterUserNamespace(),))
    r = ok(isolation.step(r.state, v.IsoDone("enter_user")))
    assert r.intents == (v.WriteIdMaps(((0, 100000, 65536),), ((0, 100000, 65536),)),)
    r = ok(isolation.step(r.state, v.IsoDone("map_ids")))
    assert r.intents == (v.BecomeRoot(),)
    r = ok(isolation.step(r.state, v.IsoDone("become_root")))
    assert (r.state.phase, r.intents) == ("ready", ())


def test_isolation_privileged_intents_in_order():
    end, intents, waits = iso_drive(isolation.initial(rootless=False))
    assert waits == [isolation.PRIVILEGED_PLAN.index("enter_user")]
    assert [i.name for i in intents] == [
        "SpawnChild",
        "Unshare",
        "ForkInit",
        "SetHostname",
        "LoopbackUp",
        "EnterUserNamespace",
        "WriteIdMaps",
        "BecomeRoot",
    ]
    unshare = intents[1]
    assert "user" not in unshare.namespaces  # the user namespace comes last, on its own
    assert end.phase == "ready" and all(f(end) for f in isolation.INVARIANTS)


def test_isolation_initial_never_plans_user_among_the_first_namespaces():
    s = isolation.initial(rootless=False, namespaces=("user", "pid", "mount"))
    assert s.namespaces == ("pid", "mount")
    _, intents, _ = iso_drive(isolation.initial(rootless=True, namespaces=("user", "pid")))
    assert intents[1] == v.Unshare(("user", "pid"))


def test_isolation_resume_only_while_waiting():
    s = ok(isolation.step(isolation.initial(rootless=True), v.IsoBegin())).state
    assert refused(isolation.step(s, v.IsoResume())) == (
        "cannot Resume isolation: it is running (Resume is allowed only from waiting)"
    )
    assert "it is idle" in refused(isolation.step(isolation.initial(), v.IsoResume()))


def test_isolation_steps_must_come_in_plan_order():
    s = ok(isolation.step(isolation.initial(rootless=False), v.IsoBegin())).state
    assert refused(isolation.step(s, v.IsoDone("hostname"))) == (
        "cannot Done isolation step 'hostname': the step under way is 'spawn'"
    )
    assert refused(isolation.step(s, v.IsoFailed("unshare", 1, "EPERM"))) == (
        "cannot Fail isolation step 'unshare': the step under way is 'spawn'"
    )
    assert refused(isolation.step(isolation.initial(), v.IsoDone("spawn"))) == (
        "cannot Done isolation step 'spawn': it is idle (steps finish only while running)"
    )


@pytest.mark.parametrize("rootless", [False, True])
def test_isolation_failure_at_any_step_is_final(rootless):
    plan = isolation.ROOTLESS_PLAN if rootless else isolation.PRIVILEGED_PLAN
    for i, name in enumerate(plan):
        s = ok(isolation.step(isolation.initial(rootless=rootless), v.IsoBegin())).state
        for done in plan[:i]:
            if s.phase == "waiting":
                s = ok(isolation.step(s, v.IsoResume())).state
            s = ok(isolation.step(s, v.IsoDone(done))).state
        if s.phase == "waiting":
            s = ok(isolation.step(s, v.IsoResume())).state
        r = ok(isolation.step(s, v.IsoFailed(name, 1, "Operation not permitted")))
        assert (r.state.phase, r.state.done, r.intents) == ("failed", i, ())
        for e in isolation.candidate_events(r.state):
            assert "it is failed" in refused(isolation.step(r.state, e))


def test_isolation_ready_refuses_everything():
    end, _, _ = iso_drive(isolation.initial(rootless=True))
    for e in isolation.candidate_events(end):
        assert "it is ready" in refused(isolation.step(end, e))
    assert refused(isolation.step(end, v.Create())) == "isolation has no action Create"


# ---------------------------------------------------------------------------------------------
# Filesystem

PLAN = (v.SetPropagation(), v.MountFs("tmpfs", "/new"), v.MakeDirs("/new", ("dev", "proc")))


def test_filesystem_happy_path_issues_the_plan_then_pivots():
    s = filesystem.initial(PLAN, "/new")
    r = ok(filesystem.step(s, v.FsBegin()))
    assert (r.state.phase, r.intents) == ("mounting", PLAN)
    r = ok(filesystem.step(r.state, v.FsDone("mount")))
    assert (r.state.phase, r.state.mounted, r.intents) == ("mounting", 1, ())
    r = ok(filesystem.step(r.state, v.FsDone("mount")))
    assert (r.state.mounted, r.intents) == (2, ())
    r = ok(filesystem.step(r.state, v.FsDone("mount")))
    assert (r.state.phase, r.state.mounted, r.intents) == ("pivoting", 3, (v.PivotRoot("/new"),))
    r = ok(filesystem.step(r.state, v.FsDone("pivot")))
    assert (r.state.phase, r.intents) == ("detaching", (v.DetachOldRoot(),))
    r = ok(filesystem.step(r.state, v.FsDone("detach")))
    assert (r.state.phase, r.state.chrooted, r.intents) == ("sealed", False, ())
    for e in filesystem.candidate_events(r.state):
        assert "it is sealed" in refused(filesystem.step(r.state, e))


def test_filesystem_empty_plan_pivots_at_once():
    r = ok(filesystem.step(filesystem.initial((), "/r"), v.FsBegin()))
    assert (r.state.phase, r.intents) == ("pivoting", (v.PivotRoot("/r"),))


def test_filesystem_pivot_failure_is_fatal_without_chroot_fallback():
    s, _ = run(filesystem, filesystem.initial((), "/new", allow_chroot=False), v.FsBegin())
    r = ok(
        filesystem.step(
            s, v.FsFailed("pivot", 22, "pivot_root('/new', '/new/.old'): Invalid argument")
        )
    )
    assert (r.state.phase, r.state.chrooted, r.intents) == ("failed", False, ())


def test_filesystem_pivot_failure_becomes_chroot_when_allowed():
    s, _ = run(
        filesystem,
        filesystem.initial(PLAN, "/new", allow_chroot=True),
        v.FsBegin(),
        *[v.FsDone("mount")] * 3,
    )
    r = ok(filesystem.step(s, v.FsFailed("pivot", 22, "Invalid argument")))
    assert r.state.phase == "chrooting"
    warn, chroot = r.intents
    assert chroot == v.Chroot("/new")
    assert isinstance(warn, v.Warn)
    assert warn.message == "pivot_root failed (Invalid argument); falling back to chroot"
    r = ok(filesystem.step(r.state, v.FsDone("chroot")))
    assert (r.state.phase, r.state.chrooted) == ("sealed", True)
    assert all(f(r.state) for f in filesystem.INVARIANTS)


def test_filesystem_chroot_failure_is_fatal():
    s, _ = run(
        filesystem,
        filesystem.initial((), "/new", allow_chroot=True),
        v.FsBegin(),
        v.FsFailed("pivot", 1, "x"),
    )
    r = ok(filesystem.step(s, v.FsFailed("chroot", 1, "Operation not permitted")))
    assert (r.state.phase, r.state.chrooted) == ("failed", False)


@pytest.mark.parametrize("allow_chroot", [False, True])
def test_filesystem_mount_and_detach_failures_are_fatal_even_with_fallback(allow_chroot):
    s, _ = run(
        filesystem,
        filesystem.initial(PLAN, "/new", allow_chroot=allow_chroot),
        v.FsBegin(),
        v.FsDone("mount"),
    )
    r = ok(filesystem.step(s, v.FsFailed("mount", 2, "No such file or directory")))
    assert (r.state.phase, r.state.mounted, r.intents) == ("failed", 1, ())
    s, _ = run(
        filesystem,
        filesystem.initial((), "/new", allow_chroot=allow_chroot),
        v.FsBegin(),
        v.FsDone("pivot"),
    )
    assert ok(filesystem.step(s, v.FsFailed("detach", 16, "busy"))).state.phase == "failed"


def test_filesystem_exact_refusals():
    s = filesystem.initial(PLAN, "/new")
    assert (
        refused(filesystem.step(s, v.FsDone("mount")))
        == "cannot Done filesystem step 'mount': it is idle"
    )
    mounting = ok(filesystem.step(s, v.FsBegin())).state
    assert refused(filesystem.step(mounting, v.FsDone("pivot"))) == (
        "cannot Done filesystem step 'pivot': it is mounting (the step under way is 'mount')"
    )
    assert refused(filesystem.step(mounting, v.FsBegin())) == (
        "cannot Begin the filesystem: it is mounting (Begin is allowed only from idle)"
    )
    assert (
        refused(filesystem.step(mounting, v.SecBegin())) == "the filesystem has no action SecBegin"
    )


def test_filesystem_chroot_is_never_taken_when_not_allowed():
    s, _ = run(filesystem, filesystem.initial((), "/new"), v.FsBegin())
    assert refused(filesystem.step(s, v.FsDone("chroot"))) == (
        "cannot Done filesystem step 'chroot': it is pivoting (the step under way is 'pivot')"
    )


# ---------------------------------------------------------------------------------------------
# Security

SEC_PARAMS = dict(
    keep_caps=("CAP_NET_BIND_SERVICE",),
    program_sha256="ab" * 32,
    log_denied=True,
    landlock_rules=(("/usr", ("read_file", "read_dir")),),
    landlock_min_abi=2,
)


def test_security_happy_path():
    s = security.initial(**SEC_PARAMS)
    r = ok(security.step(s, v.SecBegin()))
    assert (r.state.phase, r.intents) == ("caps", (v.DropCapabilities(("CAP_NET_BIND_SERVICE",)),))
    r = ok(security.step(r.state, v.SecDone("caps")))
    assert (r.state.phase, r.intents) == ("seccomp", (v.LoadSeccomp("ab" * 32, True),))
    r = ok(security.step(r.state, v.SecDone("seccomp")))
    assert (r.state.phase, r.intents) == (
        "landlock",
        (v.ApplyLandlock((("/usr", ("read_file", "read_dir")),), 2),),
    )
    r = ok(security.step(r.state, v.SecDone("landlock")))
    assert (r.state.phase, r.intents) == ("locked", ())
    assert r.state.applied == {"caps", "seccomp", "landlock"} and r.state.degraded == frozenset()
    assert r.state.level == "enforced"


def _sec_at(phase: str, allow_degraded: bool) -> security.SecurityState:
    s = ok(
        security.step(security.initial(allow_degraded=allow_degraded, **SEC_PARAMS), v.SecBegin())
    ).state
    for c in security.CONTROLS:
        if s.phase == phase:
            return s
        s = ok(security.step(s, v.SecDone(c))).state
    assert s.phase == phase
    return s


def test_security_seccomp_failure_is_fatal_without_allow_degraded():
    r = ok(security.step(_sec_at("seccomp", False), v.SecFailed("seccomp", 22, "Invalid argument")))
    assert (r.state.phase, r.state.degraded, r.intents) == ("failed", frozenset(), ())


def test_security_seccomp_failure_degrades_with_allow_degraded_and_warns():
    r = ok(security.step(_sec_at("seccomp", True), v.SecFailed("seccomp", 22, "Invalid argument")))
    assert r.state.phase == "landlock"
    assert r.state.degraded == {"seccomp"} and "seccomp" not in r.state.applied
    warn, landlock = r.intents
    assert warn == v.Warn(
        "seccomp could not be applied (Invalid argument); continuing with degraded security because "
        "--allow-degraded-security was given"
    )
    assert isinstance(landlock, v.ApplyLandlock)
    s = ok(security.step(r.state, v.SecDone("landlock"))).state
    assert (s.phase, s.level) == ("locked", "degraded")
    assert all(f(s) for f in security.INVARIANTS)


@pytest.mark.parametrize("allow_degraded", [False, True])
def test_security_landlock_failure(allow_degraded):
    r = ok(
        security.step(
            _sec_at("landlock", allow_degraded), v.SecFailed("landlock", 95, "not supported")
        )
    )
    if allow_degraded:
        assert (r.state.phase, r.state.degraded, r.state.level) == (
            "locked",
            {"landlock"},
            "degraded",
        )
        assert len(r.intents) == 1 and isinstance(r.intents[0], v.Warn)
        assert "landlock could not be applied (not supported)" in r.intents[0].message
    else:
        assert (r.state.phase, r.intents) == ("failed", ())


@pytest.mark.parametrize("allow_degraded", [False, True])
def test_security_caps_failure_is_never_degradable(allow_degraded):
    r = ok(
        security.step(
            _sec_at("caps", allow_degraded), v.SecFailed("caps", 1, "Operation not permitted")
        )
    )
    assert (r.state.phase, r.state.degraded, r.intents) == ("failed", frozenset(), ())
    for e in security.candidate_events(r.state):
        assert "it is failed" in refused(security.step(r.state, e))


def test_security_exact_refusals():
    s = security.initial()
    assert (
        refused(security.step(s, v.SecDone("caps")))
        == "cannot Done security control 'caps': it is idle"
    )
    caps = ok(security.step(s, v.SecBegin())).state
    assert (
        refused(security.step(caps, v.SecDone("seccomp")))
        == "cannot Done security control 'seccomp': it is caps"
    )
    assert (
        refused(security.step(caps, v.SecBegin()))
        == "cannot Begin security: it is caps (Begin is allowed only from idle)"
    )
    assert refused(security.step(caps, v.Start())) == "security has no action Start"


def test_security_controls_are_irreversible():
    locked = _sec_at("locked", True)
    for e in security.candidate_events(locked):
        assert "it is locked" in refused(security.step(locked, e))


# ---------------------------------------------------------------------------------------------
# System


def sys_initial(
    rootless: bool = False, plan=PLAN, allow_chroot=False, allow_degraded=False
) -> system.SystemState:
    return system.initial(
        isolation.initial(rootless=rootless),
        filesystem.initial(plan, "/new", allow_chroot=allow_chroot),
        security.initial(allow_degraded=allow_degraded),
    )


def follow(
    s: system.SystemState,
    fail: dict[str, v.Event] | None = None,
    stop_before: type[v.Event] | None = None,
) -> system.SystemState:
    """Take advance() until it stops (or would take a `stop_before` event), answering each intent
    as done or with a scripted failure; every invariant is checked after every step."""
    pending: list[v.Event] = []
    fail = dict(fail or {})
    while True:
        e = pending.pop(0) if pending else system.advance(s)
        if e is None or (stop_before is not None and isinstance(e, stop_before)):
            return s
        r = ok(system.step(s, e))
        s = r.state
        for intent in r.intents:
            if intent.name in fail:
                pending.append(fail.pop(intent.name))
                break
            d = v.done(intent)
            if d is not None:
                pending.append(d)
        broken = [name for name, check in system.all_invariants() if not check(s)]
        assert not broken, f"after {e!r}: {broken}"


def test_system_guards_exact_refusals():
    s = sys_initial()
    assert without_state(refused(system.step(s, v.IsoBegin()))) == (
        "cannot Begin (iso): isolation begins only while the container is creating"
    )
    assert (
        without_state(refused(system.step(s, v.SetupFailed()))) == "cannot SetupFailed (lc): setup has not failed"
    )
    creating = ok(system.step(s, v.Create())).state
    assert without_state(refused(system.step(creating, v.FsBegin()))) == (
        "cannot Begin (fs): the filesystem is built only inside the new namespaces (after loopback is up)"
    )
    assert without_state(refused(system.step(creating, v.SecBegin()))) == (
        "cannot Begin (sec): security controls are applied only once isolation is ready and the root is sealed"
    )
    assert without_state(refused(system.step(creating, v.Prepared("enforced")))) == (
        "cannot Prepared (lc): the container is prepared only when every security control is in force"
    )
    # A machine's own refusal passes through unchanged.
    assert refused(system.step(s, v.Start())) == (
        "cannot Start the container: it is none (Start is allowed only from created)"
    )


def test_system_resume_waits_for_the_sealed_root():
    s = ok(system.step(sys_initial(rootless=False), v.Create())).state
    s = ok(system.step(s, v.IsoBegin())).state
    for name in ("spawn", "unshare", "fork_init", "hostname", "loopback"):
        s = ok(system.step(s, v.IsoDone(name))).state
    assert s.iso.phase == "waiting"
    assert without_state(refused(system.step(s, v.IsoResume()))) == (
        "cannot Resume (iso): the user namespace is entered only after the root filesystem is sealed"
    )
    assert refused(system.step(s, v.IsoResume())).endswith(
        "(the container is creating; isolation waiting, filesystem idle, security idle)"
    )
    assert system.advance(s) == v.FsBegin()


@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize("allow_degraded", [False, True])
def test_system_setup_reaches_created(rootless, allow_degraded):
    s = follow(
        ok(system.step(sys_initial(rootless, allow_degraded=allow_degraded), v.Create())).state
    )
    assert s.lc.status == "created" and s.lc.security == "enforced"
    assert (s.iso.phase, s.fs.phase, s.sec.phase) == ("ready", "sealed", "locked")
    assert system.advance(s) is None


@pytest.mark.parametrize("failing", ["LoadSeccomp", "ApplyLandlock"])
def test_system_prepared_level_must_match_the_controls(failing):
    start = ok(system.step(sys_initial(allow_degraded=True), v.Create())).state
    step = "seccomp" if failing == "LoadSeccomp" else "landlock"
    fail = {failing: v.SecFailed(step, 22, "Invalid argument")}
    s = follow(start, fail, stop_before=v.Prepared)
    assert (s.lc.status, s.sec.phase, s.sec.level) == ("creating", "locked", "degraded")
    assert system.advance(s) == v.Prepared("degraded")
    assert without_state(refused(system.step(s, v.Prepared("enforced")))) == (
        "cannot Prepared (lc): the security level is 'degraded', not 'enforced'"
    )
    assert follow(start, fail).lc.security == "degraded"


def test_system_advance_reports_a_failure_as_setup_failed():
    s = ok(system.step(sys_initial(), v.Create())).state
    s = follow(s, {"MountFs": v.FsFailed("mount", 19, "No such device")})
    assert (s.lc.status, s.fs.phase, s.iso.phase) == ("failed", "failed", "waiting")
    assert system.advance(s) is None


def test_system_to_tla_is_the_union_of_the_machines():
    s = sys_initial()
    values = system.to_tla(s)
    for prefix, machine in system.MACHINES.items():
        for k, val in machine.to_tla(getattr(s, prefix)).items():
            assert values[k] == val
    assert len(values) == 16
    assert system.to_tla(system.from_tla(values)) == values
