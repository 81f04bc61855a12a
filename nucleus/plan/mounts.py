"""The mount plan for an agent-mode root filesystem, as data (a tuple of FsOp intents).

Pure: the host facts it needs (which system directories exist, which are symlinks) arrive in
`HostLayout`, gathered by the caller before planning.
"""

from __future__ import annotations

from dataclasses import dataclass

from nucleus import vocab as v
from nucleus.config.container import CONTEXT_MOUNT, ContainerConfig
from nucleus.config.context import DEFAULT_CONTEXT_SIZE, ContextSource, exclusion_list

SYSTEM_DIRS = ("/bin", "/sbin", "/usr", "/lib", "/lib64", "/nix")
# From a --rootfs closure: its own /etc replaces the generated one.
ROOTFS_DIRS = SYSTEM_DIRS + ("/etc",)
STORE_PATHS_FILE = ".nucleus-rootfs-store-paths"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
RO = ("rdonly", "nosuid", "nodev")

# /proc entries hidden behind /dev/null (files) or an empty read-only tmpfs (directories).
PROC_MASKED = (
    "kcore", "kallsyms", "sysrq-trigger", "keys", "key-users", "timer_list", "timer_stats",
    "sched_debug", "latency_stats", "config.gz", "kpagecount", "kpageflags", "kpagecgroup",
    "kmsg", "acpi", "scsi", "asound", "firmware",
)
# /proc subtrees made read-only on their own (the whole /proc is read-only as well).
PROC_READONLY = ("sys", "irq", "bus", "fs")


@dataclass(frozen=True)
class HostLayout:
    """Facts about the host's system directories: path -> symlink target, or "" for a directory."""

    system: tuple[tuple[str, str], ...]  # with a --rootfs: its entries, relative to its root
    rootfs_dir: str  # where the new root is assembled (a mount point in the private namespace)
    owner: tuple[int, int]  # container root's ids as the mounting process names them
    hidepid: int = 0  # /proc's hidepid= (2 in production: other users' processes are invisible)
    rootfs: str | None = None  # a --rootfs closure to take the system directories from
    store_paths: tuple[str, ...] = ()  # the closure's /nix/store paths, bound one by one
    context_manifest: tuple[tuple[str, str], ...] | None = None  # --verify-context-integrity
    context: ContextSource | None = None  # the context as opened and measured before the run


