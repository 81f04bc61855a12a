"""Whether an ITF trace is a behaviour of its spec: its first state satisfies Init, and each step
satisfies Next with the unprimed variables bound to one state and the primed ones to the next.
A spec change that the committed traces no longer follow shows up here, without TLC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nucleus.tla.errors import EvalError
from nucleus.tla.model import Model, State
from nucleus.tla.values import from_itf


@dataclass
class Verdict:
    path: Path
    steps: int
    problem: str = ""  # empty: the trace is a behaviour of the spec

    @property
    def ok(self) -> bool:
        return not self.problem


def states_of(model: Model, path: Path, doc: dict[str, Any]) -> list[State]:
    names = set(model.variables)
    states = []
    for i, raw in enumerate(doc.get("states") or []):
        given = {k for k in raw if k != "#meta"}
        if given != names:
            extra, missing = sorted(given - names), sorted(names - given)
            raise ValueError(f"state {i} has the variables {sorted(given)}, not {model.spec}'s"
                             + (f" (extra: {', '.join(extra)})" if extra else "")
                             + (f" (missing: {', '.join(missing)})" if missing else ""))
        states.append(tuple(from_itf(raw[v], f"{path} state {i} {v}") for v in model.variables))
    if not states:
        raise ValueError("no states")
    return states


def check_behaviour(model: Model, path: Path) -> Verdict:
    try:
        doc = json.loads(path.read_text())
        states = states_of(model, path, doc)
    except (OSError, ValueError, EvalError) as e:
        return Verdict(path, 0, f"cannot read it: {e}")
    steps = len(states) - 1
    try:
        if not model.is_initial(states[0]):
            return Verdict(path, steps, "state 0 does not satisfy Init:\n"
                           + "\n".join("  " + line for line in model.show_state(states[0])))
        for i in range(steps):
            if not model.is_step(states[i], states[i + 1]):
                changes = model.show_state(states[i + 1], states[i]) or ["(nothing changed)"]
                return Verdict(path, steps, f"step {i} -> {i + 1} is not a Next step of {model.spec}; "
                               "from\n" + "\n".join("  " + line for line in model.show_state(states[i]))
                               + "\nit changes\n" + "\n".join("  " + line for line in changes))
    except EvalError as e:
        return Verdict(path, steps, f"evaluation failed: {e}")
    return Verdict(path, steps)


def describe(verdict: Verdict) -> str:
    return f"ok {verdict.path} ({verdict.steps} steps)" if verdict.ok else f"NOT A BEHAVIOUR {verdict.path}: {verdict.problem}"
