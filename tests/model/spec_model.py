"""The specs, as the walks compare the code with them: constants read out of formal/*.tla, and
each spec's actions transliterated line by line (the ``spec_*`` functions: spec variables in, a
list of ((action, argument), next variables) out), with each machine's initial states at the
walks' bounds. A change in a spec that is not mirrored in the code, or here, shows up as a
disagreement in the walks."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMAL = Path(__file__).resolve().parents[2] / "formal"

Vars = dict[str, Any]
Label = tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Reading constants out of the specs.


def spec_text(module: str) -> str:
    return (FORMAL / f"{module}.tla").read_text()


def spec_strings(module: str, name: str) -> tuple[str, ...]:
    """The string literals of a definition `name == {...}` or `name == <<...>>`, in order."""
    m = re.search(rf"^{name}\s*==\s*(\{{[^}}]*\}}|<<[^>]*>>)", spec_text(module), re.MULTILINE)
    assert m, f"formal/{module}.tla defines no {name}"
    return tuple(re.findall(r'"([^"]*)"', m.group(1)))


def spec_int(module: str, name: str) -> int:
    m = re.search(rf"^{name}\s*==\s*(\d+)", spec_text(module), re.MULTILINE)
    assert m, f"formal/{module}.tla defines no {name}"
    return int(m.group(1))


def spec_next_actions(module: str) -> set[str]:
    """The action names a single-machine spec's Next records in `event` (Ev("Name", ...))."""
    body = spec_text(module).split("Next ==", 1)[1].split("Spec ==", 1)[0]
    return set(re.findall(r'Ev\("(\w+)"', body))


def system_next_actions() -> set[tuple[str, str]]:
    """(machine, action) pairs the System spec records (Ev("m", "Name", ...))."""
    return set(re.findall(r'Ev\("(\w+)", "(\w+)"', spec_text("System")))


def spec_parameters(module: str) -> tuple[str, ...]:
    """The variables a spec's <M>Init picks freely (`x \\in BOOLEAN`, `x \\in SUBSET S`): its
    parameters."""
    body = re.search(r"^\w+Init ==\n((?:    .*\n)+)", spec_text(module), re.MULTILINE)
    assert body, f"formal/{module}.tla has no <M>Init"
    return tuple(re.findall(r"(\w+) \\in (?:BOOLEAN|SUBSET \w+)", body.group(1)))


LEVELS = ("enforced", "degraded")
SIGNALS = spec_strings("Lifecycle", "ModelSignals")
PRIVILEGED_PLAN = spec_strings("Isolation", "PrivilegedPlan")
ROOTLESS_PLAN = spec_strings("Isolation", "RootlessPlan")
ISO_STEPS = spec_strings("Isolation", "StepNames")
FS_STEPS = spec_strings("Filesystem", "StepNames")
MAX_MOUNTS = spec_int("Filesystem", "MaxMounts")
CONTROLS = ("caps", "seccomp", "landlock")  # the order of NextPhase in formal/Security.tla
DEGRADABLE = spec_strings("Security", "Degradable")
RES_STEPS = spec_strings("Resources", "StepNames")
RES_SETTLED = spec_strings("Resources", "Settled")
NET_BRIDGE_PLAN = spec_strings("Network", "BridgePlan")
NET_EGRESS_PLAN = spec_strings("Network", "EgressPlan")
NET_STEPS = spec_strings("Network", "StepNames")
NET_HOST_STEPS = spec_strings("Network", "HostSteps")
NET_SETTLED = spec_strings("Network", "Settled")
JOIN_PLAN = spec_strings("Join", "Plan")
JOIN_STEPS = spec_strings("Join", "StepNames")
JOIN_DEGRADABLE = spec_strings("Join", "Degradable")


def _spec_under_way() -> dict[str, str]:
    """Resources' UnderWay: the phase in which each step is under way (its CASE arms)."""
    body = spec_text("Resources").split("UnderWay ==", 1)[1].split("\n\n", 1)[0]
    arms = dict(re.findall(r'res_phase = "(\w+)" -> "(\w+)"', body))
    assert arms and set(arms.values()) == set(RES_STEPS), f"cannot read UnderWay: {arms}"
    return arms


RES_UNDER_WAY = _spec_under_way()

PARAMETERS = {
    "lc": spec_parameters("Lifecycle"),
    "iso": spec_parameters("Isolation"),
    "fs": spec_parameters("Filesystem"),
    "sec": spec_parameters("Security"),
    "res": spec_parameters("Resources"),
    "net": spec_parameters("Network"),
    "join": spec_parameters("Join"),
}
BOOLS = (False, True)


