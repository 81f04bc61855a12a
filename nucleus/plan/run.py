"""A run as a plan: the container configuration, the host facts and the prepared artifacts in;
every machine's initial state out (with the mount plan, the cgroup writes, the security controls
and the workload), plus what a later `attach` needs to join with the same restrictions. Pure.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace

from nucleus import vocab as v
from nucleus.config import landlock_default, modes, violations, workspace
from nucleus.config import secrets as secret_rules
from nucleus.config import tmpfs as tmpfs_rules
from nucleus.config import volumes as volume_rules
from nucleus.config.container import ContainerConfig
from nucleus.config.context import ContextSource
from nucleus.config.volumes import VolumeSource
from nucleus.facts import HostFacts
from nucleus.frozen import frozen
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from nucleus.plan import cgroups, ids, mounts, parameters, users
from nucleus.plan import network as network_plan

JOIN_ORDER = ("cgroup", "ipc", "uts", "net", "pid", "time", "mnt")  # "user" first or last
PROC_NAME = {"mount": "mnt"}  # /proc/<pid>/ns/ names the mount namespace "mnt"
GROUPS_FIELD = "config.json: process.user.additionalGids"  # the only source of ContainerConfig.groups

LandlockRules = tuple[tuple[str, tuple[str, ...]], ...]


@frozen
class Artifacts:
    """What was prepared for the run before anything on the host changed: the compiled seccomp
    program's sha256 (compiling is where a bad profile is refused), the choices made by the
    policy files, and the context's manifest (--verify-context-integrity)."""

    seccomp_sha256: str = ""
    seccomp_log_denied: bool = False
    caps_keep: tuple[str, ...] = ()
    landlock_rules: LandlockRules | None = None  # None: the default rules
    landlock_min_abi: int = 0  # what the Landlock policy requires beyond the mode's minimum
    context_manifest: tuple[tuple[str, str], ...] | None = None
    context: ContextSource | None = None  # the context, opened and measured
    volumes: tuple[VolumeSource, ...] = ()  # -v, opened (nucleus.config.volumes)


@frozen
class JoinPolicy:
    """What joining the container takes (recorded with the container for `attach`)."""

    rootless: bool
    namespaces: tuple[str, ...]  # the kinds the container made (as /proc/<pid>/ns names them)
    seccomp_sha256: str
    seccomp_log_denied: bool
    seccomp_mode: str
    caps_keep: tuple[str, ...]
    landlock_rules: LandlockRules
    landlock_min_abi: int
    env: tuple[tuple[str, str], ...]
    cwd: str
    rlimits: tuple[int, int, int]
    cgroup_procs: tuple[str, ...]
    places: tuple[str, ...] = ()  # the writable places --allow-exec may name (ExecCommand's)
    # The workload's user (-u; None: container root), what `exec -u` looks names up in (the
    # container's /etc/passwd and /etc/group, and why they could not be read) and the id maps
    # its ids must be in.
    user: users.Switch | None = None
    accounts: tuple[str, str, str] = ("", "", "")
    id_maps: tuple[v.IdMap, v.IdMap] = ((), ())


@frozen
class RunPlan:
    state: system.SystemState
    rootfs_dir: str  # where the new root is assembled (a mount point kept in the state directory)
    cgroup: cgroups.CgroupPlan
    join: JoinPolicy
    network: network_plan.NetworkPlan = network_plan.NetworkPlan()


def id_maps(config: ContainerConfig, facts: HostFacts) -> tuple[bool, v.IdMap, v.IdMap]:
    """Rootless (container root is the caller) or privileged (a free unprivileged host range,
    nucleus.plan.ids)."""
    euid, egid = facts.ids()
    if config.rootless or euid != 0:
        return True, ((0, euid, 1),), ((0, egid, 1),)
    start = ids.choose(config.id_range, facts.subordinate_ids)
    return False, ((0, start, ids.COUNT),), ((0, start, ids.COUNT),)


