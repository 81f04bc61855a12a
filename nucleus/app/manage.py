"""Container management: ps, stats, stop, kill, rm, logs. Each command reads the records, rebuilds
the container's System machine from its record, and feeds it events through the driver and the
executor: what to signal, end, release and remove is decided by the machines.

A record is read only from a state directory of the caller's that no one else can write, and
even then trusted for its shape alone (nucleus.app.records.problem). What it names is checked
against the kernel before anything is done to it: the cgroup is planned again from the
container's id and parent (never taken from the record), the log is named after the id, and the
process it names as the container's init is signalled (through a pidfd, while its start time
still matches) only if it is PID 1 of a PID namespace of its own, inside that cgroup.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from nucleus import vocab as v
from nucleus.app import records
from nucleus.config.lookup import resolve
from nucleus.driver import Driver
from nucleus.effects import probe
from nucleus.effects.executor import Executor
from nucleus.effects.process import alive, container_init, session_leader
from nucleus.effects.store import LogReader, Store, follow_log
from nucleus.errors import RuntimeFailure
from nucleus.machines import lifecycle, system
from nucleus.machines.base import Refused

ACTIVE = lifecycle.ACTIVE
STOP_WAIT = 10.0  # seconds a stop or a forced removal waits for the supervisor to finish
# What `ps --format json` shows of a record (besides the log's size).
SHOWN = ("id", "name", "status", "argv", "created_at", "started_at", "finished_at", "exit_code",
         "reason", "creator_uid", "supervisor_pid", "init_pid", "detached", "hostname", "rootless",
         "limits", "cgroup_parent", "security", "log", "id_map", "volumes", "network", "runtime")


def _store() -> Store:
    return Store(probe.identity().state_root, check=records.problem)


def supervisor_alive(record: dict[str, Any]) -> bool:
    """Its supervisor still runs: the process that started then (and, for a detached container
    past its registration, one that leads its own session, as a detached supervisor does; the
    command that registered it is named until the supervisor has taken the record over). It is
    never signalled."""
    pid, start = record.get("supervisor_pid"), record.get("supervisor_start")
    if record.get("detached") and record.get("status") != "creating":
        return session_leader(pid, start)
    return alive(pid, start)


def lost(record: dict[str, Any]) -> bool:
    """Its supervisor is gone before it was cleaned up: it may still hold processes or a
    cgroup, which rm --force reclaims."""
    uncleaned = record.get("status") in ACTIVE or not (record.get("machines") or {}).get("lc_cleaned", True)
    return uncleaned and not supervisor_alive(record)


def view(record: dict[str, Any], store: Store | None = None) -> dict[str, Any]:
    """The record as a user sees it: a container whose supervisor is gone before it was cleaned
    up is "lost"; a detached one's log shows its size in bytes."""
    out = {k: record[k] for k in SHOWN if k in record}
    if lost(record):
        out["status"] = "lost"
        out["reason"] = "the supervisor is gone; nucleus rm --force cleans up"
    service = record.get("service")
    if isinstance(service, dict):
        out["health"] = service.get("health") if service.get("health") != "none" else None
        out["restarts"] = service.get("restarts", 0)
        out["service"] = service
        if restarting(record):
            out["status"] = "restarting"
    if store is not None:
        out["log_size"] = store.log_size(record["id"]) if record.get("detached") else None
    return out


def restarting(record: dict[str, Any]) -> bool:
    """Between two runs of a service: its supervisor waits to set it up again."""
    service = record.get("service")
    return (isinstance(service, dict) and service.get("phase") == "waiting"
            and record.get("status") not in ACTIVE and supervisor_alive(record))


def find(ref: str) -> dict[str, Any]:
    return dict(resolve(_store().all(), ref))


def authorize(record: dict[str, Any], action: str) -> None:
    uid = probe.identity().euid
    if uid != 0 and uid != record.get("creator_uid"):
        raise RuntimeFailure(
            f"cannot {action} container {record['name']!r}: it belongs to uid {record.get('creator_uid')}",
            hint="only its creator may manage a container",
        )


def listing(all_: bool) -> list[dict[str, Any]]:
    """The containers; without `all_`, those still active or lost (whose supervisor is gone
    before they were cleaned up: they hold what rm --force reclaims)."""
    store = _store()
    records_ = store.all()
    if not all_:
        records_ = [r for r in records_ if r.get("status") in ACTIVE or lost(r) or restarting(r)]
    return sorted((view(r, store) for r in records_), key=lambda r: r.get("created_at", 0))


def inspect(ref: str) -> dict[str, Any]:
    """One container as `ps --format json` shows it (its network's addresses and ports too)."""
    return view(find(ref), _store())


