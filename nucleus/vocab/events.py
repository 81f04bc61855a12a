"""Events: what happens (a user request, a kernel observation, an effect's outcome).

Each class is named after its TLA+ action; `machine` names the machine that consumes it (the
`m` of a trace's `event` variable) and `tla_arg()` is the action's one argument as the specs
see it (a string).
"""

from __future__ import annotations

from typing import ClassVar

from nucleus.vocab.record import Record, field_names, record


@record
class Event(Record):
    machine: ClassVar[str] = ""

    def tla_arg(self) -> str:
        return ""


# Lifecycle ------------------------------------------------------------------------------------
@record
class Create(Event):
    machine: ClassVar[str] = "lc"


@record
class Prepared(Event):
    machine: ClassVar[str] = "lc"
    level: str = "enforced"  # "enforced" | "degraded" | "traced"

    def tla_arg(self) -> str:
        return self.level


@record
class SetupFailed(Event):
    machine: ClassVar[str] = "lc"
    reason: str = ""


@record
class Start(Event):
    machine: ClassVar[str] = "lc"


@record
class Abort(Event):
    machine: ClassVar[str] = "lc"
    reason: str = ""


@record
class Exit(Event):
    """The workload ended with `code`; `reason` says why when it never ran (its exec failed).
    The spec's Exit takes no argument: neither field is part of the trace's event."""

    machine: ClassVar[str] = "lc"
    code: int = 0
    reason: str = ""


@record
class Kill(Event):
    machine: ClassVar[str] = "lc"
    signal: str = "TERM"

    def tla_arg(self) -> str:
        return self.signal


@record
class Lost(Event):
    """The supervisor is gone before its container was cleaned up (seen by another process)."""

    machine: ClassVar[str] = "lc"


@record
class Attach(Event):
    """A command joins the running container (nothing in its lifecycle changes)."""

    machine: ClassVar[str] = "lc"


@record
class CleanupDone(Event):
    machine: ClassVar[str] = "lc"


@record
class Remove(Event):
    machine: ClassVar[str] = "lc"


# The shapes the sub-machines share: Begin, Done(step), Fail(step, errno, message).
@record
class Begin(Event):
    pass


@record
class StepDone(Event):
    step: str = ""
    detail: str = ""

    def tla_arg(self) -> str:
        return self.step


@record
class StepFailed(Event):
    step: str = ""
    errno: int = 0
    message: str = ""

    def tla_arg(self) -> str:
        return self.step


# Isolation ------------------------------------------------------------------------------------
@record
class IsoBegin(Begin):
    machine: ClassVar[str] = "iso"


@record
class IsoDone(StepDone):
    machine: ClassVar[str] = "iso"


@record
class IsoFailed(StepFailed):
    machine: ClassVar[str] = "iso"


@record
class IsoResume(Event):
    """Isolation may pass its gate: before "unshare" once the setup process is in its cgroup; in
    the privileged order before "enter_user" once the root filesystem is sealed."""

    machine: ClassVar[str] = "iso"


# Filesystem -----------------------------------------------------------------------------------
@record
class FsBegin(Begin):
    machine: ClassVar[str] = "fs"


@record
class FsDone(StepDone):
    """A plan step finished: "mount" (one planned operation), "pivot", "chroot", "detach" or
    "audit"."""

    machine: ClassVar[str] = "fs"


@record
class FsFailed(StepFailed):
    machine: ClassVar[str] = "fs"


# Security -------------------------------------------------------------------------------------
@record
class SecBegin(Begin):
    machine: ClassVar[str] = "sec"


@record
class SecDone(StepDone):
    """A control is in force: "caps", "seccomp" or "landlock"."""

    machine: ClassVar[str] = "sec"


@record
class SecFailed(StepFailed):
    machine: ClassVar[str] = "sec"


# Resources (the container's cgroup) ------------------------------------------------------------
@record
class ResBegin(Begin):
    machine: ClassVar[str] = "res"


@record
class ResAttach(Event):
    """The setup process exists: move it into the cgroup before it creates any namespace."""

    machine: ClassVar[str] = "res"


@record
class ResRelease(Event):
    machine: ClassVar[str] = "res"


@record
class ResAbandon(Event):
    """The process carrying out a cgroup step is gone: the step will never report."""

    machine: ClassVar[str] = "res"