def plan(config: ContainerConfig, facts: HostFacts, artifacts: Artifacts, cid: str) -> RunPlan:
    """Raises InvalidInput for what this host cannot do as asked (see nucleus.plan.cgroups)."""
    rootless, uid_map, gid_map = id_maps(config, facts)
    owner = (0, 0) if rootless else (uid_map[0][1], gid_map[0][1])
    problem = volume_rules.host_etc_refusal((*config.volumes, *config.tmpfs), facts.etc)
    if problem is not None:
        raise problem
    accounts, account = workload_user(config, facts, uid_map, gid_map)
    switch = users.with_groups(account, config.groups, gid_map, GROUPS_FIELD)
    if account is not None:  # its home is the home: HOME, the writable directory, Landlock's rule
        config = replace(config, home=account.home)
    net = network_plan.plan(config, facts)
    namespaces = ("pid", "mount") + (() if net.mode == "host" else ("net",)) + ("uts", "ipc") + (
        ("cgroup",) if config.cgroup_namespace else ()) + (("time",) if config.time_namespace else ())
    hostname = config.hostname or config.name or "nucleus"
    joined = {kind for kind, _path, _field in config.namespace_paths}  # made by another: joined, not made
    rootfs_dir = posixpath.join(facts.state_root, "rootfs")
    layout = mounts.HostLayout(
        system=facts.system, rootfs_dir=rootfs_dir, owner=owner,
        hidepid=modes.proc_hidepid(config.service_mode),
        rootfs=facts.rootfs_realpath if config.rootfs else None,
        store_paths=facts.store_paths, context_manifest=artifacts.context_manifest,
        context=artifacts.context, etc=facts.etc, etc_masked=facts.etc_masked,
        volumes=artifacts.volumes, keep_context=keeps_context(config, rootless),
        dns=net.resolvers(config.dns),
        user=(account.uid, account.gid) if account else (0, 0),
        accounts=accounts[:2], tmpfs=tmpfs_mounts(config, accounts, owner, uid_map, gid_map))
    writable_context = config.context is not None and config.context_mode == "copy"
    min_abi = modes.min_landlock_abi(config.service_mode, config.allow_degraded_security)
    # A policy's rules replace the defaults; --allow-exec's paths gain execute in either.
    if artifacts.landlock_rules is not None:
        granted = landlock_default.with_execute(
            ((path, frozenset(access)) for path, access in artifacts.landlock_rules), config.allow_exec)
        min_abi = max(min_abi, artifacts.landlock_min_abi)
    else:
        granted = landlock_default.default_rules(config.home, writable_context=writable_context,
                                                 executable=workspace.executable(config),
                                                 volumes=volume_rules.landlock_rules(config.volumes)
                                                 + tuple((fs.target, True) for fs in config.tmpfs)
                                                 + secret_rules.landlock_rules(config.secrets))
    rules = tuple((path, tuple(sorted(access))) for path, access in granted)
    params = parameters.parameters(config.service_mode, config.trust_level,
                                   allow_degraded_security=config.allow_degraded_security,
                                   allow_chroot_fallback=config.allow_chroot_fallback,
                                   seccomp_trace=config.seccomp_mode == "trace")
    trace = params.trace
    # An enforced run records what it refuses: seccomp's refusals answered by the violation
    # monitor (the program's notify form), Landlock's logged for the workload it execs.
    stream = "" if trace else violations.stream_path(facts.state_root, cid)
    cgroup = cgroups.plan_run(facts, config.limits, cid, strict=params.cgroup_required)
    limits = config.limits
    # An egress policy's proxy variables, unless the user's -e sets them.
    env = tuple({**net.environment(), **config.environment()}.items())
    rlimits = (limits.nofile, limits.nproc, limits.memlock)
    places = workspace.places(config)
    workload = v.ExecWorkload(config.argv, env, config.effective_workdir, rlimits, places,
                              terminal=config.tty, stdin=config.interactive and not config.detach,
                              exact_rlimits=config.rlimits)
    state = system.initial(
        isolation.initial(rootless=rootless, namespaces=tuple(n for n in namespaces if n not in joined),
                          hostname="" if "uts" in joined else hostname,
                          joins=tuple(sorted(config.namespace_paths, key=lambda j: JOIN_ORDER.index(j[0]))),
                          join_host=config.join_host_namespaces,
                          uid_map=uid_map, gid_map=gid_map,
                          trace_log=(config.seccomp_log or "") if trace else "", terminal=config.tty,
                          violations=stream),
        filesystem.initial(mounts.plan(config, layout, hostname), rootfs_dir, params.allow_chroot,
                           audit=tuple((r.path, tuple(r.flags), r.required)
                                       for r in modes.mount_audit(config.service_mode,
                                                                  workspace.noexec(config))
                                       if params.audit), propagation=config.root_propagation),
        security.initial(params.allow_degraded, strict=params.strict,
                         keep_caps=artifacts.caps_keep, user=switch,
                         program_sha256="" if trace else artifacts.seccomp_sha256,
                         log_denied=artifacts.seccomp_log_denied, landlock_rules=rules,
                         landlock_min_abi=min_abi, seccomp_mode="notify" if stream else config.seccomp_mode,
                         landlock_log=bool(stream)),
        resources.initial(required=params.cgroup_required, create=cgroup.create,
                          limits=cgroup.limits, attach=cgroup.attach, remove=cgroup.remove),
        lifecycle.initial(workload),
        network_plan.machine(net, cid, facts.state_root, config.name or cid[:12]),
        params.mode,
    )
    made = ("user",) + tuple(PROC_NAME.get(kind, kind) for kind in namespaces)
    join = JoinPolicy(
        rootless=rootless, namespaces=tuple(kind for kind in ("user", *JOIN_ORDER) if kind in made),
        seccomp_sha256=artifacts.seccomp_sha256,
        seccomp_log_denied=artifacts.seccomp_log_denied, seccomp_mode=config.seccomp_mode,
        caps_keep=artifacts.caps_keep, landlock_rules=rules, landlock_min_abi=min_abi, env=env,
        cwd=config.effective_workdir, rlimits=rlimits, cgroup_procs=cgroup.attach.procs, places=places,
        user=switch, accounts=accounts, id_maps=(uid_map, gid_map))
    return RunPlan(state, rootfs_dir, cgroup, join, net)