def stats(refs: tuple[str, ...]) -> list[dict[str, Any]]:
    records_ = [find(r) for r in refs] if refs else [r for r in _store().all() if r.get("status") in ACTIVE]
    layout = probe.cgroup_layout()
    out = []
    for record in records_:
        row: dict[str, Any] = {"id": record["id"], "name": record["name"], "status": view(record)["status"]}
        if record.get("status") in ACTIVE and (record.get("machines") or {}).get("res_phase") == "ready":
            backend, dirs = records.cgroup_dirs(record, layout)  # planned again, never read
            if dirs:
                try:
                    row.update(probe.cgroup_stats(backend, dict(dirs)))
                except OSError as e:
                    row["error"] = str(e)
        out.append(row)
    return out


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def _identity(record: dict[str, Any], state: system.SystemState) -> Callable[[int], bool]:
    """The check a process must pass to be taken for the container's init (see
    process.container_init): made again while a pidfd pins it, before any signal."""
    start = record.get("init_start")
    in_cgroup = state.res.attach.procs if state.res.phase == "ready" else ()
    supervisor = record["supervisor_pid"] if supervisor_alive(record) else None
    return lambda pid: container_init(pid, start, in_cgroup, supervisor)


def _init(record: dict[str, Any], state: system.SystemState) -> tuple[int | None, bool]:
    """The container's init as its record names it, if the kernel confirms it (None when it is
    gone); and whether the record names a living process that is not it, or a living supervisor
    that is not its parent (a record that lies: nothing it names is acted on)."""
    pid, start = record.get("init_pid"), record.get("init_start")
    if not alive(pid, start):
        return None, False
    assert isinstance(pid, int)
    if _identity(record, state)(pid):
        return pid, False
    return None, True


def running_init(record: dict[str, Any], action: str) -> tuple[int, int] | None:
    """The container's init and its start time when it runs and the kernel confirms it is the
    container's (see `_init`); None when it is not running. A record that names another
    process is refused."""
    if record.get("runtime") == "gvisor":
        raise RuntimeFailure(f"cannot {action} container {record['name']!r}: it runs under gVisor, whose "
                             "file system is the sandbox's own", hint=f"use nucleus exec {record['name']} "
                             "cat FILE, or a volume")
    if not supervisor_alive(record) or record.get("status") != "running":
        return None
    init, forged = _init(record, records.restore(record, probe.cgroup_layout()))
    if forged:
        raise _not_its_init(record, action)
    start = record.get("init_start")
    return (init, start) if init is not None and isinstance(start, int) else None


def _not_its_init(record: dict[str, Any], action: str) -> RuntimeFailure:
    return RuntimeFailure(
        f"cannot {action} container {record['name']!r}: the processes its record names (init "
        f"{record.get('init_pid')}, supervisor {record.get('supervisor_pid')}) are not the container's; "
        "nothing was done to them",
        hint=f"nucleus rm --force {record['name']} removes the record and the container's own cgroup, "
             "and signals no process the record names")


def container_driver(record: dict[str, Any], store: Store | None = None, action: str = "manage") -> Driver:
    """The container's machine, rebuilt from its record, driven against an executor that knows
    its init (only once the kernel confirms it, see `_init`); with `store`, the record follows
    the machine. What the executor cannot do (a signal refused) is said on stderr. A record
    that names a process other than its init is refused, unless `action` is "remove" (then no
    process it names is touched)."""
    state = records.restore(record, probe.cgroup_layout())
    init, forged = _init(record, state)
    if forged and action != "remove":
        raise _not_its_init(record, action)
    executor = Executor(warn=_warn, init_pid=init, init_start=record.get("init_start") if init else None,
                        init_identity=_identity(record, state))
    recorder = None if store is None else records.StateRecorder(store, record, lambda: executor.init_pid)
    return Driver(system, state, executor, recorder)


def _refused(result: Refused, record: dict[str, Any]) -> RuntimeFailure:
    return RuntimeFailure(result.why.replace("the container", repr(record["name"])))


def kill(ref: str, sig: str, action: str = "kill") -> dict[str, Any]:
    record = find(ref)
    authorize(record, action)
    if not supervisor_alive(record):
        raise RuntimeFailure(f"cannot {action} container {record['name']!r}: it is {view(record)['status']}")
    if "service" in record:  # a service that is stopped or killed is not started again
        _store().mark_stop(record["id"])
        if restarting(record):
            return record
    if record.get("runtime") == "gvisor":
        from nucleus.app import gvisor

        gvisor.kill(record, sig)
        return record
    result = container_driver(record, action=action).feed(v.Kill(sig))
    if isinstance(result, Refused):
        raise _refused(result, record)
    return record


def _stopped(current: dict[str, Any] | None) -> bool:
    return current is None or current.get("status") not in ACTIVE or not supervisor_alive(current)


def _finished(current: dict[str, Any] | None) -> bool:
    return current is None or not supervisor_alive(current)


def stop(ref: str, timeout: float) -> dict[str, Any]:
    record = kill(ref, "TERM", action="stop")
    store = _store()
    if not store.wait_until(record["id"], _stopped, timeout):
        try:
            kill(record["id"], "KILL", action="stop")
        except RuntimeFailure:  # it stopped meanwhile
            pass
    store.wait_until(record["id"], _finished, STOP_WAIT)
    return record


def _names_another_process(record: dict[str, Any]) -> bool:
    """The record names a living process as its init that is not the container's: then its
    supervisor is not to be believed either (it is not waited for)."""
    return _init(record, records.restore(record, probe.cgroup_layout()))[1]


