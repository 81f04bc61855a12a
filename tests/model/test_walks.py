"""Exhaustive breadth-first walks of every machine's reachable states at small bounds.

Each walk starts from every initial state the spec allows at the bounds below, offers every
candidate event in every reachable state, and checks:

* every invariant of the machine (for System: of the composition and of each component) holds in
  every reachable state;
* the code agrees with the spec: in every reachable state the set of accepted (action, argument,
  successor variables) equals what a line-by-line transliteration of the spec's actions
  (the ``spec_*`` functions below) allows, and both reach the same set of spec states;
* every action of the spec's Next, with every argument it ranges over, is taken somewhere, and
  so is every step the spec can take, counted as the trace coverage counts it: action, argument,
  the machine's phase after it, and the machine's parameters (the Booleans its Init picks), so a
  seccomp failure that is fatal in a strict mode is a step of its own;
* ``to_tla`` is a sound abstraction: concrete states that look the same to the spec behave the
  same for every event (same refusals, same successor variables), and ``from_tla`` rebuilds a state
  with the same variables (trace replay starts from it).

The spec's constants (plans, step names, signals, parameters) are read from formal/*.tla, so a
change in a spec that is not mirrored in the code shows up here. The System walk starts from a
sample of the initial states (every combination of the Boolean parameters, not every plan length
with each); it still takes every step the whole model can take.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from nucleus import vocab as v
from nucleus.config import modes
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
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
RES_STEPS = _spec_strings("Resources", "StepNames")
RES_SETTLED = _spec_strings("Resources", "Settled")


def _spec_under_way() -> dict[str, str]:
    """Resources' UnderWay: the phase in which each step is under way (its CASE arms)."""
    body = _spec_text("Resources").split("UnderWay ==", 1)[1].split("\n\n", 1)[0]
    arms = dict(re.findall(r'res_phase = "(\w+)" -> "(\w+)"', body))
    assert arms and set(arms.values()) == set(RES_STEPS), f"cannot read UnderWay: {arms}"
    return arms


RES_UNDER_WAY = _spec_under_way()


def _spec_parameters(module: str) -> tuple[str, ...]:
    """The Boolean variables a spec's <M>Init picks freely (`x \\in BOOLEAN`): its parameters."""
    body = re.search(r"^\w+Init ==\n((?:    .*\n)+)", _spec_text(module), re.MULTILINE)
    assert body, f"formal/{module}.tla has no <M>Init"
    return tuple(re.findall(r"(\w+) \\in BOOLEAN", body.group(1)))


PARAMETERS = {
    "lc": _spec_parameters("Lifecycle"),
    "iso": _spec_parameters("Isolation"),
    "fs": _spec_parameters("Filesystem"),
    "sec": _spec_parameters("Security"),
    "res": _spec_parameters("Resources"),
}


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
    assert set(resources.PHASES) == set(_spec_strings("Resources", "Phases"))
    assert set(resources.STEPS) == set(RES_STEPS)
    releasable = {
        p for p in resources.PHASES
        if isinstance(resources.step(resources.ResourcesState(phase=p), v.ResRelease()), Step)
    }
    assert releasable == set(RES_SETTLED)


def test_spec_parameters_are_the_machines_configuration():
    assert PARAMETERS == {
        "lc": (),
        "iso": ("iso_rootless",),
        "fs": ("fs_allowChroot", "fs_audit"),
        "sec": ("sec_allowDegraded", "sec_strict"),
        "res": ("res_required",),
    }
    s = system.initial(
        isolation.initial(rootless=True),
        filesystem.initial((), "/new", allow_chroot=True, audit=(("/", ("nosuid",), True),)),
        security.initial(allow_degraded=True, strict=True),
        resources.initial(required=True),
    )
    values = system.to_tla(s)
    assert all(values[p] is True for params in PARAMETERS.values() for p in params)
    assert system.to_tla(system.initial(
        isolation.initial(), filesystem.initial((), "/new"), security.initial()
    )) == {**values, **{p: False for params in PARAMETERS.values() for p in params}}


def test_every_invariant_of_each_spec_has_a_function_of_the_same_name():
    for module, machine in (
        ("Lifecycle", lifecycle),
        ("Isolation", isolation),
        ("Filesystem", filesystem),
        ("Security", security),
        ("Resources", resources),
        ("System", system),
    ):
        text = _spec_text(module)
        inv = text.split("\nInv ==", 1)[1].split("\n\n", 1)[0]
        names = {n for n in re.findall(r"\b([A-Z]\w+)\b", inv) if "!" not in n}
        names -= {"LC", "ISO", "FS", "SEC", "RES", "Inv"}
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
    if st in ("creating", "created", "running"):
        to(("Lost", ""), lc_status="failed")
    if st == "running":
        to(("Attach", ""))
    if st in ("stopped", "failed") and not s["lc_cleaned"]:
        to(("CleanupDone", ""), lc_cleaned=True)
    if st in ("stopped", "failed") and s["lc_cleaned"]:
        to(("Remove", ""), lc_status="removed", lc_removed=True)
    return out


def _iso_plan(s: Vars) -> tuple[str, ...]:
    return ROOTLESS_PLAN if s["iso_rootless"] else PRIVILEGED_PLAN


def _iso_is_gate(s: Vars, name: str) -> bool:
    return name == "unshare" or (name == "enter_user" and not s["iso_rootless"])


