"""Container management: ps, stats, stop, kill, rm, logs. Composition only: records from the
state directory, the System machine rebuilt from each record, and the host executor."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from nucleus import vocab as v
from nucleus.errors import InvalidInput, RuntimeFailure
from nucleus.machines.base import Refused

ACTIVE = ("creating", "created", "running")


def _store():
    from nucleus.effects.store import Store
    from nucleus.runner import state_root

    return Store(state_root(os.geteuid()))


def supervisor_alive(record: dict[str, Any]) -> bool:
    from nucleus.effects.store import alive

    return alive(record.get("supervisor_pid"), record.get("supervisor_start"))


def view(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a user sees it: an active container whose supervisor is gone is "lost"."""
    out = {k: val for k, val in record.items() if k not in ("machines", "env", "landlock_rules")}
    if record.get("status") in ACTIVE and not supervisor_alive(record):
        out["status"] = "lost"
        out["reason"] = "the supervisor is gone; nucleus rm --force cleans up"
    return out


def find(ref: str) -> dict[str, Any]:
    from nucleus.config.lookup import resolve

    return dict(resolve(_store().all(), ref))


def authorize(record: dict[str, Any], action: str) -> None:
    uid = os.geteuid()
    if uid != 0 and uid != record.get("creator_uid"):
        raise RuntimeFailure(
            f"cannot {action} container {record['name']!r}: it belongs to uid {record.get('creator_uid')}",
            hint="only its creator or root may manage a container",
        )


def listing(all_: bool) -> list[dict[str, Any]]:
    rows = [view(r) for r in _store().all()]
    if not all_:
        rows = [r for r in rows if r["status"] in ACTIVE]
    return sorted(rows, key=lambda r: r.get("created_at", 0))


def _cgroup(record: dict[str, Any]):
    from nucleus.effects import cgroups

    cg = record.get("cgroup")
    if cg:
        return cgroups.Cgroup(cg["backend"], cg["dirs"])
    host = cgroups.detect()
    if host.backend == "none":
        return None
    return cgroups.find_existing(host, record.get("cgroup_parent", "nucleus"), record["id"])


def stats(refs: tuple[str, ...]) -> list[dict[str, Any]]:
    from nucleus.effects import cgroups

    records = [find(r) for r in refs] if refs else [r for r in _store().all() if r.get("status") in ACTIVE]
    out = []
    for record in records:
        row: dict[str, Any] = {"id": record["id"], "name": record["name"], "status": view(record)["status"]}
        cg = _cgroup(record)
        if cg is not None and record.get("status") in ACTIVE:
            try:
                row.update(cgroups.stats(cg))
            except OSError as e:
                row["error"] = str(e)
        out.append(row)
    return out


def _machine(record: dict[str, Any]):
    from nucleus.machines import system

    return system.from_tla(record["machines"])


def _executor(record: dict[str, Any]):
    from nucleus.effects.host import HostExecutor
    from nucleus.effects.inside import Inside, Workload
    from nucleus.effects.store import alive

    # Warnings of the run (e.g. "running without limits") mean nothing to a management command.
    ex = HostExecutor(Inside(-1, -1, Workload((), {}, "/")), warn=lambda message: None)
    if alive(record.get("init_pid"), record.get("init_start")):
        ex.init_pid = record["init_pid"]
    ex.cgroup = _cgroup(record)
    if ex.cgroup is not None:
        from nucleus.effects import cgroups

        ex.cgroup_host = cgroups.detect()
        ex.cgroup_parent = record.get("cgroup_parent", "nucleus")
    return ex


def signal_name(text: str) -> str:
    from nucleus.machines.lifecycle import SIGNALS

    name = text.upper().removeprefix("SIG")
    if name.isdigit():
        try:
            name = signal.Signals(int(name)).name.removeprefix("SIG")
        except ValueError:
            name = text
    if name not in SIGNALS:
        raise InvalidInput(f"--signal {text!r}: not a signal nucleus sends",
                           hint=f"use one of {', '.join(SIGNALS)} (with or without SIG, or its number)")
    return name


def kill(ref: str, sig: str, action: str = "kill") -> dict[str, Any]:
    from nucleus.driver import Driver
    from nucleus.machines import system

    record = find(ref)
    authorize(record, action)
    if not supervisor_alive(record):
        raise RuntimeFailure(f"cannot {action} container {record['name']!r}: it is {view(record)['status']}")
    driver = Driver(system, _machine(record), _executor(record))
    result = driver.feed(v.Kill(sig))
    if isinstance(result, Refused):
        raise RuntimeFailure(f"{result.why.replace('the container', repr(record['name']))}")
    return record


def _wait_done(record: dict[str, Any], timeout: float) -> bool:
    """Wait until the supervisor has recorded the exit (or is gone)."""
    store = _store()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = store.read(record["id"])
        if current is None or current.get("status") not in ACTIVE or not supervisor_alive(current):
            return True
        time.sleep(0.02)
    return False


def _wait_finished(record: dict[str, Any], timeout: float) -> bool:
    """Wait until the supervisor has finished: released what it held and exited."""
    store = _store()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = store.read(record["id"])
        if current is None or not supervisor_alive(current):
            return True
        time.sleep(0.02)
    return False


