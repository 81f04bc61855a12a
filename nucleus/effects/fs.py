"""Filesystem effects: one function per filesystem intent. They run inside the container's
private mount namespace. Each does exactly what its intent says; errors are SyscallError/OSError
naming the call and its arguments. Mounts and every call that needs privileges or changes the
process (chown, chdir, chroot, statvfs of a mount's flags) go through nucleus.effects.libc; plain
file operations in the new root are made here."""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import socket
import stat
from collections.abc import Callable
from typing import Any

from nucleus import vocab as v
from nucleus.config.context import Matcher, sparse
from nucleus.effects import abi, libc, tree

MS_FLAGS = {
    "rdonly": abi.MS_RDONLY, "nosuid": abi.MS_NOSUID, "nodev": abi.MS_NODEV,
    "noexec": abi.MS_NOEXEC, "relatime": abi.MS_RELATIME, "noatime": abi.MS_NOATIME,
    "strictatime": abi.MS_STRICTATIME,
}
_OCTAL = re.compile(r"\\([0-7]{3})")
MOUNTINFO = "/proc/self/mountinfo"  # what AuditMounts reads (a test points it at a fake)
PROPAGATION = {"private": abi.MS_PRIVATE, "slave": abi.MS_SLAVE, "shared": abi.MS_SHARED,
               "unbindable": abi.MS_UNBINDABLE}


def flags_of(names: tuple[str, ...]) -> int:
    out = 0
    for name in names:
        out |= MS_FLAGS[name]
    return out


def set_propagation(op: v.SetPropagation) -> None:
    libc.mount(None, op.target, None, PROPAGATION[op.mode] | (abi.MS_REC if op.recursive else 0))


def mount_fs(op: v.MountFs) -> None:
    os.makedirs(op.target, exist_ok=True)
    libc.mount(op.fstype, op.target, op.fstype, flags_of(op.flags), op.data or None)


def _make_target(is_dir: bool, target: str) -> None:
    """Create the mount point to match the source: a directory, or an empty file."""
    if is_dir:
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))


def bind_mount(op: v.BindMount) -> None:
    """Bind `op.source` onto `op.target`, then apply the flags: to the one mount by a remount,
    or with `op.recursive` to every mount of the bound tree in one mount_setattr(AT_RECURSIVE)
    call, checked afterwards in /proc/self/mountinfo. With `op.opened` (the descriptor the
    supervisor opened the source from before any host change) the source path is opened again
    without following any symlink and bound only if it is still that directory; with
    `op.beneath`, it is opened from that directory without following any symlink."""
    if op.optional and not os.path.exists(op.source):
        return
    if op.beneath:
        reopened: int | None = open_beneath(op.beneath, op.source)
    else:
        reopened = _reopen(op.source, op.opened) if op.opened >= 0 else None
    try:
        is_dir = os.path.isdir(op.source) if reopened is None else stat.S_ISDIR(os.fstat(reopened).st_mode)
        _make_target(is_dir, op.target)
        source = op.source if reopened is None else f"/proc/self/fd/{reopened}"
        libc.mount(source, op.target, None, abi.MS_BIND | (abi.MS_REC if op.recursive else 0))
    finally:
        if reopened is not None:
            os.close(reopened)
    if not op.flags:
        return
    if op.recursive:
        set_recursively(op.target, op.flags)
        return
    # Flags of a bind mount change only on a remount; keep what the source mount locks in.
    flags = flags_of(op.flags) | _locked_flags(op.target)
    libc.mount(None, op.target, None, abi.MS_BIND | abi.MS_REMOUNT | flags)