def _iso_phase_after(s: Vars, d: int) -> str:
    plan = _iso_plan(s)
    if d == len(plan):
        return "ready"
    if _iso_is_gate(s, plan[d]):
        return "waiting"
    return "running"


def iso_next(s: Vars) -> str:
    """System's IsoNext: the step isolation waits for at its gate ("none" once the plan is done)."""
    plan = _iso_plan(s)
    return plan[s["iso_done"]] if s["iso_done"] < len(plan) else "none"


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
    "auditing": "audit",
}


def _fs_sealing(s: Vars) -> str:
    # Sealing == IF fs_audit THEN "auditing" ELSE "sealed"
    return "auditing" if s["fs_audit"] else "sealed"


def spec_filesystem(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase = s["fs_phase"]
    # Begin: fs_phase = "idle" -> IF fs_total = 0 THEN "pivoting" ELSE "mounting"
    if phase == "idle":
        out.append(
            (("Begin", ""), {**s, "fs_phase": "pivoting" if s["fs_total"] == 0 else "mounting"})
        )
    # Done(s): Expected = s, one disjunct per step
    expected = _FS_EXPECTED.get(phase)
    if expected == "mount":
        mounted = s["fs_mounted"] + 1
        nxt = "mounting" if mounted < s["fs_total"] else "pivoting"
        out.append((("Done", "mount"), {**s, "fs_mounted": mounted, "fs_phase": nxt}))
    elif expected == "pivot":
        out.append((("Done", "pivot"), {**s, "fs_phase": "detaching"}))
    elif expected == "chroot":
        out.append((("Done", "chroot"), {**s, "fs_phase": _fs_sealing(s), "fs_chrooted": True}))
    elif expected == "detach":
        out.append((("Done", "detach"), {**s, "fs_phase": _fs_sealing(s)}))
    elif expected == "audit":
        out.append((("Done", "audit"), {**s, "fs_phase": "sealed", "fs_audited": True}))
    # Fail(s): Expected = s; IF s = "pivot" /\ fs_allowChroot THEN "chrooting" ELSE "failed"
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
        # IF c \in Degradable /\ sec_allowDegraded /\ ~sec_strict
        if c in DEGRADABLE and s["sec_allowDegraded"] and not s["sec_strict"]:
            fail = {**s, "sec_degraded": s["sec_degraded"] | {c}, "sec_phase": _sec_next_phase(c)}
        else:
            fail = {**s, "sec_phase": "failed"}
        out.append((("Fail", c), fail))
    return out


def spec_resources(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase = s["res_phase"]

    def to(label: Label, **changes: Any) -> None:
        out.append((label, {**s, **changes}))

    # Begin: res_phase = "idle" -> "creating"
    if phase == "idle":
        to(("Begin", ""), res_phase="creating")
    # Attach: res_phase = "waiting" -> "attaching"
    if phase == "waiting":
        to(("Attach", ""), res_phase="attaching")
    # Release: res_phase \in Settled -> IF res_held THEN "releasing" ELSE "released"
    if phase in RES_SETTLED:
        to(("Release", ""), res_phase="releasing" if s["res_held"] else "released")
    under_way = RES_UNDER_WAY.get(phase, "none")
    # Done(s): UnderWay = s, one disjunct per step
    if under_way == "create":
        to(("Done", "create"), res_phase="limiting", res_held=True)
    elif under_way == "limits":
        to(("Done", "limits"), res_phase="waiting", res_limited=True)
    elif under_way == "attach":
        to(("Done", "attach"), res_phase="ready")
    elif under_way == "release":
        to(("Done", "release"), res_phase="released", res_held=False, res_limited=False)
    # Fail(s): UnderWay = s; CASE s = "release" -> "leaked" [] res_required -> "failed" [] OTHER -> "degraded"
    if under_way != "none":
        if under_way == "release":
            to(("Fail", under_way), res_phase="leaked")
        elif s["res_required"]:
            to(("Fail", under_way), res_phase="failed")
        else:
            to(("Fail", under_way), res_phase="degraded")
    return out


def _any_failed(s: Vars) -> bool:
    # AnyFailed == "failed" \in {iso_phase, fs_phase, sec_phase, res_phase}
    return "failed" in (s["iso_phase"], s["fs_phase"], s["sec_phase"], s["res_phase"])


def _contained(s: Vars) -> bool:
    # Contained == res_phase \in {"ready", "degraded"}
    return s["res_phase"] in ("ready", "degraded")


def spec_system(s: Vars) -> list[tuple[Label, Vars]]:
    """formal/System.tla: each machine's actions under the composition's guards."""
    out: list[tuple[Label, Vars]] = []
    for label, t in spec_lifecycle(s):
        # sec_phase = "locked" /\ Contained /\ LC!Prepared(SEC!Level)
        if label[0] == "Prepared" and not (
            s["sec_phase"] == "locked" and _contained(s) and label[1] == sec_level(s)
        ):
            continue
        # AnyFailed /\ LC!SetupFailed
        if label[0] == "SetupFailed" and not _any_failed(s):
            continue
        # res_phase = "released" /\ LC!CleanupDone
        if label[0] == "CleanupDone" and s["res_phase"] != "released":
            continue
        out.append((("lc", *label), t))
    for label, t in spec_isolation(s):
        # lc_status = "creating" /\ res_phase \in {"waiting", "degraded"} /\ ISO!Begin
        if label[0] == "Begin" and not (
            s["lc_status"] == "creating" and s["res_phase"] in ("waiting", "degraded")
        ):
            continue
        # IF IsoNext = "unshare" THEN Contained ELSE fs_phase = "sealed"
        if label[0] == "Resume" and not (
            _contained(s) if iso_next(s) == "unshare" else s["fs_phase"] == "sealed"
        ):
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
    for label, t in spec_resources(s):
        # lc_status = "creating" /\ RES!Begin
        if label[0] == "Begin" and s["lc_status"] != "creating":
            continue
        # ISO!HasDone("spawn") /\ RES!Attach
        if label[0] == "Attach" and not iso_has_done(s, "spawn"):
            continue
        # lc_status \in {"stopped", "failed"} /\ RES!Release
        if label[0] == "Release" and s["lc_status"] not in ("stopped", "failed"):
            continue
        out.append((("res", *label), t))
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
            "fs_audit": audit,
            "fs_audited": False,
        }
        for n in range(max_total + 1)
        for a in (False, True)
        for audit in (False, True)
    ]


