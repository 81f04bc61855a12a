"""The security machine (formal/Security.tla): capabilities, then seccomp, then Landlock; which
failures degrade and which are fatal (strict modes never degrade); the parameters its intents
carry (the seccomp program by hash, or the trace-mode filter)."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.machines import security
from tests.unit.machine_support import ok, refused, run

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
    assert (r.state.phase, r.intents) == ("seccomp", (v.LoadSeccomp("ab" * 32, True, "enforce"),))
    assert r.intents == (v.LoadSeccomp("ab" * 32, True),)  # "enforce" is the default mode
    r = ok(security.step(r.state, v.SecDone("seccomp")))
    assert (r.state.phase, r.intents) == ("landlock", (v.ApplyLandlock((("/usr", ("read_file", "read_dir")),), 2),))
    r = ok(security.step(r.state, v.SecDone("landlock")))
    assert (r.state.phase, r.intents) == ("locked", ())
    assert r.state.applied == {"caps", "seccomp", "landlock"} and r.state.degraded == frozenset()
    assert r.state.level == "enforced"


def test_security_trace_mode_loads_the_notification_filter():
    """seccomp trace mode: the filter that reports every syscall to the tracer, by mode, with no
    compiled program; the other controls are the same."""
    s = security.initial(**{**SEC_PARAMS, "program_sha256": ""}, seccomp_mode="trace")
    s, intents = run(security, s, v.SecBegin(), v.SecDone("caps"))
    assert intents[-1] == v.LoadSeccomp("", True, "trace")
    assert intents[-1] != v.LoadSeccomp("", True, "enforce")
    s, intents = run(security, s, v.SecDone("seccomp"), v.SecDone("landlock"))
    assert (s.phase, s.level, intents[0]) == ("locked", "traced", v.ApplyLandlock(SEC_PARAMS["landlock_rules"], 2))


def _sec_at(phase: str, allow_degraded: bool, strict: bool = False) -> security.SecurityState:
    s = ok(security.step(security.initial(allow_degraded=allow_degraded, strict=strict, **SEC_PARAMS),
                         v.SecBegin())).state
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
    r = ok(security.step(_sec_at("landlock", allow_degraded), v.SecFailed("landlock", 95, "not supported")))
    if allow_degraded:
        assert (r.state.phase, r.state.degraded, r.state.level) == ("locked", {"landlock"}, "degraded")
        assert len(r.intents) == 1 and isinstance(r.intents[0], v.Warn)
        assert "landlock could not be applied (not supported)" in r.intents[0].message
    else:
        assert (r.state.phase, r.intents) == ("failed", ())


@pytest.mark.parametrize("allow_degraded", [False, True])
def test_security_caps_failure_is_never_degradable(allow_degraded):
    r = ok(security.step(_sec_at("caps", allow_degraded), v.SecFailed("caps", 1, "Operation not permitted")))
    assert (r.state.phase, r.state.degraded, r.intents) == ("failed", frozenset(), ())
    for e in security.candidate_events(r.state):
        assert "it is failed" in refused(security.step(r.state, e))


def test_security_exact_refusals():
    s = security.initial()
    assert refused(security.step(s, v.SecDone("caps"))) == "cannot Done security control 'caps': it is idle"
    caps = ok(security.step(s, v.SecBegin())).state
    assert refused(security.step(caps, v.SecDone("seccomp"))) == "cannot Done security control 'seccomp': it is caps"
    assert refused(security.step(caps, v.SecBegin())) == (
        "cannot Begin security: it is caps (Begin is allowed only from idle)"
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
        "sec_allowDegraded": True, "sec_strict": True, "sec_trace": False, "sec_phase": "landlock",
        "sec_applied": frozenset({"caps", "seccomp"}), "sec_degraded": frozenset(),
    }
    assert security.to_tla(security.from_tla(values)) == values
    assert security.initial().strict is False and security.initial(strict=True).strict is True
    assert security.is_initial(security.initial(allow_degraded=True, strict=True))


def test_security_from_tla_takes_the_parameters_from_the_base():
    base = security.initial(allow_degraded=True, **SEC_PARAMS, seccomp_mode="trace")
    s, _ = run(security, base, v.SecBegin(), v.SecDone("caps"))
    rebuilt = security.from_tla(security.to_tla(s), base)
    assert rebuilt == s
    assert ok(security.step(rebuilt, v.SecDone("seccomp"))).intents == (
        v.ApplyLandlock(SEC_PARAMS["landlock_rules"], 2),
    )
    # Without a base, the filter's mode follows sec_trace; the other parameters are the defaults.
    assert security.from_tla(security.to_tla(s)).seccomp_mode == "trace"
    assert security.from_tla({**security.to_tla(s), "sec_trace": False}).seccomp_mode == "enforce"
    assert security.from_tla(security.to_tla(s)).keep_caps == ()


def test_security_trace_mode_is_its_own_level_and_never_strict():
    """Trace mode's filter refuses nothing: the level is "traced", never "enforced" (a control
    missing is still "degraded" first); a strict mode never traces."""
    traced = security.initial(allow_degraded=True, **SEC_PARAMS, seccomp_mode="trace")
    s, _ = run(security, traced, v.SecBegin(), v.SecDone("caps"), v.SecDone("seccomp"), v.SecDone("landlock"))
    assert (s.phase, s.level, security.to_tla(s)["sec_trace"]) == ("locked", "traced", True)
    s, _ = run(security, traced, v.SecBegin(), v.SecDone("caps"), v.SecDone("seccomp"),
               v.SecFailed("landlock", 95, "Operation not supported"))
    assert (s.phase, s.level) == ("locked", "degraded")
    with pytest.raises(ValueError, match="seccomp trace mode in a strict mode"):
        security.initial(strict=True, seccomp_mode="trace")
    bad = dataclasses.replace(security.initial(strict=True), seccomp_mode="trace")
    assert not security.StrictNeverTraced(bad) and not security.is_initial(bad)


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
