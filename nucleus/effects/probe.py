"""Host facts, gathered once per command: the one place that looks at the host before a plan is
made. Everything here reads; nothing changes the host. The facts go to the pure checks (service
modes) and plans as a `nucleus.facts.HostFacts`.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections.abc import Mapping
from dataclasses import replace

from nucleus.config import context as context_rules
from nucleus.config import host_etc as etc_rules
from nucleus.config.container import ContainerConfig
from nucleus.config.context import FollowedLink, PathDir, Resolved
from nucleus.config.hostpaths import HostPath
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts, SubordinateRange
from nucleus.frozen import frozen

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


def owner_of(path: str) -> int | None:
    """The uid that owns ``path`` (not followed if it is a symbolic link); None when it is gone."""
    try:
        return os.lstat(path).st_uid
    except OSError:
        return None


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
    facts = identity()
    rootfs = os.path.realpath(config.rootfs) if config.rootfs else None
    system = system_dirs(rootfs)
    store = store_paths(rootfs) if rootfs else ()
    etc, etc_masked = host_etc() if rootfs is None else ((), ())
    facts = replace(facts, system=system, store_paths=store, cgroups=cgroup_layout(),
                    rootfs_realpath=rootfs, etc=etc, etc_masked=etc_masked)
    if rootfs is not None and ("/etc", "") in system:
        facts = replace(facts, rootfs_accounts=closure_accounts(rootfs))
    facts = limit_facts(facts, config)
    if facts.euid == 0 and not config.rootless:
        facts = replace(facts, subordinate_ids=subordinate_ids())
    if modes_need:
        from nucleus.effects import hostcheck  # only the modes that check the host

        facts = hostcheck.mode_facts(facts, lockdown=config.require_kernel_lockdown is not None)
    if config.network == "bridge":
        from nucleus.effects import nat

        facts = replace(facts, routes=routes(), nat_backend=nat.chosen(config.bridge.nat_backend))
    if config.network == "user":
        from nucleus.effects import nat

        found = ((name, nat.tool(name)) for name in ("pasta", "slirp4netns"))
        facts = replace(facts, user_stacks=tuple((name, path) for name, path in found if path),
                        nft=nat.tool("nft") or "")
    return facts


def routes() -> tuple[tuple[str, str], ...]:
    """The routes of this network namespace's main table, IPv4 and IPv6: (destination
    network, link)."""
    import contextlib
    import ipaddress
    import socket

    found: list[tuple[str, str]] = []
    with contextlib.suppress(OSError), open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8:
                dest, mask = (socket.inet_ntoa(int(x, 16).to_bytes(4, "little")) for x in (parts[1], parts[7]))
                found.append((str(ipaddress.ip_network(f"{dest}/{mask}", strict=False)), parts[0]))
    with contextlib.suppress(OSError), open("/proc/net/ipv6_route") as f:
        for line in f.read().splitlines():
            parts = line.split()
            if len(parts) >= 10 and parts[9] != "lo":
                dest6 = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
                found.append((str(ipaddress.ip_network(f"{dest6}/{int(parts[1], 16)}", strict=False)), parts[9]))
    return tuple(found)


SUBORDINATE_FILES = ("/etc/subuid", "/etc/subgid")


def subordinate_ids(files: tuple[str, ...] = SUBORDINATE_FILES) -> tuple[SubordinateRange, ...]:
    """The ranges /etc/subuid and /etc/subgid give users ("name:start:count" lines; a missing
    file gives none; a line that does not parse is passed over, as shadow-utils does)."""
    found = []
    for path in files:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
                found.append(SubordinateRange(path, parts[0], int(parts[1]), int(parts[2])))
    return tuple(found)


def system_dirs(rootfs: str | None = None) -> tuple[tuple[str, str], ...]:
    """Which system directories exist (on the host, or in the --rootfs closure): (path, symlink
    target), with "" for a directory."""
    found = []
    for path in ROOTFS_DIRS if rootfs else SYSTEM_DIRS:
        entry = _entry(f"{rootfs}{path}" if rootfs else path)
        if entry is not None and (entry[1] or stat.S_ISDIR(entry[0])):
            found.append((path, entry[1]))
    return tuple(found)


def _entry(path: str) -> tuple[int, str] | None:
    """The mode of the entry at `path`, not followed, and its target if it is a symlink ("" if
    not); None when nothing is there."""
    try:
        st = os.lstat(path)
        return st.st_mode, os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    except FileNotFoundError:
        return None


def host_etc(root: str = etc_rules.ETC) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The entries of the host's /etc that nucleus.config.host_etc allows, each reached without
    following a symlink: (path relative to /etc, symlink target or "" for a directory or file);
    and the entries inside the chosen directories that its secret rules mask, sorted."""
    entries: list[tuple[str, str]] = []
    masked: list[str] = []
    for pattern, _ in etc_rules.ALLOWLIST:
        *parents, last = pattern.split("/")
        where = os.path.join(root, *parents)
        if not all(_is_dir(os.path.join(root, *parents[:i + 1])) for i in range(len(parents))):
            continue  # a parent missing, or a symlink: never followed
        try:
            names = os.listdir(where) if etc_rules.is_glob(last) else [last]
        except OSError:
            continue
        for name in etc_rules.chosen(names, last):
            rel = posixpath.join(*parents, name)
            entry = _entry(os.path.join(where, name))
            if entry is None or not (entry[1] or stat.S_ISDIR(entry[0]) or stat.S_ISREG(entry[0])):
                continue
            entries.append((rel, entry[1]))
            if not entry[1] and stat.S_ISDIR(entry[0]):
                masked.extend(_masked_below(os.path.join(where, name), rel))
    return tuple(entries), tuple(sorted(masked))


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _masked_below(top: str, rel: str) -> list[str]:
    """The entries below the directory `top` (at `rel` in /etc) that a secret rule masks, by
    name or (a regular file) by its first bytes. Symlinks are passed over: inside the container
    they reach only what is bound. What this process cannot read is passed over too: the
    container's users can read no more of it."""
    out: list[str] = []
    stack = [(top, rel)]
    while stack:
        where, at = stack.pop()
        try:
            with os.scandir(where) as listing:
                found = list(listing)
        except OSError:
            continue
        for entry in found:
            sub = f"{at}/{entry.name}"
            if entry.is_symlink():
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if etc_rules.secret(sub, entry.name, is_dir):
                out.append(sub)
            elif is_dir:
                stack.append((entry.path, sub))
            elif entry.is_file(follow_symlinks=False) and _key_inside(entry, sub):
                out.append(sub)
    return out


