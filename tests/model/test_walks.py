"""Exhaustive breadth-first walks of every machine's reachable states at small bounds.

Each walk starts from every initial state the spec allows at the bounds below, offers every
candidate event in every reachable state, and checks:

* every invariant of the machine (for System: of the composition and of each component) holds in
  every reachable state;
* the code agrees with the spec: in every reachable state the set of accepted (action, argument,
  successor variables) equals what a line-by-line transliteration of the spec's actions
  (the ``spec_*`` functions below) allows, and both reach the same set of spec states;
* every action of the spec's Next, with every argument it ranges over, is taken somewhere;
* ``to_tla`` is a sound abstraction: concrete states that look the same to the spec behave the
  same for every event (same refusals, same successor variables), and ``from_tla`` rebuilds a state
  with the same variables (trace replay starts from it).

The spec's constants (plans, step names, signals) are read from formal/*.tla, so a change in a spec
that is not mirrored in the code shows up here.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from nucleus import vocab as v
from nucleus.machines import filesystem, isolation, lifecycle, security, system
from nucleus.machines.base import Refused, Step

FORMAL = Path(__file__).resolve().parents[2] / "formal"


# ---------------------------------------------------------------------------------------------
# Reading constants out of the specs.


def _spec_text(module: str) -> str:
    return (FORMAL / f"{module}.tla").read_text()


def _spec_strings(module: str, name: str) -> tuple[str, ...]:
    """The string literals of a definition `name == {...}` or `name == <<...>>`, in order."""
    text = _spec_text(module)
    m = re.search(rf"^{name}\s*==\s*(\{{[^}}]*\}}|<<[^>]*>>)", text, re.MULTILINE)
    assert m, f"formal/{module}.tla defines no {name}"
    return tuple(re.findall(r'"([^"]*)"', m.group(1)))


def _spec_int(module: str, name: str) -> int:
    m = re.search(rf"^{name}\s*==\s*(\d+)", _spec_text(module), re.MULTILINE)
    assert m, f"formal/{module}.tla defines no {name}"
    return int(m.group(1))


def _spec_next_actions(module: str) -> set[str]:
    """The action names a single-machine spec's Next records in `event` (Ev("Name", ...))."""
    body = _spec_text(module).split("Next ==", 1)[1].split("Spec ==", 1)[0]
    return set(re.findall(r'Ev\("(\w+)"', body))


def _system_next_actions() -> set[tuple[str, str]]:
    """(machine, action) pairs the System spec records (Ev("m", "Name", ...))."""
    return set(re.findall(r'Ev\("(\w+)", "(\w+)"', _spec_text("System")))


LEVELS = ("enforced", "degraded")
SIGNALS = _spec_strings("Lifecycle", "ModelSignals")
PRIVILEGED_PLAN = _spec_strings("Isolation", "PrivilegedPlan")
ROOTLESS_PLAN = _spec_strings("Isolation", "RootlessPlan")
ISO_STEPS = _spec_strings("Isolation", "StepNames")
FS_STEPS = _spec_strings("Filesystem", "StepNames")
MAX_MOUNTS = _spec_int("Filesystem", "MaxMounts")
CONTROLS = ("caps", "seccomp", "landlock")  # the order of NextPhase in formal/Security.tla
DEGRADABLE = _spec_strings("Security", "Degradable")


def test_spec_constants_match_the_code():
    assert set(_spec_strings("Security", "Controls")) == set(CONTROLS) == set(security.CONTROLS)
    assert security.CONTROLS == CONTROLS
    assert set(security.DEGRADABLE) == set(DEGRADABLE)
    assert isolation.PRIVILEGED_PLAN == PRIVILEGED_PLAN
    assert isolation.ROOTLESS_PLAN == ROOTLESS_PLAN
    assert set(ISO_STEPS) == set(PRIVILEGED_PLAN) | set(ROOTLESS_PLAN)
    assert set(lifecycle.STATUSES) == set(_spec_strings("Lifecycle", "Statuses"))
    assert set(lifecycle.LEVELS) == set(_spec_strings("Lifecycle", "Levels"))
    assert set(SIGNALS) <= set(lifecycle.SIGNALS)
    assert set(isolation.PHASES) == set(_spec_strings("Isolation", "Phases"))
    assert set(filesystem.PHASES) == set(_spec_strings("Filesystem", "Phases"))
    assert set(security.PHASES) == set(_spec_strings("Security", "Phases"))


