"""Trace replay: feed an ITF trace's events through the production driver and compare the
machine's abstraction (to_tla) with the trace after every step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nucleus import vocab as v
from nucleus.driver import Driver
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from nucleus.machines.base import Refused
from nucleus.trace import itf

MODULES: dict[str, Any] = {
    "Lifecycle": lifecycle, "Isolation": isolation, "Filesystem": filesystem,
    "Security": security, "Resources": resources, "System": system,
}
# Which module a trace belongs to, from a variable only it (or its composition) has.
_SIGNATURES = (
    ("System", {"lc_status", "iso_phase", "fs_phase", "sec_phase"}),
    ("Lifecycle", {"lc_status"}),
    ("Isolation", {"iso_phase"}),
    ("Filesystem", {"fs_phase"}),
    ("Security", {"sec_phase"}),
    ("Resources", {"res_phase"}),
)


class _Observer:
    """Executes nothing: in a replay, observations come from the trace itself."""

    def perform(self, intents: tuple[v.Intent, ...]) -> list[v.Event]:  # noqa: ARG002
        return []


@dataclass(frozen=True)
class Divergence:
    path: str
    index: int
    action: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: step {self.index} ({self.action}): {self.message}"


def module_of(trace: itf.Trace) -> str:
    if trace.module in MODULES:
        return trace.module  # type: ignore[return-value]
    names = set(trace.vars)
    for module, needed in _SIGNATURES:
        if needed <= names:
            return module
    raise ValueError(f"{trace.path}: cannot tell which machine the trace is for (vars {sorted(names)})")


def replay(trace: itf.Trace) -> Divergence | None:
    """Replay one trace; return the first divergence, or None when the code agrees throughout."""
    if not trace.states:
        return Divergence(trace.path, 0, "-", "the trace has no states")
    machine = MODULES[module_of(trace)]
    first = {k: val for k, val in trace.states[0].items() if k != "event"}
    try:
        start = machine.from_tla(first)
    except (KeyError, TypeError, ValueError) as e:
        return Divergence(trace.path, 0, "Init", f"cannot build the initial state: {e}")
    mismatch = _compare(machine.to_tla(start), first)
    if mismatch:
        return Divergence(trace.path, 0, "Init", mismatch)
    if not machine.is_initial(start):
        return Divergence(trace.path, 0, "Init", f"not an initial state: {_describe(first)}")
    driver = Driver(machine, start, _Observer())
    for index in range(1, len(trace.states)):
        state = trace.states[index]
        ev = state.get("event") or {}
        m, name, arg = ev.get("m", ""), ev.get("name", ""), ev.get("arg", "")
        label = f"{m}.{name}" + (f"({arg})" if arg else "")
        try:
            event = v.event_from_tla(m, name, arg)
        except (KeyError, ValueError) as e:
            return Divergence(trace.path, index, label, f"unknown action: {e}")
        result = driver.feed(event)
        if isinstance(result, Refused):
            return Divergence(trace.path, index, label, f"the machine refused it: {result.why}")
        expected = {k: val for k, val in state.items() if k != "event"}
        mismatch = _compare(machine.to_tla(driver.state), expected)
        if mismatch:
            return Divergence(trace.path, index, label, mismatch)
    return None


def _compare(actual: dict[str, Any], expected: dict[str, Any]) -> str:
    diffs = []
    for key in sorted(set(actual) | set(expected)):
        a = actual.get(key, "<absent>")
        e = expected.get(key, "<absent>")
        if isinstance(a, (set, frozenset)):
            a = frozenset(a)
        if a != e:
            diffs.append(f"{key}: code has {_show(a)}, trace has {_show(e)}")
    return "; ".join(diffs)


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_show(values[k])}" for k in sorted(values))


def _show(value: Any) -> str:
    if isinstance(value, frozenset):
        return "{" + ", ".join(sorted(map(repr, value))) + "}"
    return repr(value)
