"""The container's record in the state directory: written when a run registers, kept in step
with its System machine while it lives, and read back by the management commands, which rebuild
the machine from it.

A record holds the spec's variables of every machine (`machines`), the plan parts a later
command needs (`plan`: the cgroup intents, and what joining takes), the processes to find
(`supervisor_pid`, `init_pid` with their start times, so a reused pid is never mistaken for
them), and what a user sees in `ps`.

Read back, a record is trusted for its shape only (`problem`): the cgroup's paths are planned
again from the container's id and parent, its log is named after its id, and a process it names
is signalled or joined only once the kernel confirms it is the container's init (see
nucleus.app.manage).
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import replace
from typing import Any

from nucleus.config.container import NAME_RE, ContainerConfig
from nucleus.config.resources import DEFAULT_CGROUP_PARENT, Limits, parse_cgroup_parent
from nucleus.effects import probe, store
from nucleus.effects.process import process_start
from nucleus.effects.store import Store
from nucleus.errors import InvalidInput
from nucleus.facts import CgroupLayout
from nucleus.machines import filesystem, isolation, lifecycle, network, resources, security, system
from nucleus.plain import from_plain, to_plain
from nucleus.plan import cgroups
from nucleus.plan import network as network_plan
from nucleus.plan.run import JoinPolicy, RunPlan
from nucleus.vocab import MountVolume

ACTIVE = lifecycle.ACTIVE


def new_id() -> str:
    return store.random_id()


def register(store: Store, config: ContainerConfig, cid: str, plan: RunPlan, *, rootless: bool,
             creator: int, supervisor: int) -> dict[str, Any]:
    """Write the container's first record, refusing a name already taken. Under the store lock,
    so two concurrent runs cannot take the same name."""
    name = config.name or cid[:12]
    record: dict[str, Any] = {
        "id": cid, "name": name, "status": "creating", "argv": list(config.argv),
        "created_at": time.time(), "creator_uid": creator, "supervisor_pid": supervisor,
        "supervisor_start": process_start(supervisor), "detached": config.detach,
        "hostname": config.hostname or name, "rootless": rootless,
        "limits": {"memory": config.limits.memory, "cpus": config.limits.cpus, "pids": config.limits.pids},
        "cgroup_parent": config.limits.cgroup_parent,
        "id_map": list(plan.state.iso.uid_map[0]),
        "plan": {"join": to_plain(plan.join), "required": plan.state.res.required},
        "machines": _plain_tla(system.to_tla(plan.state)),
    }
    if plan.cgroup.delegated is not None:
        group, controllers = plan.cgroup.delegated
        record["cgroup_delegated"] = {"group": group, "controllers": list(controllers)}
    if config.volumes:
        record["volumes"] = volumes(plan)
    if config.labels:
        record["labels"] = dict(config.labels)
    if plan.network.mode != "none":
        record["network"] = network_plan.to_record(plan.network)
    if config.detach:
        record["log"] = {"max_size": config.log_max_size, "max_files": config.log_max_files}
    return claim(store, record)


def claim(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    """Write a container's first record, refusing a name already taken. Under the store lock,
    so two concurrent runs cannot take the same name."""
    name = record["name"]
    with store.locked():
        for other in store.all():
            if other.get("name") == name:
                raise InvalidInput(
                    f"--name {name!r}: a container with this name exists ({other['id'][:12]}, {other.get('status')})",
                    hint=f"pick another name, or remove it first: nucleus rm --force {name}",
                )
        store.write(record)
    return record


def volumes(plan: RunPlan) -> list[dict[str, Any]]:
    """The volumes as the plan binds them: the host path, the path inside, ro or rw."""
    root = plan.rootfs_dir.rstrip("/")
    return [{"host": op.source, "container": op.target[len(root):],
             "mode": "ro" if "rdonly" in op.flags else "rw", "idmapped": op.userns >= 0}
            for op in plan.state.fs.plan if isinstance(op, MountVolume)]


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
        self.key: tuple[str, bool, bool, tuple[str, int, frozenset[str]] | None] | None = None

    def record(self, event: Any, state: system.SystemState, intents: tuple[Any, ...] = ()) -> None:
        if self.inner is not None:
            self.inner.record(event, state, intents)
        may_hold = state.res.held or state.res.phase == "creating"
        # A bridge's progress too: a supervisor lost in the middle of a network step leaves a
        # record that names what the teardown must remove.
        net = (state.net.phase, state.net.done, state.net.held) if state.net.plan else None
        key = (state.lc.status, may_hold, state.lc.cleaned, net)
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
        if state.net.addresses and isinstance(self.doc.get("network"), dict):
            fields["network"] = {**self.doc["network"], "addresses": list(state.net.addresses)}
            planned, leased = self.doc["network"].get("attachments"), state.net.attached
            if leased and isinstance(planned, list):  # each more bridge's addresses, once leased
                fields["network"]["attachments"] = [
                    {**a, "addresses": list(leased[i])} if i < len(leased) and isinstance(a, dict) else a
                    for i, a in enumerate(planned)]
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


# --- reading a record back: nothing in it is trusted beyond its shape ----------------------------

_NUMBER = (int, float)
_OPTIONAL_INT = (int, type(None))
# Each field a management command reads, and the types it may have.
_SHAPE: dict[str, tuple[type, ...]] = {
    "name": (str,), "status": (str,), "machines": (dict,), "argv": (list,), "created_at": _NUMBER,
    "started_at": _NUMBER, "finished_at": _NUMBER, "creator_uid": (int,),
    "supervisor_pid": _OPTIONAL_INT, "supervisor_start": _OPTIONAL_INT, "init_pid": _OPTIONAL_INT,
    "init_start": _OPTIONAL_INT, "detached": (bool,), "rootless": (bool,), "cgroup_parent": (str,),
    "exit_code": _OPTIONAL_INT, "reason": (str, type(None)), "security": (str,), "plan": (dict,),
    "hostname": (str, type(None)), "limits": (dict,), "log": (dict,), "cgroup_delegated": (dict,),
    "volumes": (list,), "violations": (dict,), "network": (dict,), "service": (dict,),
}
_REQUIRED = ("name", "status", "machines")


def problem(record: dict[str, Any]) -> str | None:
    """Why `record` is not a record a management command can act on (None when it is): each
    field's type, the name, the cgroup parent, the machines' variables and their agreement with
    the status. Pure: it looks at nothing but the record."""
    for key in _REQUIRED:
        if key not in record:
            return f"no {key!r}"
    for key, kinds in _SHAPE.items():
        value = record.get(key)
        if key not in record or value is None and type(None) in kinds:
            continue
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return f"{key!r} is {type(value).__name__}"
    if not NAME_RE.fullmatch(record["name"]):
        return f"the name {record['name']!r} is not a container name"
    if not all(isinstance(arg, str) for arg in record.get("argv", [])):
        return "'argv' holds more than strings"
    try:
        parse_cgroup_parent(str(record.get("cgroup_parent", DEFAULT_CGROUP_PARENT)), "cgroup_parent")
    except InvalidInput as e:
        return e.message
    if record.get("runtime") == "gvisor":
        from nucleus.app.gvisor import problem as gvisor_problem

        return gvisor_problem(record)
    try:
        state = system.from_tla(machines(record), _BASE)
        join_policy(record)
        network_plan.from_record(record.get("network"))
    except Exception as e:  # noqa: BLE001 - anything that does not rebuild is not a record
        return f"its machines do not rebuild ({type(e).__name__}: {e})"
    if not (lifecycle.TypeOK(state.lc) and resources.TypeOK(state.res) and network.TypeOK(state.net)):
        return "its machines' variables are out of range"
    status = record["status"]
    if status != state.lc.status and not (status == "creating" and state.lc.status == "none"):
        return f"its status {status!r} is not its lifecycle's ({state.lc.status!r})"
    if status in ("created", "running") and record.get("init_pid") is None:
        return f"its status is {status!r} but it names no init"  # it is written before then
    return None


_BASE = system.initial(isolation.IsolationState(), filesystem.FilesystemState(), security.SecurityState())


def machines(record: dict[str, Any]) -> dict[str, Any]:
    """The record's machine variables; a record written before containers had a network machine
    holds none of its variables: it had no bridge, set up or torn down as its cleanup says. One
    written before seccomp trace mode, the service mode and the cgroup's retried removal were
    variables of the machines ran enforced or degraded, in agent mode's parameters as far as the
    record goes, and had tried no removal again."""
    values = {"sec_trace": False, "sys_mode": "agent", "res_tries": 0, **record["machines"]}
    if "net_phase" not in values:
        values.update(net_bridged=False, net_user=False, net_egress=False, net_done=0, net_held=[],
                      net_phase="released" if values.get("lc_cleaned") else "ready")
    return values


def restore(record: dict[str, Any], layout: CgroupLayout) -> system.SystemState:
    """The System machine as the record describes it. The cgroup intents are planned again from
    this host's layout, the container's parent and its id (never taken from the file); the
    setup machines' own parameters are of no use once the container exists."""
    planned = _replan(record, layout)
    required = bool((record.get("plan") or {}).get("required"))
    res = resources.initial(required, planned.create, planned.limits, planned.attach, planned.remove)
    # The network's teardown likewise: its names from the id, the bridge as the flags allow it.
    net = network.NetworkState(teardown=network_plan.teardown(
        network_plan.from_record(record.get("network")), record["id"], probe.identity().state_root))
    base = system.initial(isolation.IsolationState(), filesystem.FilesystemState(),
                          security.SecurityState(), res, net=net)
    return system.from_tla(machines(record), base)


