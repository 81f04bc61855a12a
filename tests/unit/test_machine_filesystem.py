"""The filesystem machine (formal/Filesystem.tla): the mount plan, pivot_root or the chroot
fallback, detaching the old root, the production mount audit, and refusals."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import filesystem
from tests.unit.machine_support import AUDIT, PLAN, ok, refused, run


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


def test_filesystem_every_plan_operation_reports_as_mount():
    assert all(op.reports == ("fs", "mount") and op.where == "child" for op in PLAN)
    assert [v.done(op) for op in PLAN] == [v.FsDone("mount")] * len(PLAN)


def test_filesystem_empty_plan_pivots_at_once():
    r = ok(filesystem.step(filesystem.initial((), "/r"), v.FsBegin()))
    assert (r.state.phase, r.intents) == ("pivoting", (v.PivotRoot("/r"),))


def test_filesystem_pivot_failure_is_fatal_without_chroot_fallback():
    s, _ = run(filesystem, filesystem.initial((), "/new", allow_chroot=False), v.FsBegin())
    r = ok(filesystem.step(s, v.FsFailed("pivot", 22, "pivot_root('/new', '/new/.old'): Invalid argument")))
    assert (r.state.phase, r.state.chrooted, r.intents) == ("failed", False, ())


def test_filesystem_pivot_failure_becomes_chroot_when_allowed():
    s, _ = run(filesystem, filesystem.initial(PLAN, "/new", allow_chroot=True), v.FsBegin(),
               *[v.FsDone("mount")] * 3)
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
    s, _ = run(filesystem, filesystem.initial((), "/new", allow_chroot=True), v.FsBegin(),
               v.FsFailed("pivot", 1, "x"))
    r = ok(filesystem.step(s, v.FsFailed("chroot", 1, "Operation not permitted")))
    assert (r.state.phase, r.state.chrooted) == ("failed", False)


@pytest.mark.parametrize("allow_chroot", [False, True])
def test_filesystem_mount_and_detach_failures_are_fatal_even_with_fallback(allow_chroot):
    s, _ = run(filesystem, filesystem.initial(PLAN, "/new", allow_chroot=allow_chroot), v.FsBegin(),
               v.FsDone("mount"))
    r = ok(filesystem.step(s, v.FsFailed("mount", 2, "No such file or directory")))
    assert (r.state.phase, r.state.mounted, r.intents) == ("failed", 1, ())
    s, _ = run(filesystem, filesystem.initial((), "/new", allow_chroot=allow_chroot), v.FsBegin(),
               v.FsDone("pivot"))
    assert ok(filesystem.step(s, v.FsFailed("detach", 16, "busy"))).state.phase == "failed"


def test_filesystem_exact_refusals():
    s = filesystem.initial(PLAN, "/new")
    assert refused(filesystem.step(s, v.FsDone("mount"))) == "cannot Done filesystem step 'mount': it is idle"
    mounting = ok(filesystem.step(s, v.FsBegin())).state
    assert refused(filesystem.step(mounting, v.FsDone("pivot"))) == (
        "cannot Done filesystem step 'pivot': it is mounting (the step under way is 'mount')"
    )
    assert refused(filesystem.step(mounting, v.FsBegin())) == (
        "cannot Begin the filesystem: it is mounting (Begin is allowed only from idle)"
    )
    assert refused(filesystem.step(mounting, v.SecBegin())) == "the filesystem has no action SecBegin"


def test_filesystem_chroot_is_never_taken_when_not_allowed():
    s, _ = run(filesystem, filesystem.initial((), "/new"), v.FsBegin())
    assert refused(filesystem.step(s, v.FsDone("chroot"))) == (
        "cannot Done filesystem step 'chroot': it is pivoting (the step under way is 'pivot')"
    )


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
    s, _ = run(filesystem, filesystem.initial((), "/new", allow_chroot=True, audit=AUDIT),
               v.FsBegin(), v.FsFailed("pivot", 22, "Invalid argument"))
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
    s, _ = run(filesystem, filesystem.initial((), "/new", audit=AUDIT), v.FsBegin(), v.FsDone("pivot"),
               v.FsDone("detach"))
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


CASES = [
    (filesystem.initial(PLAN, "/new"), ()),
    (filesystem.initial(PLAN, "/new", audit=AUDIT), (v.FsBegin(), *[v.FsDone("mount")] * 3)),
    (filesystem.initial((), "/new", audit=AUDIT), (v.FsBegin(), v.FsDone("pivot"), v.FsDone("detach"))),
    (filesystem.initial((), "/new", True, AUDIT),
     (v.FsBegin(), v.FsFailed("pivot"), v.FsDone("chroot"), v.FsDone("audit"))),
    (filesystem.initial((), "/new", True, AUDIT),
     (v.FsBegin(), v.FsFailed("pivot"), v.FsDone("chroot"), v.FsFailed("audit"))),
]


def test_filesystem_from_tla_round_trip():
    for start, events in CASES:
        s, _ = run(filesystem, start, *events)
        values = filesystem.to_tla(s)
        rebuilt = filesystem.from_tla(values)
        assert filesystem.to_tla(rebuilt) == values
        assert rebuilt.audits == s.audits and rebuilt.audited == s.audited
    assert filesystem.is_initial(filesystem.from_tla(filesystem.to_tla(filesystem.initial(PLAN, "/n", True, AUDIT))))


def test_filesystem_from_tla_takes_the_plan_and_audit_from_the_base():
    """Replay from a recorded run rebuilds the state with the planned mounts and audit rules, so
    the intents it issues next are the planned ones; a base of another plan length, or without
    the audit the variables name, gives way to placeholders of the right shape."""
    for start, events in CASES:
        s, _ = run(filesystem, start, *events)
        rebuilt = filesystem.from_tla(filesystem.to_tla(s), start)
        assert rebuilt == s
    base = filesystem.initial(PLAN, "/new", audit=AUDIT)
    s, _ = run(filesystem, base, v.FsBegin(), *[v.FsDone("mount")] * 3, v.FsDone("pivot"))
    rebuilt = filesystem.from_tla(filesystem.to_tla(s), base)
    assert ok(filesystem.step(rebuilt, v.FsDone("detach"))).intents == (v.AuditMounts(AUDIT),)
    other = filesystem.from_tla(filesystem.to_tla(s), filesystem.initial(PLAN[:1], "/other"))
    assert (other.total, other.new_root, other.audits) == (3, "/other", True)
    assert filesystem.to_tla(other) == filesystem.to_tla(s)