# What _key_inside found in a file, by the file's identity and change time: a resident server
# (nucleus serve) reads /etc's files once, and again only those changed since (a write, chmod
# or rename changes st_ctime, which no unprivileged caller can set back).
_KEYS_SEEN: dict[tuple[str, int, int, int, int, int], bool] = {}
_KEYS_KEPT = 4096


def _key_inside(entry: os.DirEntry[str], rel: str) -> bool:
    try:
        st = entry.stat(follow_symlinks=False)
        size = etc_rules.content_bytes(rel, entry.name, st.st_size)
        if not size:
            return False
        seen = (entry.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if seen in _KEYS_SEEN:
            return _KEYS_SEEN[seen]
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # Still a regular file (never read a device or FIFO swapped in since the listing), and
        # still the one listed.
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            return False
        found = etc_rules.secret_content(os.pread(fd, size, 0)) is not None
        if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns, now.st_ctime_ns) == seen[1:]:
            if len(_KEYS_SEEN) >= _KEYS_KEPT:
                _KEYS_SEEN.clear()
            _KEYS_SEEN[seen] = found
        return found
    except OSError:
        return False
    finally:
        os.close(fd)


ACCOUNT_FILES = ("passwd", "group")
MAX_ACCOUNT_BYTES = 1 << 20