def open_beneath(top: str, path: str) -> int:
    """`path`, below the directory `top`, opened O_PATH one component at a time from `top`
    without following a symlink: a symlink anywhere below `top` is refused (ELOOP), naming it."""
    rel = posixpath.relpath(path, top)
    if rel == "." or rel == ".." or rel.startswith("../"):
        raise OSError(errno.EINVAL, f"{path!r} is not below {top!r}")
    fd = os.open(top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = top.rstrip("/")
    try:
        for part in rel.split("/"):
            walked = f"{walked}/{part}"
            try:
                sub = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                raise OSError(errno.ENOENT, f"{walked!r} does not exist") from None
            os.close(fd)
            fd = sub
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, f"{walked!r} is a symlink, which is not followed here")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _reopen(path: str, opened: int) -> int:
    """`path` (a real path: no symlink on it) opened O_PATH in this mount namespace, one
    component at a time without following symlinks, and checked to be the directory (or file)
    open at `opened` (which the supervisor opened in the host's: a bind from a descriptor of
    another mount namespace is refused by the kernel)."""
    then = os.fstat(opened)
    what = "directory" if stat.S_ISDIR(then.st_mode) else "file"
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    parts = [p for p in path.split("/") if p]
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1 and what == "file"
            flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
            sub = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = sub
        now = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise OSError(errno.ESTALE, f"{path!r} is not the {what} opened before the run any "
                                    f"more ({e.strerror})") from None
    if (now.st_dev, now.st_ino) != (then.st_dev, then.st_ino):
        os.close(fd)
        raise OSError(errno.ESTALE, f"{path!r} is not the {what} opened before the run any more")
    return fd


_MOUNT_ATTRS = {"rdonly": abi.MOUNT_ATTR_RDONLY, "nosuid": abi.MOUNT_ATTR_NOSUID,
                "nodev": abi.MOUNT_ATTR_NODEV, "noexec": abi.MOUNT_ATTR_NOEXEC}
_SHOWN_AS = {"rdonly": "ro"}  # how mountinfo spells a flag


def set_recursively(target: str, flags: tuple[str, ...]) -> None:
    """Set `flags` (rdonly, nosuid, nodev, noexec) on the mount at `target` and every mount
    below it, then check every one of them in mountinfo. Where the kernel lacks mount_setattr
    (before 5.12) each mount is remounted by its path instead (one hidden under another cannot
    be, and then fails the check)."""
    try:
        libc.mount_setattr(abi.AT_FDCWD, target, abi.AT_RECURSIVE, _attrs(flags))
    except abi.SyscallError as e:
        if e.errno != errno.ENOSYS:
            raise
        wanted = flags_of(tuple(f for f in flags if f in _MOUNT_ATTRS))
        for point, _ in _mounts_below(target):
            libc.mount(None, point, None, abi.MS_BIND | abi.MS_REMOUNT | wanted | _locked_flags(point))
    check_recursively(target, flags)


