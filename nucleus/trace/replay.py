"""Trace replay: feed an ITF trace's events through the production driver and compare the
machine's abstraction (to_tla) with the trace after every step.

A trace recorded from a real run (`nucleus run --trace`) carries more: for each step the event as
it was fed (replay feeds exactly that), the intents it issued, and the inputs of its plan. From
those inputs replay plans the run again and compares every intent with what was recorded, so a
change in what the plan writes (a cgroup value, a mount flag) is caught.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nucleus import vocab as v
from nucleus.driver import Driver
from nucleus.frozen import frozen
from nucleus.machines import (
    filesystem,
    gvisor,
    isolation,
    join,
    lifecycle,
    network,
    oci,
    resources,
    security,
    server,
    service,
    system,
    topology,
)
from nucleus.machines.base import Refused
from nucleus.plain import from_plain
from nucleus.trace import itf
from nucleus.vocab import gvisor as gvisor_vocab
from nucleus.vocab import oci as oci_vocab
from nucleus.vocab import server as server_vocab
from nucleus.vocab import service as service_vocab
from nucleus.vocab import topology as topology_vocab

MODULES: dict[str, Any] = {
    "Lifecycle": lifecycle, "Isolation": isolation, "Filesystem": filesystem,
    "Security": security, "Resources": resources, "Network": network, "System": system, "Join": join,
    "Topology": topology, "Service": service, "Server": server, "Gvisor": gvisor,
    "Oci": oci,
}
# Which module a trace belongs to, from a variable only it (or its composition) has.
_SIGNATURES = (
    ("System", {"lc_status", "iso_phase", "fs_phase", "sec_phase"}),
    ("Lifecycle", {"lc_status"}),
    ("Isolation", {"iso_phase"}),
    ("Filesystem", {"fs_phase"}),
    ("Security", {"sec_phase"}),
    ("Resources", {"res_phase"}),
    ("Network", {"net_phase"}),
    ("Join", {"join_phase"}),
    ("Topology", {"topo_phase"}),
    ("Service", {"svc_phase"}),
    ("Server", {"srv_phase"}),
    ("Gvisor", {"gv_status"}),
    ("Oci", {"oci_status"}),
)


def _planners() -> dict[str, tuple[type, Callable[[Any], Any]]]:
    from nucleus.plan.join import JoinInputs
    from nucleus.plan.run import RunInputs

    return {"System": (RunInputs, lambda inputs: inputs.plan().state),
            "Join": (JoinInputs, lambda inputs: inputs.plan())}


class _Observer:
    """Executes nothing: in a replay, observations come from the trace itself."""

    def perform(self, intents: tuple[v.Intent, ...]) -> list[v.Event]:
        return []


@frozen
class Divergence:
    path: str
    index: int
    action: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: step {self.index} ({self.action}): {self.message}"


def module_of(trace: itf.Trace) -> str:
    if trace.module in MODULES:
        return trace.module
    names = set(trace.vars)
    for module, needed in _SIGNATURES:
        if needed <= names:
            return module
    raise ValueError(f"{trace.path}: cannot tell which machine the trace is for (vars {sorted(names)})")


def _start(trace: itf.Trace, module: str, machine: Any, first: dict[str, Any]) -> Any:
    """The initial state: planned again from the recorded inputs, or built from the spec's
    variables (a model checker's trace has no plan)."""
    inputs = trace.meta.get("plan")
    if inputs is None:
        return machine.from_tla(first)
    planners = _planners()
    if module not in planners:
        raise ValueError(f"a {module} trace cannot carry a plan")
    kind, plan = planners[module]
    return plan(from_plain(kind, inputs))


def replay(trace: itf.Trace) -> Divergence | None:
    """Replay one trace; return the first divergence, or None when the code agrees throughout."""
    if not trace.states:
        return Divergence(trace.path, 0, "-", "the trace has no states")
    module = module_of(trace)
    machine = MODULES[module]
    first = {k: val for k, val in trace.states[0].items() if k != "event"}
    try:
        start = _start(trace, module, machine, first)
    except (KeyError, TypeError, ValueError) as e:
        return Divergence(trace.path, 0, "Init", f"cannot build the initial state: {e}")
    except Exception as e:  # noqa: BLE001 - a plan that refuses its own recorded inputs
        return Divergence(trace.path, 0, "Init", f"the plan refused the recorded inputs: {e}")
    mismatch = _compare(machine.to_tla(start), first)
    if mismatch:
        return Divergence(trace.path, 0, "Init", mismatch)
    if not machine.is_initial(start):
        return Divergence(trace.path, 0, "Init", f"not an initial state: {_describe(first)}")
    driver = Driver(machine, start, _Observer())
    planned = "plan" in trace.meta  # the parameters, hence the intents, are known only then
    for index in range(1, len(trace.states)):
        state = trace.states[index]
        meta = trace.state_meta[index] if index < len(trace.state_meta) else {}
        ev = state.get("event") or {}
        m, name, arg = ev.get("m", ""), ev.get("name", ""), ev.get("arg", "")
        label = f"{m}.{name}" + (f"({arg})" if arg else "")
        try:
            event = _event(meta, m, name, arg)
        except (KeyError, TypeError, ValueError) as e:
            return Divergence(trace.path, index, label, f"unknown action: {e}")
        result = driver.feed(event)
        if isinstance(result, Refused):
            return Divergence(trace.path, index, label, f"the machine refused it: {result.why}")
        expected = {k: val for k, val in state.items() if k != "event"}
        mismatch = _compare(machine.to_tla(driver.state), expected)
        if mismatch:
            return Divergence(trace.path, index, label, mismatch)
        if planned and "intents" in meta:
            mismatch = _compare_intents(result.intents, meta["intents"])
            if mismatch:
                return Divergence(trace.path, index, label, mismatch)
    return None


def _event(meta: dict[str, Any], m: str, name: str, arg: str) -> v.Event:
    """The event as it was fed (a recorded run), checked against the step's `event` variable;
    else the one the variable names."""
    if "event" not in meta:
        if m == "svc":
            return service_vocab.event_from_tla(name, arg)  # type: ignore[return-value]
        if m == "srv":
            return server_vocab.event_from_tla(name, arg)
        if m == "oci":
            return oci_vocab.event_from_tla(name, arg)
        if m == "gv":
            return gvisor_vocab.event_from_tla(name, arg)
        return topology_vocab.event_from_tla(name, arg) if m == "topo" else v.event_from_tla(m, name, arg)
    event = gvisor_vocab.from_wire(meta["event"]) if m == "gv" else v.from_wire(meta["event"])
    if not isinstance(event, v.Event):
        raise ValueError(f"{meta['event'].get('t')!r} is not an event")
    named = (event.machine, v.action_name(event), event.tla_arg())
    if named != (m, name, arg):
        raise ValueError(f"the step's event variable names {m}.{name}({arg}), its record {event!r}")
    return event


def _with_defaults(recorded: Any) -> Any:
    """A recorded intent with the fields it predates at their defaults: what the plan gave
    before they existed. One that no longer reads as an intent is compared as recorded."""
    try:
        return v.to_wire(v.from_wire(recorded))
    except (TypeError, ValueError, AttributeError):
        return recorded


def _compare_intents(actual: tuple[v.Intent, ...], recorded: list[Any]) -> str:
    mine = [v.to_wire(intent) for intent in actual]
    recorded = [_with_defaults(intent) for intent in recorded]
    if mine == recorded:
        return ""
    for i in range(max(len(mine), len(recorded))):
        a = mine[i] if i < len(mine) else None
        e = recorded[i] if i < len(recorded) else None
        if a == e:
            continue
        if a is not None and e is not None and a.get("t") == e.get("t"):
            for key in sorted(set(a.get("f", {})) | set(e.get("f", {}))):
                mine_value, recorded_value = a["f"].get(key), e.get("f", {}).get(key)
                if mine_value != recorded_value:
                    return (f"intent {i + 1} ({a['t']}) differs in {key}: "
                            f"{_first_difference(mine_value, recorded_value)}")
        return (f"intent {i + 1} differs: the plan now issues {_wire(a)}, the trace recorded "
                f"{_wire(e)}")
    return "the intents differ"


def _first_difference(mine: Any, recorded: Any) -> str:
    if isinstance(mine, list) and isinstance(recorded, list):
        for a, e in zip(mine, recorded, strict=False):
            if a != e:
                return f"the plan now gives {a!r} where the trace recorded {e!r}"
        return f"the plan now gives {len(mine)} items where the trace recorded {len(recorded)}"
    return f"the plan now gives {mine!r} where the trace recorded {recorded!r}"


def _wire(message: Any) -> str:
    if message is None:
        return "nothing"
    fields = message.get("f", {})
    return f"{message.get('t')}({', '.join(f'{k}={val!r}' for k, val in fields.items())})"


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
