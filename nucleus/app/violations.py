"""The violation stream in the shell: what a run gives its monitor (and a command joined into the
container, its own), the line a run or `nucleus exec` prints when a refusal explains how its
command died, and `nucleus violations CONTAINER`.

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
    from nucleus.plan.run import JoinPolicy, RunPlan

FLAG = "--violations"


def open_copy(config: ContainerConfig) -> AppendFile:
    """The --violations FILE, opened for appending before anything changes on the host (a file
    that cannot be is refused as bad input)."""
    from nucleus.effects.prepare import AppendFile

    return AppendFile(FLAG, config.violations)


# The record's key for what the stream's records are described with, beyond the container's id,
# name and Landlock rules (which the record holds already): read back by `nucleus exec`.
DESCRIBED = "violations"


def monitor_setup(config: ContainerConfig, record: dict[str, Any], planned: RunPlan,
                  copy: AppendFile) -> stream.Setup | None:
    """What the violation monitor of this run describes its records with (it takes the copy);
    None when the run has no monitor (seccomp trace mode, which validation keeps from
    --violations). The description goes into the record too (written with it at the first
    change of state, before the container runs and can be joined)."""
    if not planned.state.iso.violations:
        copy.discard()
        return None
    pol = config.loaded_policies
    files = {p.kind: p.path for p in (pol.files if pol is not None else ())}
    context = stream.Context(
        record["id"], record["name"], seccomp_profile=files.get("seccomp"),
        seccomp_default_action=modes.seccomp_default_action(config.service_mode, config.seccomp_default_action),
        landlock_rules=planned.join.landlock_rules, landlock_policy=files.get("landlock"))
    record[DESCRIBED] = {"seccomp_profile": context.seccomp_profile, "landlock_policy": context.landlock_policy,
                         "seccomp_default_action": context.seccomp_default_action}
    return stream.Setup(context, copy.fd)


def join_setup(record: dict[str, Any], policy: JoinPolicy) -> stream.Setup:
    """What the monitor of a command joined into the container describes its records with: the
    container's own description, from its record (a record without one, or with a value that
    is no text, describes them against the default profile), and that they are a joined
    command's (a run's `blocked:` line never names them)."""
    described = record.get(DESCRIBED)
    given = described if isinstance(described, dict) else {}

    def text(key: str) -> str | None:
        value = given.get(key)
        return value if isinstance(value, str) else None

    context = stream.Context(record["id"], record["name"], seccomp_profile=text("seccomp_profile"),
                             seccomp_default_action=text("seccomp_default_action") or stream.Context.seccomp_default_action,
                             landlock_rules=policy.landlock_rules, landlock_policy=text("landlock_policy"),
                             joined=True)
    return stream.Setup(context)


def kept(store: Store, cid: str) -> list[dict[str, object]]:
    """The records a container's stream holds, oldest first."""
    reader = store.violations_reader(cid)
    try:
        return stream.parse(reader.snapshot())
    finally:
        reader.close()


DEATHS = (128 + stream.SIGSYS, 128 + stream.SIGKILL)


def explain_death(store: Store, cid: str, status: int) -> None:
    """When the workload died of SIGSYS (or of SIGKILL, which a seccomp kill becomes for a
    process that catches, blocks or ignores SIGSYS), say which refusal killed it (the monitor
    wrote the record before the kill), in one line on stderr."""
    if status in DEATHS:
        _explain(_kills(kept(store, cid), joined=False), status, "workload")


class Since:
    """What a container's stream gains from now on: the records of a command joined into it,
    read once the command has ended to say, as a run does, which refusal killed it (its
    monitor wrote the record before the kill)."""

    def __init__(self, store: Store, cid: str) -> None:
        self.reader = store.violations_reader(cid)
        self.reader.skip()

    def __enter__(self) -> Since:
        return self

    def __exit__(self, *_: object) -> None:
        self.reader.close()

    def explain_death(self, status: int, pid: int | None) -> None:
        """As `explain_death`, from the joined commands' kills written meanwhile: the command's
        own process's (`pid`) first, as another command may have been joined meanwhile."""
        if status in DEATHS:
            kills = _kills(stream.parse(self.reader.more()), joined=True)
            _explain([r for r in kills if r.get("pid") == pid] or kills, status, "command")


def _kills(records: list[dict[str, object]], joined: bool) -> list[dict[str, object]]:
    """The seccomp kills among `records`: those of joined commands, or those of the container's
    own processes."""
    return [r for r in records if r.get("layer") == "seccomp" and r.get("action") == "kill"
            and bool(r.get("joined")) == joined]


def _explain(kills: list[dict[str, object]], status: int, what: str) -> None:
    if kills:
        sys.stderr.write(stream.blocked(kills[-1]) + "\n")
    elif status == 128 + stream.SIGSYS:
        sys.stderr.write(f"nucleus: the {what} died of SIGSYS, a seccomp kill no record names (the "
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
