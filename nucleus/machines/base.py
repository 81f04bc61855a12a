"""What every machine returns: a Step or a Refused. Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    """An accepted transition: the new state and the intents the effects layer must carry out."""

    state: Any
    intents: tuple[Any, ...] = field(default=())


@dataclass(frozen=True)
class Refused:
    """A disabled action: the state is unchanged and nothing is done. `why` is for a user."""

    why: str


def refuse(machine: str, action: str, state_desc: str, allowed: str) -> Refused:
    return Refused(f"cannot {action} {machine}: it is {state_desc} ({action} is allowed only {allowed})")
