"""Container management: ps, stats, stop, kill, rm, logs. Each command reads the records, rebuilds
the container's System machine from its record, and feeds it events through the driver and the
executor: what to signal, end, release and remove is decided by the machines.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from nucleus import vocab as v
from nucleus.app import records
from nucleus.config.lookup import resolve
from nucleus.driver import Driver
from nucleus.effects import probe
from nucleus.effects.executor import Executor
from nucleus.effects.process import alive
from nucleus.effects.store import Store, read_log
from nucleus.errors import RuntimeFailure
from nucleus.machines import lifecycle, system
from nucleus.machines.base import Refused

ACTIVE = lifecycle.ACTIVE
STOP_WAIT = 10.0  # seconds a stop or a forced removal waits for the supervisor to finish


def _store() -> Store:
    return Store(probe.identity().state_root)


def supervisor_alive(record: dict[str, Any]) -> bool:
    return alive(record.get("supervisor_pid"), record.get("supervisor_start"))


def lost(record: dict[str, Any]) -> bool:
    """Its supervisor is gone before it was cleaned up: it may still hold processes or a
    cgroup, which rm --force reclaims."""
    uncleaned = record.get("status") in ACTIVE or not (record.get("machines") or {}).get("lc_cleaned", True)
    return uncleaned and not supervisor_alive(record)


def view(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a user sees it: a container whose supervisor is gone before it was cleaned
    up is "lost"."""
    out = {k: val for k, val in record.items() if k not in ("machines", "plan", "env", "landlock_rules")}
    if lost(record):
        out["status"] = "lost"
        out["reason"] = "the supervisor is gone; nucleus rm --force cleans up"
    return out


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
    records_ = _store().all()
    if not all_:
        records_ = [r for r in records_ if r.get("status") in ACTIVE or lost(r)]
    return sorted((view(r) for r in records_), key=lambda r: r.get("created_at", 0))


def stats(refs: tuple[str, ...]) -> list[dict[str, Any]]:
    records_ = [find(r) for r in refs] if refs else [r for r in _store().all() if r.get("status") in ACTIVE]
    out = []
    for record in records_:
        row: dict[str, Any] = {"id": record["id"], "name": record["name"], "status": view(record)["status"]}
        cgroup = record.get("cgroup") or {}
        if cgroup.get("dirs") and record.get("status") in ACTIVE:
            try:
                row.update(probe.cgroup_stats(cgroup["backend"], cgroup["dirs"]))
            except OSError as e:
                row["error"] = str(e)
        out.append(row)
    return out


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def container_driver(record: dict[str, Any], store: Store | None = None) -> Driver:
    """The container's machine, rebuilt from its record, driven against an executor that knows
    its init (when that is still the same process); with `store`, the record follows the
    machine. What the executor cannot do (a signal refused) is said on stderr."""
    start = record.get("init_start")
    init = record.get("init_pid") if alive(record.get("init_pid"), start) else None
    executor = Executor(warn=_warn, init_pid=init, init_start=start)
    recorder = None if store is None else records.StateRecorder(store, record, lambda: executor.init_pid)
    return Driver(system, records.restore(record, probe.cgroup_layout()), executor, recorder)


def _refused(result: Refused, record: dict[str, Any]) -> RuntimeFailure:
    return RuntimeFailure(result.why.replace("the container", repr(record["name"])))


def kill(ref: str, sig: str, action: str = "kill") -> dict[str, Any]:
    record = find(ref)
    authorize(record, action)
    if not supervisor_alive(record):
        raise RuntimeFailure(f"cannot {action} container {record['name']!r}: it is {view(record)['status']}")
    result = container_driver(record).feed(v.Kill(sig))
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
    if supervisor_alive(record):
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
    driver = container_driver(record, store)
    lc = driver.state.lc
    if lc.status in ACTIVE or not lc.cleaned:
        # The supervisor is gone before it cleaned up: the machine ends what is left (the
        # processes, a cgroup step it had under way) and releases the cgroup.
        driver.require(v.Lost())
        driver.settle()
    if driver.state.res.phase == "leaked":
        # A removal that failed before (here or in the supervisor) is tried again.
        driver.require(v.ResRelease())
        driver.settle()
    if isinstance(driver.feed(v.Remove()), Refused):
        raise RuntimeFailure(
            f"cannot remove container {record['name']!r}: its cgroup could not be released",
            hint="run nucleus rm --force again; nucleus --debug shows the error",
        )
    store.delete(record["id"])  # the record went with Remove; the log goes too
    return record


def log_lines(ref: str, lines: int | None) -> tuple[dict[str, Any], list[str]]:
    record = find(ref)
    path = record.get("log_path")
    if not path:
        raise RuntimeFailure(f"container {record['name']!r} has no log: it runs in the foreground",
                             hint="its output goes to the terminal that started it")
    try:
        data = read_log(path)
    except PermissionError as e:
        raise RuntimeFailure(f"cannot read the log of container {record['name']!r}: {path}: {e.strerror}",
                             hint="only its creator may read it") from None
    # Complete lines only: a line still being written is for follow() to finish.
    end = data.rfind(b"\n") + 1
    record["log_offset"] = end
    text = data[:end].decode(errors="replace").splitlines()
    return record, (text[-lines:] if lines else text)


def follow(record: dict[str, Any], out: TextIO) -> None:
    store = _store()
    store.follow_log(record["log_path"], record.get("log_offset", 0),
                     lambda: not _stopped(store.read(record["id"])), out)
