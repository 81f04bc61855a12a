"""Behaviours: ITF trace files as the coverage counts them, one step key per step taken."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.tla.errors import ToolError
from tools.tla.specs import module_of, parameters_label, phase_var

# (machine, action, argument, the machine's phase after the step, its parameters that are TRUE or non-empty)
Key = tuple[str, str, str, str, str]


@dataclass
class Behaviour:
    spec: str
    path: Path
    data: bytes
    states: list[dict[str, Any]]
    keys: set[Key] = field(default_factory=set)
    run: int = 0  # which simulation run of the spec produced it

    @property
    def fingerprint(self) -> str:
        plain = [{k: v for k, v in s.items() if k != "#meta"} for s in self.states]
        return json.dumps(plain, sort_keys=True, separators=(",", ":"))


def step_keys(states: Sequence[dict[str, Any]]) -> list[Key]:
    keys = []
    for state in states[1:]:
        ev = state.get("event") or {}
        m = str(ev.get("m", ""))
        var = phase_var(m, state)
        phase = state.get(var, "") if var else ""
        keys.append((m, str(ev.get("name", "")), str(ev.get("arg", "")), str(phase),
                     parameters_label(m, state.get)))
    return keys


def load_behaviour(path: Path, spec: str | None = None) -> Behaviour:
    data = path.read_bytes()
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("states"), list):
        raise ToolError(f"{path}: not an ITF trace")
    states = doc["states"]
    module = spec or module_of(doc.get("#meta", {}), doc.get("vars") or (states[0] if states else {}))
    if module is None:
        raise ToolError(f"{path}: cannot tell which spec the trace is for")
    return Behaviour(module, path, data, states, set(step_keys(states)))


def trace_files(directory: Path) -> list[Path]:
    return sorted(
        (p for p in directory.rglob("*.itf.json")
         if not any(part.startswith(".") for part in p.relative_to(directory).parts)),
        key=natural_key,
    )


def natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]
