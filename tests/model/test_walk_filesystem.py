"""The filesystem's reachable states, walked exhaustively and compared with
formal/Filesystem.tla (see tests/model/walking.py for what every walk checks)."""

from __future__ import annotations

import functools
import itertools

import pytest

from nucleus import vocab as v
from nucleus.machines import filesystem
from tests.model.spec_constants import (
    BOOLS,
    FS_STEPS,
    MAX_MOUNTS,
    spec_strings,
)
from tests.model.spec_steps import (
    spec_filesystem,
    spec_init_filesystem,
)
from tests.model.walking import Walk, WalkedMachine, fs_inits

FS = WalkedMachine(
    filesystem, "Filesystem", "fs",
    functools.partial(spec_init_filesystem, MAX_MOUNTS), spec_filesystem,
    filesystem.candidate_events,
)


@pytest.fixture(scope="module")
def fs_walk() -> Walk:
    assert MAX_MOUNTS == 3
    return FS.walk(fs_inits(MAX_MOUNTS))


def test_filesystem_invariants_hold_everywhere(fs_walk):
    FS.check_invariants(fs_walk)


def test_filesystem_agrees_with_spec(fs_walk):
    FS.check_agrees(fs_walk)
    # For a plan of n operations: idle, mounting and failed at each count below n, then pivoting,
    # detaching, failed and sealed (2n + 5); with the chroot fallback also chrooting and a
    # chrooted seal (+2); with the audit also auditing (+1), and with both, auditing and failed
    # after a chroot (+2). Over n = 0..3 and both flags: 4 * 32 + 8 * 2 + 8 * 1 + 4 * 2.
    assert len(fs_walk.abstract_states()) == 4 * 32 + 8 * 2 + 8 * 1 + 4 * 2 == 160


def test_filesystem_covers_every_action(fs_walk):
    expected = {("Begin", "")} | {(a, s) for a in ("Done", "Fail") for s in FS_STEPS}
    FS.check_covers(fs_walk, expected)


def test_filesystem_audits_the_sealed_root_only_when_asked(fs_walk):
    """With an audit, detach and chroot lead to auditing with the audit's rules as the one intent;
    Done(audit) seals the root, Fail(audit) is fatal even with the chroot fallback. Without one,
    detach and chroot seal the root at once and audit is never under way."""
    outcomes = set()
    for s, e, r in fs_walk.steps():
        if not isinstance(e, (v.FsDone, v.FsFailed)):
            continue
        if e.step in ("detach", "chroot", "audit"):
            outcomes.add((s.audits, s.allow_chroot, v.action_name(e), e.step, r.state.phase))
        if isinstance(e, v.FsDone) and e.step in ("detach", "chroot"):
            expected = (v.AuditMounts(s.audit),) if s.audits else ()
            assert r.intents == expected, (s, e, r.intents)
            assert r.state.chrooted == (e.step == "chroot") and not r.state.audited
        if e.step == "audit":
            assert r.intents == () and r.state.chrooted == s.chrooted
            assert r.state.audited == isinstance(e, v.FsDone)
    assert outcomes == {
        (audit, allow, action, step, phase)
        for audit, allow in itertools.product(BOOLS, BOOLS)
        for action, step, phase in (
            ("Done", "detach", "auditing" if audit else "sealed"),
            ("Fail", "detach", "failed"),
        )
        + ((("Done", "chroot", "auditing" if audit else "sealed"), ("Fail", "chroot", "failed")) if allow else ())
        + ((("Done", "audit", "sealed"), ("Fail", "audit", "failed")) if audit else ())
    }
    for s in fs_walk.states:
        if s.phase == "sealed":
            assert s.audited == s.audits
        if s.phase == "auditing":
            assert s.audits and not s.audited and s.mounted == s.total


def test_filesystem_issues_the_whole_plan_at_begin_then_pivots_into_its_root(fs_walk):
    for s, e, r in fs_walk.steps():
        if isinstance(e, v.FsBegin):
            assert r.intents == (s.plan or (v.PivotRoot(s.new_root),))
        elif r.state.phase == "pivoting":
            assert (s.phase, r.intents) == ("mounting", (v.PivotRoot(s.new_root),))
        elif r.state.phase == "chrooting":
            assert r.intents[-1] == v.Chroot(s.new_root)


def test_filesystem_abstraction(fs_walk):
    FS.check_abstraction(fs_walk)


def test_filesystem_is_initial_holds_exactly_on_the_spec_init():
    states = [
        {"fs_phase": p, "fs_allowChroot": a, "fs_chrooted": c, "fs_audit": au, "fs_audited": ad,
         "fs_total": n, "fs_mounted": m}
        for p in spec_strings("Filesystem", "Phases")
        for a, c, au, ad in itertools.product(BOOLS, repeat=4)
        for n in range(MAX_MOUNTS + 1) for m in range(n + 1)
    ]
    FS.check_is_initial(states)

