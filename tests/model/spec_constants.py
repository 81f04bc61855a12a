"""Constants read out of formal/*.tla (sets of names, plans, bounds, parameters), for the tests
that check the code's constants are the specs'. The specs' Init and Next are never copied here:
the walks and the comparison take them from the built-in checker (tests/model/spec_steps.py)."""

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


def spec_definition_strings(module: str, name: str) -> tuple[str, ...]:
    """The string literals of a definition `name == ...` up to the next definition or comment, in
    order (a plan written as sequences joined with \\o, each once)."""
    m = re.search(rf"^{name}\s*==(.*?)(?=^\S)", spec_text(module), re.MULTILINE | re.DOTALL)
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


LEVELS = spec_strings("Lifecycle", "PreparedLevels")
SIGNALS = spec_strings("Lifecycle", "Signals")
PRIVILEGED_PLAN = spec_strings("Isolation", "PrivilegedPlan")
ROOTLESS_PLAN = spec_strings("Isolation", "RootlessPlan")
ISO_STEPS = spec_strings("Isolation", "StepNames")
FS_STEPS = spec_strings("Filesystem", "StepNames")
MAX_MOUNTS = spec_int("Filesystem", "MaxMounts")
CONTROLS = ("caps", "seccomp", "landlock")  # the order of NextPhase in formal/Security.tla
DEGRADABLE = spec_strings("Security", "Degradable")
RES_STEPS = spec_strings("Resources", "StepNames")
RES_SETTLED = spec_strings("Resources", "Settled")
# With one more attachment: each of the plan's names once, in the order the spec writes them.
NET_BRIDGE_PLAN = spec_definition_strings("Network", "BridgePlan")
NET_EGRESS_PLAN = spec_definition_strings("Network", "EgressPlan")
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


def sec_next_phase(c: str) -> str:
    """The security phase after control `c` is applied (CONTROLS' order)."""
    i = CONTROLS.index(c)
    return CONTROLS[i + 1] if i + 1 < len(CONTROLS) else "locked"