def _hosts(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"


def _passwd(home: str) -> str:
    return (
        f"root:x:0:0:root:{home}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )


def plan(spec: ContainerConfig, layout: HostLayout, hostname: str) -> tuple[v.Intent, ...]:
    r = layout.rootfs_dir.rstrip("/")
    uid, gid = layout.owner
    home = spec.home
    ops: list[v.Intent] = [
        v.SetPropagation("/", "private", True),
        v.MountFs("tmpfs", r, ("nosuid", "nodev"), f"size={spec.rootfs_size},mode=0755"),
    ]
    own_etc = layout.rootfs is not None and any(p == "/etc" and not t for p, t in layout.system)
    dirs = ["dev", "proc", "tmp", "run", home.lstrip("/"), CONTEXT_MOUNT.lstrip("/")]
    if not own_etc:
        dirs.append("etc")
    links: list[tuple[str, str]] = []
    binds: list[v.Intent] = []
    for path, target in layout.system:
        rel = path.lstrip("/")
        if target:
            links.append((rel, target))
            continue
        dirs.append(rel)
        if rel == "nix" and layout.store_paths:
            continue  # only the closure's store paths, below
        source = f"{layout.rootfs.rstrip('/')}/{rel}" if layout.rootfs else path
        binds.append(v.BindMount(source, f"{r}/{rel}", RO, recursive=True))
    for store_path in layout.store_paths:
        rel = store_path.lstrip("/")
        dirs.append(rel)
        binds.append(v.BindMount(store_path, f"{r}/{rel}", RO, recursive=True))
    ops.append(v.MakeDirs(r, tuple(dirs), 0o755))
    if links:
        ops.append(v.MakeSymlinks(r, tuple(links)))
    ops.extend(binds)

    # Configuration the workload expects to find (read-only with the root), unless the rootfs
    # brings its own /etc.
    if not own_etc:
        ops.extend(_etc(r, hostname, home))
    _rest(ops, spec, layout, r, uid, gid, home)
    return tuple(ops)


def _etc(r: str, hostname: str, home: str) -> list[v.Intent]:
    return [
        v.WriteFile(f"{r}/etc/hostname", hostname + "\n"),
        v.WriteFile(f"{r}/etc/hosts", _hosts(hostname)),
        v.WriteFile(f"{r}/etc/passwd", _passwd(home)),
        v.WriteFile(f"{r}/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        v.WriteFile(f"{r}/etc/resolv.conf", ""),
        v.WriteFile(f"{r}/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"),
    ]


def _rest(ops: list[v.Intent], spec: ContainerConfig, layout: HostLayout, r: str, uid: int, gid: int,
          home: str) -> None:

    # The context: a private writable copy on its own tmpfs (of --context-size), or the host
    # tree bound read-only, nosuid and nodev to its last submount. Both take the directory
    # from the descriptor opened before the run (see nucleus.config.context).
    ctx = f"{r}{CONTEXT_MOUNT}"
    if spec.context is not None:
        src = layout.context
        opened = src.fd if src is not None else -1
        if spec.context_mode == "bind":
            ops.append(v.BindMount(spec.context, ctx, RO, recursive=True, opened=opened))
        else:
            size = spec.context_size or DEFAULT_CONTEXT_SIZE
            ops.append(v.MountFs("tmpfs", ctx, ("nosuid", "nodev"),
                                 f"size={size},mode=0755,uid={uid},gid={gid}"))
            ops.append(v.CopyTree(
                spec.context, ctx, exclusion_list(), (uid, gid), opened=opened,
                ignore=src.ignore if src else (), include=src.include if src else (),
                read_as=src.read_as if src else -1, identities=src.identities if src else ()))
            if layout.context_manifest is not None:
                ops.append(v.VerifyTree(ctx, layout.context_manifest))

    # A minimal /dev: the usual character devices bound from the host, a private devpts, shm.
    dev = f"{r}/dev"
    ops.append(v.MountFs("tmpfs", dev, ("nosuid", "noexec"), "size=64k,mode=0755"))
    ops.extend(v.BindMount(f"/dev/{d}", f"{dev}/{d}", ("nosuid", "noexec")) for d in DEVICES)
    ops.append(v.MakeDirs(dev, ("pts", "shm"), 0o755))
    ops.append(v.MountFs("devpts", f"{dev}/pts", ("nosuid", "noexec"),
                         "newinstance,ptmxmode=0666,mode=0620"))
    ops.append(v.MountFs("tmpfs", f"{dev}/shm", ("nosuid", "nodev", "noexec"),
                         f"size=67108864,mode=1777,uid={uid},gid={gid}"))
    ops.append(v.MakeSymlinks(dev, (
        ("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
    )))
    ops.append(v.RemountFs(dev, ("rdonly", "nosuid", "noexec")))

    # /proc of the new PID namespace, sensitive entries masked, then all of it read-only.
    proc = f"{r}/proc"
    ops.append(v.MountFs("proc", proc, ("nosuid", "nodev", "noexec"),
                         f"hidepid={layout.hidepid}" if layout.hidepid else ""))
    ops.append(v.MaskPaths(proc, PROC_MASKED, PROC_READONLY))
    ops.append(v.RemountFs(proc, ("rdonly", "nosuid", "nodev", "noexec"), bind=True))

    # Writable scratch space, never executable.
    ops.append(v.MountFs("tmpfs", f"{r}/tmp", ("nosuid", "nodev", "noexec"), "size=536870912,mode=1777"))
    ops.append(v.MountFs("tmpfs", f"{r}{home}", ("nosuid", "nodev", "noexec"),
                         f"size=268435456,mode=0700,uid={uid},gid={gid}"))
    # The root itself is read-only: everything writable is a mount of its own.
    ops.append(v.RemountFs(r, ("rdonly", "nosuid", "nodev")))
