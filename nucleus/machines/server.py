"""The Server machine: what `nucleus serve` accepts and refuses, the sandboxes it owns, its
shutdown and its crash (formal/Server.tla).

A caller of the server's uid is served; another uid only by a server that runs as root (its
child takes the caller's identity before it reads the request, so a sandbox never gets more
than that caller's cold `nucleus run` would). A sandbox is created by a request, started once
the caller's stdio has arrived (the server forks its supervisor, a cold run in all but the
imports, which writes its own record before it changes the host), exits, and is removed by its
caller; a caller that hangs up has its running supervisor asked to end, as a terminal's hangup
would. Shutdown stops accepting, asks every running supervisor to end and waits for them up to
a deadline; a supervisor still ending then, or when the server crashes, is an orphan: an
ordinary supervisor with its record, which `nucleus ps` and `rm --force` reclaim.
"""

from __future__ import annotations

from dataclasses import replace

from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step, spec_set
from nucleus.vocab import server as sv

PHASES = ("serving", "draining", "stopped", "crashed")
STATUSES = ("none", "created", "running", "exited")
SOCKETS = ("live", "stale", "none")
CAPACITY = 256  # sandboxes at once (--max-sandboxes)
SIGTERM = 15  # what a hangup and a shutdown send a supervisor (signal(7); no `signal` in a machine)
SPEC_SANDBOXES = 2  # formal/Server.tla's Sandboxes: s1, s2
MAX_COUNT = 2  # formal/Server.tla's MaxCount: where the refusal count's abstraction saturates


@frozen
class ServerState:
    root: bool  # the server runs as root: it may serve other uids
    capacity: int = CAPACITY
    phase: str = "serving"
    socket: str = "live"
    # (sandbox, status, caller) for every sandbox the server holds, by name
    sandboxes: tuple[tuple[str, str, str], ...] = ()
    attached: frozenset[str] = frozenset()  # sandboxes whose caller is connected
    orphans: frozenset[str] = frozenset()  # supervisors left running by a crash or the deadline
    refused: int = 0

    def status(self, sandbox: str) -> str:
        return next((st for s, st, _ in self.sandboxes if s == sandbox), "none")

    @property
    def running(self) -> frozenset[str]:
        return frozenset(s for s, st, _ in self.sandboxes if st == "running")


def initial(root: bool, capacity: int = CAPACITY) -> ServerState:
    return ServerState(root, capacity)


def _number(sandbox: str) -> int:
    return int(sandbox[1:])


def _set(state: ServerState, sandbox: str, status: str, caller: str = "") -> ServerState:
    """The state with `sandbox` at `status` ("none": dropped, and its connection with it)."""
    rest = [row for row in state.sandboxes if row[0] != sandbox]
    if status == "none":
        return replace(state, sandboxes=tuple(rest), attached=state.attached - {sandbox})
    caller = caller or next(c for s, _, c in state.sandboxes if s == sandbox)
    return replace(state, sandboxes=tuple(sorted([*rest, (sandbox, status, caller)], key=lambda r: _number(r[0]))))


def _free(state: ServerState) -> str | None:
    held = {s for s, _, _ in state.sandboxes} | state.orphans
    return next((f"s{n}" for n in range(1, state.capacity + 1) if f"s{n}" not in held), None)


def _live(state: ServerState) -> bool:
    return state.phase in ("serving", "draining")


def _not(state: ServerState, action: str, sandbox: str, allowed: str) -> Refused:
    if not _live(state):
        return Refused(f"cannot {action} {sandbox}: the server is {state.phase}")
    return Refused(f"cannot {action} {sandbox}: it is {state.status(sandbox)}"
                   f"{'' if sandbox in state.attached else ' and has no caller'} ({action} is allowed only {allowed})")