def closure_accounts(rootfs: str) -> tuple[str, str, str]:
    """A closure's etc/passwd and etc/group as text (-u's names are looked up there), read by
    descriptor: etc opened in the closure and each file in etc, never through a symlink (one
    could lead out of the closure), each a regular file of at most 1 MiB. A file that cannot
    be read so is left empty, and the third item says why."""
    texts: list[str] = []
    problems: list[str] = []
    try:
        top = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        return "", "", f"{rootfs}: {e.strerror}"
    try:
        etc = os.open("etc", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
    except OSError as e:
        return "", "", f"{rootfs}/etc: {e.strerror}"
    finally:
        os.close(top)
    try:
        for name in ACCOUNT_FILES:
            texts.append(_account_file(etc, name, f"{rootfs}/etc/{name}", problems))
    finally:
        os.close(etc)
    return texts[0], texts[1], "; ".join(problems)


def _account_file(etc: int, name: str, shown: str, problems: list[str]) -> str:
    from nucleus.effects.prepare import read_regular

    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                     dir_fd=etc)
    except OSError as e:
        problems.append(f"{shown} is a symbolic link, which is never followed" if e.errno == errno.ELOOP
                        else f"{shown}: {e.strerror}")
        return ""
    try:
        data = read_regular(fd, MAX_ACCOUNT_BYTES)
    except OSError as e:
        problems.append(f"{shown}: {e.strerror}")
        return ""
    finally:
        os.close(fd)
    if data is None or len(data) > MAX_ACCOUNT_BYTES:
        problems.append(f"{shown} is not a regular file of at most 1 MiB")
        return ""
    return data.decode(errors="replace")


def store_paths(rootfs: str) -> tuple[str, ...]:
    """The /nix/store paths a closure names in its STORE_PATHS_FILE (none without one), read
    without following a symlink; each must be a directory under /nix/store."""
    from nucleus.effects import attestation

    paths = attestation.store_paths(rootfs) or ()
    for path in paths:
        if not os.path.isdir(path) or os.path.islink(path):
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


# --- the context ----------------------------------------------------------------------------------

_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # as the kernel's own path walk


def context(value: str, hint: str) -> tuple[Resolved, int]:
    """--context resolved once, one component at a time: each directory opened (O_PATH,
    without following symlinks) relative to the one before, each symlink read and recorded
    (who owns it and the directory holding it) before its target is walked, ".." taken as the
    kernel takes it. Returns the facts the pure checks need (nucleus.config.context.refusal)
    and an O_PATH descriptor of the directory found, which is the context from then on: nothing
    looks `value` up again. Refuses a path that does not lead to a directory."""
    flag = context_rules.FLAG
    path = value if value.startswith("/") else os.path.join(os.getcwd(), value)
    parts = [p for p in path.split("/") if p]
    parts.reverse()  # a stack: the next component last
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    root = _path_dir("/", os.fstat(fd))
    chain = [root]
    links: list[FollowedLink] = []
    try:
        while parts:
            name = parts.pop()
            if name == ".":
                continue
            if name == "..":
                if len(chain) > 1:
                    up = os.open("..", _PATH_DIR, dir_fd=fd)
                    os.close(fd)
                    fd = up
                    chain.pop()
                continue
            where = posixpath.join(chain[-1].path, name)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise InvalidInput(f"{flag} {value!r}: no such directory", hint=hint) from None
            if stat.S_ISLNK(st.st_mode):
                if len(links) == _MAX_LINKS:
                    raise InvalidInput(f"{flag} {value!r}: too many symlinks on the way")
                target = os.readlink(name, dir_fd=fd)
                links.append(FollowedLink(where, target, st.st_uid, chain[-1].uid))
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                    chain = [root]
                parts.extend(reversed([p for p in target.split("/") if p]))
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidInput(f"{flag} {value!r}: not a directory" if not parts else
                                   f"{flag} {value!r}: no such directory ({where!r} is not one)",
                                   hint=None if not parts else hint)
            try:
                sub = os.open(name, _PATH_DIR, dir_fd=fd)
            except OSError as e:
                raise InvalidInput(f"{flag} {value!r}: {where!r} changed while it was resolved "
                                   f"({e.strerror})", hint="try again") from None
            now = os.fstat(sub)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                os.close(sub)
                raise InvalidInput(f"{flag} {value!r}: {where!r} changed while it was resolved",
                                   hint="try again")
            os.close(fd)
            fd = sub
            chain.append(_path_dir(where, now))
    except OSError as e:
        os.close(fd)
        raise InvalidInput(f"{flag} {value!r}: {e.strerror}", hint=hint) from None
    except BaseException:
        os.close(fd)
        raise
    aliases = _aliases(os.fstat(fd), chain[-1].path)
    return Resolved(value, chain[-1].path, tuple(chain), tuple(links), aliases), fd


