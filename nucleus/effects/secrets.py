"""--secret: the sources opened and checked before anything changes on the host, read once
into buffers that are overwritten after use, and written to the container's secrets tmpfs.

A source is opened as named but never through a symlink (O_NOFOLLOW on its last component;
a symlinked directory above it is seen in where the descriptor leads), without blocking (a
FIFO would hang the run), and refused unless it is a regular file outside /proc, /sys and /dev
(kernel files: a process's memory, the kernel's), owned by root or by the caller (a file
someone else controls is not the caller's secret to hand over), not writable by others, and at
most 1 MiB (15 MiB in all). Its bytes are read into a bytearray only in the supervisor's last
step before the setup process is forked (no other process the supervisor forks, the violation
monitor or the egress proxy, ever holds them), and every copy is overwritten once written: the
supervisor's after the fork, the setup process's after the tmpfs has its file, the
intermediate process's before it exits. They never travel in an intent, an event, the trace,
the record or the log (WriteSecret names them by index).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from dataclasses import dataclass, field

from nucleus import vocab as v
from nucleus.config import secrets as rules
from nucleus.effects import fs
from nucleus.errors import InvalidInput

KERNEL_TREES = ("/proc/", "/sys/", "/dev/")


@dataclass
class Source:
    """An opened --secret source, checked; `data` holds its bytes once read (`read_all`)."""

    secret: rules.Secret
    fd: int
    size: int
    data: bytearray = field(default_factory=bytearray)


def open_sources(secrets: tuple[rules.Secret, ...], caller: int) -> list[Source]:
    """Every source opened and checked (see the module's docstring); a refusal names the flag,
    the value and why, and closes what was opened."""
    opened: list[Source] = []
    total = 0
    try:
        for secret in secrets:
            source = _open(secret, caller)
            total += source.size
            if total > rules.MAX_TOTAL_SIZE:
                raise _refused(secret, f"the secrets come to more than {rules.MAX_TOTAL_SIZE >> 20} MiB "
                                       f"(the size of {rules.SECRETS_DIR})")
            opened.append(source)
    except BaseException:
        close(opened)
        raise
    return opened


def _refused(secret: rules.Secret, why: str) -> InvalidInput:
    return InvalidInput(f"{rules.FLAG} '{secret.source}:{secret.dest}': {why}")


def _open(secret: rules.Secret, caller: int) -> Source:
    try:
        fd = os.open(secret.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        why = "a symlink (a secret is read as itself, never through a link)" if e.errno == errno.ELOOP else e.strerror
        raise _refused(secret, f"cannot open {secret.source!r}: {why}") from e
    try:
        st = os.fstat(fd)
        where = os.readlink(f"/proc/self/fd/{fd}")
        if not stat.S_ISREG(st.st_mode):
            raise _refused(secret, f"{secret.source!r} is not a regular file")
        if where.startswith(KERNEL_TREES):
            raise _refused(secret, f"{secret.source!r} is the kernel's file {where!r}, not a secret")
        if st.st_uid not in (0, caller):
            raise _refused(secret, f"{secret.source!r} belongs to uid {st.st_uid}, neither root nor the caller "
                                   f"(uid {caller})")
        if st.st_mode & stat.S_IWOTH:
            raise _refused(secret, f"{secret.source!r} is writable by anyone (mode {stat.S_IMODE(st.st_mode):04o})")
        if st.st_size > rules.MAX_SECRET_SIZE:
            raise _refused(secret, f"{secret.source!r} is larger than {rules.MAX_SECRET_SIZE >> 20} MiB")
    except BaseException:
        os.close(fd)
        raise
    return Source(secret, fd, st.st_size)


def read_all(sources: list[Source]) -> list[bytearray]:
    """Read every source once (and close it): the buffers, in --secret order. A file that grew
    past the limit since it was opened is cut at the limit plus one byte, and refused by the
    setup process's WriteSecret."""
    for source in sources:
        buf = bytearray(rules.MAX_SECRET_SIZE + 1)
        view = memoryview(buf)
        size = 0
        try:
            while size < len(buf):
                got = os.readv(source.fd, [view[size:]])
                if got == 0:
                    break
                size += got
        finally:
            view.release()
            os.close(source.fd)
            source.fd = -1
        del buf[size:]  # shrinking in place: the bytes kept are not copied
        source.data = buf
    return [source.data for source in sources]


def wipe(buffers: list[bytearray]) -> None:
    """Overwrite each buffer in place with zeros."""
    for buf in buffers:
        buf[0:len(buf)] = bytes(len(buf))


def close(sources: list[Source]) -> None:
    for source in sources:
        if source.fd >= 0:
            os.close(source.fd)
            source.fd = -1
        wipe([source.data])


def write_secret(op: v.WriteSecret, buffers: list[bytearray]) -> None:
    """Inside, on the fresh secrets tmpfs: the file, made as `op.mode` and `op.owner`, then
    this process's copy overwritten."""
    if not 0 <= op.index < len(buffers):
        raise OSError(errno.EBADF, f"secret #{op.index} was not read before the setup process started")
    data = buffers[op.index]
    try:
        if len(data) > rules.MAX_SECRET_SIZE:
            raise OSError(errno.EFBIG, f"the secret for {op.path!r} grew past "
                                       f"{rules.MAX_SECRET_SIZE >> 20} MiB after it was checked")
        fd = os.open(op.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
        try:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view):]
            finally:
                view.release()
            os.fchown(fd, *op.owner)
            os.fchmod(fd, op.mode)
        finally:
            os.close(fd)
    finally:
        wipe([data])


def bind_secret(op: v.BindSecret) -> None:
    """Make `op.dest`'s mount point below `op.root` (directories 0755 and an empty file, never
    through a symlink: every component is opened O_NOFOLLOW from the one above), then bind the
    secret's file there with `op.flags`."""
    parts = op.dest.strip("/").split("/")
    fd = os.open(op.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = op.root.rstrip("/")
    try:
        for part in parts[:-1]:
            walked = f"{walked}/{part}"
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                sub = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                raise OSError(e.errno, f"{walked!r} is not a directory (a symlink is not followed)") from None
            os.close(fd)
            fd = sub
        target = f"{walked}/{parts[-1]}"
        try:
            os.close(os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o400, dir_fd=fd))
        except FileExistsError:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EEXIST, f"{target!r} exists and is not a regular file") from None
    finally:
        os.close(fd)
    fs.bind_mount(v.BindMount(op.source, target, op.flags, beneath=posixpath.dirname(op.source)))
