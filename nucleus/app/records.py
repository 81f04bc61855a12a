"""The container's record in the state directory: written when a run registers, kept in step
with its System machine while it lives, and read back by the management commands, which rebuild
the machine from it.

A record holds the spec's variables of every machine (`machines`), the plan parts a later
command needs (`plan`: the cgroup intents, and what joining takes), the processes to find
(`supervisor_pid`, `init_pid` with their start times, so a reused pid is never mistaken for
them), and what a user sees in `ps`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from nucleus.config.container import ContainerConfig
from nucleus.config.resources import DEFAULT_CGROUP_PARENT, Limits, parse_cgroup_parent
from nucleus.effects.process import process_start
from nucleus.effects.store import Store
from nucleus.errors import InvalidInput
from nucleus.facts import CgroupLayout
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from nucleus.plain import from_plain, to_plain
from nucleus.plan import cgroups
from nucleus.plan.run import JoinPolicy, RunPlan

ACTIVE = lifecycle.ACTIVE


def new_id() -> str:
    return secrets.token_hex(16)


def register(store: Store, config: ContainerConfig, cid: str, plan: RunPlan, *, rootless: bool,
             creator: int, supervisor: int, log_path: str | None) -> dict[str, Any]:
    """Write the container's first record, refusing a name already taken. Under the store lock,
    so two concurrent runs cannot take the same name."""
    name = config.name or cid[:12]
    record: dict[str, Any] = {
        "id": cid, "name": name, "status": "creating", "argv": list(config.argv),
        "created_at": time.time(), "creator_uid": creator, "supervisor_pid": supervisor,
        "supervisor_start": process_start(supervisor), "detached": config.detach,
        "log_path": log_path, "hostname": config.hostname or name, "rootless": rootless,
        "limits": {"memory": config.limits.memory, "cpus": config.limits.cpus, "pids": config.limits.pids},
        "cgroup": {"backend": plan.cgroup.backend, "dirs": dict(plan.cgroup.dirs)},
        "cgroup_parent": config.limits.cgroup_parent,
        "plan": {"join": to_plain(plan.join), "required": plan.state.res.required},
        "machines": _plain_tla(system.to_tla(plan.state)),
    }
    with store.locked():
        for other in store.all():
            if other.get("name") == name:
                raise InvalidInput(
                    f"--name {name!r}: a container with this name exists ({other['id'][:12]}, {other.get('status')})",
                    hint=f"pick another name, or remove it first: nucleus rm --force {name}",
                )
        store.write(record)
    return record


def adopt(record: dict[str, Any], supervisor: int) -> None:
    """The detached supervisor takes the record over from the command that registered it."""
    record["supervisor_pid"] = supervisor
    record["supervisor_start"] = process_start(supervisor)


class StateRecorder:
    """Keeps the record in step with the System machine. Written when the lifecycle status
    changes, when a cgroup may start to exist (before it is created, so that a supervisor lost
    in the middle leaves a record that says so) or stops existing, and when cleanup completes;
    deleted when the container is removed."""

    def __init__(self, store: Store, record: dict[str, Any], init_pid: Any, inner: Any = None) -> None:
        self.store, self.doc, self.init_pid, self.inner = store, record, init_pid, inner
        self.key: tuple[str, bool, bool] | None = None

    def record(self, event: Any, state: system.SystemState, intents: tuple[Any, ...] = ()) -> None:
        if self.inner is not None:
            self.inner.record(event, state, intents)
        may_hold = state.res.held or state.res.phase == "creating"
        key = (state.lc.status, may_hold, state.lc.cleaned)
        if key == self.key:
            return
        self.key = key
        if event is None:  # the initial state: registered already
            return
        if state.lc.status == "removed":
            self.store.delete(self.doc["id"])
            return
        fields: dict[str, Any] = {
            "status": state.lc.status, "security": state.lc.security,
            "machines": _plain_tla(system.to_tla(state)),
        }
        pid = self.init_pid()
        if pid is not None and pid != self.doc.get("init_pid"):
            fields["init_pid"] = pid
            fields["init_start"] = process_start(pid)
        if state.lc.status == "running" and "started_at" not in self.doc:
            fields["started_at"] = time.time()
        if state.lc.status in ("stopped", "failed"):
            fields.setdefault("finished_at", self.doc.get("finished_at") or time.time())
            fields["exit_code"] = state.lc.exit_code
            reason = exit_reason(state)
            if reason:
                fields["reason"] = reason
        self.doc.update(fields)
        with self.store.locked():
            self.store.write(self.doc)


def exit_reason(state: system.SystemState) -> str | None:
    if state.res.oom_killed:
        return "oom-killed"
    code = state.lc.exit_code
    if code is not None and code > 128:
        return f"killed by signal {code - 128}"
    return None


def _plain_tla(values: dict[str, Any]) -> dict[str, Any]:
    return {k: sorted(val) if isinstance(val, (set, frozenset)) else val for k, val in values.items()}


def restore(record: dict[str, Any], layout: CgroupLayout) -> system.SystemState:
    """The System machine as the record describes it. The cgroup intents are planned again from
    this host's layout, the container's parent and its id (never taken from the file); the
    setup machines' own parameters are of no use once the container exists."""
    parent = parse_cgroup_parent(str(record.get("cgroup_parent", DEFAULT_CGROUP_PARENT)), "the record's cgroup_parent")
    planned = cgroups.plan(layout, parent, record["id"], Limits())
    required = bool((record.get("plan") or {}).get("required"))
    res = resources.initial(required, planned.create, planned.limits, planned.attach, planned.remove)
    base = system.initial(isolation.IsolationState(), filesystem.FilesystemState(),
                          security.SecurityState(), res)
    return system.from_tla(record["machines"], base)


def join_policy(record: dict[str, Any]) -> JoinPolicy | None:
    data = (record.get("plan") or {}).get("join")
    return None if data is None else from_plain(JoinPolicy, data)
