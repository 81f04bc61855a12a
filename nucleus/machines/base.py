"""What every machine returns: a Step or a Refused; and what every machine's from_tla reads.
Pure data, no I/O."""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Any, cast

from nucleus.frozen import frozen

if TYPE_CHECKING:
    from collections.abc import Iterable


@frozen
class Step:
    """An accepted transition: the new state and the intents the effects layer must carry out."""

    state: Any
    intents: tuple[Any, ...] = field(default=())


@frozen
class Refused:
    """A disabled action: the state is unchanged and nothing is done. `why` is for a user."""

    why: str


def spec_set(value: object) -> frozenset[str]:
    """A set-valued spec variable as a machine holds it. The spec's TypeOK makes it a set of
    strings; the ITF reader gives a frozenset, a container's state record a sorted list."""
    return frozenset(cast("Iterable[str]", value))


def refuse(machine: str, action: str, state_desc: str, allowed: str) -> Refused:
    return Refused(f"cannot {action} {machine}: it is {state_desc} ({action} is allowed only {allowed})")
