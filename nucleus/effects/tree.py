"""Walking a context by descriptor: the one walk of the measurement before a run
(nucleus.effects.prepare), of the copy (nucleus.effects.fs) and of the manifest
(nucleus.effects.integrity).

The walk starts from an open directory and never looks a path up from the root again: each
directory is opened relative to its parent's descriptor with O_DIRECTORY|O_NOFOLLOW, each file
relative to its directory's with O_NOFOLLOW|O_NONBLOCK, and what was opened must be what was
listed (the same device and inode), so an entry swapped while the walk runs (a directory for a
symlink, a file for a FIFO) fails the walk, naming it, instead of being followed. Symlinks are
read as links. What is left out is decided by the one nucleus.config.context.Matcher.

Whose permissions: a `Reader` takes the file-system identity (setfsuid/setfsgid and the
supplementary groups, through nucleus.effects.libc) of the user a directory's entries are read
as (see nucleus.config.context.reader_below) around every lookup, open and readlink of an
entry, and is back to the process's own identity whenever the visitor acts (a copy writes as
root). A walk that reads as the caller (`read_as` -1) switches nothing.

Every failure is a WalkError naming the entry (its path relative to the context).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from types import TracebackType

from nucleus.config.context import Identity, Matcher, reader_below
from nucleus.effects import abi, libc

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: an entry swapped for a FIFO after it was listed must not hang the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class WalkError(OSError):
    """An entry the walk could not read or act on. ``rel`` is its path relative to the
    context; ``uid`` the user it was read as (-1: the process's own identity)."""

    def __init__(self, rel: str, err: int, reason: str, uid: int = -1) -> None:
        as_ = f" (read as uid {uid}, the owner of its directory)" if uid > 0 else ""
        super().__init__(err, f"{rel!r}: {reason}{as_}")
        self.rel = rel
        self.reason = reason
        self.uid = uid

    def __reduce__(self) -> tuple[type[WalkError], tuple[str, int, str, int]]:
        return (type(self), (self.rel, self.errno or 0, self.reason, self.uid))


class Visitor:
    """What a walk does with each entry (the default: nothing). Called with the process's own
    file-system identity; a directory's `leave` comes after its entries."""

    writes = False  # True: switch back to the process's identity before every call

    def left_out(self, rel: str, is_dir: bool, rule: str) -> None:
        """`rel` is left out by `rule` (see Matcher.why; "special" for a device, socket or
        FIFO); a left-out directory is not entered."""

    def enter(self, rel: str, st: os.stat_result) -> None:
        """A directory, before its entries."""

    def leave(self, rel: str, st: os.stat_result) -> None:
        """A directory, after its entries."""

    def file(self, rel: str, st: os.stat_result, fd: int) -> None:
        """A regular file, open for reading (the walk closes it)."""

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        """A symlink and where it points."""


Lookup = Callable[[int], Identity]


class Reader:
    """The file-system identity a walk reads with: `read_as` -1 for the process's own (nothing
    is ever switched), else the uid that reads the top directory (0: the process's own, root's);
    `lookup(uid)` gives the (uid, gid, groups) to take for another uid. Use as a context
    manager around the walk: it restores the process's identity and groups at the end."""

    def __init__(self, read_as: int = -1, lookup: Lookup | None = None) -> None:
        self.read_as = read_as
        self._lookup = lookup
        self._current = 0  # the uid whose identity is taken now (0: the process's own)
        self._groups: list[int] | None = None  # the process's groups, once they were changed
        self._ids: tuple[int, int] = (0, 0)
        self.used: dict[int, Identity] = {}  # every identity taken, by uid

    def __enter__(self) -> Reader:
        self._ids = (os.geteuid(), os.getegid())
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
        if self._groups is not None:
            libc.setgroups(self._groups)
            self._groups = None

    def use(self, uid: int) -> None:
        """Read as `uid` from now on (0 or -1: the process's own identity)."""
        if uid <= 0:
            self.release()
            return
        if uid == self._current:
            return
        if self._lookup is None:
            raise OSError(errno.EPERM, f"no identity of uid {uid} to read with")
        identity = self.used.get(uid)
        if identity is None:
            identity = self.used[uid] = self._lookup(uid)
        _, gid, groups = identity
        if self._groups is None:
            self._groups = os.getgroups()
        libc.setgroups(list(groups))
        libc.setfsgid(gid)
        libc.setfsuid(uid)
        self._current = uid

    def release(self) -> None:
        """Back to the process's own identity."""
        if self._current != 0:
            libc.setfsuid(self._ids[0])
            libc.setfsgid(self._ids[1])
            self._current = 0


def walk(top: int, matcher: Matcher, visitor: Visitor, reader: Reader | None = None) -> None:
    """Walk the directory open at `top` (which stays open), in name order, telling `visitor`
    about each entry that `matcher` keeps and each it leaves out."""
    reader = reader or Reader()
    with reader:
        _Walk(matcher, visitor, reader).directory(top, "", reader.read_as)


class _Walk:
    def __init__(self, matcher: Matcher, visitor: Visitor, reader: Reader) -> None:
        self.matcher = matcher
        self.visitor = visitor
        self.reader = reader

    def _act(self) -> None:
        if self.visitor.writes:
            self.reader.release()

    def directory(self, fd: int, prefix: str, uid: int) -> None:
        where = prefix.rstrip("/") or "."
        try:
            self.reader.use(uid)
            names = sorted(os.listdir(fd))
        except WalkError:
            raise
        except OSError as e:
            raise WalkError(where, e.errno or errno.EIO, _reason(e), uid) from None
        for name in names:
            rel = prefix + name
            try:
                self.entry(fd, name, rel, uid)
            except WalkError:
                raise
            except OSError as e:
                raise WalkError(rel, e.errno or errno.EIO, _reason(e), uid) from None

    def entry(self, fd: int, name: str, rel: str, uid: int) -> None:
        self.reader.use(uid)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone since the listing
        mode = st.st_mode
        is_dir = stat.S_ISDIR(mode)
        rule = self.matcher.why(rel, name, is_dir)
        if rule is None and not (is_dir or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            rule = "special"
        if rule is not None:
            self._act()
            self.visitor.left_out(rel, is_dir, rule)
            return
        if stat.S_ISLNK(mode):
            target = os.readlink(name, dir_fd=fd)
            self._act()
            self.visitor.link(rel, st, target)
            return
        opened = _open(fd, name, _DIR_FLAGS if is_dir else _FILE_FLAGS, st, rel, uid)
        if opened is None:
            return
        try:
            if is_dir:
                self._act()
                self.visitor.enter(rel, st)
                self.directory(opened, rel + "/", reader_below(uid, st.st_uid))
                self._act()
                self.visitor.leave(rel, st)
                return
            check = self.matcher.checks_content(rel, name, st.st_size)
            if check:
                rule = self.matcher.content(os.pread(opened, check, 0))
                if rule is not None:
                    self._act()
                    self.visitor.left_out(rel, False, rule)
                    return
            self._act()
            self.visitor.file(rel, st, opened)
        finally:
            os.close(opened)


def _reason(e: OSError) -> str:
    """What failed: a seam call names itself (setfsuid(4242) failed: EPERM ...)."""
    return str(e) if isinstance(e, abi.SyscallError) else (e.strerror or str(e))


def _open(dir_fd: int, name: str, flags: int, st: os.stat_result, rel: str, uid: int) -> int | None:
    """Open what was listed as `name`; None if it is gone; WalkError if it is not what was
    listed any more."""
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise WalkError(rel, errno.ESTALE, "changed while it was read", uid) from None
        raise WalkError(rel, e.errno or errno.EIO, e.strerror or str(e), uid) from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or stat.S_IFMT(now.st_mode) != stat.S_IFMT(st.st_mode):
        os.close(fd)
        raise WalkError(rel, errno.ESTALE, "changed while it was read", uid)
    return fd