def step(state: ServerState, event: object) -> Step | Refused:
    match event:
        case sv.Create(caller=caller):
            if not _live(state):
                return Refused(f"cannot Create a sandbox: the server is {state.phase}")
            sandbox = _free(state)
            why = ("the server is shutting down" if state.phase != "serving"
                   else "the server serves only its own uid (a server run as root serves every user)"
                   if caller != sv.OWNER and not state.root
                   else f"the server runs {state.capacity} sandboxes, its most (--max-sandboxes)"
                   if sandbox is None else None)
            if why is not None or sandbox is None:
                return Step(replace(state, refused=state.refused + 1), (sv.Deny(why or ""),))
            new = _set(state, sandbox, "created", caller)
            return Step(replace(new, attached=new.attached | {sandbox}), (sv.Accept(sandbox),))
        case sv.Start(sandbox=s):
            if state.phase != "serving" or state.status(s) != "created" or s not in state.attached:
                return _not(state, "Start", s, "once, while serving, for its caller")
            return Step(_set(state, s, "running"), (sv.Spawn(s),))
        case sv.Signal(sandbox=s, signal=number):
            if not _live(state) or state.status(s) != "running" or s not in state.attached:
                return _not(state, "Signal", s, "while it runs, for its caller")
            return Step(state, (sv.Forward(s, number),))
        case sv.Exited(sandbox=s, status=status):
            if not _live(state) or state.status(s) != "running":
                return _not(state, "Exited", s, "while it runs")
            waited = s in state.attached
            gone = state.phase == "draining" or not waited
            new = _set(state, s, "none" if gone else "exited")
            intents: list[object] = [sv.Report(s, status)] if waited else []
            if gone:
                intents.append(sv.Release(s))
            if state.phase == "draining" and state.running == {s}:
                new = replace(new, phase="stopped", socket="none")
                intents.append(sv.Unlink())
            return Step(new, tuple(intents))
        case sv.Remove(sandbox=s):
            if not _live(state) or s not in state.attached or state.status(s) not in ("created", "exited"):
                return _not(state, "Remove", s, "for its caller, when it does not run")
            return Step(_set(state, s, "none"), (sv.Release(s),))
        case sv.Hangup(sandbox=s):
            if not _live(state) or s not in state.attached:
                return _not(state, "Hangup", s, "for a connected caller")
            if state.status(s) == "running":
                return Step(replace(state, attached=state.attached - {s}), (sv.Forward(s, SIGTERM),))
            return Step(_set(state, s, "none"), (sv.Release(s),))
        case sv.Shutdown():
            if state.phase != "serving":
                return Refused(f"cannot Shutdown the server: it is {state.phase}")
            running = state.running
            dropped = tuple(sv.Release(s) for s, st, _ in state.sandboxes if st != "running")
            new = replace(state, sandboxes=tuple(r for r in state.sandboxes if r[1] == "running"),
                          attached=state.attached & running)
            forward = tuple(sv.Forward(s, SIGTERM) for s, _, _ in new.sandboxes)
            if not running:
                return Step(replace(new, phase="stopped", socket="none"), (sv.CloseListener(), *dropped, sv.Unlink()))
            return Step(replace(new, phase="draining"), (sv.CloseListener(), *dropped, *forward))
        case sv.Deadline():
            if state.phase != "draining":
                return Refused(f"cannot Deadline the server: it is {state.phase}")
            return Step(_orphaned(state, "stopped", "none"),
                        (*(sv.Release(s) for s, _, _ in state.sandboxes), sv.Unlink()))
        case sv.Crash():
            if not _live(state):
                return Refused(f"cannot Crash the server: it is {state.phase}")
            return Step(_orphaned(state, "crashed", "stale"))
        case sv.Reclaim():
            if state.phase != "crashed":
                return Refused(f"cannot Reclaim the socket: the server is {state.phase}")
            return Step(replace(state, phase="serving", socket="live"))
        case sv.Swept(sandbox=s):
            if s not in state.orphans:
                return Refused(f"cannot Swept {s}: it is no orphan")
            return Step(replace(state, orphans=state.orphans - {s}))
    return Refused(f"cannot {type(event).__name__} the server: not one of its events")


def _orphaned(state: ServerState, phase: str, socket: str) -> ServerState:
    return replace(state, phase=phase, socket=socket, sandboxes=(), attached=frozenset(),
                   orphans=state.orphans | state.running)


# --- the spec's abstraction (formal/Server.tla) ------------------------------------------------


def to_tla(state: ServerState) -> dict[str, object]:
    """The spec's variables; the sandboxes beyond the spec's two are not abstracted."""
    names = [f"s{n}" for n in range(1, SPEC_SANDBOXES + 1)]
    callers = {s: c for s, _, c in state.sandboxes}
    return {
        "srv_root": state.root, "srv_phase": state.phase, "srv_socket": state.socket,
        "srv_sb": {s: state.status(s) for s in names}, "srv_caller": {s: callers.get(s, "") for s in names},
        "srv_attached": state.attached, "srv_orphans": state.orphans, "srv_refused": min(state.refused, MAX_COUNT),
    }


