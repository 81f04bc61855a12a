"""The Topology machine's vocabulary (nucleus.machines.topology, formal/Topology.tla): what
`nucleus compose` asks (up, down) and observes of each service's container (started, healthy,
failed, stopped), and what the machine asks of the effects (start a service's container, wait
for its health check, stop and remove it). Services are named as in the topology file."""

from __future__ import annotations

from typing import ClassVar

from nucleus.vocab.events import Event
from nucleus.vocab.intents import Intent
from nucleus.vocab.record import record


@record
class Up(Event):
    """Bring the topology up: stop what left the file or changed, start what is not running."""

    machine: ClassVar[str] = "topo"


@record
class Down(Event):
    """Stop every running service, dependents before their dependencies."""

    machine: ClassVar[str] = "topo"


@record
class ServiceEvent(Event):
    machine: ClassVar[str] = "topo"
    service: str = ""

    def tla_arg(self) -> str:
        return self.service


@record
class Started(ServiceEvent):
    """The service's container runs (`run -d` printed its id)."""


@record
class Healthy(ServiceEvent):
    """The service's health check passed."""


@record
class Failed(ServiceEvent):
    """The service's start was refused (nothing of it is left), or its health check did not
    pass in time (it still runs). `message` says which, for the user."""

    message: str = ""


@record
class Stopped(ServiceEvent):
    """The service's container is stopped and removed."""


@record
class StartService(Intent):
    """Run the service's container detached, as `nucleus run -d` does."""

    service: str = ""


@record
class AwaitHealthy(Intent):
    """Report Healthy when the service's health check passes, Failed past the timeout."""

    service: str = ""


@record
class StopService(Intent):
    """Stop the service's container and remove it."""

    service: str = ""


EVENTS = (Up, Down, Started, Healthy, Failed, Stopped)


def event_from_tla(action: str, arg: str) -> Event:
    """The event a trace step names (`topo`, action, argument)."""
    for cls in EVENTS:
        if cls.__name__ == action:
            return cls() if cls in (Up, Down) else cls(arg)
    raise KeyError(f"no event for action topo.{action}")
__all__ = ["Event", "Intent", "Up", "Down", "ServiceEvent", "Started", "Healthy", "Failed", "Stopped",
           "StartService", "AwaitHealthy", "StopService", "EVENTS", "event_from_tla"]
