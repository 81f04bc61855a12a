"""The mount plan for an agent-mode root filesystem, as data (a tuple of FsOp intents).

Pure: the host facts it needs (which system directories exist, which are symlinks) arrive in
`HostLayout`, gathered by the caller before planning.
"""

from __future__ import annotations

from nucleus import vocab as v
from nucleus.config import secrets as secret_rules
from nucleus.config import tmpfs as tmpfs_rules
from nucleus.config.container import CONTEXT_MOUNT, ContainerConfig
from nucleus.config.context import DEFAULT_CONTEXT_SIZE, ContextSource, exclusion_list
from nucleus.config.host_etc import ETC
from nucleus.config.volumes import VolumeSource
from nucleus.config.workspace import TMP, noexec, opened_below
from nucleus.frozen import frozen
from nucleus.plan import users

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


@frozen
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
    etc: tuple[tuple[str, str], ...] = ()  # the host's /etc entries to bind (HostFacts.etc)
    # The workload's uid and gid inside (-u): its home and a copied context are its own.
    user: tuple[int, int] = (0, 0)
    # The generated /etc/passwd and /etc/group (nucleus.plan.users; None: root and nobody).
    accounts: tuple[str, str] | None = None
    etc_masked: tuple[str, ...] = ()  # ... and the secrets inside them to mask
    volumes: tuple[VolumeSource, ...] = ()  # -v, as opened before the run
    keep_context: bool = False  # hand the supervisor the copied context (--changes, a detached run)
    dns: tuple[str, ...] = ()  # --dns: the resolvers /etc/resolv.conf names (none: an empty file)
    # --tmpfs: (path inside, mount data with its owner's ids as the mounting process names them).
    tmpfs: tuple[tuple[str, str], ...] = ()


def _hosts(hostname: str, extra: tuple[tuple[str, str], ...] = ()) -> str:
    return (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            + "".join(f"{address}\t{name}\n" for name, address in extra))


def plan(spec: ContainerConfig, layout: HostLayout, hostname: str) -> tuple[v.Intent, ...]:
    r = layout.rootfs_dir.rstrip("/")
    # The workload's ids as the mounting process names them (container root's plus its own).
    uid, gid = layout.owner[0] + layout.user[0], layout.owner[1] + layout.user[1]
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
        ops.extend(_etc(r, hostname, layout.accounts or users.generated(home), layout.dns, spec.extra_hosts))
        ops.extend(_host_etc(r, layout))
    _rest(ops, spec, layout, r, uid, gid, home)
    return tuple(ops)


def _etc(r: str, hostname: str, accounts: tuple[str, str], dns: tuple[str, ...] = (),
         extra_hosts: tuple[tuple[str, str], ...] = ()) -> list[v.Intent]:
    files: list[v.Intent] = [
        v.WriteFile(f"{r}/etc/hostname", hostname + "\n"),
        v.WriteFile(f"{r}/etc/hosts", _hosts(hostname, extra_hosts)),
        v.WriteFile(f"{r}/etc/passwd", accounts[0]),
        v.WriteFile(f"{r}/etc/group", accounts[1]),
        v.WriteFile(f"{r}/etc/resolv.conf", "".join(f"nameserver {a}\n" for a in dns)),
        v.WriteFile(f"{r}/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"),
    ]
    if _repeated(extra_hosts):
        files.append(v.WriteFile(f"{r}/etc/host.conf", "multi on\n"))
    return files


def _repeated(extra_hosts: tuple[tuple[str, str], ...]) -> bool:
    """Whether a name has several addresses (--add-host, a replicated service's): then
    /etc/host.conf says `multi on`, so that the name resolves to all of them, not the first."""
    names = [name for name, _ in extra_hosts]
    return len(set(names)) < len(names)


def _host_etc(r: str, layout: HostLayout) -> list[v.Intent]:
    """The host's /etc entries the allowlist chose (nucleus.config.host_etc): symlinks made
    again as themselves, the rest bound read-only from the host, never through a symlink; then
    the secrets inside them masked."""
    etc = f"{r}{ETC}"
    links = tuple((rel, target) for rel, target in layout.etc if target)
    ops: list[v.Intent] = [v.MakeSymlinks(etc, links)] if links else []
    ops.extend(v.BindMount(f"{ETC}/{rel}", f"{etc}/{rel}", RO, recursive=True, beneath=ETC)
               for rel, target in layout.etc if not target)
    if layout.etc_masked:
        ops.append(v.MaskPaths(etc, layout.etc_masked))
    return ops


SCRATCH = ("nosuid", "nodev")


