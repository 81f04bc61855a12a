"""The specs in formal/: which there are, what their .cfg lists, the actions of their Next, and
each machine's phase and parameters as a trace or TLC's state dump shows them."""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nucleus.tla.config import read_config
from tools.tla.errors import ToolError, die

ROOT = Path(__file__).resolve().parents[2]
FORMAL = ROOT / "formal"
# The specs in a fixed order (seeds depend on it); a new formal/<Spec>.tla with a .cfg is
# picked up after these.
KNOWN_SPECS = ("Lifecycle", "Isolation", "Filesystem", "Security", "Resources", "System", "Join")

def formal_copy(spec: str, copy: Path, *, graph_only: bool = False,
                defines: dict[str, str] | None = None, source: Path = FORMAL) -> Path:
    """A copy of formal/ (or `source`) in `copy`, for TLC (which takes no overrides): with `graph_only`,
    <spec>.cfg asks for the state graph alone (Init and Next, not the SPECIFICATION's fairness;
    the invariants; no PROPERTY); each of `defines` replaces a definition's right-hand side
    (`Name == value` on a line of its own) in whichever module makes it."""
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*.md"))
    if graph_only:
        cfg = copy / f"{spec}.cfg"
        lines = []
        for line in cfg.read_text().splitlines():
            if line.startswith("SPECIFICATION"):
                lines += ["INIT Init", "NEXT Next"]
            elif not line.startswith("PROPERTY"):
                lines.append(line)
        cfg.write_text("\n".join(lines) + "\n")
    for name, value in (defines or {}).items():
        found = False
        line = f"{name} == {value}"
        for path in copy.glob("*.tla"):
            text = path.read_text()
            new = re.sub(rf"^{re.escape(name)} == .*$", lambda _, line=line: line, text, flags=re.MULTILINE)
            if new != text:
                path.write_text(new)
                found = True
        if not found:
            raise ToolError(f"no definition {name} == ... in {source}")
    return copy


def cfg_entries(spec: str, directory: Path = FORMAL) -> dict[str, list[str]]:
    """The names listed under each keyword of <spec>.cfg (INVARIANTS folded into INVARIANT)."""
    return read_config(directory / f"{spec}.cfg").entries()


@functools.cache
def next_actions(spec: str) -> frozenset[tuple[str, str]]:
    """The (machine, action) pairs a spec's Next records in `event`."""
    text = (FORMAL / f"{spec}.tla").read_text()
    pairs = set(re.findall(r'\bEv\("(\w+)",\s*"(\w+)",', text))
    if pairs:  # the composition names the machine in every Ev(m, name, arg)
        return frozenset(pairs)
    m = re.search(r"""^Ev\(\w+,\s*\w+\)\s*==\s*event'\s*=\s*\[m \|-> "(\w+)\"""", text, re.MULTILINE)
    if not m:
        raise ToolError(f"formal/{spec}.tla: cannot find its Ev(name, arg) definition")
    body = text.split("\nNext ==", 1)[1].split("\nSpec ==", 1)[0]
    return frozenset((m.group(1), name) for name in re.findall(r'\bEv\("(\w+)"', body))


def all_specs(directory: Path = FORMAL) -> list[str]:
    """Every formal/<Spec>.tla with a <Spec>.cfg (not the TLC-only wrappers)."""
    found = {
        p.stem for p in directory.glob("*.tla")
        if (directory / f"{p.stem}.cfg").is_file() and not p.stem.endswith("Export") and p.stem != "ITF"
    }
    return [s for s in KNOWN_SPECS if s in found] + sorted(found - set(KNOWN_SPECS))


def chosen_specs(names: Sequence[str] | None, directory: Path = FORMAL) -> list[str]:
    specs = all_specs(directory)
    for name in names or ():
        if name not in specs:
            die(f"no spec {name} in {directory} (specs: {', '.join(specs)})")
    return list(names) if names else specs


@functools.cache
def machines_of(spec: str) -> frozenset[str]:
    return frozenset(m for m, _ in next_actions(spec))


@functools.cache
def parameters_of(machine: str) -> tuple[str, ...]:
    """A machine's parameters: the variables the Init of its own spec picks freely, Booleans
    (`x \\in BOOLEAN` in <M>Init, such as sec_allowDegraded and sec_strict) and sets of strings
    (`x \\in SUBSET S`, such as join_degradable). No step changes them; a step's outcome can
    depend on them, so coverage counts a step once per their values."""
    for spec in all_specs():
        if machines_of(spec) == {machine}:
            text = (FORMAL / f"{spec}.tla").read_text()
            init = re.search(r"^\w+Init ==\n((?:[ \t]+\S.*\n)+)", text, re.MULTILINE)
            return tuple(re.findall(r"(\w+) \\in (?:BOOLEAN|SUBSET)\b", init.group(1))) if init else ()
    return ()


def _parameter_value(value: Any) -> bool | frozenset[str]:
    """A parameter's value as read from an ITF state (a bool, {"#set": [...]}) or TLC's state
    dump (TRUE/FALSE, {"a", "b"})."""
    if isinstance(value, dict) and "#set" in value:
        return frozenset(map(str, value["#set"]))
    if isinstance(value, (list, set, frozenset)):
        return frozenset(map(str, value))
    if isinstance(value, str) and value.startswith("{"):
        return frozenset(re.findall(r'"([^"]*)"', value))
    return value in (True, "TRUE")


def parameters_label(machine: str, value: Any) -> str:
    """The parameters of `machine` that are TRUE or non-empty, without the machine's prefix:
    "allowDegraded,strict", "degradable:landlock+seccomp". `value(name)` gives a variable's value
    (as an ITF state or TLC's state dump has it)."""
    labels = []
    for p in parameters_of(machine):
        v = _parameter_value(value(p))
        name = p.split("_", 1)[-1]  # without the prefix, where it has one
        if v is True:
            labels.append(name)
        elif isinstance(v, frozenset) and v:
            labels.append(f"{name}:{'+'.join(sorted(v))}")
    return ",".join(labels)


def phase_var(machine: str, names: Iterable[str]) -> str | None:
    """The variable holding a machine's phase (<m>_phase or <m>_status)."""
    have = set(names)
    return next((v for v in (f"{machine}_phase", f"{machine}_status") if v in have), None)


def module_of(meta: dict[str, Any], names: Iterable[str]) -> str | None:
    """The spec a trace is for: its #meta module, else the spec whose machines own its variables."""
    specs = all_specs()
    module = meta.get("module")
    if module in specs:
        return str(module)
    prefixes = {n.split("_", 1)[0] for n in names if "_" in n}
    for spec in specs:
        if machines_of(spec) == prefixes:
            return spec
    return None