def _function(value: object) -> dict[str, str]:
    """A function-valued spec variable: a dict, or a trace's function value."""
    found = value if isinstance(value, dict) else getattr(value, "m", {})
    return {str(k): str(x) for k, x in found.items()}


def from_tla(values: dict[str, object]) -> ServerState:
    """A state with the spec's variables, at the spec's capacity (two sandboxes)."""
    sb, caller = _function(values["srv_sb"]), _function(values["srv_caller"])
    rows = tuple((s, sb[s], caller[s]) for s in sorted(sb, key=_number) if sb[s] != "none")
    return ServerState(bool(values["srv_root"]), SPEC_SANDBOXES, phase=str(values["srv_phase"]),
                       socket=str(values["srv_socket"]), sandboxes=rows,
                       attached=spec_set(values["srv_attached"]), orphans=spec_set(values["srv_orphans"]),
                       refused=int(str(values["srv_refused"])))


def is_initial(state: ServerState) -> bool:
    return state == initial(state.root, state.capacity)


def candidate_events(state: ServerState) -> list[object]:
    """Every kind of event, each once per argument of the spec's."""
    names = [f"s{n}" for n in range(1, SPEC_SANDBOXES + 1)]
    per = [kind(sandbox=s) for s in names for kind in (sv.Start, sv.Signal, sv.Exited, sv.Remove, sv.Hangup, sv.Swept)]
    return [sv.Create(sv.OWNER), sv.Create(sv.OTHER), *per, sv.Shutdown(), sv.Deadline(), sv.Crash(), sv.Reclaim()]


# --- the invariants ------------------------------------------------------------------------------


def TypeOK(state: ServerState) -> bool:  # noqa: N802 - the spec's name
    return (state.phase in PHASES and state.socket in SOCKETS and state.refused >= 0
            and all(st in STATUSES[1:] and c in (sv.OWNER, sv.OTHER) for _, st, c in state.sandboxes)
            and len({s for s, _, _ in state.sandboxes}) == len(state.sandboxes) <= state.capacity)


def CallersAllowed(state: ServerState) -> bool:  # noqa: N802
    """Only a root server serves another uid."""
    return state.root or all(c == sv.OWNER for _, _, c in state.sandboxes)


def CallerKnown(state: ServerState) -> bool:  # noqa: N802
    """Every sandbox the server holds has its caller."""
    return all(c for _, _, c in state.sandboxes)


def AttachedOnlyToSandboxes(state: ServerState) -> bool:  # noqa: N802
    """A connection belongs to a sandbox the server holds."""
    return all(state.status(s) != "none" for s in state.attached)


def NothingKeptForNoOne(state: ServerState) -> bool:  # noqa: N802
    """Only a running supervisor outlives its caller's connection."""
    return all(s in state.attached for s, st, _ in state.sandboxes if st in ("created", "exited"))


def DrainingHoldsOnlyRunning(state: ServerState) -> bool:  # noqa: N802
    """A server that is not serving holds only running supervisors, and draining has some."""
    return ((state.phase == "serving" or all(st == "running" for _, st, _ in state.sandboxes))
            and (state.phase != "draining" or bool(state.running)))


def StoppedLeavesNothing(state: ServerState) -> bool:  # noqa: N802
    """A stopped server leaves no socket and no sandbox."""
    return state.phase != "stopped" or (state.socket == "none" and not state.sandboxes)


def CrashLeavesOnlySupervisors(state: ServerState) -> bool:  # noqa: N802
    """A crashed server leaves a stale socket and orphans (supervisors with records), nothing
    of its own."""
    return state.phase != "crashed" or (state.socket == "stale" and not state.sandboxes)


def OrphansAreNotServed(state: ServerState) -> bool:  # noqa: N802
    """An orphan is never also the server's."""
    return all(state.status(s) == "none" for s in state.orphans)


INVARIANTS = (TypeOK, CallersAllowed, CallerKnown, AttachedOnlyToSandboxes, NothingKeptForNoOne,
              DrainingHoldsOnlyRunning, StoppedLeavesNothing, CrashLeavesOnlySupervisors,
              OrphansAreNotServed)