def spec_init_security() -> list[Vars]:
    return [
        {
            "sec_allowDegraded": a,
            "sec_strict": strict,
            "sec_phase": "idle",
            "sec_applied": frozenset(),
            "sec_degraded": frozenset(),
        }
        for a in (False, True)
        for strict in (False, True)
    ]


def spec_init_resources() -> list[Vars]:
    return [
        {"res_required": r, "res_phase": "idle", "res_held": False, "res_limited": False}
        for r in (False, True)
    ]


def spec_init_system(max_total: int) -> list[Vars]:
    return [
        {**lc, **iso, **fs, **sec, **res}
        for lc in spec_init_lifecycle()
        for iso in spec_init_isolation()
        for fs in spec_init_filesystem(max_total)
        for sec in spec_init_security()
        for res in spec_init_resources()
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
    """Every concrete state reachable from `inits` with `events(state)`, and every transition.

    `abstract[s]` is the spec state of `s` (key of to_tla); `outcomes[s]` is, per event offered,
    "refused" or the spec state of the successor."""

    def __init__(
        self, machine: Any, inits: Iterable[Any], events: Callable[[Any], list[v.Event]]
    ) -> None:
        self.machine = machine
        self.states: list[Any] = []
        self.transitions: dict[Any, list[tuple[v.Event, Step | Refused]]] = {}
        self.abstract: dict[Any, tuple] = {}
        self.outcomes: dict[Any, list[tuple[v.Event, Any]]] = {}
        queue: deque[Any] = deque()
        for s in inits:
            if s not in self.abstract:
                self.abstract[s] = key(machine.to_tla(s))
                queue.append(s)
        while queue:
            s = queue.popleft()
            self.states.append(s)
            outs = []
            for e in events(s):
                r = machine.step(s, e)
                assert isinstance(r, (Step, Refused)), f"step returned {r!r} for {e!r}"
                outs.append((e, r))
                if isinstance(r, Step) and r.state not in self.abstract:
                    self.abstract[r.state] = key(machine.to_tla(r.state))
                    queue.append(r.state)
            self.transitions[s] = outs
            self.outcomes[s] = [
                (e, "refused" if isinstance(r, Refused) else self.abstract[r.state]) for e, r in outs
            ]

    def abstract_states(self) -> set[tuple]:
        return set(self.abstract.values())

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


# A step, as the trace coverage counts it (tools/tla.py): the machine, action and argument, the
# machine's phase after the step, and the machine's parameters (its Boolean variables that Init
# picks freely: a seccomp failure that is fatal in a strict mode is another step than one that is
# fatal because degraded security is not allowed).
StepKey = tuple[str, str, str, str, tuple[bool, ...]]


def _step_key(machine: str, label: Label, after: Vars) -> StepKey:
    action, arg = label[-2:]
    phase = after[f"{machine}_status" if machine == "lc" else f"{machine}_phase"]
    return (machine, action, arg, phase, tuple(after[p] for p in PARAMETERS[machine]))


def step_keys(walk: Walk, machine: str | None = None) -> set[StepKey]:
    """The steps a walk takes (`machine`: the single machine walked; None: the System)."""
    keys = set()
    for outs in walk.transitions.values():
        for e, r in outs:
            if isinstance(r, Step):
                m = machine or e.machine
                keys.add(_step_key(m, label_of(e, False), dict(walk.abstract[r.state])))
    return keys


def spec_step_keys(
    inits: list[Vars], nxt: Callable[[Vars], list[tuple[Label, Vars]]], machine: str | None = None
) -> set[StepKey]:
    """The steps the spec can take from `inits` (`machine` as in step_keys)."""
    keys = set()
    seen = {key(s) for s in inits}
    queue = deque(inits)
    while queue:
        s = queue.popleft()
        for label, t in nxt(s):
            keys.add(_step_key(machine or label[0], label, t))
            k = key(t)
            if k not in seen:
                seen.add(k)
                queue.append(t)
    return keys


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
    for s, outs in walk.outcomes.items():
        here = walk.machine.to_tla(s)
        code = {(label_of(e, with_machine), o) for e, o in outs if o != "refused"}
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


def _groups(walk: Walk) -> dict[tuple, list[Any]]:
    groups: dict[tuple, list[Any]] = {}
    for s in walk.states:
        groups.setdefault(walk.abstract[s], []).append(s)
    return groups


def check_abstraction(walk: Walk) -> int:
    """States with equal to_tla have equal outcomes for every event; returns how many groups had >1 state."""
    shared = 0
    for members in _groups(walk).values():
        if len(members) < 2:
            continue
        shared += 1
        first = [(e.name, o) for e, o in walk.outcomes[members[0]]]
        for other in members[1:]:
            assert [(e.name, o) for e, o in walk.outcomes[other]] == first, (
                f"two states with the same spec variables behave differently:\n{members[0]}\n{other}"
            )
    return shared


def check_from_tla(walk: Walk, events: Callable[[Any], list[v.Event]], stride: int = 1) -> None:
    """from_tla(to_tla(s)) has the same variables as s and the same outcome for every event.

    One state per spec state is rebuilt (check_abstraction shows that the others behave alike),
    or with `stride` n, one in every n spec states."""
    m = walk.machine
    for members in list(_groups(walk).values())[::stride]:
        s = members[0]
        values = m.to_tla(s)
        rebuilt = m.from_tla(values)
        assert key(m.to_tla(rebuilt)) == walk.abstract[s], f"from_tla does not rebuild [{show(values)}]"
        offered = events(s)
        assert [e for e, _ in walk.outcomes[s]] == offered
        for e, expected in walk.outcomes[s]:
            r = m.step(rebuilt, e)
            got = "refused" if isinstance(r, Refused) else key(m.to_tla(r.state))
            assert got == expected, f"{e!r} in [{show(values)}]: {got} after from_tla, {expected} before"


# ---------------------------------------------------------------------------------------------
# Lifecycle


LC_PLAIN_ACTIONS = (
    "Create", "SetupFailed", "Start", "Abort", "Exit", "Lost", "Attach", "CleanupDone", "Remove",
)


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
    expected = {(a, "") for a in LC_PLAIN_ACTIONS}
    expected |= {("Prepared", lvl) for lvl in LEVELS} | {("Kill", sig) for sig in SIGNALS}
    assert {a for a, _ in expected} == _spec_next_actions("Lifecycle")
    missing = expected - lc_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"
    assert step_keys(lc_walk, "lc") == spec_step_keys(spec_init_lifecycle(), spec_lifecycle, "lc")


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
    # per plan: idle, ready, running and failed at each step, and waiting before each gate
    # (unshare in both plans, enter_user in the privileged one): 37 in all, as TLC finds
    gates = {False: 2, True: 1}
    expected = sum(
        2 + 2 * len(plan) + gates[rootless]
        for rootless, plan in ((False, PRIVILEGED_PLAN), (True, ROOTLESS_PLAN))
    )
    assert len(iso_walk.abstract_states()) == expected == 37


def test_isolation_waits_only_at_its_gates(iso_walk):
    waits = {
        (s.rootless, s.plan[s.done]) for s in iso_walk.states if s.phase == "waiting"
    }
    assert waits == {(False, "unshare"), (False, "enter_user"), (True, "unshare")}
    for s in iso_walk.states:
        if s.phase == "waiting":
            r = isolation.step(s, v.IsoResume())
            assert isinstance(r, Step) and r.state.phase == "running"
            assert [i.name for i in r.intents] == [
                {"unshare": "Unshare", "enter_user": "EnterUserNamespace"}[s.plan[s.done]]
            ]


def test_isolation_covers_every_action(iso_walk):
    expected = {("Begin", ""), ("Resume", "")}
    expected |= {(a, s) for a in ("Done", "Fail") for s in ISO_STEPS}
    assert {a for a, _ in expected} == _spec_next_actions("Isolation")
    missing = expected - iso_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"
    assert step_keys(iso_walk, "iso") == spec_step_keys(spec_init_isolation(), spec_isolation, "iso")


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


# The mount audit production asks for (as nucleus.runner builds it), and another set of rules: the
# spec sees only whether there is an audit (fs_audit), not which rules it checks.
AUDIT_RULES = tuple((r.path, tuple(r.flags), r.required) for r in modes.mount_audit("production"))
OTHER_AUDIT = (("/", ("nosuid",), True),)


def fs_inits(max_total: int) -> list[filesystem.FilesystemState]:
    return [
        filesystem.initial(plan, root, allow_chroot=allow, audit=audit)
        for n in range(max_total + 1)
        for plan in fs_plans(n)
        for allow in (False, True)
        for root in ("/new", "/other")
        for audit in ((), AUDIT_RULES, OTHER_AUDIT)
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
    # For a plan of n operations: idle, mounting and failed at each count below n, then pivoting,
    # detaching, failed and sealed (2n + 5); with the chroot fallback also chrooting and a
    # chrooted seal (+2); with the audit also auditing (+1), and with both, auditing and failed
    # after a chroot (+2). Over n = 0..3 and both flags: 4 * 32 + 8 * 2 + 8 * 1 + 4 * 2.
    assert len(fs_walk.abstract_states()) == 4 * 32 + 8 * 2 + 8 * 1 + 4 * 2 == 160


def test_filesystem_covers_every_action(fs_walk):
    expected = {("Begin", "")} | {(a, s) for a in ("Done", "Fail") for s in FS_STEPS}
    assert {a for a, _ in expected} == _spec_next_actions("Filesystem")
    missing = expected - fs_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"
    assert step_keys(fs_walk, "fs") == spec_step_keys(
        spec_init_filesystem(MAX_MOUNTS), spec_filesystem, "fs"
    )


def test_filesystem_audits_the_sealed_root_only_when_asked(fs_walk):
    """With an audit, detach and chroot lead to auditing with the audit's rules as the one intent;
    Done(audit) seals the root, Fail(audit) is fatal even with the chroot fallback. Without one,
    detach and chroot seal the root at once and audit is never under way."""
    outcomes = set()
    for s, outs in fs_walk.transitions.items():
        for e, r in outs:
            if not isinstance(r, Step) or not isinstance(e, (v.FsDone, v.FsFailed)):
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
        for audit in (False, True)
        for allow in (False, True)
        for action, step, phase in (
            ("Done", "detach", "auditing" if audit else "sealed"),
            ("Fail", "detach", "failed"),
        )
        + ((("Done", "chroot", "auditing" if audit else "sealed"), ("Fail", "chroot", "failed"))
           if allow else ())
        + ((("Done", "audit", "sealed"), ("Fail", "audit", "failed")) if audit else ())
    }
    for s in fs_walk.states:
        if s.phase == "sealed":
            assert s.audited == s.audits
        if s.phase == "auditing":
            assert s.audits and not s.audited and s.mounted == s.total


def test_filesystem_abstraction(fs_walk):
    assert check_abstraction(fs_walk) > 0
    check_from_tla(fs_walk, filesystem.candidate_events)


# ---------------------------------------------------------------------------------------------
# Security


def sec_inits() -> list[security.SecurityState]:
    return [
        security.initial(allow_degraded=a, strict=strict, **params)
        for a in (False, True)
        for strict in (False, True)
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
    # Per (allowDegraded, strict): idle, caps, seccomp, landlock, locked, and failed at each
    # control (8); where a failure degrades (allowed, not strict), no failure after caps but
    # landlock with seccomp degraded, and locked with seccomp, landlock or both degraded (+2).
    assert len(sec_walk.abstract_states()) == 4 * 8 + 2 == 34


def test_security_covers_every_action(sec_walk):
    expected = {("Begin", "")} | {(a, c) for a in ("Done", "Fail") for c in CONTROLS}
    assert {a for a, _ in expected} == _spec_next_actions("Security")
    missing = expected - sec_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"
    assert step_keys(sec_walk, "sec") == spec_step_keys(spec_init_security(), spec_security, "sec")


def test_security_strict_never_degrades(sec_walk):
    """A seccomp or Landlock failure degrades only when degraded security is allowed and the mode
    is not strict; a strict mode fails closed even when it is allowed. Caps never degrade."""
    outcomes = set()
    for s, outs in sec_walk.transitions.items():
        for e, r in outs:
            if isinstance(e, v.SecFailed) and isinstance(r, Step):
                outcomes.add((s.allow_degraded, s.strict, e.step, r.state.phase))
                if r.state.phase == "failed":
                    assert r.intents == () and r.state.degraded == s.degraded
                else:
                    assert isinstance(r.intents[0], v.Warn)
    assert outcomes == {
        (a, strict, c, _sec_next_phase(c) if a and not strict and c in DEGRADABLE else "failed")
        for a in (False, True)
        for strict in (False, True)
        for c in CONTROLS
    }
    assert not any(s.degraded for s in sec_walk.states if s.strict)


def test_security_abstraction(sec_walk):
    assert check_abstraction(sec_walk) > 0
    check_from_tla(sec_walk, security.candidate_events)


# ---------------------------------------------------------------------------------------------
# Resources


def res_inits() -> list[resources.ResourcesState]:
    return [
        resources.initial(required=r, **params)
        for r in (False, True)
        for params in ({}, {"name": "c-0123", "parent": "custom.slice", "limits": ("memory", 1 << 30)})
    ]


@pytest.fixture(scope="module")
def res_walk() -> Walk:
    return Walk(resources, res_inits(), resources.candidate_events)


def test_resources_invariants_hold_everywhere(res_walk):
    check_invariants(res_walk, [(f.__name__, f) for f in resources.INVARIANTS])


def test_resources_agrees_with_spec(res_walk):
    check_agrees_with_spec(res_walk, spec_resources, with_machine=False)
    assert res_walk.abstract_states() == spec_reachable(spec_init_resources(), spec_resources)
    phases = {(dict(k)["res_required"], dict(k)["res_phase"]) for k in res_walk.abstract_states()}
    # Each value of res_required reaches every phase but the other's failure outcome.
    assert phases == {(r, p) for r in (False, True) for p in resources.PHASES} - {
        (False, "failed"), (True, "degraded"),
    }
    assert len(res_walk.abstract_states()) >= 20


def test_resources_covers_every_action(res_walk):
    expected = {("Begin", ""), ("Attach", ""), ("Release", "")}
    expected |= {(a, s) for a in ("Done", "Fail") for s in RES_STEPS}
    assert {a for a, _ in expected} == _spec_next_actions("Resources")
    missing = expected - res_walk.taken(with_machine=False)
    assert not missing, f"actions never taken: {sorted(missing)}"
    assert step_keys(res_walk, "res") == spec_step_keys(spec_init_resources(), spec_resources, "res")


def test_resources_release_removes_whatever_was_created(res_walk):
    """From every settled phase Release ends in released (nothing held) or asks to remove what
    exists; a failed removal leaks, and Release can be retried from there."""
    for s in res_walk.states:
        r = resources.step(s, v.ResRelease())
        if s.phase not in RES_SETTLED:
            assert isinstance(r, Refused)
            continue
        assert isinstance(r, Step)
        if s.held:
            assert (r.state.phase, r.intents) == ("releasing", (v.RemoveCgroup(),))
        else:
            assert (r.state.phase, r.intents) == ("released", ())
    leaked = [s for s in res_walk.states if s.phase == "leaked"]
    assert leaked and all(s.held for s in leaked)


def test_resources_abstraction(res_walk):
    assert check_abstraction(res_walk) > 0
    check_from_tla(res_walk, resources.candidate_events)


def _every(**ranges: Iterable[Any]) -> list[Vars]:
    names = list(ranges)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*map(tuple, ranges.values()))]