def stop(ref: str, timeout: float) -> dict[str, Any]:
    record = kill(ref, "TERM", action="stop")
    if not _wait_done(record, timeout):
        try:
            kill(record["id"], "KILL", action="stop")
        except RuntimeFailure:  # it stopped meanwhile
            pass
    _wait_finished(record, 10)
    return record


def remove(ref: str, force: bool) -> dict[str, Any]:
    from nucleus.driver import Driver
    from nucleus.machines import system

    record = find(ref)
    authorize(record, "remove")
    store = _store()
    if record.get("status") in ACTIVE:
        if not force:
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
        _wait_finished(record, 15)
        current = store.read(record["id"])
        if current is None:  # a foreground run's supervisor removes its own record
            return record
        record = current
    cleaned = record.get("machines", {}).get("lc_cleaned", True)
    if record.get("status") in ACTIVE or not cleaned:
        # The supervisor is gone (or its cleanup failed): reclaim what it held (processes,
        # cgroup), then the record.
        driver = Driver(system, _machine(record), _executor(record))
        if record.get("status") in ACTIVE:
            driver.feed(v.Lost())
        # A cgroup step the dead supervisor had under way will never report: it failed.
        under_way = {"creating": "create", "limiting": "limits", "attaching": "attach",
                     "releasing": "release"}.get(driver.state.res.phase)
        if under_way == "release":
            try:
                driver.executor.remove_cgroup()
            except OSError as e:
                driver.feed(v.ResFailed("release", e.errno or 0, str(e)))
            else:
                driver.feed(v.ResDone("release"))
        elif under_way is not None:
            driver.feed(v.ResFailed(under_way, 0, "the supervisor was lost during it"))
        driver.settle()
        state = driver.state
        if state.res.phase == "leaked" or not state.lc.cleaned:
            raise RuntimeFailure(
                f"cannot remove container {record['name']!r}: its cgroup could not be released",
                hint="run nucleus rm --force again; nucleus --debug shows the error",
            )
        _sweep(record)
    store.delete(record["id"])
    return record


def _sweep(record: dict[str, Any]) -> None:
    """A supervisor killed between creating the cgroup and recording it leaves a group the
    record does not know of: find it by name and remove it."""
    from nucleus.effects import cgroups

    host = cgroups.detect()
    if host.backend == "none":
        return
    parent = record.get("cgroup_parent", "nucleus")
    left = cgroups.find_existing(host, parent, record["id"])
    if left is not None:
        cgroups.kill_all(left)
        cgroups.remove(left)
        cgroups.remove_parent(host, parent)


def attach(ref: str, argv: list[str]) -> int:
    from nucleus.driver import Driver
    from nucleus.effects import inside
    from nucleus.machines import system
    from nucleus.runner import _program

    record = find(ref)
    authorize(record, "attach")
    if not supervisor_alive(record):
        raise RuntimeFailure(f"cannot attach to container {record['name']!r}: it is {view(record)['status']}")
    result = Driver(system, _machine(record), _executor(record)).feed(v.Attach())
    if isinstance(result, Refused):
        raise RuntimeFailure(result.why.replace("the container", repr(record["name"])))
    ex = _executor(record)
    if ex.init_pid is None:
        raise RuntimeFailure(f"cannot attach to container {record['name']!r}: its init process is gone")
    program = _program()
    import hashlib

    if hashlib.sha256(program).hexdigest() != record.get("seccomp_sha256"):
        raise RuntimeFailure(
            f"cannot attach to container {record['name']!r}: its seccomp program is not the one "
            "this nucleus builds", hint="attach with the nucleus version that started it")
    old = signal.pthread_sigmask(signal.SIG_BLOCK, inside.WAITED)
    try:
        pid = os.fork()
        if pid == 0:
            from nucleus.effects.join import join_and_exec

            join_and_exec(ex.init_pid, bool(record.get("rootless")), ex.cgroup, argv or ["/bin/sh"],
                          record.get("env") or {}, record.get("workdir") or "/", program,
                          record.get("landlock_rules") or [], tuple(record.get("rlimits") or (1024, 512, 65536)))
        return inside.wait_forwarding(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def log_lines(ref: str, lines: int | None) -> tuple[dict[str, Any], list[str]]:
    record = find(ref)
    path = record.get("log_path")
    if not path:
        raise RuntimeFailure(f"container {record['name']!r} has no log: it runs in the foreground",
                             hint="its output goes to the terminal that started it")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    except PermissionError as e:
        raise RuntimeFailure(f"cannot read the log of container {record['name']!r}: {path}: {e.strerror}",
                             hint="only its creator or root may read it") from None
    # Complete lines only: a line still being written is for follow() to finish.
    end = data.rfind(b"\n") + 1
    record["log_offset"] = end
    text = data[:end].decode(errors="replace").splitlines()
    return record, (text[-lines:] if lines else text)


def follow(record: dict[str, Any], out) -> None:
    store = _store()
    with open(record["log_path"], "rb") as f:
        f.seek(record.get("log_offset", 0))
        while True:
            chunk = f.read()
            if chunk:
                out.write(chunk.decode(errors="replace"))
                out.flush()
                continue
            current = store.read(record["id"])
            if current is None or current.get("status") not in ACTIVE or not supervisor_alive(current):
                rest = f.read()
                if rest:
                    out.write(rest.decode(errors="replace"))
                return
            time.sleep(0.1)
