"""The OCI machine: the runtime-spec's container lifecycle as `nucleus oci` (runc's command line)
drives it (formal/Oci.tla).

`create` sets the container up to the point of running the user's program (creating, then
created: its init waits for `start`); `start` runs the program (running); its exit makes the
container stopped; `delete` releases what is left (deleted). Which operation each state allows
is the runtime-spec's and runc's: start only from created; kill while created or running (a
created container's init is told it will never start); exec only while running; delete from
created or stopped, and from running only with force (which kills first). A failed create
leaves nothing (deleted).
"""

from __future__ import annotations

from dataclasses import replace

from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step, refuse
from nucleus.vocab import oci as ov

STATUSES = ("none", "creating", "created", "running", "stopped", "deleted")
LIVE = ("created", "running")  # a process of the container exists
SIGKILL = 9  # what a forced delete sends (signal(7); no `signal` in a machine)
SPEC_SIGNALS = (15, 9)  # formal/Oci.tla's Signals


@frozen
class OciState:
    status: str = "none"


def initial() -> OciState:
    return OciState()


def _refuse(action: str, state: OciState, allowed: str) -> Refused:
    return refuse("the container", action, state.status, allowed)


def step(state: OciState, event: ov.OciEvent) -> Step | Refused:
    status = state.status
    match event:
        case ov.Create():
            if status != "none":
                return _refuse("create", state, "for an id not in use")
            return Step(replace(state, status="creating"))
        case ov.Created():
            if status != "creating":
                return _refuse("finish creating", state, "while creating")
            return Step(replace(state, status="created"))
        case ov.CreateFailed():
            if status != "creating":
                return _refuse("fail creating", state, "while creating")
            return Step(replace(state, status="deleted"), (ov.Release(),))
        case ov.Start():
            if status != "created":
                return _refuse("start", state, "from created")
            return Step(replace(state, status="running"), (ov.Proceed(),))
        case ov.Kill(signal=sig):
            if status == "created":
                return Step(state, (ov.Cancel(sig),))
            if status == "running":
                return Step(state, (ov.Signal(sig),))
            return _refuse("kill", state, "while created or running")
        case ov.Exec():
            if status != "running":
                return _refuse("exec in", state, "while running")
            return Step(state, (ov.Join(),))
        case ov.Exited():
            if status not in LIVE:
                return _refuse("observe the exit of", state, "while created or running")
            return Step(replace(state, status="stopped"))
        case ov.Delete(force=force):
            if status == "stopped":
                return Step(replace(state, status="deleted"), (ov.Release(),))
            if status == "created":
                return Step(state, (ov.Cancel(SIGKILL),))
            if status == "running" and force:
                return Step(state, (ov.Signal(SIGKILL),))
            return _refuse("delete", state, "from created or stopped, or with --force while running")
    return Refused(f"the OCI machine takes no {type(event).__name__}")


def to_tla(state: OciState) -> dict[str, object]:
    return {"oci_status": state.status}


def from_tla(values: dict[str, object]) -> OciState:
    return OciState(status=str(values["oci_status"]))


def is_initial(state: OciState) -> bool:
    return state == initial()


def candidate_events(state: OciState) -> list[ov.OciEvent]:
    """Every kind of event, each once per argument of the spec's."""
    return [ov.Create(), ov.Created(), ov.CreateFailed(), ov.Start(), *(ov.Kill(s) for s in SPEC_SIGNALS),
            ov.Exec(), ov.Exited(), ov.Delete(False), ov.Delete(True)]


def TypeOK(state: OciState) -> bool:  # noqa: N802 - the spec's name
    return state.status in STATUSES


INVARIANTS = (TypeOK,)
