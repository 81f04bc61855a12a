"""The event a step of a TLA+ trace names, for the machines whose vocabulary is a module of its
own (`machine`, the action, its one argument as the trace writes it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from nucleus.vocab.events import Event

E = TypeVar("E", bound=Event)


def event_from_tla(machine: str, events: Iterable[type[E]], action: str, arg: str,
                   built: Mapping[type[E], Callable[[str], E]] | None = None) -> E:
    """The event of `events` named `action`: made by its entry in `built` from the argument,
    or without one; KeyError when no event has that name."""
    kind = {e.__name__: e for e in events}.get(action)
    if kind is None:
        raise KeyError(f"no event for action {machine}.{action}({arg})")
    build = (built or {}).get(kind)
    return kind() if build is None else build(arg)