def cgroup_dirs(record: dict[str, Any], layout: CgroupLayout) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The backend and each controller's directory of the container's cgroup, planned again
    from this host's layout, its parent and its id (as `restore` plans the intents)."""
    planned = _replan(record, layout)
    return planned.backend, planned.dirs


def _replan(record: dict[str, Any], layout: CgroupLayout) -> cgroups.CgroupPlan:
    parent = parse_cgroup_parent(str(record.get("cgroup_parent", DEFAULT_CGROUP_PARENT)), "the record's cgroup_parent")
    delegated = delegated_group(record, layout)
    if delegated is not None:
        layout = replace(layout, delegated=delegated[0], delegated_controllers=delegated[1])
    return cgroups.plan(layout, parent, record["id"], Limits(), unprivileged=delegated is not None)


def delegated_group(record: dict[str, Any], layout: CgroupLayout,
                    euid: int | None = None) -> tuple[str, tuple[str, ...]] | None:
    """The cgroup v2 group delegated to the caller under which a rootless run made its group,
    as its record names it, if that is still a group of this host's cgroup2 hierarchy that the
    caller owns, with controllers nucleus uses; else None (the record's paths are then planned
    where root's would be, and what is there is not the caller's to remove)."""
    data = record.get("cgroup_delegated")
    if not isinstance(data, dict) or layout.unified is None:
        return None
    group, controllers = data.get("group"), data.get("controllers")
    if not isinstance(group, str) or not isinstance(controllers, list) \
            or not all(c in DELEGATED_CONTROLLERS for c in controllers):
        return None
    root = layout.unified.rstrip("/")
    if posixpath.normpath(group) != group or not group.startswith(root + "/"):
        return None
    if probe.owner_of(group) != (probe.own_uid() if euid is None else euid):
        return None
    return group, tuple(controllers)


DELEGATED_CONTROLLERS = ("cpu", "io", "memory", "pids")


def join_policy(record: dict[str, Any]) -> JoinPolicy | None:
    data = (record.get("plan") or {}).get("join")
    return None if data is None else from_plain(JoinPolicy, data)
