"""The pure machines, one behaviour at a time: happy paths, failure paths and refusals.

A refusal is what a user reads when they ask for something the container cannot do now, so the
exact text of several is pinned here; all of them must name the action and the state.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from nucleus import vocab as v
from nucleus.config import modes
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from nucleus.machines.base import Refused, Step


def ok(result: Step | Refused) -> Step:
    assert isinstance(result, Step), (
        f"refused: {result.why}" if isinstance(result, Refused) else result
    )
    return result


def without_state(why: str) -> str:
    """A composition refusal without its trailing description of the current phases."""
    return why.split(" (the container is ")[0]


def refused(result: Step | Refused) -> str:
    assert isinstance(result, Refused), f"expected a refusal, got {result!r}"
    assert result.why.startswith("cannot ") or re.search(r" ha(s|ve) no action ", result.why), result.why
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
    v.Lost(),
    v.Attach(),
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
    for status in ("creating", "created", "running"):
        assert ok(lifecycle.step(lc_at(status), v.Lost())).intents == (v.Cleanup(),)


@pytest.mark.parametrize("status", ["creating", "created", "running"])
def test_lifecycle_lost_supervisor_fails_and_keeps_resources_until_cleanup(status):
    before = lc_at(status)
    s = ok(lifecycle.step(before, v.Lost())).state
    assert (s.status, s.cleaned, s.security, s.exit_code) == (
        "failed", False, before.security, None,
    )
    assert "Remove is allowed only from stopped or failed after cleanup" in refused(
        lifecycle.step(s, v.Remove())
    )
    s = ok(lifecycle.step(s, v.CleanupDone())).state
    assert ok(lifecycle.step(s, v.Remove())).state.status == "removed"


@pytest.mark.parametrize("status", ["none", "stopped", "failed", "removed"])
def test_lifecycle_lost_only_before_the_container_stopped(status):
    assert refused(lifecycle.step(lc_at(status), v.Lost())) == (
        f"cannot Lost the container: it is {status} "
        "(Lost is allowed only from creating, created or running)"
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


def test_isolation_rootless_plan_pauses_only_before_unshare():
    s = isolation.initial(
        rootless=True, hostname="box", uid_map=((0, 1000, 1),), gid_map=((0, 1000, 1),)
    )
    end, intents, waits = iso_drive(s)
    assert waits == [isolation.ROOTLESS_PLAN.index("unshare")] == [1]
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


@pytest.mark.parametrize("rootless", [False, True])
def test_isolation_pauses_before_unshare_until_resume(rootless):
    r = ok(isolation.step(isolation.initial(rootless=rootless), v.IsoBegin()))
    assert (r.state.phase, r.state.done, r.intents) == ("running", 0, (v.SpawnChild(),))
    r = ok(isolation.step(r.state, v.IsoDone("spawn")))
    assert (r.state.phase, r.state.done, r.intents) == ("waiting", 1, ())
    assert isolation.next_step(r.state) == "unshare" and isolation.is_gate(r.state, "unshare")
    waiting = r.state
    assert refused(isolation.step(waiting, v.IsoDone("unshare"))) == (
        "cannot Done isolation step 'unshare': it is waiting (steps finish only while running)"
    )
    assert refused(isolation.step(waiting, v.IsoFailed("unshare", 1, "EPERM"))) == (
        "cannot Fail isolation step 'unshare': it is waiting (steps finish only while running)"
    )
    r = ok(isolation.step(waiting, v.IsoResume()))
    assert r.state.phase == "running" and r.state.done == 1
    assert r.intents == (v.Unshare((("user",) if rootless else ()) + isolation.initial().namespaces),)
    assert all(f(waiting) for f in isolation.INVARIANTS)


def test_isolation_gates_and_next_step():
    privileged, rootless = isolation.initial(rootless=False), isolation.initial(rootless=True)
    assert [n for n in isolation.PRIVILEGED_PLAN if isolation.is_gate(privileged, n)] == [
        "unshare", "enter_user",
    ]
    assert [n for n in isolation.ROOTLESS_PLAN if isolation.is_gate(rootless, n)] == ["unshare"]
    assert isolation.next_step(privileged) == "spawn"
    end, _, _ = iso_drive(rootless)
    assert isolation.next_step(end) is None


def test_isolation_privileged_plan_pauses_before_enter_user_until_resume():
    s = ok(isolation.step(isolation.initial(rootless=False), v.IsoBegin())).state
    s = ok(isolation.step(s, v.IsoDone("spawn"))).state
    s = ok(isolation.step(s, v.IsoResume())).state
    for name in ("unshare", "fork_init", "hostname"):
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
    assert waits == [
        isolation.PRIVILEGED_PLAN.index("unshare"), isolation.PRIVILEGED_PLAN.index("enter_user"),
    ]
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


# The production audit, as nucleus.runner builds it.
AUDIT = tuple((r.path, tuple(r.flags), r.required) for r in modes.mount_audit("production"))


def test_filesystem_audit_after_detach_then_sealed():
    s = filesystem.initial(PLAN, "/new", audit=AUDIT)
    assert s.audits and not s.audited
    s, intents = run(filesystem, s, v.FsBegin(), *[v.FsDone("mount")] * 3, v.FsDone("pivot"))
    assert intents[-1] == v.DetachOldRoot()
    r = ok(filesystem.step(s, v.FsDone("detach")))
    assert (r.state.phase, r.state.audited, r.state.chrooted, r.intents) == (
        "auditing", False, False, (v.AuditMounts(AUDIT),),
    )
    assert all(f(r.state) for f in filesystem.INVARIANTS)
    assert filesystem.to_tla(r.state) == {
        "fs_phase": "auditing", "fs_mounted": 3, "fs_total": 3, "fs_allowChroot": False,
        "fs_chrooted": False, "fs_audit": True, "fs_audited": False,
    }
    r = ok(filesystem.step(r.state, v.FsDone("audit")))
    assert (r.state.phase, r.state.audited, r.intents) == ("sealed", True, ())
    assert all(f(r.state) for f in filesystem.INVARIANTS)
    for e in filesystem.candidate_events(r.state):
        assert "it is sealed" in refused(filesystem.step(r.state, e))


def test_filesystem_audit_after_the_chroot_fallback():
    s, _ = run(
        filesystem, filesystem.initial((), "/new", allow_chroot=True, audit=AUDIT),
        v.FsBegin(), v.FsFailed("pivot", 22, "Invalid argument"),
    )
    r = ok(filesystem.step(s, v.FsDone("chroot")))
    assert (r.state.phase, r.state.chrooted, r.intents) == ("auditing", True, (v.AuditMounts(AUDIT),))
    assert all(f(r.state) for f in filesystem.INVARIANTS)  # ChrootOnlyWhenSealed admits auditing
    s = ok(filesystem.step(r.state, v.FsDone("audit"))).state
    assert (s.phase, s.chrooted, s.audited) == ("sealed", True, True)


@pytest.mark.parametrize(
    "allow_chroot,chroot", [(False, False), (True, False), (True, True)],
    ids=["pivot", "pivot-with-fallback", "chroot"],
)
def test_filesystem_audit_failure_is_fatal_even_with_fallback(allow_chroot, chroot):
    s = filesystem.initial((), "/new", allow_chroot=allow_chroot, audit=AUDIT)
    sealing = (v.FsFailed("pivot", 22, "x"), v.FsDone("chroot")) if chroot else (v.FsDone("pivot"), v.FsDone("detach"))
    s, _ = run(filesystem, s, v.FsBegin(), *sealing)
    assert s.phase == "auditing"
    r = ok(filesystem.step(s, v.FsFailed("audit", 1, "mount audit: /proc: lacks noexec")))
    assert (r.state.phase, r.state.audited, r.state.chrooted, r.intents) == ("failed", False, chroot, ())
    assert all(f(r.state) for f in filesystem.INVARIANTS)  # a chrooted root may fail its audit
    for e in filesystem.candidate_events(r.state):
        assert "it is failed" in refused(filesystem.step(r.state, e))


def test_filesystem_without_audit_seals_at_once_and_never_audits():
    s, _ = run(filesystem, filesystem.initial((), "/new"), v.FsBegin(), v.FsDone("pivot"))
    assert refused(filesystem.step(s, v.FsDone("audit"))) == (
        "cannot Done filesystem step 'audit': it is detaching (the step under way is 'detach')"
    )
    s = ok(filesystem.step(s, v.FsDone("detach"))).state
    assert (s.phase, s.audits, s.audited) == ("sealed", False, False)
    assert refused(filesystem.step(s, v.FsDone("audit"))) == "cannot Done filesystem step 'audit': it is sealed"
    assert refused(filesystem.step(s, v.FsFailed("audit", 1, "x"))) == (
        "cannot Fail filesystem step 'audit': it is sealed"
    )


def test_filesystem_exact_refusals_while_auditing():
    s, _ = run(
        filesystem, filesystem.initial((), "/new", audit=AUDIT), v.FsBegin(), v.FsDone("pivot"),
        v.FsDone("detach"),
    )
    assert s.phase == "auditing"
    assert refused(filesystem.step(s, v.FsDone("detach"))) == (
        "cannot Done filesystem step 'detach': it is auditing (the step under way is 'audit')"
    )
    assert refused(filesystem.step(s, v.FsFailed("chroot", 1, "x"))) == (
        "cannot Fail filesystem step 'chroot': it is auditing (the step under way is 'audit')"
    )
    assert refused(filesystem.step(s, v.FsBegin())) == (
        "cannot Begin the filesystem: it is auditing (Begin is allowed only from idle)"
    )
    idle = filesystem.initial((), "/new", audit=AUDIT)
    assert refused(filesystem.step(idle, v.FsDone("audit"))) == "cannot Done filesystem step 'audit': it is idle"


def test_filesystem_from_tla_round_trip():
    cases = [
        (filesystem.initial(PLAN, "/new"), ()),
        (filesystem.initial(PLAN, "/new", audit=AUDIT), (v.FsBegin(), *[v.FsDone("mount")] * 3)),
        (filesystem.initial((), "/new", audit=AUDIT), (v.FsBegin(), v.FsDone("pivot"), v.FsDone("detach"))),
        (filesystem.initial((), "/new", True, AUDIT),
         (v.FsBegin(), v.FsFailed("pivot"), v.FsDone("chroot"), v.FsDone("audit"))),
        (filesystem.initial((), "/new", True, AUDIT),
         (v.FsBegin(), v.FsFailed("pivot"), v.FsDone("chroot"), v.FsFailed("audit"))),
    ]
    for start, events in cases:
        s, _ = run(filesystem, start, *events)
        values = filesystem.to_tla(s)
        rebuilt = filesystem.from_tla(values)
        assert filesystem.to_tla(rebuilt) == values
        assert rebuilt.audits == s.audits and rebuilt.audited == s.audited
    assert filesystem.is_initial(filesystem.from_tla(filesystem.to_tla(filesystem.initial(PLAN, "/n", True, AUDIT))))


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


def _sec_at(phase: str, allow_degraded: bool, strict: bool = False) -> security.SecurityState:
    s = ok(
        security.step(
            security.initial(allow_degraded=allow_degraded, strict=strict, **SEC_PARAMS), v.SecBegin()
        )
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


@pytest.mark.parametrize("control", ["seccomp", "landlock"])
def test_security_strict_fails_closed_even_with_allow_degraded(control):
    s = ok(security.step(security.initial(allow_degraded=True, strict=True, **SEC_PARAMS), v.SecBegin())).state
    if control == "landlock":
        s = ok(security.step(ok(security.step(s, v.SecDone("caps"))).state, v.SecDone("seccomp"))).state
    else:
        s = ok(security.step(s, v.SecDone("caps"))).state
    r = ok(security.step(s, v.SecFailed(control, 22, "Invalid argument")))
    assert (r.state.phase, r.state.degraded, r.intents) == ("failed", frozenset(), ())  # no warning
    assert all(f(r.state) for f in security.INVARIANTS)
    for e in security.candidate_events(r.state):
        assert "it is failed" in refused(security.step(r.state, e))


@pytest.mark.parametrize("allow_degraded", [False, True])
def test_security_strict_happy_path_is_enforced(allow_degraded):
    s = security.initial(allow_degraded=allow_degraded, strict=True, **SEC_PARAMS)
    s, intents = run(security, s, v.SecBegin(), *[v.SecDone(c) for c in security.CONTROLS])
    assert (s.phase, s.level, s.applied) == ("locked", "enforced", frozenset(security.CONTROLS))
    assert [i.name for i in intents] == ["DropCapabilities", "LoadSeccomp", "ApplyLandlock"]


@pytest.mark.parametrize("allow_degraded", [False, True])
@pytest.mark.parametrize("strict", [False, True])
def test_security_failure_outcome_by_configuration(allow_degraded, strict):
    """The whole table: caps never degrades; seccomp and Landlock degrade only when allowed and
    not strict."""
    for control in security.CONTROLS:
        s = _sec_at(control, allow_degraded, strict)
        r = ok(security.step(s, v.SecFailed(control, 1, "EPERM")))
        degrades = control in security.DEGRADABLE and allow_degraded and not strict
        assert (r.state.phase == "failed") == (not degrades), (control, r.state)
        assert r.state.degraded == (s.degraded | {control} if degrades else s.degraded)
        assert [type(i) for i in r.intents][:1] == ([v.Warn] if degrades else [])
        assert security.StrictNeverDegraded(r.state) and security.DegradedOnlyIfAllowed(r.state)


def test_security_to_tla_and_back():
    s = _sec_at("landlock", True, True)
    values = security.to_tla(s)
    assert values == {
        "sec_allowDegraded": True, "sec_strict": True, "sec_phase": "landlock",
        "sec_applied": frozenset({"caps", "seccomp"}), "sec_degraded": frozenset(),
    }
    assert security.to_tla(security.from_tla(values)) == values
    assert security.initial().strict is False and security.initial(strict=True).strict is True
    assert security.is_initial(security.initial(allow_degraded=True, strict=True))


def test_security_strict_never_degraded_invariant():
    bad = dataclasses.replace(
        security.initial(allow_degraded=True, strict=True), phase="locked",
        applied=frozenset({"caps", "landlock"}), degraded=frozenset({"seccomp"}),
    )
    assert not security.StrictNeverDegraded(bad)
    assert security.StrictNeverDegraded(dataclasses.replace(bad, strict=False))
    assert security.StrictNeverDegraded in security.INVARIANTS


def test_security_controls_are_irreversible():
    locked = _sec_at("locked", True)
    for e in security.candidate_events(locked):
        assert "it is locked" in refused(security.step(locked, e))


# ---------------------------------------------------------------------------------------------
# Resources


def res_at(phase: str, required: bool = False, fail_at: str | None = None) -> resources.ResourcesState:
    """A resources state reached the ordinary way (failing the step `fail_at` if given)."""
    s = resources.initial(required=required, name="c1")
    path = {
        "creating": [v.ResBegin()],
        "limiting": [v.ResBegin(), v.ResDone("create")],
        "waiting": [v.ResBegin(), v.ResDone("create"), v.ResDone("limits")],
        "attaching": [v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.ResAttach()],
        "ready": [v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.ResAttach(), v.ResDone("attach")],
    }
    if phase == "idle":
        return s
    if fail_at is not None:
        under_way = {"create": "creating", "limits": "limiting", "attach": "attaching"}[fail_at]
        s, _ = run(resources, s, *path[under_way], v.ResFailed(fail_at, 1, "EPERM"))
    elif phase in ("releasing", "released", "leaked"):
        s, _ = run(resources, s, *path["ready"], v.ResRelease())
        if phase != "releasing":
            s, _ = run(resources, s, v.ResDone("release") if phase == "released" else v.ResFailed("release"))
    else:
        s, _ = run(resources, s, *path[phase])
    assert s.phase == phase, s
    return s


def test_resources_initial_holds_nothing():
    s = resources.initial(required=True, name="c1", parent="nucleus.slice", limits=("memory", 1))
    assert (s.required, s.phase, s.held, s.limited) == (True, "idle", False, False)
    assert (s.name, s.parent, s.limits) == ("c1", "nucleus.slice", ("memory", 1))
    assert resources.is_initial(s) and resources.is_initial(resources.initial())
    assert resources.to_tla(s) == {
        "res_required": True, "res_phase": "idle", "res_held": False, "res_limited": False,
    }


@pytest.mark.parametrize("required", [False, True])
def test_resources_happy_path_and_release(required):
    s = resources.initial(required=required, name="c1", parent="nucleus")
    r = ok(resources.step(s, v.ResBegin()))
    assert (r.state.phase, r.state.held, r.intents) == ("creating", False, (v.CreateCgroup("nucleus", "c1"),))
    r = ok(resources.step(r.state, v.ResDone("create")))
    assert (r.state.phase, r.state.held, r.state.limited, r.intents) == (
        "limiting", True, False, (v.SetCgroupLimits(),),
    )
    r = ok(resources.step(r.state, v.ResDone("limits")))
    assert (r.state.phase, r.state.limited, r.intents) == ("waiting", True, ())
    r = ok(resources.step(r.state, v.ResAttach()))
    assert (r.state.phase, r.intents) == ("attaching", (v.AttachCgroup(),))
    r = ok(resources.step(r.state, v.ResDone("attach")))
    assert (r.state.phase, r.state.held, r.state.limited, r.intents) == ("ready", True, True, ())
    r = ok(resources.step(r.state, v.ResRelease()))
    assert (r.state.phase, r.intents) == ("releasing", (v.RemoveCgroup(),))
    r = ok(resources.step(r.state, v.ResDone("release")))
    assert (r.state.phase, r.state.held, r.state.limited, r.intents) == ("released", False, False, ())
    assert r.state.required == required
    assert all(f(r.state) for f in resources.INVARIANTS)


@pytest.mark.parametrize("step_name", ["create", "limits", "attach"])
def test_resources_failure_is_fatal_when_required(step_name):
    s = res_at({"create": "creating", "limits": "limiting", "attach": "attaching"}[step_name], True)
    r = ok(resources.step(s, v.ResFailed(step_name, 1, "Operation not permitted")))
    assert (r.state.phase, r.state.held, r.state.limited, r.intents) == ("failed", s.held, s.limited, ())
    assert all(f(r.state) for f in resources.INVARIANTS)


@pytest.mark.parametrize("step_name", ["create", "limits", "attach"])
def test_resources_failure_degrades_with_a_warning_when_optional(step_name):
    s = res_at({"create": "creating", "limits": "limiting", "attach": "attaching"}[step_name], False)
    r = ok(resources.step(s, v.ResFailed(step_name, 95, "Operation not supported")))
    assert (r.state.phase, r.state.held, r.state.limited) == ("degraded", s.held, s.limited)
    assert r.intents == (
        v.Warn(f"cgroup {step_name} failed (Operation not supported); running without resource limits"),
    )
    assert all(f(r.state) for f in resources.INVARIANTS)


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize("fail_at", ["create", "limits", "attach"])
def test_resources_release_after_a_failure_removes_only_what_exists(required, fail_at):
    s = res_at("failed" if required else "degraded", required, fail_at)
    r = ok(resources.step(s, v.ResRelease()))
    if fail_at == "create":  # nothing was created: nothing to remove
        assert (r.state.phase, r.intents) == ("released", ())
    else:
        assert (r.state.phase, r.intents) == ("releasing", (v.RemoveCgroup(),))
        r = ok(resources.step(r.state, v.ResDone("release")))
        assert (r.state.phase, r.state.held) == ("released", False)


@pytest.mark.parametrize("phase", ["idle", "waiting", "ready"])
def test_resources_release_from_every_settled_phase(phase):
    s = res_at(phase)
    r = ok(resources.step(s, v.ResRelease()))
    if s.held:
        assert (r.state.phase, r.intents) == ("releasing", (v.RemoveCgroup(),))
    else:
        assert (phase, r.state.phase, r.intents) == ("idle", "released", ())


@pytest.mark.parametrize("required", [False, True])
def test_resources_failed_removal_leaks_until_a_later_release(required):
    s = res_at("releasing", required)
    r = ok(resources.step(s, v.ResFailed("release", 16, "Device or resource busy")))
    assert (r.state.phase, r.state.held, r.intents) == ("leaked", True, ())  # never degraded or failed
    assert all(f(r.state) for f in resources.INVARIANTS)
    r = ok(resources.step(r.state, v.ResRelease()))
    assert (r.state.phase, r.intents) == ("releasing", (v.RemoveCgroup(),))
    r = ok(resources.step(r.state, v.ResDone("release")))
    assert (r.state.phase, r.state.held) == ("released", False)


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
    assert refused(resources.step(res_at("idle"), v.ResDone("create"))) == (
        "cannot Done resources step 'create': it is idle"
    )
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


# ---------------------------------------------------------------------------------------------
# System


def sys_initial(
    rootless: bool = False, plan=PLAN, allow_chroot=False, allow_degraded=False, required=False,
    strict=False, audit=(),
) -> system.SystemState:
    return system.initial(
        isolation.initial(rootless=rootless),
        filesystem.initial(plan, "/new", allow_chroot=allow_chroot, audit=audit),
        security.initial(allow_degraded=allow_degraded, strict=strict),
        resources.initial(required=required, name="c1"),
    )


def follow(
    s: system.SystemState,
    fail: dict[str, v.Event] | None = None,
    stop_before: type[v.Event] | None = None,
    intents: list[v.Intent] | None = None,
) -> system.SystemState:
    """Take advance() until it stops (or would take a `stop_before` event), answering each intent
    as done or with a scripted failure; every invariant is checked after every step. The intents
    asked for are appended to `intents`."""
    pending: list[v.Event] = []
    fail = dict(fail or {})
    while True:
        e = pending.pop(0) if pending else system.advance(s)
        if e is None or (stop_before is not None and isinstance(e, stop_before)):
            return s
        r = ok(system.step(s, e))
        s = r.state
        for intent in r.intents:
            if intents is not None:
                intents.append(intent)
            if intent.name in fail:
                pending.append(fail.pop(intent.name))
                break
            d = v.done(intent)
            if d is not None:
                pending.append(d)
        broken = [name for name, check in system.all_invariants() if not check(s)]
        assert not broken, f"after {e!r}: {broken}"


def at_unshare_gate(required: bool = False, rootless: bool = False) -> system.SystemState:
    """Created, the cgroup limited, the setup process spawned: isolation waits before unshare."""
    s = ok(system.step(sys_initial(rootless, required=required), v.Create())).state
    s, _ = run(system, s, v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.IsoBegin(),
               v.IsoDone("spawn"))
    assert (s.iso.phase, isolation.next_step(s.iso), s.res.phase) == ("waiting", "unshare", "waiting")
    return s


def test_system_guards_exact_refusals():
    s = sys_initial()
    assert without_state(refused(system.step(s, v.IsoBegin()))) == (
        "cannot Begin (iso): isolation begins only while the container is creating"
    )
    assert (
        without_state(refused(system.step(s, v.SetupFailed()))) == "cannot SetupFailed (lc): setup has not failed"
    )
    assert without_state(refused(system.step(s, v.ResBegin()))) == (
        "cannot Begin (res): the cgroup is created only while the container is creating"
    )
    creating = ok(system.step(s, v.Create())).state
    assert without_state(refused(system.step(creating, v.IsoBegin()))) == (
        "cannot Begin (iso): isolation begins once the cgroup is limited (or knowingly skipped)"
    )
    assert without_state(refused(system.step(creating, v.FsBegin()))) == (
        "cannot Begin (fs): the filesystem is built only inside the new namespaces (after loopback is up)"
    )
    assert without_state(refused(system.step(creating, v.SecBegin()))) == (
        "cannot Begin (sec): security controls are applied only once isolation is ready and the root is sealed"
    )
    assert without_state(refused(system.step(creating, v.Prepared("enforced")))) == (
        "cannot Prepared (lc): the container is prepared only when every security control is in force"
    )
    assert without_state(refused(system.step(creating, v.ResRelease()))) == (
        "cannot Release (res): the cgroup is released only once the container has stopped or failed"
    )
    limited, _ = run(system, creating, v.ResBegin(), v.ResDone("create"), v.ResDone("limits"))
    assert without_state(refused(system.step(limited, v.ResAttach()))) == (
        "cannot Attach (res): there is no setup process to move into the cgroup yet"
    )
    assert refused(system.step(limited, v.ResAttach())) == (
        "cannot Attach (res): there is no setup process to move into the cgroup yet (the container is "
        "creating; isolation idle, filesystem idle, security idle, cgroup waiting)"
    )
    # A machine's own refusal passes through unchanged.
    assert refused(system.step(s, v.Start())) == (
        "cannot Start the container: it is none (Start is allowed only from created)"
    )
    assert refused(system.step(limited, v.ResBegin())) == (
        "cannot Begin resources: it is waiting (Begin is allowed only from idle)"
    )


def test_system_cleanup_done_waits_for_the_released_cgroup():
    s = ok(system.step(at_unshare_gate(), v.Lost())).state
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("failed", False, "waiting")
    assert refused(system.step(s, v.CleanupDone())) == (
        "cannot CleanupDone (lc): cleanup is done only once the cgroup is released (the container is "
        "failed; isolation waiting, filesystem idle, security idle, cgroup waiting)"
    )
    assert system.advance(s) == v.ResRelease()
    r = ok(system.step(s, v.ResRelease()))
    assert (r.state.res.phase, r.intents) == ("releasing", (v.RemoveCgroup(),))
    assert system.advance(r.state) is None  # the removal is under way
    assert "cleanup is done only once the cgroup is released" in refused(system.step(r.state, v.CleanupDone()))
    s = ok(system.step(r.state, v.ResDone("release"))).state
    assert system.advance(s) == v.CleanupDone()
    s = ok(system.step(s, v.CleanupDone())).state
    assert (s.lc.cleaned, s.res.phase, system.advance(s)) == (True, "released", None)


def test_system_unshare_waits_for_the_setup_process_in_its_cgroup():
    s = at_unshare_gate()
    assert refused(system.step(s, v.IsoResume())) == (
        "cannot Resume (iso): namespaces are created only once the setup process is in its cgroup "
        "(the container is creating; isolation waiting, filesystem idle, security idle, cgroup waiting)"
    )
    assert system.advance(s) == v.ResAttach()
    r = ok(system.step(s, v.ResAttach()))
    assert (r.state.res.phase, r.intents) == ("attaching", (v.AttachCgroup(),))
    assert "namespaces are created only once" in refused(system.step(r.state, v.IsoResume()))
    assert system.advance(r.state) is None
    s = ok(system.step(r.state, v.ResDone("attach"))).state
    assert system.advance(s) == v.IsoResume()
    r = ok(system.step(s, v.IsoResume()))
    assert isinstance(r.intents[0], v.Unshare) and r.state.iso.phase == "running"


def test_system_unshare_passes_its_gate_without_a_cgroup_when_it_is_optional():
    s = at_unshare_gate(required=False)
    s = ok(system.step(s, v.ResAttach())).state
    r = ok(system.step(s, v.ResFailed("attach", 1, "EPERM")))
    assert r.state.res.phase == "degraded" and isinstance(r.intents[0], v.Warn)
    assert system.advance(r.state) == v.IsoResume()
    s = at_unshare_gate(required=True)
    s = ok(system.step(s, v.ResAttach())).state
    s = ok(system.step(s, v.ResFailed("attach", 1, "EPERM"))).state
    assert s.res.phase == "failed" and system.advance(s) == v.SetupFailed()
    assert "namespaces are created only once" in refused(system.step(s, v.IsoResume()))


def test_system_resume_waits_for_the_sealed_root():
    s = at_unshare_gate()
    s, _ = run(system, s, v.ResAttach(), v.ResDone("attach"), v.IsoResume())
    for name in ("unshare", "fork_init", "hostname", "loopback"):
        s = ok(system.step(s, v.IsoDone(name))).state
    assert s.iso.phase == "waiting" and isolation.next_step(s.iso) == "enter_user"
    assert without_state(refused(system.step(s, v.IsoResume()))) == (
        "cannot Resume (iso): the user namespace is entered only after the root filesystem is sealed"
    )
    assert refused(system.step(s, v.IsoResume())).endswith(
        "(the container is creating; isolation waiting, filesystem idle, security idle, cgroup ready)"
    )
    assert system.advance(s) == v.FsBegin()


def test_system_prepared_needs_the_container_in_its_cgroup():
    s = follow(ok(system.step(sys_initial(), v.Create())).state, stop_before=v.Prepared)
    assert (s.sec.phase, s.res.phase) == ("locked", "ready")
    # Not reachable (a cgroup stays ready until it is released), but the guard stands on its own.
    outside = dataclasses.replace(s, res=dataclasses.replace(s.res, phase="waiting"))
    assert without_state(refused(system.step(outside, v.Prepared("enforced")))) == (
        "cannot Prepared (lc): the container is prepared only inside its cgroup (or knowingly without one)"
    )
    assert ok(system.step(s, v.Prepared("enforced"))).state.lc.status == "created"


@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize("allow_degraded", [False, True])
@pytest.mark.parametrize("required", [False, True])
def test_system_setup_reaches_created(rootless, allow_degraded, required):
    intents: list[v.Intent] = []
    s = follow(
        ok(system.step(sys_initial(rootless, allow_degraded=allow_degraded, required=required),
                       v.Create())).state,
        intents=intents,
    )
    assert s.lc.status == "created" and s.lc.security == "enforced"
    assert (s.iso.phase, s.fs.phase, s.sec.phase, s.res.phase) == ("ready", "sealed", "locked", "ready")
    assert system.advance(s) is None
    names = [i.name for i in intents]
    # The cgroup is limited before the setup process exists, and it is in the cgroup before it
    # creates any namespace.
    assert names[:5] == ["CreateCgroup", "SetCgroupLimits", "SpawnChild", "AttachCgroup", "Unshare"]
    assert intents[0] == v.CreateCgroup("nucleus", "c1")
    assert "RemoveCgroup" not in names and "Cleanup" not in names


@pytest.mark.parametrize("failing", ["CreateCgroup", "SetCgroupLimits", "AttachCgroup"])
@pytest.mark.parametrize("required", [False, True])
def test_system_cgroup_failure(failing, required):
    step = v.OUTCOME[failing][2]
    intents: list[v.Intent] = []
    start = ok(system.step(sys_initial(required=required), v.Create())).state
    s = follow(start, {failing: v.ResFailed(step, 1, "Operation not permitted")}, intents=intents)
    names = [i.name for i in intents]
    if not required:
        assert (s.lc.status, s.res.phase) == ("created", "degraded")
        assert (s.iso.phase, s.sec.phase) == ("ready", "locked")
        assert [i for i in intents if isinstance(i, v.Warn)] == [
            v.Warn(f"cgroup {step} failed (Operation not permitted); running without resource limits")
        ]
        assert names.index("Unshare") > names.index(failing)
        return
    # Required: setup fails before any namespace is created, and cleanup removes what was created.
    assert (s.lc.status, s.lc.cleaned, s.res.phase) == ("failed", True, "released")
    assert "Unshare" not in names and "Warn" not in names
    assert names.count("Cleanup") == 1
    after = names[names.index(failing) + 1:]
    assert after == (["Cleanup"] if failing == "CreateCgroup" else ["Cleanup", "RemoveCgroup"])
    assert system.advance(s) is None
    assert ok(system.step(s, v.Remove())).state.lc.status == "removed"


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
    assert done == [v.RemoveCgroup()]
    assert (s.lc.cleaned, s.res.phase) == (True, "released")


def test_system_a_leaked_cgroup_keeps_the_container_until_release_succeeds():
    s = follow(ok(system.step(sys_initial(required=True), v.Create())).state)
    s, _ = run(system, s, v.Start(), v.Exit(0))
    s = follow(s, {"RemoveCgroup": v.ResFailed("release", 16, "Device or resource busy")})
    assert (s.lc.status, s.lc.cleaned, s.res.phase, s.res.held) == ("stopped", False, "leaked", True)
    assert system.advance(s) is None  # nothing more happens on its own: `rm --force` retries
    assert "Remove is allowed only from stopped or failed after cleanup" in refused(system.step(s, v.Remove()))
    assert "cleanup is done only once the cgroup is released" in refused(system.step(s, v.CleanupDone()))
    r = ok(system.step(s, v.ResRelease()))
    assert r.intents == (v.RemoveCgroup(),)
    s = follow(ok(system.step(r.state, v.ResDone("release"))).state)
    assert (s.lc.cleaned, s.res.phase) == (True, "released")
    assert ok(system.step(s, v.Remove())).state.lc.status == "removed"


@pytest.mark.parametrize("status", ["creating", "created", "running"])
def test_system_lost_supervisor_fails_and_is_cleaned_up(status):
    s = ok(system.step(sys_initial(), v.Create())).state
    if status != "creating":
        s = follow(s)
    if status == "running":
        s = ok(system.step(s, v.Start())).state
    r = ok(system.step(s, v.Lost()))
    assert r.state.lc.status == "failed" and r.intents == (v.Cleanup(),)
    done: list[v.Intent] = []
    s = follow(r.state, intents=done)
    assert done == ([] if status == "creating" else [v.RemoveCgroup()])
    assert (s.lc.cleaned, s.res.phase) == (True, "released")


def test_system_lost_while_a_cgroup_step_is_under_way():
    s = ok(system.step(sys_initial(), v.Create())).state
    s = ok(system.step(s, v.ResBegin())).state
    s = ok(system.step(s, v.Lost())).state
    assert (s.lc.status, s.res.phase) == ("failed", "creating")
    assert system.advance(s) is None  # the creation is under way: its outcome comes first
    r = ok(system.step(s, v.ResDone("create")))
    assert r.intents == (v.SetCgroupLimits(),)
    s = follow(ok(system.step(r.state, v.ResDone("limits"))).state)
    assert (s.lc.cleaned, s.res.phase, s.iso.phase) == (True, "released", "idle")


def test_system_attach_only_while_running():
    s = follow(ok(system.step(sys_initial(), v.Create())).state)
    assert refused(system.step(s, v.Attach())) == (
        "cannot Attach the container: it is created (Attach is allowed only from running)"
    )
    s = ok(system.step(s, v.Start())).state
    r = ok(system.step(s, v.Attach()))
    assert r.state == s and r.intents == ()


def test_system_to_tla_is_the_union_of_the_machines():
    s = sys_initial(required=True)
    values = system.to_tla(s)
    for prefix, machine in system.MACHINES.items():
        for k, val in machine.to_tla(getattr(s, prefix)).items():
            assert values[k] == val
    assert len(values) == 23 and values["res_required"] is True
    assert (values["sec_strict"], values["fs_audit"], values["fs_audited"]) == (False, False, False)
    assert system.to_tla(system.from_tla(values)) == values
    assert system.is_initial(system.from_tla(values))
    production = system.to_tla(sys_initial(required=True, strict=True, audit=AUDIT))
    assert production == {**values, "sec_strict": True, "fs_audit": True}
    assert system.to_tla(system.from_tla(production)) == production
    assert system.is_initial(system.from_tla(production))


def until_the_audit(s: system.SystemState) -> system.SystemState:
    """Follow setup, answering every intent as done, until the mount audit is under way."""
    pending: list[v.Event] = []
    while s.fs.phase != "auditing":
        e = pending.pop(0) if pending else system.advance(s)
        assert e is not None, f"setup stopped before the audit: {system.to_tla(s)}"
        r = ok(system.step(s, e))
        s = r.state
        pending.extend(d for d in map(v.done, r.intents) if d is not None)
    return s


def test_system_production_audits_the_root_before_anything_runs_in_it():
    for rootless in (False, True):
        intents: list[v.Intent] = []
        s = follow(ok(system.step(sys_initial(rootless, audit=AUDIT, strict=True, required=True),
                                  v.Create())).state, intents=intents)
        assert (s.lc.status, s.lc.security, s.fs.phase, s.fs.audited) == ("created", "enforced", "sealed", True)
        names = [i.name for i in intents]
        audit = names.index("AuditMounts")
        assert intents[audit] == v.AuditMounts(AUDIT)
        assert names[audit - 1] == "DetachOldRoot"
        assert names[audit + 1] == ("DropCapabilities" if rootless else "EnterUserNamespace")
        assert names.count("AuditMounts") == 1


def test_system_exact_refusals_while_the_root_is_audited():
    for rootless in (False, True):
        s = until_the_audit(ok(system.step(sys_initial(rootless, audit=AUDIT), v.Create())).state)
        assert system.advance(s) is None  # the audit is under way: its outcome comes first
        if rootless:
            assert s.iso.phase == "ready"
            assert refused(system.step(s, v.SecBegin())) == (
                "cannot Begin (sec): security controls are applied only once isolation is ready and "
                "the root is sealed (the container is creating; isolation ready, filesystem auditing, "
                "security idle, cgroup ready)"
            )
        else:
            assert (s.iso.phase, isolation.next_step(s.iso)) == ("waiting", "enter_user")
            assert refused(system.step(s, v.IsoResume())) == (
                "cannot Resume (iso): the user namespace is entered only after the root filesystem is "
                "sealed (the container is creating; isolation waiting, filesystem auditing, security "
                "idle, cgroup ready)"
            )
        assert refused(system.step(s, v.FsDone("detach"))) == (
            "cannot Done filesystem step 'detach': it is auditing (the step under way is 'audit')"
        )
        s = ok(system.step(s, v.FsDone("audit"))).state
        assert system.advance(s) == (v.SecBegin() if rootless else v.IsoResume())


@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize("allow_chroot", [False, True])
def test_system_a_failed_audit_fails_setup_and_cleans_up(rootless, allow_chroot):
    intents: list[v.Intent] = []
    fail = {"AuditMounts": v.FsFailed("audit", 1, "mount audit: /proc: lacks noexec")}
    if allow_chroot:
        fail["PivotRoot"] = v.FsFailed("pivot", 22, "Invalid argument")
    start = ok(system.step(
        sys_initial(rootless, allow_chroot=allow_chroot, audit=AUDIT, required=True), v.Create()
    )).state
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