def _subsets(items: Iterable[str]) -> list[frozenset[str]]:
    items = tuple(items)
    return [frozenset(c) for n in range(len(items) + 1) for c in itertools.combinations(items, n)]


BOOLS = (False, True)


def _type_ok_states(machine: str) -> list[Vars]:
    """Every assignment of a machine's variables that its spec's TypeOK admits (fs_total up to
    MaxMounts): is_initial must hold on exactly those its Init picks."""
    if machine == "lc":
        return _every(lc_status=_spec_strings("Lifecycle", "Statuses"),
                      lc_security=_spec_strings("Lifecycle", "Levels"), lc_cleaned=BOOLS, lc_removed=BOOLS)
    if machine == "iso":
        return [
            {"iso_rootless": r, "iso_phase": p, "iso_done": d}
            for r in BOOLS
            for p in _spec_strings("Isolation", "Phases")
            for d in range((len(ROOTLESS_PLAN) if r else len(PRIVILEGED_PLAN)) + 1)
        ]
    if machine == "fs":
        return [
            {**x, "fs_total": n, "fs_mounted": m}
            for x in _every(fs_phase=_spec_strings("Filesystem", "Phases"), fs_allowChroot=BOOLS,
                            fs_chrooted=BOOLS, fs_audit=BOOLS, fs_audited=BOOLS)
            for n in range(MAX_MOUNTS + 1)
            for m in range(n + 1)
        ]
    if machine == "sec":
        return _every(sec_allowDegraded=BOOLS, sec_strict=BOOLS, sec_phase=_spec_strings("Security", "Phases"),
                      sec_applied=_subsets(CONTROLS), sec_degraded=_subsets(DEGRADABLE))
    return _every(res_required=BOOLS, res_phase=_spec_strings("Resources", "Phases"), res_held=BOOLS,
                  res_limited=BOOLS)


