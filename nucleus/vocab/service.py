"""The Service machine's vocabulary (nucleus.machines.service): what the supervisor observes of a
long-running service (a check's result, readiness, the workload's end) and what the machine asks
of it (say READY=1, end the workload, start it again after a delay, finish). Times arrive as
fields: seconds since the workload started, and how long a run lasted."""

from __future__ import annotations

from typing import ClassVar

from nucleus.vocab.record import Record, record


@record
class Started(Record):
    """The workload (of the first run or of a restart) has started."""

    machine: ClassVar[str] = "svc"

    def tla_arg(self) -> str:
        return ""


@record
class CheckDone(Record):
    """A health check ended with `code` (`timed_out`: it was killed at its timeout), `early`
    when within the start period after the workload started; `output`: the first bytes it
    wrote."""

    machine: ClassVar[str] = "svc"
    code: int = 0
    early: bool = False
    timed_out: bool = False
    output: str = ""
    finished: float = 0.0  # when it ended (seconds since the epoch), for inspect

    def tla_arg(self) -> str:
        if self.code == 0 and not self.timed_out:
            return "pass"
        return "early" if self.early else "fail"


@record
class Ready(Record):
    """The readiness condition holds (a command succeeded, the port accepted a connection, the
    workload sent READY=1)."""

    machine: ClassVar[str] = "svc"

    def tla_arg(self) -> str:
        return ""


@record
class StopAsked(Record):
    """stop, kill or rm (or a signal to the supervisor) asked the service to end: it is never
    started again."""

    machine: ClassVar[str] = "svc"

    def tla_arg(self) -> str:
        return ""


@record
class Ended(Record):
    """The workload ended with `code` after running `ran_for` seconds (a failed setup ends
    it too, with its status)."""

    machine: ClassVar[str] = "svc"
    code: int = 0
    ran_for: float = 0.0

    def tla_arg(self) -> str:
        return "ok" if self.code == 0 else "failed"


@record
class NotifyReady(Record):
    """Say READY=1 (and STATUS=) to the service manager."""

    kind: ClassVar[str] = "intent"
    status: str = ""


@record
class Terminate(Record):
    """End the workload (SIGTERM, then SIGKILL): it is unhealthy."""

    kind: ClassVar[str] = "intent"
    reason: str = ""


@record
class RestartAfter(Record):
    """Set the container up again, with the same record, after `delay` seconds."""

    kind: ClassVar[str] = "intent"
    delay: float = 0.0


@record
class Finish(Record):
    """The service is over: clean up and exit with `code`."""

    kind: ClassVar[str] = "intent"
    code: int = 0


EVENTS = (Started, Ready, CheckDone, StopAsked, Ended)


def event_from_tla(action: str, arg: str) -> Record:
    """The event a trace step names (`svc`, action, argument)."""
    match action, arg:
        case "CheckDone", "pass":
            return CheckDone(0)
        case "CheckDone", "early" | "fail":
            return CheckDone(1, early=arg == "early")
        case "Ended", "ok" | "failed":
            return Ended(0 if arg == "ok" else 1)
        case ("Started" | "Ready" | "StopAsked"), "":
            return {"Started": Started, "Ready": Ready, "StopAsked": StopAsked}[action]()
    raise KeyError(f"no event for action svc.{action}({arg})")
