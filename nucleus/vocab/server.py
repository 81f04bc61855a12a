"""The Server machine's vocabulary (nucleus.machines.server, formal/Server.tla): what `nucleus
serve` observes (a caller's request, its stdio, a signal to forward, a supervisor's exit, a
hangup, SIGTERM, the shutdown's deadline) and what the machine asks of the server (answer the
caller, fork a supervisor, forward a signal, report an exit status, let a connection go, stop
listening). Sandboxes are named s1, s2, ... by the server; pids stay with the effects."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from nucleus.vocab import tla
from nucleus.vocab.events import Event
from nucleus.vocab.intents import Intent
from nucleus.vocab.record import record

OWNER = "owner"  # a caller of the server's own uid
OTHER = "other"  # any other uid


@record
class Create(Event):
    """A caller asks for a sandbox; `caller`: OWNER or OTHER, from its SO_PEERCRED uid."""

    machine: ClassVar[str] = "srv"
    caller: str = OWNER

    def tla_arg(self) -> str:
        return self.caller


@record
class SandboxEvent(Event):
    machine: ClassVar[str] = "srv"
    sandbox: str = ""

    def tla_arg(self) -> str:
        return self.sandbox


@record
class Start(SandboxEvent):
    """The caller's stdin, stdout and stderr arrived: start the sandbox."""


@record
class Signal(SandboxEvent):
    """The caller forwards `signal` (a number) to the sandbox's supervisor."""

    signal: int = 15


@record
class Exited(SandboxEvent):
    """The sandbox's supervisor exited with `status` (128 + N for signal N)."""

    status: int = 0


@record
class Remove(SandboxEvent):
    """The caller is done with a sandbox that does not run."""


@record
class Hangup(SandboxEvent):
    """The caller's connection closed."""


@record
class Shutdown(Event):
    """SIGTERM (or SIGINT) to the server."""

    machine: ClassVar[str] = "srv"


@record
class Deadline(Event):
    """The shutdown's wait for the supervisors is over."""

    machine: ClassVar[str] = "srv"


@record
class Crash(Event):
    """The server died without a shutdown (SIGKILL): observed only by its successor, and by the
    model."""

    machine: ClassVar[str] = "srv"


@record
class Reclaim(Event):
    """A server starts on the socket of one that crashed (nothing answers there)."""

    machine: ClassVar[str] = "srv"


@record
class Swept(SandboxEvent):
    """An orphaned supervisor ended, or `nucleus rm --force` reclaimed its container."""


@record
class Accept(Intent):
    """Tell the caller its sandbox's name."""

    sandbox: str = ""


@record
class Deny(Intent):
    """Tell the caller why its request is refused."""

    why: str = ""


@record
class Spawn(Intent):
    """Fork the sandbox's supervisor from the server (see nucleus.app.serve_child)."""

    sandbox: str = ""


@record
class Forward(Intent):
    """Send `signal` to the sandbox's supervisor."""

    sandbox: str = ""
    signal: int = 15


@record
class Report(Intent):
    """Tell the caller the sandbox's exit status."""

    sandbox: str = ""
    status: int = 0


@record
class Release(Intent):
    """Forget the sandbox's connection and its supervisor's pidfd."""

    sandbox: str = ""


@record
class CloseListener(Intent):
    """Stop accepting connections."""


@record
class Unlink(Intent):
    """Remove the socket's file: the server is gone."""


EVENTS = (Create, Start, Signal, Exited, Remove, Hangup, Shutdown, Deadline, Crash, Reclaim, Swept)


def _on_sandbox(kind: type[Event]) -> Callable[[str], Event]:
    return lambda sandbox: kind(sandbox=sandbox)


def event_from_tla(action: str, arg: str) -> Event:
    """The event a trace step names (`srv`, action, argument)."""
    built: dict[type[Event], Callable[[str], Event]] = {e: _on_sandbox(e) for e in EVENTS
                                                          if issubclass(e, SandboxEvent)}
    return tla.event_from_tla("srv", EVENTS, action, arg, {**built, Create: Create})