@pytest.mark.parametrize(
    "machine",
    [
        "lc", "iso",
        "fs",
        "sec", "res",
    ],
)
def test_is_initial_holds_exactly_on_the_spec_init(machine):
    """Trace replay accepts a trace only if its first state is initial (is_initial of from_tla)."""
    module = system.MACHINES[machine]
    inits = {
        "lc": spec_init_lifecycle(), "iso": spec_init_isolation(),
        "fs": spec_init_filesystem(MAX_MOUNTS), "sec": spec_init_security(), "res": spec_init_resources(),
    }[machine]
    expected = {key(s) for s in inits}
    states = _type_ok_states(machine)
    assert expected <= {key(s) for s in states}
    wrong = [
        show(values) for values in states
        if module.is_initial(module.from_tla(values)) != (key(values) in expected)
    ]
    assert not wrong, f"is_initial disagrees with {machine}'s Init in {len(wrong)} states, first: {wrong[:3]}"


def test_no_step_changes_a_parameter(iso_walk, fs_walk, sec_walk, res_walk):
    for machine, walk in (("iso", iso_walk), ("fs", fs_walk), ("sec", sec_walk), ("res", res_walk)):
        for s, outs in walk.transitions.items():
            before = dict(walk.abstract[s])
            for _, r in outs:
                if isinstance(r, Step):
                    after = dict(walk.abstract[r.state])
                    assert [after[p] for p in PARAMETERS[machine]] == [before[p] for p in PARAMETERS[machine]]


