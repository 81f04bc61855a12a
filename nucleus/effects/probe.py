"""Host facts, gathered once per command: the one place that looks at the host before a plan is
made. Everything here reads; nothing changes the host. The facts go to the pure checks (service
modes) and plans as a `nucleus.facts.HostFacts`.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace

from nucleus.config.container import ContainerConfig
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts

SYSTEM_DIRS = ("/bin", "/sbin", "/usr", "/lib", "/lib64", "/nix")
# From a --rootfs closure: its own /etc replaces the generated one.
ROOTFS_DIRS = SYSTEM_DIRS + ("/etc",)
STORE_PATHS_FILE = ".nucleus-rootfs-store-paths"

V2_REQUIRED = ("cpu", "memory", "pids")
V2_OPTIONAL = ("io",)
V1_REQUIRED = ("cpu", "memory", "pids")
V1_OPTIONAL = ("blkio", "cpuacct", "freezer")
V1_CONTROLLERS = frozenset({
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc",
    "net_cls", "net_prio", "perf_event", "pids", "rdma",
})


def state_root(euid: int, environ: Mapping[str, str] = os.environ) -> str:
    """The state directory: NUCLEUS_STATE_DIR (what --root sets), /run/nucleus for root, else
    $XDG_RUNTIME_DIR/nucleus or /tmp/nucleus-<uid>."""
    override = environ.get("NUCLEUS_STATE_DIR")
    if override:
        return override
    if euid == 0:
        return "/run/nucleus"
    runtime = environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "nucleus") if runtime else f"/tmp/nucleus-{euid}"


def own_pid() -> int:
    return os.getpid()


def own_uid() -> int:
    """The real uid of the caller: the creator recorded with a container."""
    return os.getuid()


def identity() -> HostFacts:
    """The facts every command needs: the architecture, the caller's ids and the state
    directory."""
    euid = os.geteuid()
    return HostFacts(arch=os.uname().machine, euid=euid, egid=os.getegid(), state_root=state_root(euid))


def for_run(config: ContainerConfig, *, modes_need: bool) -> HostFacts:
    """Everything a run's checks and plan need. `modes_need`: the service mode's host checks
    apply (Landlock ABI, seccomp filters, user namespaces, the lockdown mode when required)."""
    from nucleus.effects import hostcheck

    facts = identity()
    rootfs = os.path.realpath(config.rootfs) if config.rootfs else None
    system = system_dirs(rootfs)
    store = store_paths(rootfs) if rootfs else ()
    facts = replace(facts, system=system, store_paths=store, cgroups=cgroup_layout(),
                    rootfs_realpath=rootfs)
    if modes_need:
        facts = hostcheck.mode_facts(facts, lockdown=config.require_kernel_lockdown is not None)
    return facts


def system_dirs(rootfs: str | None = None) -> tuple[tuple[str, str], ...]:
    """Which system directories exist (on the host, or in the --rootfs closure): (path, symlink
    target), with "" for a directory."""
    found = []
    for path in ROOTFS_DIRS if rootfs else SYSTEM_DIRS:
        where = f"{rootfs}{path}" if rootfs else path
        try:
            st = os.lstat(where)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            found.append((path, os.readlink(where)))
        elif stat.S_ISDIR(st.st_mode):
            found.append((path, ""))
    return tuple(found)


def store_paths(rootfs: str) -> tuple[str, ...]:
    """The /nix/store paths a closure names in its STORE_PATHS_FILE (none without one); each
    must be a directory under /nix/store."""
    try:
        with open(os.path.join(rootfs, STORE_PATHS_FILE)) as f:
            paths = tuple(sorted({line.strip() for line in f if line.strip()}))
    except FileNotFoundError:
        return ()
    for path in paths:
        if not path.startswith("/nix/store/") or ".." in path.split("/") or not os.path.isdir(path):
            raise InvalidInput(f"--rootfs {rootfs!r}: {STORE_PATHS_FILE} names {path!r}, "
                               "which is not a directory under /nix/store")
    return paths


def directory(flag: str, value: str | None, hint: str) -> str | None:
    """A directory named by a flag must exist; returns its absolute real path."""
    if value is None:
        return None
    path = os.path.realpath(value)
    if not os.path.exists(path):
        raise InvalidInput(f"{flag} {value!r}: no such directory", hint=hint)
    if not os.path.isdir(path):
        raise InvalidInput(f"{flag} {value!r}: not a directory")
    return path


def writable_file(flag: str, path: str | None) -> None:
    """A file written when the run ends (--trace): where it goes must be writable now."""
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InvalidInput(f"{flag} {path!r}: no such directory {parent!r}",
                           hint="create the directory first, or write the trace elsewhere")
    if os.path.isdir(path):
        raise InvalidInput(f"{flag} {path!r}: is a directory", hint="name a file to write the trace to")
    if not os.access(parent, os.W_OK):
        raise InvalidInput(f"{flag} {path!r}: directory {parent!r} is not writable")


# --- cgroups --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    root: str
    point: str
    fstype: str
    options: tuple[str, ...]


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mounts(text: str) -> list[_Mount]:
    """cgroup and cgroup2 mounts from mountinfo, in mount order; a later mount on the same
    point or above it hides the earlier ones."""
    by_point: dict[str, _Mount] = {}
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 4:
            continue
        point = _unescape(fields[4])
        fstype = fields[sep + 1]
        above = point.rstrip("/") + "/"
        by_point = {p: m for p, m in by_point.items() if p != point and not p.startswith(above)}
        if fstype in ("cgroup", "cgroup2"):
            by_point[point] = _Mount(_unescape(fields[3]), point, fstype,
                                     tuple(fields[sep + 3].split(",")))
    return list(by_point.values())


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _read(path: str) -> str | None:
    from nucleus.effects.cgroups import FILES

    try:
        return FILES.read(path)
    except FileNotFoundError:
        return None


def cgroup_layout(mountinfo_path: str = "/proc/self/mountinfo", root: str = "/sys/fs/cgroup") -> CgroupLayout:
    """Which backend to use: mounts under ``root`` are preferred, then mounts of a hierarchy's
    own root ("/")."""
    text = _read(mountinfo_path)
    if text is None:
        return CgroupLayout(reason=f"{mountinfo_path} is missing")
    mounts = sorted(_mounts(text), key=lambda m: (not _under(m.point, root), m.root != "/"))
    unified: str | None = None
    offered: list[str] = []
    for m in (m for m in mounts if m.fstype == "cgroup2"):
        controllers = _read(os.path.join(m.point, "cgroup.controllers"))
        if controllers is None:
            continue
        available = controllers.split()
        if unified is None:
            unified, offered = m.point, available
        if all(c in available for c in V2_REQUIRED):
            enabled = (_read(os.path.join(m.point, "cgroup.subtree_control")) or "").split()
            wanted = set(V2_REQUIRED) | {c for c in V2_OPTIONAL if c in available and c in enabled}
            return CgroupLayout(
                "v2", ((UNIFIED, m.point),), tuple(sorted(wanted)), tuple(sorted(enabled)),
                # A root lists memory.swap.* only where swap is accounted; a child always would.
                swap_accounting=None, unified=m.point,
                reason=f"cgroup2 at {m.point} offers {' '.join(sorted(available))}")
    if unified is None:
        v2_note = "no cgroup2 mount"
    else:
        v2_note = f"cgroup2 at {unified} offers {' '.join(sorted(offered)) or 'no controllers'}"
    v1: dict[str, str] = {}
    for m in (m for m in mounts if m.fstype == "cgroup"):
        for option in m.options:
            if option in V1_CONTROLLERS and option not in v1:
                v1[option] = m.point
    missing = [c for c in V1_REQUIRED if c not in v1]
    if missing:
        return CgroupLayout(unified=unified, reason=(
            f"no cgroup v1 hierarchy for {', '.join(missing)} in {mountinfo_path}; {v2_note}"))
    used = {c: v1[c] for c in V1_REQUIRED + V1_OPTIONAL if c in v1}
    memsw = os.path.join(used["memory"], "memory.memsw.limit_in_bytes")
    return CgroupLayout(
        "v1", tuple(sorted(used.items())), tuple(sorted(used)),
        swap_accounting=_read(memsw) is not None, unified=unified,
        reason=f"cgroup v1 hierarchies for {' '.join(sorted(used))}; {v2_note}")


def cgroup_stats(backend: str, dirs: Mapping[str, str]) -> dict[str, int | None]:
    """A container's memory, CPU and process figures, from its cgroup's files."""
    from nucleus.effects import cgroups

    return cgroups.stats(cgroups.Cgroup(backend, dirs))
