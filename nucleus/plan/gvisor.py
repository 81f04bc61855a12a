"""The plan of a gVisor run: the OCI bundle (config.json and the root directory it names) made
from the same ContainerConfig as a native run, and runsc's command lines, as plain data.

Pure: the host facts it needs arrive as arguments (the system directories and the host's /etc
allowlist as the probe found them, the id range, the paths under the state directory).

What the bundle asks of runsc is what a native run does itself: the system directories bound
read-only (from the host or a --rootfs closure), a generated /etc, private tmpfs for /tmp, /run
and home, the volumes and --tmpfs, /proc's sensitive entries masked, no capabilities in any
set, no_new_privs, the rlimits, every namespace (user with the container's id range, network
unless --network host), the cgroup limits, the hostname, and with --seccomp-profile that profile
(runsc --oci-seccomp loads it inside the sandbox).

With --network bridge the bundle names the container's own network namespace (NETNS, a symlink
the supervisor makes to it), which the Network machine prepares as for a native run (its host
side, its link, addresses and routes, the egress policy's rules and proxy) before runsc run;
runsc's netstack (--network sandbox) takes the link over. A network of runsc's own (the
host's, or a bridge) keeps the host's user namespace: Debian's runsc (2022) cannot start a
sandbox with a user namespace on either (hostinet: "error converting mounts"; a bridge: the
sandbox cannot mount its /proc under the masked /proc/sys/net, EPERM).
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from nucleus import vocab as v
from nucleus.config import network as network_rules
from nucleus.config.container import CONTEXT_MOUNT, ContainerConfig
from nucleus.config.context import ContextSource, exclusion_list
from nucleus.config.gvisor import PLATFORM
from nucleus.config.host_etc import ETC
from nucleus.config.resources import Limits
from nucleus.config.workspace import TMP
from nucleus.frozen import frozen
from nucleus.machines import network
from nucleus.machines.gvisor import GvisorPlan
from nucleus.plan import ids, users
from nucleus.plan import network as network_plan
from nucleus.plan.mounts import PROC_MASKED, PROC_READONLY, ROOTFS_DIRS, _etc
from nucleus.vocab import gvisor as gv

OCI_VERSION = "1.0.2"
ROOT = "rootfs"  # the bundle's root directory, relative to the bundle
LOG = "runsc.log"
# The context's filtered copy (--context-mode copy), in the container's directory, below a
# directory only the container's root may enter (the copy's own directory is 0755, as inside).
CONTEXT = "private/context"
NETNS = "netns"  # the symlink to the container's network namespace, in its directory
HOLDER = "netns.holder"  # the pid and start time of the process that holds it
# Hidden from runsc run (nucleus.vocab.gvisor.RunSandbox.masked) with a bridge.
NET_MASKED = ("/proc/sys/net",)
# The containers' directories: root's (runsc runs containers as root), and not in the state
# directory, wherever that is: runsc's gofer reaches the bundle's root as the container's mapped
# root, through directories it must be let through (0711), which a state directory (0700, or
# below one) is not.
BASE = "/run/nucleus-gvisor"
CFS_PERIOD = 100_000
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
RO = ("rbind", "ro", "nosuid", "nodev")
SCRATCH = ("nosuid", "nodev")
# Private tmpfs as a native run mounts them: (path, mount data).
TMP_SIZE = "size=536870912,mode=1777"
HOME_DATA = "size=268435456,mode=0700"
RUN_DATA = "size=67108864,mode=0755"


@frozen
class Host:
    """What the plan needs of the host (nucleus.effects.gvisor.host gathers it)."""

    runsc: str  # runsc's absolute path
    base: str = BASE  # where the containers' directories are made
    system: tuple[tuple[str, str], ...] = ()  # HostFacts.system: (path, symlink target or "")
    etc: tuple[tuple[str, str], ...] = ()  # HostFacts.etc: the host's /etc entries to bind
    id_start: int = ids.FIRST  # the first host id of the container's range
    volumes: tuple[tuple[str, str, bool], ...] = ()  # -v: (host path resolved, path inside, writable)
    context: str | None = None  # --context (bind), resolved
    copied: ContextSource | None = None  # --context (copy): opened and measured, as a native run's
    rootfs: str | None = None  # --rootfs, resolved: the system directories are its own
    store_paths: tuple[str, ...] = ()  # the closure's /nix/store paths, bound one by one
    files: tuple[str, ...] = ()  # the mount points (paths inside) whose sources are files, not directories
    platform: str = PLATFORM  # runsc's --platform: ptrace or kvm (--gvisor-platform)
    network: network_plan.NetworkPlan = network_plan.NetworkPlan()  # the run's network, as planned
    state_root: str = ""  # the state directory: the bridge's leases


def directory(cid: str, base: str = BASE) -> str:
    """The container's own directory: its bundle, runsc's state (--root), its log and pid file."""
    return posixpath.join(base, cid)


def runsc_prefix(host: Host, cid: str, config: ContainerConfig, seccomp: bool) -> tuple[str, ...]:
    """runsc and its global flags: its state under the container's own directory, the platform,
    the network (none, or the host's with --network host), the profile loaded inside."""
    base = directory(cid, host.base)
    kind = {network_rules.HOST: "host", network_rules.BRIDGE: "sandbox"}.get(config.network, "none")
    argv = (host.runsc, "--root", posixpath.join(base, "runsc"), "--log", posixpath.join(base, LOG),
            "--platform", host.platform, "--network", kind, "--overlay2", "root:memory")
    return (*argv, "--oci-seccomp") if seccomp else argv


def plan(config: ContainerConfig, host: Host, cid: str, seccomp: dict[str, Any] | None = None) -> GvisorPlan:
    """The machine's plan: the bundle to write, runsc run, and runsc's flags for kill and delete."""
    bundle = directory(cid, host.base)
    runsc = runsc_prefix(host, cid, config, seccomp is not None)
    doc = bundle_config(config, host, cid, seccomp)
    dirs, links, files = root_tree(config, host)
    write = gv.WriteBundle(directory=bundle, config=json.dumps(doc, indent=1, sort_keys=True),
                           root=posixpath.join(bundle, ROOT), dirs=dirs, links=links, files=files,
                           owner=root_owner(config, host), context=context_copy(config, host, bundle))
    pid_file = posixpath.join(bundle, "pid")
    bridged = config.network == network_rules.BRIDGE
    run = gv.RunSandbox(argv=(*runsc, "run", "--pid-file", pid_file, "--bundle", bundle, cid),
                        pid_file=pid_file, log=posixpath.join(bundle, LOG), stdin=config.interactive,
                        masked=NET_MASKED if bridged else ())
    return GvisorPlan(bundle=write, netns=netns(bundle), run=run, runsc=runsc, cid=cid)


def netns(bundle: str) -> gv.MakeNetns:
    """The network namespace's symlink and its holder's file, in the container's directory."""
    return gv.MakeNetns(link=posixpath.join(bundle, NETNS), holder=posixpath.join(bundle, HOLDER))


def context_copy(config: ContainerConfig, host: Host, bundle: str) -> v.CopyTree | None:
    """The context's filtered copy (what a native run's copy mode holds), in the bundle, every
    entry owned by the workload's user as the host sees it (none without --context-mode copy)."""
    src = host.copied
    if src is None:
        return None
    uid, gid = _ids(config.user)
    base = root_owner(config, host)
    return v.CopyTree(src.path, posixpath.join(bundle, CONTEXT), exclusion_list(), (base[0] + uid, base[1] + gid),
                      opened=src.fd, ignore=src.ignore, include=src.include, read_as=src.read_as,
                      identities=src.identities)


def network_machine(config: ContainerConfig, host: Host, cid: str) -> network.NetworkState:
    """The Network machine's initial state: a bridge's steps, as a native run's (none without)."""
    return network_plan.machine(host.network, cid, host.state_root, config.name or cid[:12])


def _host_users(config: ContainerConfig) -> bool:
    """Whether the bundle keeps the host's user namespace: with a network of runsc's own."""
    return config.network in (network_rules.HOST, network_rules.BRIDGE)


def root_owner(config: ContainerConfig, host: Host) -> tuple[int, int]:
    """The host ids of the container's root: its range's first, or the host's root with a
    network of runsc's own (no user namespace)."""
    return (0, 0) if _host_users(config) else (host.id_start, host.id_start)


def hostname(config: ContainerConfig, cid: str) -> str:
    return config.hostname or config.name or cid[:12]


def root_tree(config: ContainerConfig, host: Host
              ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The root directory's contents (relative paths): the mount points, the system directories'
    symlinks, and the generated /etc's files (unless a --rootfs brings its own /etc)."""
    dirs = ["proc", "dev", "sys", TMP.lstrip("/"), "run", config.home.lstrip("/")]
    links: list[tuple[str, str]] = []
    for path, target in host.system:
        if target:
            links.append((path.lstrip("/"), target))
        else:
            dirs.append(path.lstrip("/"))
    own_etc = _own_etc(host)
    files: list[tuple[str, str]] = []
    if not own_etc:
        dirs.append(ETC.lstrip("/"))
        links.extend((f"etc/{rel}", target) for rel, target in host.etc if target)
        dns = host.network.resolvers(config.dns)
        for op in _etc("", hostname(config, ""), users.generated(config.home), dns, config.extra_hosts):
            assert isinstance(op, v.WriteFile)
            files.append((op.path.lstrip("/"), op.content))
    dirs.extend(store_path.lstrip("/") for store_path in host.store_paths)
    for target in _mount_points(config, host):
        if target in host.files:
            files.append((target.lstrip("/"), ""))
        else:
            dirs.append(target.lstrip("/"))
    return tuple(dict.fromkeys(dirs)), tuple(links), tuple(files)


def _own_etc(host: Host) -> bool:
    """A --rootfs closure brings its own /etc: none is generated, nothing of the host's bound."""
    return any(p == ETC and not t for p, t in host.system)


def _mount_points(config: ContainerConfig, host: Host) -> list[str]:
    points = [f"{ETC}/{rel}" for rel, target in host.etc if not target and not _own_etc(host)]
    points += [target for _, target, _ in host.volumes] + [fs.target for fs in config.tmpfs]
    if host.context is not None or host.copied is not None:
        points.append(CONTEXT_MOUNT)
    return points


def bundle_config(config: ContainerConfig, host: Host, cid: str, seccomp: dict[str, Any] | None) -> dict[str, Any]:
    """config.json (runtime-spec 1.0.2) for `config`."""
    uid, gid = _ids(config.user)
    env = [f"{key}={value}" for key, value in {**host.network.environment(), **config.environment()}.items()]
    process: dict[str, Any] = {
        "terminal": False, "args": list(config.argv), "env": env, "cwd": config.effective_workdir,
        "user": {"uid": uid, "gid": gid},
        "capabilities": {name: [] for name in CAP_SETS},
        "noNewPrivileges": True,
        "rlimits": rlimits(config.limits),
    }
    namespaces: list[dict[str, str]] = [{"type": kind} for kind in ("pid", "mount", "ipc", "uts")]
    linux: dict[str, Any] = {"namespaces": namespaces}
    if config.network == network_rules.BRIDGE:
        namespaces.append({"type": "network", "path": posixpath.join(directory(cid, host.base), NETNS)})
    if not _host_users(config):
        # A network of runsc's own needs the host's user namespace: then the container's root
        # is the host's root to the gofer.
        id_map = [{"containerID": 0, "hostID": host.id_start, "size": ids.COUNT}]
        namespaces.extend([{"type": "user"}, {"type": "network"}])
        linux.update(uidMappings=id_map, gidMappings=id_map)
    if config.cgroup_namespace:
        namespaces.append({"type": "cgroup"})
    linux.update({
        "resources": resources(config.limits),
        "cgroupsPath": f"/{config.limits.cgroup_parent}/{cid}",
        "maskedPaths": [f"/proc/{name}" for name in PROC_MASKED],
        "readonlyPaths": [f"/proc/{name}" for name in PROC_READONLY],
    })
    if seccomp is not None:
        linux["seccomp"] = seccomp
    return {
        "ociVersion": OCI_VERSION, "process": process,
        "root": {"path": ROOT, "readonly": False},  # written in memory: runsc --overlay2 root:memory
        "hostname": hostname(config, cid), "mounts": mounts(config, host, cid), "linux": linux,
        "annotations": {"org.nucleus.runtime": "gvisor"},
    }


def _ids(user: str | None) -> tuple[int, int]:
    """The workload's uid and gid: -u UID[:GID] by number (the generated /etc/passwd names no
    one else); root by default."""
    if user is None:
        return 0, 0
    name, _, group = user.partition(":")
    uid = 0 if name == "root" else int(name)
    return uid, (int(group) if group else uid)


def rlimits(limits: Limits) -> list[dict[str, Any]]:
    """The rlimits a native run sets (soft = hard): NOFILE, NPROC (from --pids), MEMLOCK."""
    return [{"type": kind, "soft": value, "hard": value}
            for kind, value in (("RLIMIT_NOFILE", limits.nofile), ("RLIMIT_NPROC", limits.pids),
                                ("RLIMIT_MEMLOCK", limits.memlock))]


def resources(limits: Limits) -> dict[str, Any]:
    """The cgroup limits runsc applies to the sandbox's cgroup."""
    out: dict[str, Any] = {"pids": {"limit": limits.pids}}
    if limits.memory is not None:
        memory: dict[str, Any] = {"limit": limits.memory}
        memory["swap"] = limits.memory + (limits.swap or 0)
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if limits.cpus is not None:
        cpu.update(quota=int(limits.cpus * CFS_PERIOD), period=CFS_PERIOD)
    if limits.cpu_weight is not None:
        # cgroup v2's weight (1..10000) on cgroup v1's shares scale (2..262144), as runc does.
        cpu["shares"] = 2 + ((limits.cpu_weight - 1) * 262142) // 9999
    if cpu:
        out["cpu"] = cpu
    return out


def mounts(config: ContainerConfig, host: Host, cid: str = "") -> list[dict[str, Any]]:
    """The bundle's mounts: the kernel file systems, the system directories read-only, the host's
    /etc allowlist, the private tmpfs, then the volumes, --tmpfs and a bound context."""
    out: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "nodev", "noexec", "ro"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=65536k"]},
    ]
    for path, target in host.system:
        if target or path not in ROOTFS_DIRS or (path == "/nix" and host.store_paths):
            continue
        out.append(_bind(f"{host.rootfs.rstrip('/')}{path}" if host.rootfs else path, path, False))
    out.extend(_bind(store_path, store_path, False) for store_path in host.store_paths)
    if not _own_etc(host):
        out.extend(_bind(f"{ETC}/{rel}", f"{ETC}/{rel}", False) for rel, target in host.etc if not target)
    out.append(_tmpfs(TMP, TMP_SIZE))
    out.append(_tmpfs("/run", RUN_DATA))
    out.append(_tmpfs(config.home, HOME_DATA))
    out.extend(_bind(source, target, writable) for source, target, writable in host.volumes)
    out.extend(_tmpfs(fs.target, f"size={fs.size},mode={fs.mode:04o}") for fs in config.tmpfs)
    if host.copied is not None:  # the copy, the container's own: writable, gone with the bundle
        out.append(_bind(posixpath.join(directory(cid, host.base), CONTEXT), CONTEXT_MOUNT, True))
    elif host.context is not None:
        out.append(_bind(host.context, CONTEXT_MOUNT, False))
    return out


def _bind(source: str, target: str, writable: bool) -> dict[str, Any]:
    options = ["rbind", "rw", "nosuid", "nodev"] if writable else list(RO)
    return {"destination": target, "type": "bind", "source": source, "options": options}


def _tmpfs(target: str, data: str) -> dict[str, Any]:
    return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": [*SCRATCH, *data.split(",")]}