def mount_volume(op: v.MountVolume) -> None:
    """Bind a volume (see the intent): the host object opened before the run, found again by
    its path without following a symlink; a detached copy of its mount tree with the flags (and
    the id mapping) set on every mount of it before anything is attached, then attached and
    checked in mountinfo."""
    reopened = _reopen(op.source, op.opened)
    try:
        _make_target(stat.S_ISDIR(os.fstat(reopened).st_mode), op.target)
        tree = libc.open_tree(reopened, "", abi.OPEN_TREE_CLONE | abi.OPEN_TREE_CLOEXEC
                              | abi.AT_EMPTY_PATH | abi.AT_RECURSIVE)
    finally:
        os.close(reopened)
    try:
        attrs = _attrs(op.flags) | (abi.MOUNT_ATTR_IDMAP if op.userns >= 0 else 0)
        libc.mount_setattr(tree, "", abi.AT_EMPTY_PATH | abi.AT_RECURSIVE, attrs,
                           userns_fd=max(op.userns, 0))
        libc.move_mount(tree, "", abi.AT_FDCWD, op.target, abi.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        libc.close(tree)
    check_recursively(op.target, op.flags)


_KEPT = abi.MOUNT_ATTR_RDONLY | abi.MOUNT_ATTR_NOSUID | abi.MOUNT_ATTR_NODEV | abi.MOUNT_ATTR_NOEXEC


def keep_tree(op: v.KeepTree, sock: socket.socket | None) -> None:
    """Send the supervisor, over `sock`, a detached copy of the mount at `op.target` (the same
    file system, so it shows what the workload does there), read-only, nosuid, nodev, noexec."""
    if sock is None:
        raise OSError(errno.EBADF, f"keeping {op.target}: no socket to the supervisor")
    tree = libc.open_tree(abi.AT_FDCWD, op.target, abi.OPEN_TREE_CLONE | abi.OPEN_TREE_CLOEXEC)
    try:
        libc.mount_setattr(tree, "", abi.AT_EMPTY_PATH, _KEPT)
        socket.send_fds(sock, [b"T"], [tree])
    finally:
        libc.close(tree)


def _attrs(flags: tuple[str, ...]) -> int:
    out = 0
    for name in flags:
        out |= _MOUNT_ATTRS.get(name, 0)
    return out


def _mounts_below(target: str) -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount at or below `target`, from mountinfo."""
    real = os.path.realpath(target)
    under = real.rstrip("/") + "/"
    return [(point, options) for point, options in mount_table()
            if point == real or point.startswith(under)]


def check_recursively(target: str, flags: tuple[str, ...]) -> None:
    """Every mount at or below `target` carries `flags` (those of rdonly, nosuid, nodev and
    noexec); EPERM naming each that does not."""
    wanted = [f for f in flags if f in _MOUNT_ATTRS]
    mounts = _mounts_below(target)
    if not mounts:
        raise OSError(errno.EPERM, f"mount flags: nothing is mounted at {target}")
    problems = []
    for point, options in mounts:
        lacking = [f for f in wanted if _SHOWN_AS.get(f, f) not in options]
        if lacking:
            problems.append(f"{point} lacks {', '.join(lacking)}")
    if problems:
        raise OSError(errno.EPERM, "mount flags: " + "; ".join(problems))


def _locked_flags(path: str) -> int:
    """The per-mount flags the kernel refuses to clear on a remount (see statvfs)."""
    st = libc.statvfs(path)
    out = 0
    for bit, flag in ((os.ST_NOSUID, abi.MS_NOSUID), (os.ST_NODEV, abi.MS_NODEV),
                      (os.ST_NOEXEC, abi.MS_NOEXEC), (os.ST_RDONLY, abi.MS_RDONLY)):
        if st.f_flag & bit:
            out |= flag
    if st.f_flag & os.ST_NOATIME:
        out |= abi.MS_NOATIME
    elif st.f_flag & os.ST_RELATIME:
        out |= abi.MS_RELATIME
    return out


def remount_fs(op: v.RemountFs) -> None:
    flags = abi.MS_REMOUNT | flags_of(op.flags)
    if op.bind:
        flags |= abi.MS_BIND | _locked_flags(op.target)
    libc.mount(None, op.target, None, flags)


def make_dirs(op: v.MakeDirs) -> None:
    """Each path below `op.root`, made one component at a time without following a symlink
    (ELOOP naming it) and never through '.' or '..' (EINVAL): a mount point never leads out of
    the new root."""
    for rel in op.paths:
        parts = [p for p in rel.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise OSError(errno.EINVAL, f"{rel!r} below {op.root!r} holds '.' or '..', which is not followed here")
        walked = op.root.rstrip("/")
        fd = os.open(op.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                walked = f"{walked}/{part}"
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, op.mode, dir_fd=fd)
                try:
                    sub = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(walked):
                        raise OSError(errno.ELOOP, f"{walked!r} is a symlink, which is not followed here") from None
                    raise
                os.close(fd)
                fd = sub
        finally:
            os.close(fd)
        if op.owner is not None:
            libc.chown(walked, *op.owner)


def make_symlinks(op: v.MakeSymlinks) -> None:
    for rel, target in op.links:
        path = os.path.join(op.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)


def write_file(op: v.WriteFile) -> None:
    fd = os.open(op.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, op.mode)
    try:
        os.write(fd, op.content.encode())
    finally:
        os.close(fd)


def copy_tree(op: v.CopyTree) -> None:
    """Copy the context from `op.opened`, the descriptor the supervisor opened from
    `op.source` before any host change (inherited; the path is never looked up here), into
    `op.target`: directories, regular files (sparse ones keep their holes) and symlinks (as
    links, never followed), leaving out what the rules decide, reading as `op.read_as` says
    (see nucleus.effects.tree), every entry chowned to `op.owner`, no setuid, setgid or sticky
    bit. A failure names the entry."""
    if op.opened < 0:
        raise OSError(errno.EBADF, f"copying the context {op.source!r}: it was not opened before "
                                   "the setup process was started")
    identities = {uid: (uid, gid, groups) for uid, gid, groups in op.identities}

    def lookup(uid: int) -> tuple[int, int, tuple[int, ...]]:
        try:
            return identities[uid]
        except KeyError:
            raise OSError(errno.ESTALE, f"owned by uid {uid}, which owned nothing when the "
                                        "context was measured: it changed since") from None

    matcher = Matcher(op.exclude, op.ignore, op.include)
    try:
        tree.walk(op.opened, matcher, _Copy(op.target, op.owner), tree.Reader(op.read_as, lookup))
    except tree.WalkError as e:
        full = e.errno == errno.ENOSPC
        raise OSError(e.errno, f"copying the context {op.source!r}: {e.strerror}" + (
            "; the context's tmpfs is full (--context-size sets its size)" if full else "")) from None


class _Copy(tree.Visitor):
    writes = True

    def __init__(self, target: str, owner: tuple[int, int] | None) -> None:
        self.target = target
        self.owner = owner

    def _finish(self, path: str, st: os.stat_result, link: bool = False) -> None:
        if self.owner is not None:
            libc.lchown(path, *self.owner)
        if not link:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def enter(self, rel: str, st: os.stat_result) -> None:
        os.mkdir(os.path.join(self.target, rel), 0o700)

    def leave(self, rel: str, st: os.stat_result) -> None:
        path = os.path.join(self.target, rel)
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o777 | 0o700)  # never setuid/setgid/sticky
        self._finish(path, st)

    def file(self, rel: str, st: os.stat_result, fd: int) -> None:
        path = os.path.join(self.target, rel)
        fout = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       stat.S_IMODE(st.st_mode) & 0o777)
        try:
            copy_data(fd, fout, os.fstat(fd))
        finally:
            os.close(fout)
        self._finish(path, st)

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        path = os.path.join(self.target, rel)
        os.symlink(target, path)
        self._finish(path, st, link=True)


_NO_RANGE_COPY = (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


def copy_data(fin: int, fout: int, st: os.stat_result) -> None:
    """Copy a regular file's data from `fin` to the empty `fout`. A sparse file (fewer blocks
    allocated than its size) is copied range by range (SEEK_DATA/SEEK_HOLE), its holes left
    holes, then extended to its size; any other in one run."""
    size = st.st_size
    if not sparse(size, st.st_blocks):
        _copy_range(fin, fout, 0, size)
        return
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fin, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole from here on
                break
            raise
        end = min(os.lseek(fin, start, os.SEEK_HOLE), size)
        _copy_range(fin, fout, start, end)
        offset = end
    os.ftruncate(fout, size)


def _copy_range(fin: int, fout: int, start: int, end: int) -> None:
    """Copy bytes [start, end) of `fin` to the same offsets of `fout` (less if `fin` ends
    sooner): copy_file_range, or sendfile where the file systems do not support it."""
    offset = start
    ranged = True
    while offset < end:
        if ranged:
            try:
                n = os.copy_file_range(fin, fout, end - offset, offset, offset)
            except OSError as e:
                if e.errno not in _NO_RANGE_COPY:
                    raise
                ranged = False
                os.lseek(fout, offset, os.SEEK_SET)
                continue
        else:
            n = os.sendfile(fout, fin, offset, end - offset)
        if n == 0:
            break
        offset += n


def verify_tree(op: v.VerifyTree) -> None:
    """Check the populated tree against the manifest taken of the context before the copy:
    every entry of it (the rules already left out what the manifest leaves out)."""
    from nucleus.effects import integrity  # imported by the supervisor before the fork

    missing, changed, extra = integrity.compare(
        dict(op.manifest), integrity.manifest(op.target, Matcher(op.exclude)))
    if missing or changed or extra:
        raise OSError(errno.EBADMSG, integrity.mismatch_message(missing, changed, extra, what="/context"))


_MASK_DIR = abi.MS_RDONLY | abi.MS_NOSUID | abi.MS_NODEV | abi.MS_NOEXEC
_READONLY_REMOUNT = abi.MS_BIND | abi.MS_REMOUNT | abi.MS_RDONLY


def mask_paths(op: v.MaskPaths) -> None:
    for rel in op.paths:
        path = os.path.join(op.root, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            libc.mount("tmpfs", path, "tmpfs", _MASK_DIR, "size=0,mode=0555")
        else:
            libc.mount("/dev/null", path, None, abi.MS_BIND)
            libc.mount(None, path, None, _READONLY_REMOUNT | _locked_flags(path))
    for rel in op.readonly:
        path = os.path.join(op.root, rel)
        if not os.path.exists(path):
            continue
        libc.mount(path, path, None, abi.MS_BIND | abi.MS_REC)
        libc.mount(None, path, None, _READONLY_REMOUNT | _locked_flags(path))


def pivot_root(op: v.PivotRoot) -> None:
    """Make op.new_root the root: pivot_root(".", ".") stacks the old root on top of the new one,
    so no directory for the old root is needed inside the (read-only) new root."""
    libc.chdir(op.new_root)
    libc.pivot_root(".", ".")


def detach_old_root(op: v.DetachOldRoot) -> None:
    libc.umount2(".", abi.MNT_DETACH)
    libc.chdir("/")
    if op.propagation:
        mode = op.propagation.removeprefix("r")
        set_propagation(v.SetPropagation("/", mode, mode != op.propagation))


def mount_table() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount this process sees, in mountinfo's order."""
    mounts = []
    with open(MOUNTINFO) as f:
        for line in f:
            fields = line.split()
            # Octal escapes (\040 for a space); no codec lookup: this runs after pivot_root.
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            mounts.append((point, set(fields[5].split(","))))
    return mounts