@record
class ResDone(StepDone):
    machine: ClassVar[str] = "res"


@record
class ResFailed(StepFailed):
    machine: ClassVar[str] = "res"


# Network (the container's bridge, when it has one) ---------------------------------------------
@record
class NetBegin(Begin):
    machine: ClassVar[str] = "net"


@record
class NetDone(StepDone):
    """A step finished: "bridge" (its detail: the addresses leased, "10.88.0.2/16 fd00:6e75::2/64"),
    "veth", "nat", "egress", "proxy", "address", "up", "route" or "teardown"."""

    machine: ClassVar[str] = "net"


@record
class NetFailed(StepFailed):
    machine: ClassVar[str] = "net"


@record
class NetRelease(Event):
    machine: ClassVar[str] = "net"


@record
class NetAbandon(Event):
    """The process carrying out a network step is gone: the step will never report."""

    machine: ClassVar[str] = "net"


# Join (a command entering a running container: attach, exec) -----------------------------------
@record
class JoinBegin(Begin):
    machine: ClassVar[str] = "join"


@record
class JoinDone(StepDone):
    machine: ClassVar[str] = "join"


@record
class JoinFailed(StepFailed):
    machine: ClassVar[str] = "join"


@record
class JoinStart(Event):
    """Every restriction is in force: exec the command."""

    machine: ClassVar[str] = "join"


@record
class JoinExit(Event):
    machine: ClassVar[str] = "join"
    code: int = 0


EVENTS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        Create, Prepared, SetupFailed, Start, Abort, Exit, Kill, Lost, Attach, CleanupDone, Remove,
        IsoBegin, IsoDone, IsoFailed, IsoResume,
        FsBegin, FsDone, FsFailed,
        SecBegin, SecDone, SecFailed,
        ResBegin, ResAttach, ResRelease, ResAbandon, ResDone, ResFailed,
        NetBegin, NetDone, NetFailed, NetRelease, NetAbandon,
        JoinBegin, JoinDone, JoinFailed, JoinStart, JoinExit,
    )
}

# The TLA+ action of each event whose class name is not the action's own (a spec names an
# action once per machine; the classes are prefixed by their machine).
TLA_ACTION: dict[str, str] = {
    "IsoBegin": "Begin", "IsoDone": "Done", "IsoFailed": "Fail", "IsoResume": "Resume",
    "FsBegin": "Begin", "FsDone": "Done", "FsFailed": "Fail",
    "SecBegin": "Begin", "SecDone": "Done", "SecFailed": "Fail",
    "ResBegin": "Begin", "ResAttach": "Attach", "ResRelease": "Release", "ResAbandon": "Abandon",
    "ResDone": "Done", "ResFailed": "Fail",
    "NetBegin": "Begin", "NetDone": "Done", "NetFailed": "Fail", "NetRelease": "Release",
    "NetAbandon": "Abandon",
    "JoinBegin": "Begin", "JoinDone": "Done", "JoinFailed": "Fail", "JoinStart": "Start",
    "JoinExit": "Exit",
}
# The events whose TLA+ argument is an integer in the spec's terms but a string in the trace.
_INTEGER_ARGUMENT = ("code",)

DONE: dict[str, type[StepDone]] = {"iso": IsoDone, "fs": FsDone, "sec": SecDone, "res": ResDone,
                                   "net": NetDone, "join": JoinDone}
FAILED: dict[str, type[StepFailed]] = {"iso": IsoFailed, "fs": FsFailed, "sec": SecFailed,
                                       "res": ResFailed, "net": NetFailed, "join": JoinFailed}


def action_name(event: Event) -> str:
    return TLA_ACTION.get(event.name, event.name)


def event_from_tla(machine: str, action: str, arg: str) -> Event:
    """Build the event a trace step names (machine, action, argument)."""
    for cls in EVENTS.values():
        if cls.machine == machine and TLA_ACTION.get(cls.__name__, cls.__name__) == action:
            break
    else:
        raise KeyError(f"no event for action {machine}.{action}")
    names = field_names(cls)
    if not names or arg == "":
        return cls()
    first = names[0]
    if first in _INTEGER_ARGUMENT:
        return cls(int(arg))
    return cls(**{first: arg})
