"""Filesystem effects: one function per filesystem intent. They run inside the container's
private mount namespace. Each does exactly what its intent says; errors are SyscallError/OSError
naming the call and its arguments. Mounts and every call that needs privileges or changes the
process (chown, chdir, chroot, statvfs of a mount's flags) go through nucleus.effects.libc; plain
file operations in the new root are made here."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from typing import Any

from nucleus import vocab as v
from nucleus.config.context import excluded
from nucleus.effects import abi, libc

MS_FLAGS = {
    "rdonly": abi.MS_RDONLY, "nosuid": abi.MS_NOSUID, "nodev": abi.MS_NODEV,
    "noexec": abi.MS_NOEXEC, "relatime": abi.MS_RELATIME, "noatime": abi.MS_NOATIME,
    "strictatime": abi.MS_STRICTATIME,
}
_OCTAL = re.compile(r"\\([0-7]{3})")
MOUNTINFO = "/proc/self/mountinfo"  # what AuditMounts reads (a test points it at a fake)
PROPAGATION = {"private": abi.MS_PRIVATE, "slave": abi.MS_SLAVE, "shared": abi.MS_SHARED}


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


def _make_target(source: str, target: str) -> None:
    """Create the mount point to match the source: a directory, or an empty file."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))


def bind_mount(op: v.BindMount) -> None:
    if op.optional and not os.path.exists(op.source):
        return
    _make_target(op.source, op.target)
    libc.mount(op.source, op.target, None, abi.MS_BIND | (abi.MS_REC if op.recursive else 0))
    if op.flags:
        # Flags of a bind mount change only on a remount; keep what the source mount locks in.
        flags = flags_of(op.flags) | _locked_flags(op.target)
        libc.mount(None, op.target, None, abi.MS_BIND | abi.MS_REMOUNT | flags)


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
    for rel in op.paths:
        path = os.path.join(op.root, rel)
        os.makedirs(path, mode=op.mode, exist_ok=True)
        if op.owner is not None:
            libc.chown(path, *op.owner)


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
    """Copy regular files, directories and symlinks; skip excluded names and special files.

    Symlinks are copied as links (never followed), so a link in the context cannot pull a host
    file into the container.
    """
    src_fd = os.open(op.source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _copy_dir(src_fd, op.target, op.exclude, op.owner)
    finally:
        os.close(src_fd)


def _copy_dir(src_fd: int, dst: str, exclude: tuple[str, ...], owner: tuple[int, int] | None) -> None:
    with os.scandir(src_fd) as entries:
        items = list(entries)
    for entry in items:
        name = entry.name
        if excluded(name, exclude):
            continue
        st = entry.stat(follow_symlinks=False)
        path = os.path.join(dst, name)
        mode = stat.S_IMODE(st.st_mode) & 0o777  # never setuid/setgid/sticky
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(path, 0o700)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            try:
                _copy_dir(sub, path, exclude, owner)
            finally:
                os.close(sub)
            os.chmod(path, mode | 0o700)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(src_fd, name, path, mode)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), path)
        else:
            continue  # devices, sockets and FIFOs are not context
        if owner is not None:
            libc.lchown(path, *owner)
        if not stat.S_ISLNK(st.st_mode):
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src_dir_fd: int, name: str, dst: str, mode: int) -> None:
    fin = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir_fd)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            size = os.fstat(fin).st_size
            copied = 0
            while copied < size:
                try:
                    n = os.copy_file_range(fin, fout, size - copied)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    n = os.sendfile(fout, fin, None, size - copied)
                if n == 0:
                    break
                copied += n
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def verify_tree(op: v.VerifyTree) -> None:
    from nucleus.effects import integrity  # imported by the supervisor before the fork

    missing, changed, extra = integrity.compare(dict(op.manifest), integrity.manifest(op.target, op.exclude))
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


def audit_mounts(op: v.AuditMounts) -> None:
    """Check each rule against /proc/self/mountinfo: the mount holding the path (after resolving
    symlinks) must carry the rule's flags. Every problem is reported at once."""
    mounts = []
    with open(MOUNTINFO) as f:
        for line in f:
            fields = line.split()
            # Octal escapes (\040 for a space); no codec lookup: this runs after pivot_root.
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            mounts.append((point, set(fields[5].split(","))))
    problems = []
    for path, flags, required in op.rules:
        if not os.path.lexists(path):
            if required:
                problems.append(f"{path}: missing")
            continue
        real = os.path.realpath(path)
        holder = max((m for m in mounts if real == m[0] or real.startswith(m[0].rstrip("/") + "/")),
                     key=lambda m: len(m[0]), default=None)
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
    v.MaskPaths: mask_paths,
    v.PivotRoot: pivot_root,
    v.DetachOldRoot: detach_old_root,
    v.AuditMounts: audit_mounts,
    v.Chroot: chroot,
}