def subsets(items: Iterable[str]) -> list[frozenset[str]]:
    items = tuple(items)
    return [frozenset(c) for n in range(len(items) + 1) for c in itertools.combinations(items, n)]


# ---------------------------------------------------------------------------------------------
# The specs' actions, transliterated.


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
    # Lost: an active container fails; a stopped or failed one not yet cleaned up stays (UNCHANGED).
    if st in ("creating", "created", "running"):
        to(("Lost", ""), lc_status="failed")
    if st in ("stopped", "failed") and not s["lc_cleaned"]:
        to(("Lost", ""))
    if st == "running":
        to(("Attach", ""))
    if st in ("stopped", "failed") and not s["lc_cleaned"]:
        to(("CleanupDone", ""), lc_cleaned=True)
    if st in ("stopped", "failed") and s["lc_cleaned"]:
        to(("Remove", ""), lc_status="removed", lc_removed=True)
    return out


def iso_plan(s: Vars) -> tuple[str, ...]:
    return ROOTLESS_PLAN if s["iso_rootless"] else PRIVILEGED_PLAN


def iso_is_gate(s: Vars, name: str) -> bool:
    return name == "unshare" or (name == "enter_user" and not s["iso_rootless"])


def _iso_phase_after(s: Vars, d: int) -> str:
    plan = iso_plan(s)
    if d == len(plan):
        return "ready"
    if iso_is_gate(s, plan[d]):
        return "waiting"
    return "running"


def iso_next(s: Vars) -> str:
    """System's IsoNext: the step isolation waits for at its gate ("none" once the plan is done)."""
    plan = iso_plan(s)
    return plan[s["iso_done"]] if s["iso_done"] < len(plan) else "none"


def iso_has_done(s: Vars, name: str) -> bool:
    return name in iso_plan(s)[: s["iso_done"]]