def holder_of(real: str, mounts: list[tuple[str, set[str]]]) -> tuple[str, set[str]] | None:
    """The mount that holds the path `real` (no symlink on it): the deepest mount point above
    it, the last mounted there."""
    above = [m for m in mounts if real == m[0] or real.startswith(m[0].rstrip("/") + "/")]
    return max(reversed(above), key=lambda m: len(m[0]), default=None)


def audit_mounts(op: v.AuditMounts) -> None:
    """Check each rule against /proc/self/mountinfo: the mount holding the path (after resolving
    symlinks) must carry the rule's flags. Every problem is reported at once."""
    mounts = mount_table()
    problems = []
    for path, flags, required in op.rules:
        if not os.path.lexists(path):
            if required:
                problems.append(f"{path}: missing")
            continue
        holder = holder_of(os.path.realpath(path), mounts)
        if holder is None:
            problems.append(f"{path}: on no mount")
            continue
        have = {"rdonly" if "ro" in holder[1] else "rw"} | (holder[1] & {"nosuid", "nodev", "noexec"})
        lacking = [flag for flag in flags if flag not in have]
        if lacking:
            problems.append(f"{path} (mount {holder[0]}): lacks {', '.join(lacking)}")
    if problems:
        raise OSError(errno.EPERM, "mount audit: " + "; ".join(problems))


def chroot(op: v.Chroot) -> None:
    """Move the new root over "/" and chroot into it (switch_root): the root is then the top of
    the mount namespace's root, so the kernel still allows a new user namespace afterwards
    (unshare(CLONE_NEWUSER) refuses a process whose root is not the namespace's root)."""
    libc.chdir(op.new_root)
    libc.mount(".", "/", None, abi.MS_MOVE)
    libc.chroot(".")
    libc.chdir("/")


EFFECTS: dict[type[v.Intent], Callable[[Any], None]] = {
    v.SetPropagation: set_propagation,
    v.MountFs: mount_fs,
    v.BindMount: bind_mount,
    v.RemountFs: remount_fs,
    v.MakeDirs: make_dirs,
    v.MakeSymlinks: make_symlinks,
    v.WriteFile: write_file,
    v.CopyTree: copy_tree,
    v.VerifyTree: verify_tree,
    v.MountVolume: mount_volume,
    v.MaskPaths: mask_paths,
    v.PivotRoot: pivot_root,
    v.DetachOldRoot: detach_old_root,
    v.AuditMounts: audit_mounts,
    v.Chroot: chroot,
}