def workload_user(config: ContainerConfig, facts: HostFacts, uid_map: v.IdMap, gid_map: v.IdMap
                  ) -> tuple[tuple[str, str, str], users.Account | None]:
    """The container's /etc/passwd and /etc/group (a --rootfs closure's own, else the generated
    ones with what -u adds) and why they could not be read; and the account -u names (None
    without -u)."""
    closure = facts.rootfs_accounts if config.rootfs else None
    if config.user is None:
        return closure or (*users.generated(config.home), ""), None
    if closure is not None:
        where = f"--rootfs {config.rootfs!r}: etc/passwd and etc/group"
        return closure, users.resolve(config.user, closure[0], closure[1], uid_map, gid_map,
                                      where=where, problem=closure[2])
    passwd, group = users.generated(config.home)
    account = users.resolve(config.user, passwd, group, uid_map, gid_map)
    return (*users.generated(config.home, account), ""), account


def tmpfs_mounts(config: ContainerConfig, accounts: tuple[str, str, str], owner: tuple[int, int],
                 uid_map: v.IdMap, gid_map: v.IdMap) -> tuple[tuple[str, str], ...]:
    """Each --tmpfs's path and mount data: its owner (container root without owner=) resolved
    in the container's /etc/passwd and /etc/group as -u is, and named by its host ids
    (container root's `owner` plus the container ids)."""
    out = []
    for fs in config.tmpfs:
        uid, gid = owner_ids(config, accounts, fs.owner, f"{tmpfs_rules.FLAG} {fs.target} owner", uid_map, gid_map)
        out.append((fs.target, fs.data(owner[0] + uid, owner[1] + gid)))
    return tuple(out)


def owner_ids(config: ContainerConfig, accounts: tuple[str, str, str], text: str | None, flag: str,
              uid_map: v.IdMap, gid_map: v.IdMap) -> tuple[int, int]:
    """The container ids an `owner=USER[:GROUP]` names (a --tmpfs's, a volume's; None: container
    root), resolved in the container's /etc/passwd and /etc/group as -u is."""
    if text is None:
        return 0, 0
    where = f"--rootfs {config.rootfs!r}: etc/passwd and etc/group" if config.rootfs else users.GENERATED
    account = users.resolve(text, accounts[0], accounts[1], uid_map, gid_map, flag=flag, where=where,
                            problem=accounts[2])
    return account.uid, account.gid


def keeps_context(config: ContainerConfig, rootless: bool) -> bool:
    """Whether the supervisor is handed the copied context: to write --changes once the
    workload has ended, and (a detached container run as root) to keep it for `nucleus cp`
    until the container is removed."""
    copied = config.context is not None and config.context_mode == "copy"
    return copied and (config.changes is not None or (config.detach and not rootless))


def with_context(config: ContainerConfig, resolved: str | None) -> ContainerConfig:
    """The configuration with --context replaced by the directory the probe resolved."""
    return config if resolved is None else replace(config, context=resolved)


@frozen
class RunInputs:
    """Everything `plan` takes: what a recorded trace keeps so that replay can plan again."""

    config: ContainerConfig
    facts: HostFacts
    artifacts: Artifacts
    cid: str

    def plan(self) -> RunPlan:
        return plan(self.config, self.facts, self.artifacts, self.cid)
