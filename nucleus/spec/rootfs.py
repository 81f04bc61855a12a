"""The mount plan for an agent-mode root filesystem, as data (a tuple of FsOp intents).

Pure: the host facts it needs (which system directories exist, which are symlinks) arrive in
`HostLayout`, gathered by the caller before planning.
"""

from __future__ import annotations

from dataclasses import dataclass

from nucleus import vocab as v
from nucleus.spec.container import CONTEXT_MOUNT, ContainerSpec
from nucleus.spec.context import exclusion_list

SYSTEM_DIRS = ("/bin", "/sbin", "/usr", "/lib", "/lib64", "/nix")
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

    system: tuple[tuple[str, str], ...]
    rootfs_dir: str  # where the new root is assembled (a mount point in the private namespace)
    owner: tuple[int, int]  # container root's ids as the mounting process names them


def _hosts(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"


def _passwd(home: str) -> str:
    return (
        f"root:x:0:0:root:{home}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )


def plan(spec: ContainerSpec, layout: HostLayout, hostname: str) -> tuple[v.Intent, ...]:
    r = layout.rootfs_dir.rstrip("/")
    uid, gid = layout.owner
    home = spec.home
    ops: list[v.Intent] = [
        v.SetPropagation("/", "private", True),
        v.MountFs("tmpfs", r, ("nosuid", "nodev"), f"size={spec.rootfs_size},mode=0755"),
    ]
    dirs = ["dev", "proc", "tmp", "etc", "run", home.lstrip("/"), CONTEXT_MOUNT.lstrip("/")]
    links: list[tuple[str, str]] = []
    binds: list[v.Intent] = []
    for path, target in layout.system:
        rel = path.lstrip("/")
        if target:
            links.append((rel, target))
        else:
            dirs.append(rel)
            binds.append(v.BindMount(path, f"{r}/{rel}", RO, recursive=True))
    ops.append(v.MakeDirs(r, tuple(dirs), 0o755))
    if links:
        ops.append(v.MakeSymlinks(r, tuple(links)))
    ops.extend(binds)

    # Configuration the workload expects to find (read-only with the root).
    ops.extend([
        v.WriteFile(f"{r}/etc/hostname", hostname + "\n"),
        v.WriteFile(f"{r}/etc/hosts", _hosts(hostname)),
        v.WriteFile(f"{r}/etc/passwd", _passwd(home)),
        v.WriteFile(f"{r}/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        v.WriteFile(f"{r}/etc/resolv.conf", ""),
        v.WriteFile(f"{r}/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"),
    ])

    # The context: a private writable copy on its own tmpfs, or the host tree bound read-only.
    ctx = f"{r}{CONTEXT_MOUNT}"
    if spec.context is not None:
        if spec.context_mode == "bind":
            ops.append(v.BindMount(spec.context, ctx, RO, recursive=True))
        else:
            ops.append(v.MountFs("tmpfs", ctx, ("nosuid", "nodev"),
                                 f"size={spec.rootfs_size},mode=0755,uid={uid},gid={gid}"))
            ops.append(v.CopyTree(spec.context, ctx, exclusion_list(), (uid, gid)))

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
    ops.append(v.MountFs("proc", proc, ("nosuid", "nodev", "noexec")))
    ops.append(v.MaskPaths(proc, PROC_MASKED, PROC_READONLY))
    ops.append(v.RemountFs(proc, ("rdonly", "nosuid", "nodev", "noexec"), bind=True))

    # Writable scratch space, never executable.
    ops.append(v.MountFs("tmpfs", f"{r}/tmp", ("nosuid", "nodev", "noexec"), "size=536870912,mode=1777"))
    ops.append(v.MountFs("tmpfs", f"{r}{home}", ("nosuid", "nodev", "noexec"),
                         f"size=268435456,mode=0700,uid={uid},gid={gid}"))
    # The root itself is read-only: everything writable is a mount of its own.
    ops.append(v.RemountFs(r, ("rdonly", "nosuid", "nodev")))
    return tuple(ops)