def _scratch(spec: ContainerConfig, r: str, place: str, data: str, owner: tuple[int, int],
             fill: tuple[v.Intent, ...] = ()) -> list[v.Intent]:
    """A writable place: its tmpfs (`data`), filled by `fill`, noexec unless the workspace rules
    make it executable (nucleus.config.workspace). A directory below it that --allow-exec
    names keeps exec on a mount of its own: bound onto itself (made first, owned by the
    container's root, unless `fill` brought it) before the place is remounted noexec."""
    target = f"{r}{place}"
    closed = place in noexec(spec)
    below = opened_below(spec, place) if closed else ()
    flags = SCRATCH + (("noexec",) if closed and not below else ())
    ops: list[v.Intent] = [v.MountFs("tmpfs", target, flags, data), *fill]
    for path in below:
        rel = path[len(place):].strip("/")
        if not fill:  # a fresh tmpfs: nothing there can be a symlink yet
            parts = rel.split("/")
            ops.append(v.MakeDirs(target, tuple("/".join(parts[:i + 1]) for i in range(len(parts))),
                                  0o755, owner))
        ops.append(v.BindMount(f"{target}/{rel}", f"{target}/{rel}", SCRATCH, beneath=target))
    if below:
        ops.append(v.RemountFs(target, SCRATCH + ("noexec",), bind=True))
    return ops


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
            fill: list[v.Intent] = [v.CopyTree(
                spec.context, ctx, exclusion_list(), (uid, gid), opened=opened,
                ignore=src.ignore if src else (), include=src.include if src else (),
                read_as=src.read_as if src else -1, identities=src.identities if src else ())]
            if layout.context_manifest is not None:
                fill.append(v.VerifyTree(ctx, layout.context_manifest))
            ops.extend(_scratch(spec, r, CONTEXT_MOUNT, f"size={size},mode=0755,uid={uid},gid={gid}",
                                (uid, gid), tuple(fill)))
            if layout.keep_context:
                ops.append(v.KeepTree(ctx))

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
    # Kernel parameters of the container's own namespaces, while /proc/sys is still writable.
    ops.extend(v.WriteSysctl(proc, key, value) for key, value in spec.sysctls)
    ops.append(v.MaskPaths(proc, PROC_MASKED, PROC_READONLY))
    ops.append(v.RemountFs(proc, ("rdonly", "nosuid", "nodev", "noexec"), bind=True))

    # Writable scratch space: /tmp, and the home directory (executable in agent mode).
    ops.extend(_scratch(spec, r, TMP, "size=536870912,mode=1777", (uid, gid)))
    ops.extend(_scratch(spec, r, home, f"size=268435456,mode=0700,uid={uid},gid={gid}", (uid, gid)))
    # Volumes, last: their mount points are made in what nucleus mounted (nucleus.config.volumes).
    ops.extend(v.MountVolume(src.path, f"{r}{src.target}", src.flags, src.fd, src.userns, src.idmap)
               for src in layout.volumes)
    for target, data in layout.tmpfs:
        ops.append(v.MakeDirs(r, (target.lstrip("/"),), 0o755))
        ops.append(v.MountFs("tmpfs", f"{r}{target}", tmpfs_rules.MOUNT_FLAGS, data))
    ops.extend(_secrets(spec.secrets, r, uid, gid))
    # The root itself is read-only: everything writable is a mount of its own.
    ops.append(v.RemountFs(r, ("rdonly", "nosuid", "nodev")))


SECRET_FLAGS = ("nosuid", "nodev", "noexec")


def _secrets(secrets: tuple[secret_rules.Secret, ...], r: str, uid: int, gid: int) -> list[v.Intent]:
    """--secret: a tmpfs at /run/secrets (0500, the workload's), a file 0400 of its own for
    each (written from what the supervisor read, never from an intent), read-only once
    filled; a DEST elsewhere is that file bound there read-only."""
    if not secrets:
        return []
    where = f"{r}{secret_rules.SECRETS_DIR}"
    ops: list[v.Intent] = [
        v.MakeDirs(r, (secret_rules.SECRETS_DIR.lstrip("/"),), 0o755),
        v.MountFs("tmpfs", where, SECRET_FLAGS, f"size={secret_rules.TMPFS_SIZE},mode=0500,uid={uid},gid={gid}"),
    ]
    ops.extend(v.WriteSecret(f"{where}/{s.name}", i, 0o400, (uid, gid)) for i, s in enumerate(secrets))
    ops.append(v.RemountFs(where, ("rdonly", *SECRET_FLAGS)))
    ops.extend(v.BindSecret(f"{where}/{s.name}", r, s.dest, ("rdonly", *SECRET_FLAGS))
               for s in secrets if s.bound)
    return ops
