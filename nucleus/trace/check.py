"""Whether a trace is a behaviour of its spec (`nucleus trace check`): its first state satisfies
the spec's Init and each step its Next, evaluated on formal/*.tla by the built-in checker
(nucleus.tla). Replay (nucleus.trace.replay) compares the code with its own record; this compares
the record with the specification.

A real run's mount plan is longer than the model checker's bound (`MaxMounts`, 3 in
formal/Filesystem.tla): the spec is instantiated with `MaxMounts` at the trace's largest
`fs_total`, the smallest instance the run can be a behaviour of. The bound appears only in the
initial range of `fs_total` (and in TypeOK), so the behaviours at a bound include those at every
smaller one; formal/README.md says why the model-checked bound stands for the larger ones. A run
with more network attachments (`--attach`) records their number in `net_extra`, which System
composes at its definition `NetExtra` (0 when model-checked): the trace is checked at its own.

A refused trace is reported at its first impossible step: its index, the action the trace names,
and the variables in which it differs from the allowed successor closest to it.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import field
from pathlib import Path
from typing import Any

from nucleus.frozen import frozen
from nucleus.tla.conformance import states_of
from nucleus.tla.errors import TlaError
from nucleus.tla.model import Model, State
from nucleus.tla.values import Fn, show

# formal/ beside the package (a checkout, or an editable install); NUCLEUS_FORMAL or --formal
# name another copy of the specs.
DEFAULT_FORMAL = Path(__file__).resolve().parents[2] / "formal"
MODULES = ("System", "Lifecycle", "Isolation", "Filesystem", "Security", "Resources", "Network", "Join",
           "Gvisor")


class Unreadable(Exception):
    """The file is not a trace of a known spec (not JSON, not ITF, or not the spec's variables)."""


@frozen
class Verdict:
    path: str
    module: str
    steps: int
    index: int = -1  # the first impossible step (0: the initial state), or -1: a behaviour
    action: str = ""
    differences: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.index < 0

    def __str__(self) -> str:
        if self.ok:
            return f"ok {self.path} ({self.module}, {self.steps} steps)"
        where = "state 0 is not an initial state" if self.index == 0 else \
            f"step {self.index} ({self.action}) is not a step"
        return (f"{self.path}: {where} of {self.module}: " + "; ".join(self.differences))


def formal_directory(given: str | None = None) -> Path:
    return Path(given or os.environ.get("NUCLEUS_FORMAL") or DEFAULT_FORMAL)


@functools.cache
def _model(module: str, formal: Path, defines: tuple[tuple[str, str], ...]) -> Model:
    return Model(module, formal, dict(defines))


def _module(doc: dict[str, Any]) -> str:
    meta = doc.get("#meta")
    module = meta.get("module") if isinstance(meta, dict) else None
    if module in MODULES:
        return str(module)
    names = set(doc.get("vars") or [])
    for candidate, needed in (("System", {"lc_status", "iso_phase"}), ("Join", {"join_phase"})):
        if needed <= names:
            return candidate
    raise Unreadable(f"cannot tell which spec it is a trace of (module {module!r})")


def _label(state: State, model: Model) -> str:
    event = state[model.variables.index("event")] if "event" in model.variables else None
    if not isinstance(event, Fn):
        return "?"
    m, name, arg = (event.m.get(k, "") for k in ("m", "name", "arg"))
    return f"{m}.{name}" + (f"({arg})" if arg else "")


def _differences(model: Model, actual: State, allowed: list[State]) -> tuple[str, ...]:
    """The variables in which `actual` differs from the closest of `allowed` (those recording
    the same event first)."""
    if not allowed:
        return ("the spec allows no step from the state before it",)
    at = model.variables.index("event") if "event" in model.variables else -1

    def distance(candidate: State) -> tuple[int, int]:
        apart = sum(1 for a, b in zip(actual, candidate, strict=True) if a != b)
        return (0 if at < 0 or candidate[at] == actual[at] else 1, apart)
    closest = min(allowed, key=distance)
    return tuple(f"{n} is {show(a)} where the spec allows {show(b)}"
                 for n, a, b in zip(model.variables, actual, closest, strict=True) if a != b)


def _defines(model_vars: list[str], doc: dict[str, Any], extra: int | None) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    if "fs_total" in model_vars:
        totals = [s.get("fs_total") for s in doc["states"]]
        largest = max((t for t in totals if isinstance(t, int) and not isinstance(t, bool)), default=0)
        found.append(("MaxMounts", str(largest)))
    if extra is not None:
        found.append(("NetExtra", str(extra)))
    return tuple(found)


def _net_extra(model_vars: list[str], doc: dict[str, Any]) -> int | None:
    """A System trace of a run with more network attachments records their number, net_extra,
    which the spec takes as its definition NetExtra (0 when model-checked): the trace is checked
    against the spec at that number, and the variable is not the spec's. None for other traces."""
    if "net_extra" in model_vars or "net_extra" not in (doc.get("vars") or []):
        return None
    values = {json.dumps(s.get("net_extra")) for s in doc["states"] if isinstance(s, dict)}
    if len(values) != 1:
        raise Unreadable("net_extra changes within the trace: it is fixed for a run")
    value = json.loads(values.pop())
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Unreadable(f"net_extra is {value!r}, not a number of attachments")
    return value


def _without(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The trace without the variable `name`."""
    return {**doc, "vars": [n for n in doc.get("vars") or [] if n != name],
            "states": [{k: x for k, x in s.items() if k != name} if isinstance(s, dict) else s
                       for s in doc["states"]]}


def check_file(path: str, formal: Path | None = None) -> Verdict:
    """Check one trace file; raise Unreadable when it is not a trace of a known spec."""
    formal = formal or formal_directory()
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise Unreadable(e.strerror or str(e)) from e
    except ValueError as e:
        raise Unreadable(f"not JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("states"), list):
        raise Unreadable("not an ITF trace (no 'states')")
    module = _module(doc)
    if not (formal / f"{module}.tla").is_file():
        raise Unreadable(f"no specification {module}.tla in {str(formal)!r}")
    try:
        names = list(_model(module, formal, ()).variables)
        extra = _net_extra(names, doc)
        model = _model(module, formal, _defines(names, doc, extra))
        if extra is not None:
            doc = _without(doc, "net_extra")
        states = states_of(model, Path(path), doc)
    except (TlaError, ValueError) as e:
        raise Unreadable(str(e)) from e
    steps = len(states) - 1
    try:
        if not model.is_initial(states[0]):
            return Verdict(path, module, steps, 0, "Init", _differences(model, states[0], model.initial_states()))
        for i in range(steps):
            if not model.is_step(states[i], states[i + 1]):
                return Verdict(path, module, steps, i + 1, _label(states[i + 1], model),
                               _differences(model, states[i + 1], model.successors(states[i])))
    except TlaError as e:
        raise Unreadable(f"a value the spec cannot evaluate: {e}") from e
    return Verdict(path, module, steps)
