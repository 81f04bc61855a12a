"""The OCI machine's vocabulary (nucleus.machines.oci, formal/Oci.tla): the operations of the
runtime-spec's lifecycle as runc's command line asks them (create, start, kill, delete, exec),
what the runtime observes (the container's setup finished or failed, its process exited), and
what the machine asks of the runtime (tell the waiting init to start, cancel a start that never
came, signal the container's process, release the container's state). Pids stay with the
effects."""

from __future__ import annotations

from typing import ClassVar

from nucleus.vocab import tla
from nucleus.vocab.events import Event
from nucleus.vocab.intents import Intent
from nucleus.vocab.record import record


@record
class OciEvent(Event):
    machine: ClassVar[str] = "oci"


@record
class Create(OciEvent):
    """`create`: the bundle was read and checked; setting the container up begins."""


@record
class Created(OciEvent):
    """The container's setup is done; its init waits for `start` (runtime-spec: created)."""


@record
class CreateFailed(OciEvent):
    """The setup failed; nothing of the container is left."""


@record
class Start(OciEvent):
    """`start`: run the user's program."""


@record
class Kill(OciEvent):
    """`kill`: send `signal` (a number) to the container's process."""

    signal: int = 15

    def tla_arg(self) -> str:
        return str(self.signal)


@record
class Exec(OciEvent):
    """`exec`: run another process in the container."""


@record
class Exited(OciEvent):
    """The container's process ended (runtime-spec: stopped)."""


@record
class Delete(OciEvent):
    """`delete` (`force`: even a running container, which is killed first)."""

    force: bool = False

    def tla_arg(self) -> str:
        return "force" if self.force else ""


@record
class Proceed(Intent):
    """Tell the init waiting in created to run the user's program."""


@record
class Cancel(Intent):
    """Tell the init waiting in created that it will never start; `signal` is what ended it."""

    signal: int = 9


@record
class Signal(Intent):
    """Send `signal` to the container's process."""

    signal: int = 15


@record
class Join(Intent):
    """Run a process in the container's namespaces, cgroup and restrictions."""


@record
class Release(Intent):
    """Remove the container's state (the runtime's directory for it)."""


EVENTS = (Create, Created, CreateFailed, Start, Kill, Exec, Exited, Delete)


def event_from_tla(action: str, arg: str) -> OciEvent:
    """The event a trace step names (`oci`, action, argument)."""
    return tla.event_from_tla("oci", EVENTS, action, arg,
                              {Kill: lambda a: Kill(int(a)), Delete: lambda a: Delete(a == "force")})