# ---------------------------------------------------------------------------------------------
# System: the product at a small filesystem bound, sampled. Each combination of the parameters
# (six Booleans and fs_total) adds some 500 spec states, so the walk does not take all 192:
# every combination of the Booleans with a one-operation plan, and plans of none and two
# operations with the security machine's defaults (degraded security neither allowed nor strict).
# test_system_covers_every_step checks that the sample still takes every step the whole model
# can take, with each machine's every parameter value.

SYSTEM_MAX_MOUNTS = 2


def system_sample(values: Vars) -> bool:
    """Whether the walk starts from this initial spec state."""
    return values["fs_total"] == 1 or not (values["sec_allowDegraded"] or values["sec_strict"])


def spec_init_system_sample() -> list[Vars]:
    return [s for s in spec_init_system(SYSTEM_MAX_MOUNTS) if system_sample(s)]


def system_inits() -> list[system.SystemState]:
    """Every sampled initial spec state; for a few configurations also a second concrete state
    that differs only outside the spec (mount plan, audit rules, hostname, the controls'
    arguments, cgroup name and limits), so the abstraction is checked across the composition."""
    out = [
        system.initial(
            isolation.initial(rootless=r), fs, security.initial(allow_degraded=a, strict=strict),
            resources.initial(required=q),
        )
        for r in (False, True)
        for fs in fs_inits(SYSTEM_MAX_MOUNTS)
        if fs.new_root == "/new" and fs.plan == fs_plans(fs.total)[0] and fs.audit != OTHER_AUDIT
        for a in (False, True)
        for strict in (False, True)
        for q in (False, True)
    ]
    for r in (False, True):
        for n, a, strict in ((1, True, r), (SYSTEM_MAX_MOUNTS, False, False)):
            out.append(system.initial(
                isolation.initial(rootless=r, hostname="other"),
                filesystem.initial(fs_plans(n)[1], "/new", allow_chroot=True, audit=OTHER_AUDIT),
                security.initial(allow_degraded=a, strict=strict, keep_caps=("CAP_CHOWN",), log_denied=True),
                resources.initial(required=not r, name="c-0123", limits=("pids", 64)),
            ))
    sampled = [s for s in dict.fromkeys(out) if system_sample(system.to_tla(s))]
    assert len(sampled) == len(spec_init_system_sample()) + 4
    return sampled