def _aliases(here: os.stat_result, path: str) -> tuple[str, ...]:
    """The trees a context may never be that are this very object under another name."""
    aliases = []
    for tree in context_rules.ALIASED:
        try:
            st = os.stat(tree)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino) and tree != path:
            aliases.append(tree)
    return tuple(aliases)


def _path_dir(path: str, st: os.stat_result) -> PathDir:
    return PathDir(path, st.st_uid, st.st_mode)


def host_path(shown: str, value: str, what: str) -> tuple[HostPath, int]:
    """A host path (a volume's, a copy's source, the directory a destination goes in) walked
    one component at a time from "/" without following any symlink: each component opened
    O_PATH|O_NOFOLLOW relative to the one before and checked to be what was listed. A symlink
    anywhere is refused, naming it and where it points; so is what is neither a directory nor
    a regular file. Returns the facts the pure checks need (nucleus.config.hostpaths) and an
    O_PATH descriptor of the object, which is the one used from then on."""
    path = posixpath.normpath(value if value.startswith("/") else os.path.join(os.getcwd(), value))
    path = "/" + path.lstrip("/")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    chain: list[PathDir] = []
    walked = ""
    try:
        st = os.fstat(fd)
        for name in (p for p in path.split("/") if p):
            chain.append(_path_dir(walked or "/", st))
            walked = f"{walked}/{name}"
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise InvalidInput(f"{shown}: {walked!r} does not exist") from None
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=fd)
                raise InvalidInput(f"{shown}: {walked!r} is a symlink (to {target!r}); a {what}'s "
                                   "path may hold none",
                                   hint=f"name the real path: {os.path.realpath(value)}")
            if not stat.S_ISDIR(st.st_mode) and walked != path:
                raise InvalidInput(f"{shown}: {walked!r} is not a directory")
            sub = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            now = os.fstat(sub)
            os.close(fd)
            fd = sub
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise InvalidInput(f"{shown}: {walked!r} changed while it was resolved", hint="try again")
    except OSError as e:
        os.close(fd)
        raise InvalidInput(f"{shown}: {e.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        os.close(fd)
        raise InvalidInput(f"{shown}: {path!r} is neither a directory nor a regular file")
    found = HostPath(value, path, tuple(chain), st.st_uid, st.st_gid, st.st_mode,
                     stat.S_ISDIR(st.st_mode), _aliases(st, path))
    return found, fd


def destination(shown: str, value: str, what: str, into: str | None = None) -> tuple[HostPath, int, str, bool]:
    """Where something new is to be created on the host: `value` itself, in its directory; or,
    with `into` and `value` an existing directory (not a symlink), `into` in it. Returns the
    directory (walked as `host_path` walks), its O_PATH descriptor, the name to create, and
    whether something has that name there now."""
    absolute = "/" + posixpath.normpath(value if value.startswith("/") else os.path.join(os.getcwd(), value)).lstrip("/")
    if into is not None and os.path.isdir(absolute) and not os.path.islink(absolute):
        where, name = absolute, into
    else:
        where, name = posixpath.dirname(absolute), posixpath.basename(absolute)
    if not name:
        raise InvalidInput(f"{shown}: names no file or directory to create")
    parent, fd = host_path(shown, where, what)
    if not parent.is_dir:
        os.close(fd)
        raise InvalidInput(f"{shown}: {parent.path!r} is not a directory")
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return parent, fd, name, False
    return parent, fd, name, True


def sudo_uid(environ: Mapping[str, str] = os.environ) -> int | None:
    """The user sudo runs root's nucleus for (SUDO_UID), for root only (others cannot be
    trusted to say): see nucleus.config.hostpaths."""
    value = environ.get("SUDO_UID", "")
    return int(value) if os.geteuid() == 0 and value.isdigit() else None


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


@frozen
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


def limit_facts(facts: HostFacts, config: ContainerConfig) -> HostFacts:
    """What the run's limits are checked against, probed only when needed: the CPUs (with
    --cpus), the block devices (with --io-limit), and for a caller that is not root the cgroup
    delegated to it."""
    if config.limits.cpus is not None:
        facts = replace(facts, cpus=cpus_available())
    if config.limits.io:
        facts = replace(facts, block_devices=block_devices())
    if facts.euid not in (None, 0) and facts.cgroups is not None:
        facts = replace(facts, cgroups=delegation(facts.cgroups, facts.euid))
    return facts


def cpus_available() -> int:
    """The CPUs this process may run on: its affinity, which the kernel keeps within its
    cpuset; the container's processes inherit it."""
    return len(os.sched_getaffinity(0))


def block_devices(root: str = "/sys/dev/block") -> tuple[tuple[str, str], ...] | None:
    """Each block device as (MAJ:MIN, MAJ:MIN of its whole disk); None when ``root`` cannot be
    listed (no sysfs: the devices are then not checked)."""
    try:
        names = os.listdir(root)
    except OSError:
        return None
    found = []
    for name in names:
        if not re.fullmatch(r"\d+:\d+", name):
            continue
        disk = name
        path = os.path.join(root, name)
        if os.path.exists(os.path.join(path, "partition")):
            try:  # a partition's directory is inside its disk's
                with open(os.path.join(os.path.dirname(os.path.realpath(path)), "dev")) as f:
                    disk = f.read().strip()
            except OSError:
                pass
        found.append((name, disk))
    return tuple(sorted(found, key=lambda d: tuple(int(n) for n in d[0].split(":"))))


def delegation(layout: CgroupLayout, euid: int, proc_cgroup: str = "/proc/self/cgroup",
               pid: int | None = None) -> CgroupLayout:
    """``layout`` with the cgroup delegated to a caller that is not root: its own group on the
    cgroup v2 hierarchy (/proc/self/cgroup's "0::" line), if the caller may write it and its
    cgroup.procs and cgroup.subtree_control, it offers cpu, memory and pids, and no process
    but the caller (``pid``) is in it (nucleus moves its own processes to a leaf before it
    enables controllers there). Else ``delegation`` says why there is none."""
    from nucleus.config.resources import RESERVED_CGROUP
    from nucleus.effects.cgroups import FILES

    def none(why: str) -> CgroupLayout:
        return replace(layout, delegated="", delegated_controllers=(), delegation=why)

    if layout.unified is None:
        return none("no cgroup2 hierarchy is mounted")
    relative = next((line[3:] for line in (_read(proc_cgroup) or "").splitlines()
                     if line.startswith("0::")), None)
    if relative is None:
        return none(f"{proc_cgroup} names no cgroup2 group")
    group = os.path.normpath(os.path.join(layout.unified, relative.strip().lstrip("/")))
    if RESERVED_CGROUP in relative.lower():
        return none(f"its cgroup {group} belongs to the machine's supervisor")
    try:
        offered = (_read(os.path.join(group, "cgroup.controllers")) or "").split()
        missing = [c for c in V2_REQUIRED if c not in offered]
        if missing:
            return none(f"its cgroup {group} offers {' '.join(offered) or 'no controller'} "
                        f"(a group delegated to it needs {' '.join(V2_REQUIRED)})")
        controls = [group] + [os.path.join(group, n) for n in ("cgroup.procs", "cgroup.subtree_control")]
        if not all(FILES.writable(path) for path in controls):
            return none(f"its cgroup {group} is not delegated to uid {euid} (it may not write it)")
        others = sorted(set((_read(os.path.join(group, "cgroup.procs")) or "").split())
                        - {str(os.getpid() if pid is None else pid)}, key=int)
    except OSError as e:
        return none(f"its cgroup {group} cannot be read ({e})")
    if others:
        return none(f"its cgroup {group} holds other processes too (pids {', '.join(others)}); "
                    "it needs a group of its own")
    used = tuple(c for c in sorted(V2_REQUIRED + V2_OPTIONAL) if c in offered)
    return replace(layout, delegated=group, delegated_controllers=used, delegation="")


def cgroup_stats(backend: str, dirs: Mapping[str, str]) -> dict[str, int | None]:
    """A container's memory, CPU and process figures, from its cgroup's files."""
    from nucleus.effects import cgroups

    return cgroups.stats(cgroups.Cgroup(backend, dirs))