def remove(ref: str, force: bool) -> dict[str, Any]:
    record = find(ref)
    authorize(record, "remove")
    store = _store()
    if record.get("status") in ACTIVE and not force:
        raise RuntimeFailure(
            f"cannot remove container {record['name']!r}: it is {view(record)['status']}",
            hint=(f"stop it first (nucleus stop {record['name']}), or use nucleus rm --force {record['name']}"
                  if supervisor_alive(record) else
                  f"nucleus rm --force {record['name']} reclaims what its supervisor left"),
        )
    gvisor = record.get("runtime") == "gvisor"  # runsc's sandbox: no init of nucleus's to check
    believed = gvisor or not _names_another_process(record)
    if believed and supervisor_alive(record):
        if "service" in record:
            store.mark_stop(record["id"])
        if record.get("status") in ACTIVE:
            try:
                kill(record["id"], "KILL", action="remove")
            except RuntimeFailure:  # it stopped meanwhile
                pass
        # Its supervisor releases what it holds, then exits: let it finish first.
        store.wait_until(record["id"], _finished, STOP_WAIT)
        current = store.read(record["id"])
        if current is None:  # a foreground run's supervisor removes its own record
            return record
        record = current
        if supervisor_alive(record):
            raise RuntimeFailure(f"cannot remove container {record['name']!r}: its supervisor is still "
                                 "finishing", hint=f"run nucleus rm --force {record['name']} again")
    if gvisor:
        from nucleus.app import gvisor as gvisor_app

        gvisor_app.remove(record, store)
        return record
    driver = container_driver(record, store, action="remove")
    lc = driver.state.lc
    if lc.status in ACTIVE or not lc.cleaned:
        # The supervisor is gone before it cleaned up: the machine ends what is left (the
        # processes, a cgroup step it had under way) and releases the cgroup, trying a removal
        # that failed before (here or in the supervisor) again, a few times.
        driver.require(v.Lost())
        driver.settle()
    if driver.state.net.phase == "leaked" and driver.state.res.phase == "released":
        driver.require(v.NetRelease())  # so is a network teardown
        driver.settle()
    if isinstance(driver.feed(v.Remove()), Refused):
        what = "network could not be torn down" if driver.state.res.phase == "released" else \
            "cgroup could not be released"
        raise RuntimeFailure(
            f"cannot remove container {record['name']!r}: its {what}",
            hint="run nucleus rm --force again; nucleus --debug shows the error",
        )
    store.delete(record["id"])  # the record went with Remove; the log goes too
    return record


# --- logs -------------------------------------------------------------------------------------


@dataclass
class Log:
    """A detached container's log as `nucleus logs` shows it: its complete lines now, and what
    follows them (a line still being written, then what the reader finds appended)."""

    record: dict[str, Any]
    lines: list[str]
    pending: bytes
    reader: LogReader

    def close(self) -> None:
        self.reader.close()


def log_lines(ref: str, lines: int | None) -> Log:
    record = find(ref)
    if not record.get("detached"):
        raise RuntimeFailure(f"container {record['name']!r} has no log: it runs in the foreground",
                             hint="its output goes to the terminal that started it")
    reader = _store().log_reader(record["id"])  # named after the id, never after the record
    try:
        data = reader.snapshot()
    except PermissionError as e:
        reader.close()
        raise RuntimeFailure(f"cannot read the log of container {record['name']!r}: {e.strerror}",
                             hint="only its creator may read it") from None
    # Complete lines only: a line still being written is for follow() to finish.
    end = data.rfind(b"\n") + 1
    text = data[:end].decode(errors="replace").splitlines()
    return Log(record, text[-lines:] if lines else text, data[end:], reader)


def follow(log: Log, out: TextIO) -> None:
    """Print what the container writes until its supervisor has finished (it waits for its
    logger, so everything written is in the files by then)."""
    store = _store()

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    try:
        follow_log(log.reader, log.pending, lambda: not _finished(store.read(log.record["id"])), write)
    finally:
        log.close()


def follow_many(logs: list[tuple[str, Log]], out: TextIO, interval: float = 0.1) -> None:
    """Print what several containers write, each complete line after its prefix, interleaved
    as it comes, until every one's supervisor has finished."""
    import time

    store = _store()
    pending = {i: log.pending for i, (_, log) in enumerate(logs)}
    try:
        while True:
            quiet = True
            for i, (prefix, log) in enumerate(logs):
                chunk = log.reader.more()
                if not chunk:
                    continue
                quiet = False
                lines = (pending[i] + chunk).split(b"\n")
                pending[i] = lines.pop()
                for line in lines:
                    out.write(prefix + line.decode(errors="replace") + "\n")
                out.flush()
            if quiet:
                if all(_finished(store.read(log.record["id"])) for _, log in logs):
                    for i, (prefix, _) in enumerate(logs):
                        if pending[i]:
                            out.write(prefix + pending[i].decode(errors="replace") + "\n")
                    return
                time.sleep(interval)
    finally:
        for _, log in logs:
            log.close()