def test_every_invariant_of_each_spec_has_a_function_of_the_same_name():
    for module, machine in (
        ("Lifecycle", lifecycle),
        ("Isolation", isolation),
        ("Filesystem", filesystem),
        ("Security", security),
        ("System", system),
    ):
        text = _spec_text(module)
        inv = text.split("\nInv ==", 1)[1].split("\n\n", 1)[0]
        names = {n for n in re.findall(r"\b([A-Z]\w+)\b", inv) if "!" not in n}
        names -= {"LC", "ISO", "FS", "SEC", "Inv"}
        coded = {f.__name__ for f in machine.INVARIANTS}
        assert names == coded, f"{module}: spec Inv names {sorted(names)}, code has {sorted(coded)}"


# ---------------------------------------------------------------------------------------------
# The specs' actions, transliterated. Each takes the spec variables (a dict, as to_tla returns)
# and returns [(label, next variables)], label = (action, argument).

Vars = dict[str, Any]
Label = tuple[str, ...]


def spec_lifecycle(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    st = s["lc_status"]

    def to(label: Label, **changes: Any) -> None:
        out.append((label, {**s, **changes}))

    if st == "none":
        to(("Create", ""), lc_status="creating", lc_cleaned=False)
    if st == "creating":
        for level in LEVELS:
            to(("Prepared", level), lc_status="created", lc_security=level)
        to(("SetupFailed", ""), lc_status="failed")
    if st == "created":
        to(("Start", ""), lc_status="running")
        to(("Abort", ""), lc_status="failed")
    if st == "running":
        to(("Exit", ""), lc_status="stopped")
        for sig in SIGNALS:
            to(("Kill", sig))
    if st in ("stopped", "failed") and not s["lc_cleaned"]:
        to(("CleanupDone", ""), lc_cleaned=True)
    if st in ("stopped", "failed") and s["lc_cleaned"]:
        to(("Remove", ""), lc_status="removed", lc_removed=True)
    return out


def _iso_plan(s: Vars) -> tuple[str, ...]:
    return ROOTLESS_PLAN if s["iso_rootless"] else PRIVILEGED_PLAN


def _iso_phase_after(s: Vars, d: int) -> str:
    plan = _iso_plan(s)
    if d == len(plan):
        return "ready"
    if plan[d] == "enter_user" and not s["iso_rootless"]:
        return "waiting"
    return "running"


def iso_has_done(s: Vars, name: str) -> bool:
    return name in _iso_plan(s)[: s["iso_done"]]


def spec_isolation(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase, done, plan = s["iso_phase"], s["iso_done"], _iso_plan(s)
    if phase == "idle":
        out.append((("Begin", ""), {**s, "iso_phase": _iso_phase_after(s, 0)}))
    if phase == "running":
        name = plan[done]
        out.append(
            (
                ("Done", name),
                {**s, "iso_done": done + 1, "iso_phase": _iso_phase_after(s, done + 1)},
            )
        )
        out.append((("Fail", name), {**s, "iso_phase": "failed"}))
    if phase == "waiting":
        out.append((("Resume", ""), {**s, "iso_phase": "running"}))
    return out


_FS_EXPECTED = {
    "mounting": "mount",
    "pivoting": "pivot",
    "chrooting": "chroot",
    "detaching": "detach",
}


def spec_filesystem(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase = s["fs_phase"]
    if phase == "idle":
        out.append(
            (("Begin", ""), {**s, "fs_phase": "pivoting" if s["fs_total"] == 0 else "mounting"})
        )
    expected = _FS_EXPECTED.get(phase)
    if expected == "mount":
        mounted = s["fs_mounted"] + 1
        nxt = "mounting" if mounted < s["fs_total"] else "pivoting"
        out.append((("Done", "mount"), {**s, "fs_mounted": mounted, "fs_phase": nxt}))
    elif expected == "pivot":
        out.append((("Done", "pivot"), {**s, "fs_phase": "detaching"}))
    elif expected == "chroot":
        out.append((("Done", "chroot"), {**s, "fs_phase": "sealed", "fs_chrooted": True}))
    elif expected == "detach":
        out.append((("Done", "detach"), {**s, "fs_phase": "sealed"}))
    if expected is not None:
        to = "chrooting" if expected == "pivot" and s["fs_allowChroot"] else "failed"
        out.append((("Fail", expected), {**s, "fs_phase": to}))
    return out


def _sec_next_phase(c: str) -> str:
    return {"caps": "seccomp", "seccomp": "landlock"}.get(c, "locked")


def sec_level(s: Vars) -> str:
    return "enforced" if not s["sec_degraded"] else "degraded"


def spec_security(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase = s["sec_phase"]
    if phase == "idle":
        out.append((("Begin", ""), {**s, "sec_phase": "caps"}))
    if phase in CONTROLS:
        c = phase
        out.append(
            (
                ("Done", c),
                {**s, "sec_applied": s["sec_applied"] | {c}, "sec_phase": _sec_next_phase(c)},
            )
        )
        if c in DEGRADABLE and s["sec_allowDegraded"]:
            fail = {**s, "sec_degraded": s["sec_degraded"] | {c}, "sec_phase": _sec_next_phase(c)}
        else:
            fail = {**s, "sec_phase": "failed"}
        out.append((("Fail", c), fail))
    return out


def _any_failed(s: Vars) -> bool:
    return "failed" in (s["iso_phase"], s["fs_phase"], s["sec_phase"])


def spec_system(s: Vars) -> list[tuple[Label, Vars]]:
    """formal/System.tla: each machine's actions under the composition's guards."""
    out: list[tuple[Label, Vars]] = []
    for label, t in spec_lifecycle(s):
        if label[0] == "Prepared" and not (s["sec_phase"] == "locked" and label[1] == sec_level(s)):
            continue
        if label[0] == "SetupFailed" and not _any_failed(s):
            continue
        out.append((("lc", *label), t))
    for label, t in spec_isolation(s):
        if label[0] == "Begin" and s["lc_status"] != "creating":
            continue
        if label[0] == "Resume" and s["fs_phase"] != "sealed":
            continue
        out.append((("iso", *label), t))
    for label, t in spec_filesystem(s):
        if label[0] == "Begin" and not iso_has_done(s, "loopback"):
            continue
        out.append((("fs", *label), t))
    for label, t in spec_security(s):
        if label[0] == "Begin" and not (s["iso_phase"] == "ready" and s["fs_phase"] == "sealed"):
            continue
        out.append((("sec", *label), t))
    return out


# Initial spec states, at the walk's bounds.
def spec_init_lifecycle() -> list[Vars]:
    return [{"lc_status": "none", "lc_security": "none", "lc_cleaned": True, "lc_removed": False}]


def spec_init_isolation() -> list[Vars]:
    return [{"iso_rootless": r, "iso_phase": "idle", "iso_done": 0} for r in (False, True)]


def spec_init_filesystem(max_total: int) -> list[Vars]:
    return [
        {
            "fs_phase": "idle",
            "fs_mounted": 0,
            "fs_total": n,
            "fs_allowChroot": a,
            "fs_chrooted": False,
        }
        for n in range(max_total + 1)
        for a in (False, True)
    ]


def spec_init_security() -> list[Vars]:
    return [
        {
            "sec_allowDegraded": a,
            "sec_phase": "idle",
            "sec_applied": frozenset(),
            "sec_degraded": frozenset(),
        }
        for a in (False, True)
    ]


def spec_init_system(max_total: int) -> list[Vars]:
    return [
        {**lc, **iso, **fs, **sec}
        for lc in spec_init_lifecycle()
        for iso in spec_init_isolation()
        for fs in spec_init_filesystem(max_total)
        for sec in spec_init_security()
    ]


# ---------------------------------------------------------------------------------------------
# Walking.


def key(values: Vars) -> tuple:
    """A hashable, comparable form of a spec state."""
    return tuple(
        sorted(
            (k, frozenset(x) if isinstance(x, (set, frozenset)) else x) for k, x in values.items()
        )
    )


def show(values: Vars) -> str:
    return ", ".join(
        f"{k}={sorted(x) if isinstance(x, (set, frozenset)) else x!r}"
        for k, x in sorted(values.items())
    )


def label_of(event: v.Event, with_machine: bool) -> Label:
    base = (v.action_name(event), event.tla_arg())
    return (event.machine, *base) if with_machine else base


class Walk:
    """Every concrete state reachable from `inits` with `events(state)`, and every transition."""

    def __init__(
        self, machine: Any, inits: Iterable[Any], events: Callable[[Any], list[v.Event]]
    ) -> None:
        self.machine = machine
        self.states: list[Any] = []
        self.transitions: dict[Any, list[tuple[v.Event, Step | Refused]]] = {}
        seen: set[Any] = set()
        queue: deque[Any] = deque()
        for s in inits:
            if s not in seen:
                seen.add(s)
                queue.append(s)
        while queue:
            s = queue.popleft()
            self.states.append(s)
            outs = []
            for e in events(s):
                r = machine.step(s, e)
                assert isinstance(r, (Step, Refused)), f"step returned {r!r} for {e!r}"
                outs.append((e, r))
                if isinstance(r, Step) and r.state not in seen:
                    seen.add(r.state)
                    queue.append(r.state)
            self.transitions[s] = outs

    def abstract_states(self) -> set[tuple]:
        return {key(self.machine.to_tla(s)) for s in self.states}

    def taken(self, with_machine: bool) -> set[Label]:
        return {
            label_of(e, with_machine)
            for outs in self.transitions.values()
            for e, r in outs
            if isinstance(r, Step)
        }


def spec_reachable(
    inits: list[Vars], nxt: Callable[[Vars], list[tuple[Label, Vars]]]
) -> set[tuple]:
    seen = {key(s) for s in inits}
    queue = deque(inits)
    while queue:
        s = queue.popleft()
        for _, t in nxt(s):
            k = key(t)
            if k not in seen:
                seen.add(k)
                queue.append(t)
    return seen


def check_invariants(walk: Walk, checks: list[tuple[str, Callable[[Any], bool]]]) -> None:
    broken = []
    for s in walk.states:
        for name, check in checks:
            if not check(s):
                broken.append(f"{name} fails in {show(walk.machine.to_tla(s))}")
    assert not broken, f"{len(broken)} invariant violations, first: " + "; ".join(broken[:5])


def check_agrees_with_spec(
    walk: Walk, nxt: Callable[[Vars], list[tuple[Label, Vars]]], with_machine: bool
) -> None:
    problems = []
    for s, outs in walk.transitions.items():
        here = walk.machine.to_tla(s)
        code = {
            (label_of(e, with_machine), key(walk.machine.to_tla(r.state)))
            for e, r in outs
            if isinstance(r, Step)
        }
        spec = {(label, key(t)) for label, t in nxt(here)}
        if code != spec:
            extra = sorted(lbl for lbl, _ in code - spec)
            missing = sorted(lbl for lbl, _ in spec - code)
            problems.append(
                f"in [{show(here)}]: the code takes {extra} where the spec does not"
                f" and not {missing} where the spec does"
            )
    assert not problems, (
        f"{len(problems)} states where the code and the spec differ, first: "
        + "\n".join(problems[:5])
    )


def check_abstraction(walk: Walk) -> int:
    """States with equal to_tla have equal outcomes for every event; returns how many groups had >1 state."""
    groups: dict[tuple, list[Any]] = {}
    for s in walk.states:
        groups.setdefault(key(walk.machine.to_tla(s)), []).append(s)

    def outcome(s: Any) -> list[tuple[str, Any]]:
        return [
            (e.name, "refused" if isinstance(r, Refused) else key(walk.machine.to_tla(r.state)))
            for e, r in walk.transitions[s]
        ]

    shared = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        shared += 1
        first = outcome(members[0])
        for other in members[1:]:
            assert outcome(other) == first, (
                f"two states with the same spec variables behave differently:\n{members[0]}\n{other}"
            )
    return shared


def check_from_tla(walk: Walk, events: Callable[[Any], list[v.Event]]) -> None:
    """from_tla(to_tla(s)) has the same variables as s and the same outcome for every event."""
    m = walk.machine
    for s in walk.states:
        values = m.to_tla(s)
        rebuilt = m.from_tla(values)
        assert key(m.to_tla(rebuilt)) == key(values), f"from_tla does not rebuild [{show(values)}]"
        for e in events(s):
            a, b = m.step(s, e), m.step(rebuilt, e)
            assert isinstance(a, Refused) == isinstance(b, Refused), f"{e!r} in [{show(values)}]"
            if isinstance(a, Step):
                assert key(m.to_tla(a.state)) == key(m.to_tla(b.state)), (
                    f"{e!r} in [{show(values)}]"
                )


# ---------------------------------------------------------------------------------------------
# Lifecycle


def lc_events(s: lifecycle.LifecycleState) -> list[v.Event]:
    # Exit(7) makes states that differ only outside the spec (exit_code), for the abstraction check.
    return lifecycle.candidate_events(s) + [v.Exit(7)]


@pytest.fixture(scope="module")
def lc_walk() -> Walk:
    return Walk(lifecycle, [lifecycle.initial()], lc_events)


def test_lifecycle_invariants_hold_everywhere(lc_walk):
    check_invariants(lc_walk, [(f.__name__, f) for f in lifecycle.INVARIANTS])


def test_lifecycle_agrees_with_spec(lc_walk):
    check_agrees_with_spec(lc_walk, spec_lifecycle, with_machine=False)
    assert lc_walk.abstract_states() == spec_reachable(spec_init_lifecycle(), spec_lifecycle)
    assert len(lc_walk.abstract_states()) >= 15


def test_lifecycle_covers_every_action(lc_walk):
    expected = {
        (a, "")
        for a in ("Create", "SetupFailed", "Start", "Abort", "Exit", "CleanupDone", "Remove")
    }
    expected |= {("Prepared", lvl) for lvl in LEVELS} | {("Kill", sig) for sig in SIGNALS}
    assert {a for a, _ in expected} == _spec_next_actions("Lifecycle")
    missing = expected - lc_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"


def test_lifecycle_abstraction(lc_walk):
    assert (
        check_abstraction(lc_walk) > 0
    )  # exit_code variants exist, so the check compared something
    check_from_tla(lc_walk, lc_events)


# ---------------------------------------------------------------------------------------------
# Isolation


def iso_inits() -> list[isolation.IsolationState]:
    out = []
    for rootless in (False, True):
        out.append(isolation.initial(rootless=rootless))
        out.append(
            isolation.initial(
                rootless=rootless,
                namespaces=("pid", "mount"),
                hostname="other",
                uid_map=((0, 1000, 1),),
                gid_map=((0, 1000, 1),),
            )
        )
    return out


@pytest.fixture(scope="module")
def iso_walk() -> Walk:
    return Walk(isolation, iso_inits(), isolation.candidate_events)


def test_isolation_invariants_hold_everywhere(iso_walk):
    check_invariants(iso_walk, [(f.__name__, f) for f in isolation.INVARIANTS])


def test_isolation_agrees_with_spec(iso_walk):
    check_agrees_with_spec(iso_walk, spec_isolation, with_machine=False)
    assert iso_walk.abstract_states() == spec_reachable(spec_init_isolation(), spec_isolation)
    # per plan: idle, running at each step, failed at each step, ready, and one waiting state
    assert len(iso_walk.abstract_states()) >= 2 * (2 + 2 * 7)


def test_isolation_covers_every_action(iso_walk):
    expected = {("Begin", ""), ("Resume", "")}
    expected |= {(a, s) for a in ("Done", "Fail") for s in ISO_STEPS}
    assert {a for a, _ in expected} == _spec_next_actions("Isolation")
    missing = expected - iso_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"


def test_isolation_abstraction(iso_walk):
    assert check_abstraction(iso_walk) > 0
    check_from_tla(iso_walk, isolation.candidate_events)


# ---------------------------------------------------------------------------------------------
# Filesystem


def fs_plans(n: int) -> list[tuple[v.Intent, ...]]:
    """Two plans of length n that differ in content (the spec sees only their length)."""
    a = tuple(v.MakeDirs("/new", (f"d{i}",)) for i in range(n))
    b = tuple((v.SetPropagation(), v.MountFs("tmpfs", "/new"), v.BindMount("/usr", "/new/usr"))[:n])
    return [a, b]


def fs_inits(max_total: int) -> list[filesystem.FilesystemState]:
    return [
        filesystem.initial(plan, root, allow_chroot=allow)
        for n in range(max_total + 1)
        for plan in fs_plans(n)
        for allow in (False, True)
        for root in ("/new", "/other")
    ]


@pytest.fixture(scope="module")
def fs_walk() -> Walk:
    assert MAX_MOUNTS == 3
    return Walk(filesystem, fs_inits(MAX_MOUNTS), filesystem.candidate_events)


def test_filesystem_invariants_hold_everywhere(fs_walk):
    check_invariants(fs_walk, [(f.__name__, f) for f in filesystem.INVARIANTS])


def test_filesystem_agrees_with_spec(fs_walk):
    check_agrees_with_spec(fs_walk, spec_filesystem, with_machine=False)
    assert fs_walk.abstract_states() == spec_reachable(
        spec_init_filesystem(MAX_MOUNTS), spec_filesystem
    )
    assert len(fs_walk.abstract_states()) >= 60


def test_filesystem_covers_every_action(fs_walk):
    expected = {("Begin", "")} | {(a, s) for a in ("Done", "Fail") for s in FS_STEPS}
    assert {a for a, _ in expected} == _spec_next_actions("Filesystem")
    missing = expected - fs_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"


def test_filesystem_abstraction(fs_walk):
    assert check_abstraction(fs_walk) > 0
    check_from_tla(fs_walk, filesystem.candidate_events)


# ---------------------------------------------------------------------------------------------
# Security


def sec_inits() -> list[security.SecurityState]:
    return [
        security.initial(allow_degraded=a, **params)
        for a in (False, True)
        for params in (
            {},
            {
                "keep_caps": ("CAP_NET_BIND_SERVICE",),
                "program_sha256": "ab" * 32,
                "log_denied": True,
            },
        )
    ]


@pytest.fixture(scope="module")
def sec_walk() -> Walk:
    return Walk(security, sec_inits(), security.candidate_events)


def test_security_invariants_hold_everywhere(sec_walk):
    check_invariants(sec_walk, [(f.__name__, f) for f in security.INVARIANTS])


def test_security_agrees_with_spec(sec_walk):
    check_agrees_with_spec(sec_walk, spec_security, with_machine=False)
    assert sec_walk.abstract_states() == spec_reachable(spec_init_security(), spec_security)
    assert len(sec_walk.abstract_states()) >= 15


def test_security_covers_every_action(sec_walk):
    expected = {("Begin", "")} | {(a, c) for a in ("Done", "Fail") for c in CONTROLS}
    assert {a for a, _ in expected} == _spec_next_actions("Security")
    missing = expected - sec_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"


def test_security_abstraction(sec_walk):
    assert check_abstraction(sec_walk) > 0
    check_from_tla(sec_walk, security.candidate_events)


# ---------------------------------------------------------------------------------------------
# System: the product at a small filesystem bound.

SYSTEM_MAX_MOUNTS = 2


def system_inits() -> list[system.SystemState]:
    return [
        system.initial(isolation.initial(rootless=r), fs, security.initial(allow_degraded=a))
        for r in (False, True)
        for fs in fs_inits(SYSTEM_MAX_MOUNTS)
        if fs.new_root == "/new"
        for a in (False, True)
    ]


@pytest.fixture(scope="module")
def sys_walk() -> Walk:
    return Walk(system, system_inits(), system.candidate_events)


def test_system_invariants_hold_everywhere(sys_walk):
    check_invariants(sys_walk, system.all_invariants())


def test_system_checks_every_invariant_of_every_machine():
    names = {name for name, _ in system.all_invariants()}
    for prefix, machine in system.MACHINES.items():
        for inv in machine.INVARIANTS:
            assert f"{prefix}.{inv.__name__}" in names
    for inv in system.INVARIANTS:
        assert inv.__name__ in names


def test_system_agrees_with_spec(sys_walk):
    check_agrees_with_spec(sys_walk, spec_system, with_machine=True)
    assert sys_walk.abstract_states() == spec_reachable(
        spec_init_system(SYSTEM_MAX_MOUNTS), spec_system
    )
    assert len(sys_walk.abstract_states()) >= 2000


def test_system_covers_every_action(sys_walk):
    expected = {
        ("lc", a, "")
        for a in ("Create", "SetupFailed", "Start", "Abort", "Exit", "CleanupDone", "Remove")
    }
    expected |= {("lc", "Prepared", lvl) for lvl in LEVELS} | {
        ("lc", "Kill", sig) for sig in SIGNALS
    }
    expected |= {("iso", "Begin", ""), ("iso", "Resume", "")}
    expected |= {("iso", a, s) for a in ("Done", "Fail") for s in ISO_STEPS}
    expected |= {("fs", "Begin", "")} | {("fs", a, s) for a in ("Done", "Fail") for s in FS_STEPS}
    expected |= {("sec", "Begin", "")} | {("sec", a, c) for a in ("Done", "Fail") for c in CONTROLS}
    assert {(m, a) for m, a, _ in expected} == _system_next_actions()
    missing = expected - sys_walk.taken(with_machine=True)
    assert not missing, f"actions never taken: {sorted(missing)}"


def test_system_abstraction(sys_walk):
    assert check_abstraction(sys_walk) > 0
    check_from_tla(sys_walk, system.candidate_events)


def test_system_advance_names_only_enabled_events(sys_walk):
    """advance() is what the driver follows on its own: it must never name a refused event."""
    for s in sys_walk.states:
        e = system.advance(s)
        if e is not None:
            r = system.step(s, e)
            assert isinstance(r, Step), (
                f"advance named {e!r} in [{show(system.to_tla(s))}]: {r.why}"
            )
