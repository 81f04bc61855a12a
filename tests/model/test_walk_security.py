"""Security's reachable states, walked exhaustively and compared with formal/Security.tla (see
tests/model/walking.py for what every walk checks)."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import security
from tests.model.spec_constants import (
    BOOLS,
    CONTROLS,
    DEGRADABLE,
    sec_next_phase,
    spec_strings,
    subsets,
)
from tests.model.spec_steps import (
    spec_init_security,
    spec_security,
)
from tests.model.walking import Walk, WalkedMachine


def sec_inits() -> list[security.SecurityState]:
    return [
        security.initial(allow_degraded=a, strict=strict, **params)
        for a in BOOLS
        for strict in BOOLS
        for params in (
            {},
            {"keep_caps": ("CAP_NET_BIND_SERVICE",), "program_sha256": "ab" * 32, "log_denied": True},
            {"seccomp_mode": "trace", "landlock_rules": (("/usr", ("read",)),), "landlock_min_abi": 3},
        )
        if not (strict and params.get("seccomp_mode") == "trace")  # the spec's Init excludes it
    ]


SEC = WalkedMachine(
    security, "Security", "sec",
    spec_init_security, spec_security, security.candidate_events,
)


@pytest.fixture(scope="module")
def sec_walk() -> Walk:
    return SEC.walk(sec_inits())


def test_security_invariants_hold_everywhere(sec_walk):
    SEC.check_invariants(sec_walk)


def test_security_agrees_with_spec(sec_walk):
    SEC.check_agrees(sec_walk)
    # Per (allowDegraded, strict, trace), trace never strict: idle, caps, seccomp, landlock,
    # locked, and failed at each control (8); where a failure degrades (allowed, not strict), no
    # failure after caps but landlock with seccomp degraded, and locked with seccomp, landlock or
    # both degraded (+2).
    assert len(sec_walk.abstract_states()) == 6 * 8 + 2 * 2 == 52


def test_security_covers_every_action(sec_walk):
    expected = {("Begin", "")} | {(a, c) for a in ("Done", "Fail") for c in CONTROLS}
    SEC.check_covers(sec_walk, expected)


def test_security_strict_never_degrades(sec_walk):
    """A seccomp or Landlock failure degrades only when degraded security is allowed and the mode
    is not strict; a strict mode fails closed even when it is allowed. Caps never degrade."""
    outcomes = set()
    for s, e, r in sec_walk.steps():
        if isinstance(e, v.SecFailed):
            outcomes.add((s.allow_degraded, s.strict, e.step, r.state.phase))
            if r.state.phase == "failed":
                assert r.intents == () and r.state.degraded == s.degraded
            else:
                assert isinstance(r.intents[0], v.Warn)
    assert outcomes == {
        (a, strict, c, sec_next_phase(c) if a and not strict and c in DEGRADABLE else "failed")
        for a in BOOLS for strict in BOOLS for c in CONTROLS
    }
    assert not any(s.degraded for s in sec_walk.states if s.strict)


def test_security_issues_the_planned_controls(sec_walk):
    """The seccomp filter is the compiled program by hash in enforce mode, the notification
    filter in trace mode; the other controls carry the state's parameters."""
    for s, _, r in sec_walk.steps():
        for intent in r.intents:
            if isinstance(intent, v.LoadSeccomp):
                assert intent == v.LoadSeccomp(s.program_sha256, s.log_denied, s.seccomp_mode)
            if isinstance(intent, v.DropCapabilities):
                assert intent.keep == s.keep_caps
            if isinstance(intent, v.ApplyLandlock):
                assert (intent.rules, intent.min_abi) == (s.landlock_rules, s.landlock_min_abi)
    assert {s.seccomp_mode for s in sec_walk.states} == {"enforce", "trace"}


def test_security_abstraction(sec_walk):
    SEC.check_abstraction(sec_walk)


def test_security_is_initial_holds_exactly_on_the_spec_init():
    states = [
        {"sec_allowDegraded": a, "sec_strict": strict, "sec_trace": trace, "sec_phase": p, "sec_applied": applied,
         "sec_degraded": degraded}
        for a in BOOLS for strict in BOOLS for trace in BOOLS for p in spec_strings("Security", "Phases")
        for applied in subsets(CONTROLS) for degraded in subsets(DEGRADABLE)
    ]
    SEC.check_is_initial(states)
