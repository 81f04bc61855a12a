"""The violation stream in the shell: what a run gives its monitor, the line a run prints when a
refusal explains how its workload died, and `nucleus violations CONTAINER`.

The stream's records and their meaning are ``nucleus.config.violations``'s; the monitor that
writes them is ``nucleus.effects.monitor``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from nucleus.config import modes
from nucleus.config import violations as stream
from nucleus.errors import RuntimeFailure

if TYPE_CHECKING:
    from nucleus.config.container import ContainerConfig
    from nucleus.effects.prepare import AppendFile
    from nucleus.effects.store import Store
    from nucleus.plan.run import RunPlan

FLAG = "--violations"


def open_copy(config: ContainerConfig) -> AppendFile:
    """The --violations FILE, opened for appending before anything changes on the host (a file
    that cannot be is refused as bad input)."""
    from nucleus.effects.prepare import AppendFile

    return AppendFile(FLAG, config.violations)


def monitor_setup(config: ContainerConfig, record: dict[str, Any], planned: RunPlan,
                  copy: AppendFile) -> stream.Setup | None:
    """What the violation monitor of this run describes its records with (it takes the copy);
    None when the run has no monitor (seccomp trace mode, which validation keeps from
    --violations)."""
    if not planned.state.iso.violations:
        copy.discard()
        return None
    pol = config.loaded_policies
    files = {p.kind: p.path for p in (pol.files if pol is not None else ())}
    context = stream.Context(
        record["id"], record["name"], seccomp_profile=files.get("seccomp"),
        seccomp_default_action=modes.seccomp_default_action(config.service_mode, config.seccomp_default_action),
        landlock_rules=planned.join.landlock_rules, landlock_policy=files.get("landlock"))
    return stream.Setup(context, copy.fd)


def kept(store: Store, cid: str) -> list[dict[str, object]]:
    """The records a container's stream holds, oldest first."""
    reader = store.violations_reader(cid)
    try:
        return stream.parse(reader.snapshot())
    finally:
        reader.close()


def explain_death(store: Store, cid: str, status: int) -> None:
    """When the workload died of SIGSYS (or of SIGKILL, which a seccomp kill becomes for a
    process that catches, blocks or ignores SIGSYS), say which refusal killed it (the monitor
    wrote the record before the kill), in one line on stderr."""
    if status not in (128 + stream.SIGSYS, 128 + stream.SIGKILL):
        return
    kills = [r for r in kept(store, cid) if r.get("layer") == "seccomp" and r.get("action") == "kill"]
    if kills:
        sys.stderr.write(stream.blocked(kills[-1]) + "\n")
    elif status == 128 + stream.SIGSYS:
        sys.stderr.write("nucleus: the workload died of SIGSYS, a seccomp kill no record names (the "
                         "kernel kills a call of another architecture, such as i386's int 0x80, "
                         "itself)\n")


class Reading:
    """A container's stream being read by `nucleus violations`: its record, the reader, and
    the start of a line not yet whole."""

    def __init__(self, store: Store, record: dict[str, Any]) -> None:
        self.store, self.record = store, record
        self.reader = store.violations_reader(record["id"])
        self.pending = b""

    def _whole(self, data: bytes) -> list[dict[str, object]]:
        data = self.pending + data
        end = data.rfind(b"\n") + 1
        self.pending = data[end:]
        return stream.parse(data[:end])

    def snapshot(self) -> list[dict[str, object]]:
        """The records kept now, oldest first."""
        try:
            return self._whole(self.reader.snapshot())
        except PermissionError as e:
            raise RuntimeFailure(f"cannot read the violations of container {self.record['name']!r}: "
                                 f"{e.strerror}", hint="only its creator may read them") from None

    def more(self, interval: float = 0.1) -> list[dict[str, object]] | None:
        """The records written since; None once the container's supervisor has finished and
        everything is read (it waits for its monitor, so nothing comes after)."""
        from nucleus.app import manage

        current = self.store.read(self.record["id"])
        running = current is not None and manage.supervisor_alive(current)
        chunk = self.reader.more()
        if not chunk:
            if not running:
                return None
            import time

            time.sleep(interval)
        return self._whole(chunk)

    def close(self) -> None:
        self.reader.close()


def reading(ref: str) -> Reading:
    """`nucleus violations CONTAINER`: the stream of a container (running, or stopped and not
    yet removed: a foreground container goes with its stream when it ends; --violations FILE
    keeps a copy)."""
    from nucleus.app import manage
    from nucleus.app import records as container_records
    from nucleus.effects import probe
    from nucleus.effects.store import Store

    record = manage.find(ref)
    return Reading(Store(probe.identity().state_root, check=container_records.problem), record)
