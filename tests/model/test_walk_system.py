"""The System's reachable states from the code's side: walked at a small filesystem bound, every
invariant, the abstraction and from_tla checked across the composition (see
tests/model/walking.py). Whether the code takes exactly the spec's steps is
tests/model/test_code_matches_spec.py's, on the spec's own states.

The service mode fixes most parameters (System.tla's ModeParameters: 288 initial states at this
bound), and each adds some 500 states, so the walk does not start from all of them: without a
network, every combination agent mode leaves free (rootless, chroot fallback, degraded security,
seccomp trace) with a one-operation plan, and plans of none and two operations without a
weakening, in every mode; with a bridge or a user-mode network (with and without an egress
policy), a one-operation plan without a weakening.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from nucleus import vocab as v
from nucleus.machines import filesystem, isolation, lifecycle, network, resources, security, system
from nucleus.machines.base import Refused, Step
from tests.model.spec_constants import (
    BOOLS,
    CONTROLS,
    DEGRADABLE,
    FS_STEPS,
    ISO_STEPS,
    LEVELS,
    NET_STEPS,
    PARAMETERS,
    RES_STEPS,
    RES_UNDER_WAY,
    SIGNALS,
    Vars,
    sec_next_phase,
    system_next_actions,
)
from tests.model.spec_steps import (
    spec_init_system,
)
from tests.model.walking import (
    NET_EGRESS,
    NET_PLANNED,
    NET_USER,
    NET_USER_EGRESS,
    OTHER_AUDIT,
    Walk,
    check_abstraction,
    check_from_tla,
    check_invariants,
    fs_inits,
    fs_plans,
    show,
)

SYSTEM_MAX_MOUNTS = 2
LC_PLAIN_ACTIONS = ("Create", "SetupFailed", "Start", "Abort", "Exit", "Lost", "Attach", "CleanupDone", "Remove")
PLANNED = {
    "create": v.CreateCgroup(("/sys/fs/cgroup/p",), (), ("/sys/fs/cgroup/p/c-0123",)),
    "limits": v.SetCgroupLimits((("/sys/fs/cgroup/p/c-0123/pids.max", "64", False),)),
    "attach": v.AttachCgroup(("/sys/fs/cgroup/p/c-0123/cgroup.procs",)),
    "remove": v.RemoveCgroup(dirs=("/sys/fs/cgroup/p/c-0123",)),
}


MODES = ("agent", "strict-agent", "production")


def system_sample(values: Vars) -> bool:
    """Whether the walk starts from this initial spec state."""
    weakened = values["sec_allowDegraded"] or values["sec_trace"] or values["fs_allowChroot"]
    if values["net_bridged"] or values["net_user"]:
        return values["fs_total"] == 1 and not weakened
    return values["fs_total"] == 1 or not weakened


def spec_init_system_sample() -> list[Vars]:
    return [s for s in spec_init_system(SYSTEM_MAX_MOUNTS) if system_sample(s)]


def _key(values: Vars) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(values.items()))


def system_inits() -> list[system.SystemState]:
    """A concrete state for every sampled initial spec state (the code's parameters in every
    combination, kept where the spec's Init, ModeParameters included, allows them); for a few
    configurations also a second concrete state that differs only outside the spec (mount plan,
    audit rules, hostname, the controls' arguments, the planned cgroup intents, the workload),
    so the abstraction is checked across the composition."""
    nets = (network.initial(), network.initial(**NET_PLANNED), network.initial(**NET_PLANNED, **NET_EGRESS),
            network.initial(**NET_USER), network.initial(**NET_USER, **NET_USER_EGRESS))
    out = [
        system.initial(isolation.initial(rootless=r), fs,
                       security.initial(allow_degraded=a, strict=strict, seccomp_mode="trace" if trace else "enforce"),
                       resources.initial(required=q), net=net, mode=mode)
        for mode in MODES
        for r in BOOLS
        for fs in fs_inits(SYSTEM_MAX_MOUNTS)
        if fs.new_root == "/new" and fs.plan == fs_plans(fs.total)[0] and fs.audit != OTHER_AUDIT
        for a in BOOLS
        for strict in BOOLS
        for trace in BOOLS
        if not (strict and trace)
        for q in BOOLS
        for net in nets
    ]
    for r in BOOLS:
        out.append(system.initial(
            isolation.initial(rootless=r, hostname="other", trace_log="/tmp/t.ndjson"),
            filesystem.initial(fs_plans(1)[1], "/new", allow_chroot=True),
            security.initial(allow_degraded=True, keep_caps=("CAP_CHOWN",), log_denied=True, seccomp_mode="trace"),
            resources.initial(False, **PLANNED),
            lifecycle.initial(v.ExecWorkload(("/bin/true",))),
        ))
        out.append(system.initial(
            isolation.initial(rootless=r, hostname="other"),
            filesystem.initial(fs_plans(SYSTEM_MAX_MOUNTS)[1], "/new", audit=OTHER_AUDIT),
            security.initial(strict=True, keep_caps=("CAP_CHOWN",), log_denied=True),
            resources.initial(True, **PLANNED),
            lifecycle.initial(v.ExecWorkload(("/bin/true",))),
            mode="production",
        ))
    spec = {_key(s) for s in spec_init_system_sample()}
    sampled = [s for s in dict.fromkeys(out) if _key(system.to_tla(s)) in spec]
    assert {_key(system.to_tla(s)) for s in sampled} == spec
    assert len(sampled) == len(spec) + 4
    return sampled


def _abandons_alone() -> bool:
    """Whether the System takes the cgroup's Abandon on its own (test_machine_system's xfail):
    formal/System.tla takes it only inside Lost, so the walk offers it only once the code agrees."""
    s = system.initial(isolation.initial(), filesystem.initial((), "/new"), security.initial())
    for e in (v.Create(), v.ResBegin()):
        s = system.step(s, e).state
    return isinstance(system.step(s, v.ResAbandon()), Step)


# The events offered to the System in every state: candidate_events does not depend on the state
# (checked below), and building ~60 events in each of ~43,000 states would dominate the walk.
SYSTEM_EVENTS = [e for e in system.candidate_events(system_inits()[0])
                 if not (isinstance(e, v.ResAbandon) and _abandons_alone())]


def sys_events(s: system.SystemState) -> list[v.Event]:
    return SYSTEM_EVENTS


@pytest.fixture(scope="module")
def sys_walk() -> Walk:
    return Walk(system, system_inits(), sys_events)


def test_system_candidate_events_are_every_machines_own(sys_walk):
    components = [(name, module, {getattr(s, name) for s in sys_walk.states}) for name, module in system.MACHINES.items()]
    for name, module, states in components:
        offered = {tuple(module.candidate_events(s)) for s in states}
        assert len(offered) == 1, f"{name}: candidate events depend on the state"
    expected = [e for _, module, states in components for e in module.candidate_events(next(iter(states)))]
    assert [e for e in expected if e in SYSTEM_EVENTS] == SYSTEM_EVENTS
    assert set(expected) - set(SYSTEM_EVENTS) <= {v.ResAbandon()}
    for s in sys_walk.states[::97]:
        assert system.candidate_events(s) == expected


def test_system_invariants_hold_everywhere(sys_walk):
    check_invariants(sys_walk, system.all_invariants())


def test_system_checks_every_invariant_of_every_machine():
    names = {name for name, _ in system.all_invariants()}
    for prefix, machine in system.MACHINES.items():
        for inv in machine.INVARIANTS:
            assert f"{prefix}.{inv.__name__}" in names
    for inv in system.INVARIANTS:
        assert inv.__name__ in names
    assert set(system.MACHINES) == {m for m, _ in system_next_actions()}


def test_system_sample_takes_every_parameter_value():
    """The sample has every mode; in agent mode every combination of the four Boolean
    parameters it leaves free; every plan length, and every network."""
    inits = spec_init_system_sample()
    booleans = [p for m in ("iso", "fs", "sec", "res") for p in PARAMETERS[m]]
    assert len(booleans) == 7
    assert {s["sys_mode"] for s in inits} == set(MODES)
    free = ["iso_rootless", "fs_allowChroot", "sec_allowDegraded", "sec_trace"]
    agent = [s for s in inits if s["sys_mode"] == "agent"]
    assert {tuple(s[p] for p in free) for s in agent} == set(itertools.product(BOOLS, repeat=4))
    assert {s["fs_total"] for s in inits} == set(range(SYSTEM_MAX_MOUNTS + 1))
    assert {(s["net_bridged"], s["net_user"], s["net_egress"]) for s in inits} == {
        (False, False, False), (True, False, False), (True, False, True), (False, True, False), (False, True, True)}
    assert len(inits) == 20 + 8 + 14 + 10 < len(spec_init_system(SYSTEM_MAX_MOUNTS)) == 240 + 30 + 18


# System is walked as it is model-checked, its network at NetExtra 0: more attachments' steps are
# the Network walk's (test_walk_network) and a recorded run's (traces/recorded/run-bridge, which
# `nucleus trace check` checks at NetExtra 1).
SYSTEM_NET_STEPS = tuple(s for s in NET_STEPS if s not in ("attach", "join"))


def test_system_covers_every_action(sys_walk):
    expected = {("lc", a, "") for a in LC_PLAIN_ACTIONS}
    expected |= {("lc", "Prepared", lvl) for lvl in LEVELS} | {("lc", "Kill", sig) for sig in SIGNALS}
    expected |= {("iso", "Begin", ""), ("iso", "Resume", "")}
    expected |= {("iso", a, s) for a in ("Done", "Fail") for s in ISO_STEPS}
    expected |= {("fs", "Begin", "")} | {("fs", a, s) for a in ("Done", "Fail") for s in FS_STEPS}
    expected |= {("sec", "Begin", "")} | {("sec", a, c) for a in ("Done", "Fail") for c in CONTROLS}
    expected |= {("res", a, "") for a in ("Begin", "Attach", "Release")}
    expected |= {("res", a, s) for a in ("Done", "Fail") for s in RES_STEPS}
    expected |= {("net", a, "") for a in ("Begin", "Release")}
    expected |= {("net", a, s) for a in ("Done", "Fail") for s in SYSTEM_NET_STEPS}
    assert {(m, a) for m, a, _ in expected} == system_next_actions()
    missing = expected - sys_walk.taken(with_machine=True)
    assert not missing, f"actions never taken: {sorted(missing)}"


def test_system_lost_abandons_the_cgroup_step_under_way(sys_walk):
    """Lost in the same step abandons a cgroup step under way (it would never report): a setup
    step ends failed or degraded, holding what it may have made; a removal ends leaked. With no
    cgroup step under way, Lost leaves the cgroup alone, but for one cleanup gave up on, whose
    removals start afresh (Reclaim). Either way cleanup is asked for."""
    outcomes = set()
    for s, e, r in sys_walk.steps():
        if not isinstance(e, v.Lost):
            continue
        assert r.intents[0] == v.Cleanup()
        if s.res.phase in RES_UNDER_WAY:
            outcomes.add((s.res.required, RES_UNDER_WAY[s.res.phase], r.state.res.phase))
            assert r.state.res.held
        elif resources.gave_up(s.res):
            # rm --force takes over a cleanup that gave up: its removals are tried afresh.
            assert r.state.res == replace(s.res, tries=0) and r.intents == (v.Cleanup(),)
            outcomes.add((s.res.required, "gave up", "leaked"))
        else:
            assert r.state.res == s.res and r.intents == (v.Cleanup(),)
    assert outcomes == {
        (q, step, "leaked" if step == "release" else ("failed" if q else "degraded"))
        for q in BOOLS for step in RES_STEPS
    } | {(q, "gave up", "leaked") for q in BOOLS}


def test_system_cgroup_failure_outcomes(sys_walk):
    """A cgroup step that fails is fatal when the cgroup is required and otherwise lets the
    container run without one, holding whatever the step made; both gates of isolation are
    passed in both cases."""
    outcomes = set()
    for s, e, r in sys_walk.steps():
        if isinstance(e, v.ResFailed):
            outcomes.add((s.res.required, e.step, r.state.res.phase, r.state.res.held))
    assert outcomes == {
        (q, step, "leaked" if step == "release" else ("failed" if q else "degraded"), True)
        for q in BOOLS for step in RES_STEPS
    }
    running = {(s.res.required, s.res.phase) for s in sys_walk.states if s.lc.status == "running"}
    assert running == {(False, "ready"), (True, "ready"), (False, "degraded")}
    gates = {
        (s.iso.rootless, s.iso.plan[s.iso.done], s.res.phase)
        for s, e, _ in sys_walk.steps() if isinstance(e, v.IsoResume)
    }
    assert {(r, g) for r, g, _ in gates} == {(False, "unshare"), (False, "enter_user"), (True, "unshare")}
    assert {p for _, g, p in gates if g == "unshare"} == {"ready", "degraded"}


def test_system_cleanup_removes_whatever_creation_may_have_left(sys_walk):
    """Once creation was tried, cleanup is done only after a removal completed."""
    for s, e, r in sys_walk.steps():
        if isinstance(e, v.CleanupDone):
            assert s.res.phase == "released" and s.net.phase == "released" and not s.net.held
        if isinstance(e, v.ResRelease) and s.res.phase != "idle":
            # A removal tried again waits a little longer each time.
            assert r.intents == (s.res.remove.replace(pause=resources.RELEASE_PAUSES[s.res.tries]),)
            assert s.res.tries == 0 or s.res.phase == "leaked"


def test_system_strict_modes_never_degrade(sys_walk):
    """In the composition too: a strict mode's seccomp or Landlock failure fails the setup, even
    with degraded security allowed; only the agent mode with it allowed runs degraded."""
    outcomes = set()
    for s, e, r in sys_walk.steps():
        if isinstance(e, v.SecFailed):
            outcomes.add((s.sec.allow_degraded, s.sec.strict, e.step, r.state.sec.phase))
            if r.state.sec.phase == "failed" and r.state.lc.status == "creating":
                assert system.advance(r.state) == v.SetupFailed()
    # A strict mode never allows degraded security (ModeParameters); Security's own check covers
    # the machine failing closed if it did.
    assert outcomes == {
        (a, strict, c, sec_next_phase(c) if a and not strict and c in DEGRADABLE else "failed")
        for a in BOOLS for strict in BOOLS if not (a and strict) for c in CONTROLS
    }
    levels = {(s.mode, s.sec.allow_degraded, s.sec.trace, s.lc.security) for s in sys_walk.states
              if s.lc.status in ("created", "running")}
    assert levels == (
        {("agent", a, trace, "traced" if trace else "enforced") for a in BOOLS for trace in BOOLS}
        | {("agent", True, trace, "degraded") for trace in BOOLS}
        | {(mode, False, False, "enforced") for mode in ("strict-agent", "production")}
    )


def test_system_production_runs_only_as_promised(sys_walk):
    """Production's workload runs only with every control enforced, its cgroup limited, its
    mounts audited in a pivoted root, and on a network of its own its egress policy in force
    (the spec's Production* invariants); each of those is reached by some run of it."""
    serving = [s for s in sys_walk.states if s.mode == "production" and system.serving(s)]
    assert serving
    for s in serving:
        assert (s.lc.security, s.res.phase, s.res.limited, s.fs.audited, s.fs.chrooted) == (
            "enforced", "ready", True, True, False)
        assert not (s.net.bridged or s.net.user) or s.net.egress
    assert {(s.net.bridged, s.net.user) for s in serving} == {(False, False), (True, False), (False, True)}


def test_system_runs_only_an_audited_root(sys_walk):
    """With the audit, nothing runs in the root before it is audited: the user namespace waits,
    security waits, and a failed audit fails the setup; without it, the root is never audited."""
    audited_steps = set()
    for s, e, r in sys_walk.steps():
        if isinstance(e, (v.SecBegin, v.Prepared)) or (
            isinstance(e, v.IsoResume) and isolation.next_step(s.iso) == "enter_user"
        ):
            assert s.fs.phase == "sealed" and s.fs.audited == s.fs.audits, (e, s.fs)
        if isinstance(e, (v.FsDone, v.FsFailed)) and e.step == "audit":
            audited_steps.add((v.action_name(e), s.fs.chrooted, r.state.fs.phase))
            if isinstance(e, v.FsFailed) and r.state.lc.status == "creating":
                assert system.advance(r.state) == v.SetupFailed()
    # Only production audits, and it never falls back to a chroot (Filesystem's walk audits a
    # chrooted root too).
    assert audited_steps == {
        (action, False, "sealed" if action == "Done" else "failed") for action in ("Done", "Fail")
    }
    for s in sys_walk.states:
        if s.lc.status in ("created", "running"):
            assert s.fs.audited == s.fs.audits
        if s.fs.phase == "auditing" and s.lc.status == "creating" and not s.failed():
            assert system.advance(s) is None  # the audit is under way: its outcome comes first
            why = system.step(s, v.SecBegin())
            assert isinstance(why, Refused) and "the root is sealed" in why.why


def test_system_abstraction(sys_walk):
    assert check_abstraction(sys_walk) > 0
    # system.from_tla is each machine's from_tla, which the machines' own walks check in every
    # state they reach (a superset of what they reach in the System): one in five spec states
    # here. Every initial state is rebuilt as an initial state (trace replay starts from one).
    check_from_tla(sys_walk, sys_events, stride=5)
    for s in system_inits():
        rebuilt = system.from_tla(system.to_tla(s))
        assert system.to_tla(rebuilt) == system.to_tla(s) and system.is_initial(rebuilt)
        assert system.from_tla(system.to_tla(s), s) == s


def test_system_advance_names_only_enabled_events(sys_walk):
    """advance() is what the driver follows on its own: it must never name a refused event."""
    for s in sys_walk.states:
        e = system.advance(s)
        if e is not None:
            r = system.step(s, e)
            assert isinstance(r, Step), f"advance named {e!r} in [{show(system.to_tla(s))}]: {r.why}"


def _awaiting_an_observation(s: system.SystemState) -> bool:
    """Some machine has a step under way: the driver waits for what its intent reports."""
    return (
        s.iso.phase == "running"
        or s.fs.phase in ("mounting", "pivoting", "chrooting", "detaching", "auditing")
        or s.sec.phase in CONTROLS
        or s.res.phase in RES_UNDER_WAY
        or network.under_way(s.net) is not None
    )


def test_system_advance_never_stalls(sys_walk):
    """Where advance() names nothing, setup and cleanup are either finished or waiting for an
    observation; the only other stops are a cgroup whose removals all failed and a network whose
    teardown failed, which `rm --force` tries again. After Lost,
    cleanup never waits for a cgroup step: the step was abandoned."""
    stops = set()
    for s in sys_walk.states:
        if system.advance(s) is not None or _awaiting_an_observation(s):
            continue
        lc = s.lc
        if lc.status == "creating":
            raise AssertionError(f"setup stalls in [{show(system.to_tla(s))}]")
        if lc.status in ("stopped", "failed") and not lc.cleaned:
            assert resources.gave_up(s.res) or s.net.phase == "leaked", (
                f"cleanup stalls in [{show(system.to_tla(s))}]")
        stops.add((lc.status, lc.cleaned))
    assert stops == {
        ("none", True), ("created", False), ("running", False), ("removed", True),
        ("stopped", True), ("failed", True), ("stopped", False), ("failed", False),
    }
    # Lost during cleanup with a cgroup step under way leaves nothing to wait for.
    for s in sys_walk.states:
        if s.lc.status in ("stopped", "failed") and not s.lc.cleaned and s.res.phase in RES_UNDER_WAY:
            after = system.step(s, v.Lost()).state
            assert after.res.phase not in RES_UNDER_WAY
            assert system.advance(after) is not None or resources.gave_up(after.res)


def test_system_lost_abandons_the_network_step_under_way(sys_walk):
    """Lost in the same step abandons a network step under way: a setup step ends failed,
    holding what it may have made (so the teardown removes it); a teardown ends leaked. The
    network is torn down only once the cgroup, with every process of the container, is gone,
    and a container runs only with its network in place."""
    outcomes = set()
    for s, e, r in sys_walk.steps():
        if isinstance(e, v.Lost) and network.under_way(s.net) is not None:
            step = network.under_way(s.net)
            outcomes.add((step, r.state.net.phase))
            if step in network.HOST_STEPS:
                assert step in r.state.net.held
        if isinstance(e, v.NetRelease):
            assert s.res.phase == "released" and s.lc.status in ("stopped", "failed")
            if s.net.held:
                assert r.intents == (s.net.teardown.replace(held=tuple(
                    n for n in network.HOST_STEPS if n in s.net.held)),)
    assert outcomes == {(step, "leaked" if step == "teardown" else "failed") for step in SYSTEM_NET_STEPS}
    for s in sys_walk.states:
        if s.lc.status in ("created", "running"):
            assert s.net.phase == "ready"