# The events offered to the System in every state: candidate_events does not depend on the state
# (checked below), and building ~60 events in each of ~47,000 states would dominate the walk.
SYSTEM_EVENTS = system.candidate_events(system_inits()[0])


def sys_events(s: system.SystemState) -> list[v.Event]:
    return SYSTEM_EVENTS


@pytest.fixture(scope="module")
def sys_walk() -> Walk:
    return Walk(system, system_inits(), sys_events)


def test_system_candidate_events_are_every_machines_own(sys_walk):
    components = [
        (name, module, {getattr(s, name) for s in sys_walk.states})
        for name, module in system.MACHINES.items()
    ]
    for name, module, states in components:
        offered = {tuple(module.candidate_events(s)) for s in states}
        assert len(offered) == 1, f"{name}: candidate events depend on the state"
    expected = [e for _, module, states in components for e in module.candidate_events(next(iter(states)))]
    assert SYSTEM_EVENTS == expected
    for s in sys_walk.states[::97]:
        assert system.candidate_events(s) == SYSTEM_EVENTS


def test_system_invariants_hold_everywhere(sys_walk):
    check_invariants(sys_walk, system.all_invariants())


def test_system_checks_every_invariant_of_every_machine():
    names = {name for name, _ in system.all_invariants()}
    for prefix, machine in system.MACHINES.items():
        for inv in machine.INVARIANTS:
            assert f"{prefix}.{inv.__name__}" in names
    for inv in system.INVARIANTS:
        assert inv.__name__ in names
    assert set(system.MACHINES) == {m for m, _ in _system_next_actions()}


def test_system_agrees_with_spec(sys_walk):
    check_agrees_with_spec(sys_walk, spec_system, with_machine=True)
    assert sys_walk.abstract_states() == spec_reachable(spec_init_system_sample(), spec_system)
    assert len(sys_walk.abstract_states()) >= 45000


def test_system_sample_takes_every_parameter_value():
    """The sample has every combination of the six Boolean parameters, and every plan length."""
    inits = spec_init_system_sample()
    booleans = [p for m in ("iso", "fs", "sec", "res") for p in PARAMETERS[m]]
    assert len(booleans) == 6
    assert {tuple(s[p] for p in booleans) for s in inits} == set(
        itertools.product((False, True), repeat=6)
    )
    assert {s["fs_total"] for s in inits} == set(range(SYSTEM_MAX_MOUNTS + 1))
    assert len(inits) == 96 < len(spec_init_system(SYSTEM_MAX_MOUNTS)) == 192


def test_system_covers_every_action(sys_walk):
    expected = {("lc", a, "") for a in LC_PLAIN_ACTIONS}
    expected |= {("lc", "Prepared", lvl) for lvl in LEVELS} | {
        ("lc", "Kill", sig) for sig in SIGNALS
    }
    expected |= {("iso", "Begin", ""), ("iso", "Resume", "")}
    expected |= {("iso", a, s) for a in ("Done", "Fail") for s in ISO_STEPS}
    expected |= {("fs", "Begin", "")} | {("fs", a, s) for a in ("Done", "Fail") for s in FS_STEPS}
    expected |= {("sec", "Begin", "")} | {("sec", a, c) for a in ("Done", "Fail") for c in CONTROLS}
    expected |= {("res", a, "") for a in ("Begin", "Attach", "Release")}
    expected |= {("res", a, s) for a in ("Done", "Fail") for s in RES_STEPS}
    assert {(m, a) for m, a, _ in expected} == _system_next_actions()
    missing = expected - sys_walk.taken(with_machine=True)
    assert not missing, f"actions never taken: {sorted(missing)}"


def test_system_covers_every_step(sys_walk):
    """The sampled walk takes every step (action, argument, the machine's phase after it and its
    parameters) that the spec can take from every initial state at the bound. A third mount
    would add none: Done(mount) -> mounting is taken with two."""
    whole = spec_step_keys(spec_init_system(SYSTEM_MAX_MOUNTS), spec_system)
    taken = step_keys(sys_walk)
    assert taken == whole, f"never taken: {sorted(whole - taken)}"
    # Some of the steps that only a combination of parameters reaches.
    assert {
        ("sec", "Fail", "seccomp", "failed", (True, True)),
        ("sec", "Fail", "landlock", "failed", (True, True)),
        ("sec", "Fail", "seccomp", "landlock", (True, False)),
        ("fs", "Done", "chroot", "auditing", (True, True)),
        ("fs", "Fail", "audit", "failed", (True, True)),
        ("fs", "Fail", "audit", "failed", (False, True)),
        ("fs", "Done", "mount", "mounting", (True, True)),
        ("lc", "Prepared", "degraded", "created", ()),
    } <= taken