def spec_isolation(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase, done, plan = s["iso_phase"], s["iso_done"], iso_plan(s)
    if phase == "idle":
        out.append((("Begin", ""), {**s, "iso_phase": _iso_phase_after(s, 0)}))
    if phase == "running":
        name = plan[done]
        out.append((("Done", name), {**s, "iso_done": done + 1, "iso_phase": _iso_phase_after(s, done + 1)}))
        out.append((("Fail", name), {**s, "iso_phase": "failed"}))
    if phase == "waiting":
        out.append((("Resume", ""), {**s, "iso_phase": "running"}))
    return out


FS_EXPECTED = {"mounting": "mount", "pivoting": "pivot", "chrooting": "chroot", "detaching": "detach",
               "auditing": "audit"}


def _fs_sealing(s: Vars) -> str:
    # Sealing == IF fs_audit THEN "auditing" ELSE "sealed"
    return "auditing" if s["fs_audit"] else "sealed"


def spec_filesystem(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase = s["fs_phase"]
    # Begin: fs_phase = "idle" -> IF fs_total = 0 THEN "pivoting" ELSE "mounting"
    if phase == "idle":
        out.append((("Begin", ""), {**s, "fs_phase": "pivoting" if s["fs_total"] == 0 else "mounting"}))
    # Done(s): Expected = s, one disjunct per step
    expected = FS_EXPECTED.get(phase)
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


def sec_next_phase(c: str) -> str:
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
        out.append((("Done", c), {**s, "sec_applied": s["sec_applied"] | {c}, "sec_phase": sec_next_phase(c)}))
        # IF c \in Degradable /\ sec_allowDegraded /\ ~sec_strict
        if c in DEGRADABLE and s["sec_allowDegraded"] and not s["sec_strict"]:
            fail = {**s, "sec_degraded": s["sec_degraded"] | {c}, "sec_phase": sec_next_phase(c)}
        else:
            fail = {**s, "sec_phase": "failed"}
        out.append((("Fail", c), fail))
    return out


def res_under_way(s: Vars) -> str:
    return RES_UNDER_WAY.get(s["res_phase"], "none")


def res_unfinished(s: Vars, step: str) -> Vars:
    """Unfinished(s): IF s = "release" THEN "leaked" (held unchanged) ELSE failed or degraded by
    res_required, and held."""
    if step == "release":
        return {"res_phase": "leaked"}
    return {"res_phase": "failed" if s["res_required"] else "degraded", "res_held": True}


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
    under_way = res_under_way(s)
    # Done(s): UnderWay = s, one disjunct per step
    if under_way == "create":
        to(("Done", "create"), res_phase="limiting", res_held=True)
    elif under_way == "limits":
        to(("Done", "limits"), res_phase="waiting", res_limited=True)
    elif under_way == "attach":
        to(("Done", "attach"), res_phase="ready")
    elif under_way == "release":
        to(("Done", "release"), res_phase="released", res_held=False, res_limited=False)
    # Fail(s): UnderWay = s /\ Unfinished(s); Abandon: UnderWay # "none" /\ Unfinished(UnderWay)
    if under_way != "none":
        to(("Fail", under_way), **res_unfinished(s, under_way))
        to(("Abandon", ""), **res_unfinished(s, under_way))
    return out


def net_plan(s: Vars) -> tuple[str, ...]:
    # Plan == IF ~net_bridged THEN <<>> ELSE IF net_egress THEN EgressPlan ELSE BridgePlan
    if not s["net_bridged"]:
        return ()
    return NET_EGRESS_PLAN if s["net_egress"] else NET_BRIDGE_PLAN


def net_has_done(s: Vars, name: str) -> bool:
    return name in net_plan(s)[: s["net_done"]]


def net_under_way(s: Vars) -> str:
    if s["net_phase"] == "running":
        return net_plan(s)[s["net_done"]]
    return "teardown" if s["net_phase"] == "releasing" else "none"


def net_unfinished(s: Vars, step: str) -> Vars:
    """Unfinished(s): IF s = "teardown" THEN "leaked" ELSE "failed", with Made(s) held."""
    if step == "teardown":
        return {"net_phase": "leaked"}
    made = s["net_held"] | {step} if step in NET_HOST_STEPS else s["net_held"]
    return {"net_phase": "failed", "net_held": made}


def spec_network(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase, done, plan = s["net_phase"], s["net_done"], net_plan(s)

    def to(label: Label, **changes: Any) -> None:
        out.append((label, {**s, **changes}))

    def after(d: int) -> str:  # PhaseAfter(d)
        return "ready" if d == len(plan) else "running"

    if phase == "idle":
        to(("Begin", ""), net_phase=after(0))
    under_way = net_under_way(s)
    if under_way == "teardown":
        to(("Done", "teardown"), net_phase="released", net_held=frozenset())
    elif under_way != "none":
        made = s["net_held"] | {under_way} if under_way in NET_HOST_STEPS else s["net_held"]
        to(("Done", under_way), net_done=done + 1, net_phase=after(done + 1), net_held=made)
    if under_way != "none":  # (Abandon: only System's LostStep takes it, see spec_system)
        to(("Fail", under_way), **net_unfinished(s, under_way))
    if phase in NET_SETTLED:
        to(("Release", ""), net_phase="released" if not s["net_held"] else "releasing")
    return out


def _join_phase_after(d: int) -> str:
    # PhaseAfter(d) == IF d = Len(Plan) THEN "ready" ELSE "running"
    return "ready" if d == len(JOIN_PLAN) else "running"


def spec_join(s: Vars) -> list[tuple[Label, Vars]]:
    out: list[tuple[Label, Vars]] = []
    phase, done = s["join_phase"], s["join_done"]

    def to(label: Label, **changes: Any) -> None:
        out.append((label, {**s, **changes}))

    if phase == "idle":
        to(("Begin", ""), join_phase=_join_phase_after(done))
    # Done(s) and Fail(s): join_phase = "running" /\ Plan[join_done + 1] = s
    if phase == "running":
        name = JOIN_PLAN[done]
        to(("Done", name), join_done=done + 1, join_phase=_join_phase_after(done + 1))
        if name in s["join_degradable"]:
            to(("Fail", name), join_done=done + 1, join_degraded=s["join_degraded"] | {name},
               join_phase=_join_phase_after(done + 1))
        else:
            to(("Fail", name), join_phase="failed")
    if phase == "ready":
        to(("Start", ""), join_phase="started")
    if phase == "started":
        to(("Exit", ""), join_phase="exited")
    return out


def _any_failed(s: Vars) -> bool:
    # AnyFailed == "failed" \in {iso_phase, fs_phase, sec_phase, res_phase, net_phase}
    return "failed" in (s["iso_phase"], s["fs_phase"], s["sec_phase"], s["res_phase"], s["net_phase"])


def contained(s: Vars) -> bool:
    # Contained == res_phase \in {"ready", "degraded"}
    return s["res_phase"] in ("ready", "degraded")


def spec_system(s: Vars) -> list[tuple[Label, Vars]]:
    """formal/System.tla: each machine's actions under the composition's guards."""
    out: list[tuple[Label, Vars]] = []
    for label, t in spec_lifecycle(s):
        # sec_phase = "locked" /\ Contained /\ LC!Prepared(SEC!Level)
        if label[0] == "Prepared" and not (s["sec_phase"] == "locked" and contained(s) and label[1] == sec_level(s)):
            continue
        # AnyFailed /\ LC!SetupFailed
        if label[0] == "SetupFailed" and not _any_failed(s):
            continue
        # res_phase = "released" /\ net_phase = "released" /\ LC!CleanupDone
        if label[0] == "CleanupDone" and (s["res_phase"] != "released" or s["net_phase"] != "released"):
            continue
        # LostStep: LC!Lost /\ IF RES!UnderWay # "none" THEN RES!Abandon ELSE UNCHANGED res_vars
        #                    /\ IF NET!UnderWay # "none" THEN NET!Abandon ELSE UNCHANGED net_vars
        if label[0] == "Lost" and res_under_way(s) != "none":
            t = {**t, **res_unfinished(s, res_under_way(s))}
        if label[0] == "Lost" and net_under_way(s) != "none":
            t = {**t, **net_unfinished(s, net_under_way(s))}
        out.append((("lc", *label), t))
    for label, t in spec_isolation(s):
        # lc_status = "creating" /\ res_phase \in {"waiting", "degraded"} /\ ISO!Begin
        if label[0] == "Begin" and not (s["lc_status"] == "creating" and s["res_phase"] in ("waiting", "degraded")):
            continue
        # IF IsoNext = "unshare" THEN Contained ELSE fs_phase = "sealed"
        if label[0] == "Resume" and not (contained(s) if iso_next(s) == "unshare" else s["fs_phase"] == "sealed"):
            continue
        out.append((("iso", *label), t))
    for label, t in spec_filesystem(s):
        # ISO!HasDone("loopback") /\ net_phase = "ready" /\ FS!Begin
        if label[0] == "Begin" and not (iso_has_done(s, "loopback") and s["net_phase"] == "ready"):
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
        # ResStep has no Abandon: System takes it only inside LostStep, above.
        if label[0] == "Abandon":
            continue
        out.append((("res", *label), t))
    for label, t in spec_network(s):
        # lc_status = "creating" /\ ISO!HasDone("loopback") /\ NET!Begin
        if label[0] == "Begin" and not (s["lc_status"] == "creating" and iso_has_done(s, "loopback")):
            continue
        # lc_status \in {"stopped", "failed"} /\ res_phase = "released" /\ NET!Release
        if label[0] == "Release" and not (s["lc_status"] in ("stopped", "failed") and s["res_phase"] == "released"):
            continue
        out.append((("net", *label), t))
    return out


# ---------------------------------------------------------------------------------------------
# Initial spec states, at the walks' bounds.


def spec_init_lifecycle() -> list[Vars]:
    return [{"lc_status": "none", "lc_security": "none", "lc_cleaned": True, "lc_removed": False}]


def spec_init_isolation() -> list[Vars]:
    return [{"iso_rootless": r, "iso_phase": "idle", "iso_done": 0} for r in BOOLS]


def spec_init_filesystem(max_total: int) -> list[Vars]:
    return [
        {"fs_phase": "idle", "fs_mounted": 0, "fs_total": n, "fs_allowChroot": a, "fs_chrooted": False,
         "fs_audit": audit, "fs_audited": False}
        for n in range(max_total + 1) for a in BOOLS for audit in BOOLS
    ]


def spec_init_security() -> list[Vars]:
    return [
        {"sec_allowDegraded": a, "sec_strict": strict, "sec_phase": "idle", "sec_applied": frozenset(),
         "sec_degraded": frozenset()}
        for a in BOOLS for strict in BOOLS
    ]


def spec_init_resources() -> list[Vars]:
    return [{"res_required": r, "res_phase": "idle", "res_held": False, "res_limited": False} for r in BOOLS]


def spec_init_network() -> list[Vars]:
    # net_egress => net_bridged
    return [{"net_bridged": b, "net_egress": e, "net_phase": "idle", "net_done": 0, "net_held": frozenset()}
            for b in BOOLS for e in BOOLS if b or not e]


def spec_init_join() -> list[Vars]:
    return [
        {"join_degradable": d, "join_phase": "idle", "join_done": 0, "join_degraded": frozenset()}
        for d in subsets(JOIN_DEGRADABLE)
    ]


def spec_init_system(max_total: int) -> list[Vars]:
    return [
        {**lc, **iso, **fs, **sec, **res, **net}
        for lc in spec_init_lifecycle()
        for iso in spec_init_isolation()
        for fs in spec_init_filesystem(max_total)
        for sec in spec_init_security()
        for res in spec_init_resources()
        for net in spec_init_network()
    ]
