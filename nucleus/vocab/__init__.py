"""The vocabulary shared by machines, effects, the driver and traces: events (what happens) and
intents (what a machine asks the effects layer to do), both immutable plain-data records.

They travel between processes as JSON (`to_wire` / `from_wire`): over the sync pipe to the
container's setup process, and inside recorded traces.
"""

from __future__ import annotations

from typing import Any

from nucleus.vocab.events import *  # noqa: F403 - the vocabulary is one namespace
from nucleus.vocab.events import DONE, EVENTS, FAILED, Event
from nucleus.vocab.intents import *  # noqa: F403
from nucleus.vocab.intents import INTENTS, Intent
from nucleus.vocab.record import Record, field_names

# The intents whose outcome is a Done/Fail event (FakeExecutor scripts failures of these).
REPORTING: frozenset[str] = frozenset(name for name, cls in INTENTS.items() if cls.reports)


def done(intent: Intent, detail: str = "") -> Event | None:
    """The event saying `intent` was carried out, or None for an intent that reports nothing."""
    if intent.reports is None:
        return None
    machine, step = intent.reports
    return DONE[machine](step=step, detail=detail)


def failed(intent: Intent, errno: int, message: str) -> Event:
    """The event saying `intent` failed with `errno` (0 when no errno applies) and `message`."""
    if intent.reports is None:
        raise ValueError(f"{intent.name} reports no outcome")
    machine, step = intent.reports
    return FAILED[machine](step=step, errno=errno, message=message)


def is_failure(event: Event) -> bool:
    return type(event) in _FAILURES


_FAILURES = frozenset(FAILED.values())


# Wire format: {"t": ClassName, "f": {field: value}} with tuples as lists.
def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuple(item) for item in value)
    return value


def to_wire(obj: Record) -> dict[str, Any]:
    return {"t": obj.name, "f": {name: _plain(getattr(obj, name)) for name in field_names(obj)}}


def from_wire(data: dict[str, Any]) -> Event | Intent:
    name = data.get("t")
    cls: type[Event] | type[Intent] | None = EVENTS.get(name or "") or INTENTS.get(name or "")
    if cls is None:
        raise ValueError(f"unknown message type {name!r}")
    fields = data.get("f", {})
    if not isinstance(fields, dict):
        raise ValueError(f"message {name!r}: fields are not an object")
    return cls(**{key: _tuple(value) for key, value in fields.items()})