def test_system_cgroup_failure_outcomes(sys_walk):
    """A cgroup step that fails is fatal when the cgroup is required and otherwise lets the
    container run without one; both gates of isolation are passed in both cases."""
    outcomes = set()
    for s, outs in sys_walk.transitions.items():
        for e, r in outs:
            if isinstance(e, v.ResFailed) and isinstance(r, Step):
                outcomes.add((s.res.required, e.step, r.state.res.phase))
    assert outcomes == {
        (q, step, "leaked" if step == "release" else ("failed" if q else "degraded"))
        for q in (False, True)
        for step in RES_STEPS
    }
    running = {(s.res.required, s.res.phase) for s in sys_walk.states if s.lc.status == "running"}
    assert running == {(False, "ready"), (True, "ready"), (False, "degraded")}
    gates = {
        (s.iso.rootless, s.iso.plan[s.iso.done], s.res.phase)
        for s, outs in sys_walk.transitions.items()
        for e, r in outs
        if isinstance(e, v.IsoResume) and isinstance(r, Step)
    }
    assert {(r, g) for r, g, _ in gates} == {(False, "unshare"), (False, "enter_user"), (True, "unshare")}
    assert {p for _, g, p in gates if g == "unshare"} == {"ready", "degraded"}


def test_system_strict_modes_never_degrade(sys_walk):
    """In the composition too: a strict mode's seccomp or Landlock failure fails the setup, even
    with degraded security allowed; only the agent mode with it allowed runs degraded."""
    outcomes = set()
    for s, outs in sys_walk.transitions.items():
        for e, r in outs:
            if isinstance(e, v.SecFailed) and isinstance(r, Step):
                outcomes.add((s.sec.allow_degraded, s.sec.strict, e.step, r.state.sec.phase))
                if r.state.sec.phase == "failed" and r.state.lc.status == "creating":
                    assert system.advance(r.state) == v.SetupFailed()
    assert outcomes == {
        (a, strict, c, _sec_next_phase(c) if a and not strict and c in DEGRADABLE else "failed")
        for a in (False, True)
        for strict in (False, True)
        for c in CONTROLS
    }
    levels = {
        (s.sec.allow_degraded, s.sec.strict, s.lc.security)
        for s in sys_walk.states
        if s.lc.status in ("created", "running")
    }
    assert levels == {(a, strict, "enforced") for a in (False, True) for strict in (False, True)} | {
        (True, False, "degraded")
    }


def test_system_runs_only_an_audited_root(sys_walk):
    """With the audit, nothing runs in the root before it is audited: the user namespace waits,
    security waits, and a failed audit fails the setup; without it, the root is never audited."""
    audited_steps = set()
    for s, outs in sys_walk.transitions.items():
        for e, r in outs:
            if not isinstance(r, Step):
                continue
            if isinstance(e, (v.SecBegin, v.Prepared)) or (
                isinstance(e, v.IsoResume) and isolation.next_step(s.iso) == "enter_user"
            ):
                assert s.fs.phase == "sealed" and s.fs.audited == s.fs.audits, (e, s.fs)
            if isinstance(e, (v.FsDone, v.FsFailed)) and e.step == "audit":
                audited_steps.add((v.action_name(e), s.fs.chrooted, r.state.fs.phase))
                if isinstance(e, v.FsFailed) and r.state.lc.status == "creating":
                    assert system.advance(r.state) == v.SetupFailed()
    assert audited_steps == {
        (action, chrooted, "sealed" if action == "Done" else "failed")
        for action in ("Done", "Fail")
        for chrooted in (False, True)
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


def test_system_advance_names_only_enabled_events(sys_walk):
    """advance() is what the driver follows on its own: it must never name a refused event."""
    for s in sys_walk.states:
        e = system.advance(s)
        if e is not None:
            r = system.step(s, e)
            assert isinstance(r, Step), (
                f"advance named {e!r} in [{show(system.to_tla(s))}]: {r.why}"
            )


def _awaiting_an_observation(s: system.SystemState) -> bool:
    """Some machine has a step under way: the driver waits for what its intent reports."""
    return (
        s.iso.phase == "running"
        or s.fs.phase in ("mounting", "pivoting", "chrooting", "detaching", "auditing")
        or s.sec.phase in CONTROLS
        or s.res.phase in RES_UNDER_WAY
    )


def test_system_advance_never_stalls(sys_walk):
    """Where advance() names nothing, setup and cleanup are either finished or waiting for an
    observation; the only other stop is a leaked cgroup, which `rm --force` retries."""
    stops = set()
    for s in sys_walk.states:
        if system.advance(s) is not None or _awaiting_an_observation(s):
            continue
        lc = s.lc
        if lc.status == "creating":
            raise AssertionError(f"setup stalls in [{show(system.to_tla(s))}]")
        if lc.status in ("stopped", "failed") and not lc.cleaned:
            assert s.res.phase == "leaked", f"cleanup stalls in [{show(system.to_tla(s))}]"
        stops.add((lc.status, lc.cleaned))
    assert stops == {
        ("none", True), ("created", False), ("running", False), ("removed", True),
        ("stopped", True), ("failed", True), ("stopped", False), ("failed", False),
    }
