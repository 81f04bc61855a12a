"""Copying trees between the host and a container (`nucleus cp`, `--changes`): a `Writer` that
creates entries under an open directory without ever following a symlink or replacing
anything, a stream of entries over a pipe between a process on each side, and the helper
process that works inside a running container.

The helper enters the container's user and mount namespaces from a pidfd of its init (setns),
becomes the container's root and drops every capability: inside it can do what the container's
root could, nothing more. It resolves the container path from the container's root with
openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), so no symlink the container made leads out of
it, and opens the last component without following it. The host side stays in the calling
process with the caller's identity (or, for root writing into another user's directory, that
user's: nucleus.config.hostpaths), and never holds a descriptor the helper could reach.

Everything the helper runs is imported before it enters: the host's files (this package
among them) are out of its reach from then on.

The stream: each entry a length-prefixed JSON header (kind, path as a list of names, mode,
size or link target); a file's data follows as length-prefixed chunks ending with an empty
one; "end" closes it, "error" says why the sender stopped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import struct
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from nucleus import linux
from nucleus.config.context import Identity, Matcher
from nucleus.config.hostpaths import Destination
from nucleus.effects import abi, caps, channel, libc, process, tree

CHUNK = 1 << 20
ENTRY = 4096  # what each entry counts toward a copy's limit besides its data: a block
_FRAME = struct.Struct("<I")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
SPECIAL_KIND = "a device, socket or FIFO"
SPECIAL = f"{SPECIAL_KIND}: not copied"


@contextlib.contextmanager
def _naming(parts: tuple[str, ...]) -> Iterator[None]:
    """An OSError of the block names the entry."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, f"{'/'.join(parts)!r}: {e.strerror}") from None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise OSError(errno.EINVAL, f"{name!r} is not a name of an entry")
    return name


class Writer:
    """Creates entries below the directory open at `top` (left open): each one new (mkdir,
    O_CREAT|O_EXCL, symlink), relative to its parent directory's descriptor, never through a
    symlink; files and directories without setuid, setgid or sticky bits (a directory stays
    writable by its owner until `finish`); as uid `write_as` (-1: this process's identity;
    `lookup` gives its ids and groups); at most `limit` bytes, each entry counting ENTRY bytes
    besides its data (so that many empty files cannot pass either), `flag` naming the limit."""

    def __init__(self, top: int, limit: int, flag: str, write_as: int = -1,
                 lookup: Callable[[int], Identity] | None = None) -> None:
        self.limit = limit
        self.flag = flag
        self.written = 0
        self.created: list[tuple[str, ...]] = []  # the top-level entries made, for `undo`
        self._dirs: dict[tuple[str, ...], int] = {(): os.dup(top)}
        self._modes: list[tuple[tuple[str, ...], int]] = []
        self._write_as, self._lookup = write_as, lookup
        self._identity = tree.Reader(write_as, lookup)
        self._identity.__enter__()
        self._identity.use(write_as)

    def _parent(self, parts: tuple[str, ...]) -> int:
        """The descriptor of the directory that holds `parts`, made (0755) if it is missing."""
        for name in parts:
            _check_name(name)
        for depth in range(1, len(parts)):
            here = parts[:depth]
            if here not in self._dirs:
                self._make_dir(here, 0o755)
        return self._dirs[parts[:-1]]

    def _charge(self, size: int) -> None:
        self.written += size
        if self.written > self.limit:
            raise OSError(errno.EFBIG, f"more than {self.flag} ({self.limit} bytes) to copy")

    def _make_dir(self, parts: tuple[str, ...], mode: int) -> None:
        self._charge(ENTRY)
        parent = self._dirs[parts[:-1]]
        with _naming(parts):
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
            self._note(parts)
            self._dirs[parts] = os.open(parts[-1], _DIR, dir_fd=parent)
        self._modes.append((parts, mode & 0o777))

    def _note(self, parts: tuple[str, ...]) -> None:
        if len(parts) == 1:
            self.created.append(parts)

    def directory(self, parts: tuple[str, ...], mode: int) -> None:
        self._parent(parts)
        if parts not in self._dirs:
            self._make_dir(parts, mode)
        else:  # made already, to hold what came before it
            self._modes = [(p, mode & 0o777 if p == parts else m) for p, m in self._modes]

    def file(self, parts: tuple[str, ...], mode: int, chunks: Iterator[bytes]) -> None:
        parent = self._parent(parts)
        self._charge(ENTRY)
        with _naming(parts):
            fd = os.open(parts[-1], _NEW, 0o600, dir_fd=parent)
        self._note(parts)
        try:
            for chunk in chunks:
                self._charge(len(chunk))
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fchmod(fd, mode & 0o777)
        finally:
            os.close(fd)

    def link(self, parts: tuple[str, ...], target: str) -> None:
        parent = self._parent(parts)
        self._charge(ENTRY)
        with _naming(parts):
            os.symlink(target, parts[-1], dir_fd=parent)
        self._note(parts)

    def finish(self) -> None:
        """Give the directories their modes (deepest first), close them, and take this
        process's own identity back."""
        try:
            for parts, mode in sorted(self._modes, key=lambda item: -len(item[0])):
                os.chmod(self._dirs[parts], mode)
        finally:
            self.close()

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        self._identity.__exit__(None, None, None)

    def undo(self, top: int) -> None:
        """Remove what was created below `top` (after a failure: nothing half-copied stays),
        as the identity it was created with."""
        with tree.Reader(self._write_as, self._lookup) as identity:
            identity.use(self._write_as)
            for (name,) in self.created:
                try:
                    if stat.S_ISDIR(os.stat(name, dir_fd=top, follow_symlinks=False).st_mode):
                        shutil.rmtree(name, dir_fd=top)
                    else:
                        os.unlink(name, dir_fd=top)
                except OSError:
                    pass


def read_chunks(fd: int, size: int) -> Iterator[bytes]:
    """A file's data from its start, at most `size` bytes (what it held when it was listed)."""
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(CHUNK, size - offset), offset)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk


# --- the stream ----------------------------------------------------------------------------------


def _frame(fd: int, data: bytes) -> None:
    buf = _FRAME.pack(len(data)) + data
    while buf:
        buf = buf[os.write(fd, buf):]


def _frames(fd: int) -> Iterator[bytes]:
    while True:
        (length,) = _FRAME.unpack(_exact(fd, _FRAME.size))
        if length == 0:
            return
        if length > CHUNK:
            raise OSError(errno.EPROTO, f"a chunk of {length} bytes in the stream")
        yield _exact(fd, length)


def _exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise OSError(errno.EPIPE, "the other side stopped in the middle of the stream")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class _Sender(tree.Visitor):
    def __init__(self, out: int, top: str) -> None:
        self.out = out
        self.top = top

    def _parts(self, rel: str) -> list[str]:
        return [self.top, *rel.split("/")] if rel else [self.top]

    def left_out(self, rel: str, is_dir: bool, rule: str) -> None:
        channel.send(self.out, {"k": "skip", "p": self._parts(rel), "why": SPECIAL})

    def enter(self, rel: str, st: os.stat_result) -> None:
        channel.send(self.out, {"k": "dir", "p": self._parts(rel), "m": stat.S_IMODE(st.st_mode)})

    def file(self, rel: str, st: os.stat_result, fd: int) -> None:
        channel.send(self.out, {"k": "file", "p": self._parts(rel), "m": stat.S_IMODE(st.st_mode)})
        for chunk in read_chunks(fd, st.st_size):
            _frame(self.out, chunk)
        _frame(self.out, b"")

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        channel.send(self.out, {"k": "link", "p": self._parts(rel), "t": target})


def send(out: int, parent: int, name: str, top: str | None = None, reader: tree.Reader | None = None,
         expect: tuple[int, int] | None = None) -> None:
    """Stream the entry `name` of the directory open at `parent` ("." for that directory
    itself), and for a directory everything in it, to `out` as `top` (default: `name`), then
    "end"; read as `reader` says; with `expect`, only if it is still that (device, inode). A
    failure is sent as "error" and raised."""
    sender = _Sender(out, top or name)
    try:
        with reader or tree.Reader() as identity:
            identity.use(identity.read_as)
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if expect is not None and (st.st_dev, st.st_ino) != expect:
                raise OSError(errno.ESTALE, f"{top or name!r} changed since it was checked")
            if stat.S_ISLNK(st.st_mode):
                sender.link("", st, os.readlink(name, dir_fd=parent))
            elif stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                fd = os.open(name, _DIR if stat.S_ISDIR(st.st_mode) else _FILE, dir_fd=parent)
                try:
                    now = os.fstat(fd)
                    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                        raise OSError(errno.ESTALE, f"{name!r} changed while it was read")
                    if stat.S_ISDIR(st.st_mode):
                        sender.enter("", st)
                        tree.walk(fd, Matcher(), _Nested(sender), identity)
                    else:
                        sender.file("", st, fd)
                finally:
                    os.close(fd)
            else:
                raise OSError(errno.EINVAL, f"{name!r} is {SPECIAL_KIND}")
    except OSError as e:
        channel.send(out, {"k": "error", "message": e.strerror or str(e)})
        raise
    channel.send(out, {"k": "end"})


class _Nested(tree.Visitor):
    """The walk below the top directory, reported as entries under its name."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender

    def left_out(self, rel: str, is_dir: bool, rule: str) -> None:
        self.sender.left_out(rel, is_dir, rule)

    def enter(self, rel: str, st: os.stat_result) -> None:
        self.sender.enter(rel, st)

    def file(self, rel: str, st: os.stat_result, fd: int) -> None:
        self.sender.file(rel, st, fd)

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        self.sender.link(rel, st, target)


def receive(source: int, writer: Writer, name: str) -> list[tuple[str, str]]:
    """Create what the stream from `source` holds through `writer`, the top entry as `name`;
    returns what the sender left out, as (path, why). Raises OSError when the sender stopped
    with an error or the stream breaks off."""
    skipped: list[tuple[str, str]] = []
    while True:
        try:
            message: Any = channel.receive(source)
        except channel.ChannelClosedError:
            raise OSError(errno.EPIPE, "the copy stopped before its end") from None
        kind = message.get("k") if isinstance(message, dict) else None
        if kind == "end":
            return skipped
        if kind == "error":
            raise OSError(errno.EIO, str(message.get("message")))
        given = message.get("p") if isinstance(message, dict) else None
        if not isinstance(given, list) or not given:
            raise OSError(errno.EPROTO, f"not an entry of the stream: {message!r}")
        parts = (name, *given[1:])
        if kind == "skip":
            skipped.append(("/".join(parts), str(message.get("why"))))
        elif kind == "dir":
            writer.directory(parts, int(message.get("m", 0o755)))
        elif kind == "file":
            writer.file(parts, int(message.get("m", 0o644)), _frames(source))
        elif kind == "link":
            writer.link(parts, str(message.get("t")))
        else:
            raise OSError(errno.EPROTO, f"not an entry of the stream: {message!r}")


# --- inside a running container --------------------------------------------------------------------


def enter(pidfd: int) -> None:
    """In a helper process: join the user and mount namespaces of the process `pidfd` pins (a
    container's init) and become the container's root without any capability."""
    if os.geteuid() == 0:
        libc.setgroups([])  # host root's groups must not follow into the container
    libc.setns(pidfd, linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
    libc.setresgid(0, 0, 0)
    libc.setresuid(0, 0, 0)
    caps.drop_capabilities(frozenset())
    caps.set_no_new_privs()


def target_inside(root: int, path: str, name: str) -> tuple[int, str]:
    """Where a copy into the container creates its entry: in the directory `path` (found from
    the container's root as `parent_inside` finds one) under `name`, when there is one; else
    `path` itself, in its parent."""
    try:
        return libc.openat2(root, path.lstrip("/") or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                            abi.RESOLVE_IN_ROOT | abi.RESOLVE_NO_MAGICLINKS), name
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise
    return parent_inside(root, path)


def parent_inside(root: int, path: str) -> tuple[int, str]:
    """The directory holding `path` (absolute, in the container), opened from the container's
    root `root` without leaving it (RESOLVE_IN_ROOT: '..' and absolute symlinks stop at it; no
    magic link of /proc is followed); and the last component, not resolved."""
    head, _, name = path.rstrip("/").rpartition("/")
    fd = libc.openat2(root, head.lstrip("/") or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                      abi.RESOLVE_IN_ROOT | abi.RESOLVE_NO_MAGICLINKS)
    return fd, name


def fork(work: Callable[[], None], keep: tuple[int, ...], pidfd: int | None = None,
         report: Callable[[str], None] | None = None) -> int:
    """Fork a process that runs `work()`, every descriptor but `keep` (and 0-2) closed first;
    with `pidfd`, inside the container of the process it pins (`enter`: `work` then finds the
    container's root as "/"). Returns its pid; it exits 0 when `work` returned, 1 when it
    raised, having passed why to `report` (which must not raise)."""
    pid = os.fork()
    if pid != 0:
        return pid
    code = 1
    try:
        held = sorted({*keep, *((pidfd,) if pidfd is not None else ()), 0, 1, 2})
        for low, high in zip(held, held[1:], strict=False):
            if high > low + 1:
                libc.close_range(low + 1, high - 1)
        libc.close_range(held[-1] + 1)
        if pidfd is not None:
            enter(pidfd)
            os.close(pidfd)
        work()
        code = 0
    except BaseException as e:  # noqa: BLE001 - the helper never unwinds into the command
        if report is not None:
            with contextlib.suppress(BaseException):
                report((e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__)
    finally:
        os._exit(code)


def root() -> int:
    """The root directory of this process (the container's, once `enter` ran)."""
    return os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def reap(pid: int) -> int | None:
    return process.reap(pid)


# --- a whole copy ----------------------------------------------------------------------------------


class Inside(NamedTuple):
    """What a copy reads in a running container: `path` there, through the helper that enters
    it from `pidfd`."""

    pidfd: int
    path: str


class Kept(NamedTuple):
    """What a copy reads in a stopped container's kept /context (open at `fd`): `rel` below it,
    "" for all of it; never through a symlink."""

    fd: int
    rel: str


class HostSource(NamedTuple):
    """What a copy into a container reads on the host: `name` in the directory open (O_PATH)
    at `parent`, which must still be the object open at `opened`; as uid `read_as` (-1: the
    caller's identity)."""

    parent: int
    name: str
    opened: int
    read_as: int = -1


_BENEATH = abi.RESOLVE_BENEATH | abi.RESOLVE_NO_SYMLINKS | abi.RESOLVE_NO_MAGICLINKS


def _kept_parent(kept: Kept) -> tuple[int, str]:
    if not kept.rel:
        return kept.fd, "."
    head, _, last = kept.rel.rpartition("/")
    return libc.openat2(kept.fd, head or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, _BENEATH), last


def copy_out(source: Inside | Kept, top: str, dest: Destination, limit: int, flag: str,
             lookup: Callable[[int], Identity]) -> list[tuple[str, str]]:
    """Copy `source` to the host as `dest` says (its entry named `top` inside the stream):
    a process reads it (the helper inside the container, or a child reading the kept tree) and
    this one writes. Returns what was left out; raises OSError, having removed what it made."""
    data_r, data_w = os.pipe2(os.O_CLOEXEC)

    def work() -> None:
        if isinstance(source, Inside):
            parent, last = parent_inside(root(), source.path)
        else:
            parent, last = _kept_parent(source)
        send(data_w, parent, last, top)

    try:
        keep = (data_w,) if isinstance(source, Inside) else (data_w, source.fd)
        pid = fork(work, keep, source.pidfd if isinstance(source, Inside) else None,
                   lambda why: channel.send(data_w, {"k": "error", "message": why}))
    finally:
        os.close(data_w)
    writer = Writer(dest.parent, limit, flag, dest.write_as, lookup)
    try:
        skipped = receive(data_r, writer, dest.name)
        writer.finish()
    except BaseException:
        writer.close()
        writer.undo(dest.parent)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(data_r)
        reap(pid)
    return skipped


def copy_in(source: HostSource, pidfd: int, path: str, limit: int, flag: str,
            lookup: Callable[[int], Identity]) -> list[tuple[str, str]]:
    """Copy `source` into the running container `pidfd` pins, as `path` there (into it, under
    the source's name, when it is a directory): this process reads, the helper inside writes as
    the container's root. Returns what was left out; raises OSError (the helper removed what it
    made)."""
    data_r, data_w = os.pipe2(os.O_CLOEXEC)
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    st = os.fstat(source.opened)

    def work() -> None:
        where, entry = target_inside(root(), path, source.name)
        writer = Writer(where, limit, flag)
        try:
            skipped = receive(data_r, writer, entry)
            writer.finish()
        except BaseException:
            writer.close()
            writer.undo(where)
            raise
        channel.send(result_w, {"ok": skipped})

    try:
        pid = fork(work, (data_r, result_w), pidfd, lambda why: channel.send(result_w, {"error": why}))
    finally:
        os.close(data_r)
        os.close(result_w)
    try:
        try:
            send(data_w, source.parent, source.name, reader=tree.Reader(source.read_as, lookup),
                 expect=(st.st_dev, st.st_ino))
        except BrokenPipeError:
            pass  # the helper stopped: its answer says why
        finally:
            os.close(data_w)
        try:
            answer = channel.receive(result_r)
        except channel.ChannelClosedError:
            answer = {"error": "the helper inside the container stopped without a word"}
    finally:
        os.close(result_r)
        reap(pid)
    if not isinstance(answer, dict) or "ok" not in answer:
        raise OSError(errno.EIO, str(answer.get("error") if isinstance(answer, dict) else answer))
    return [(str(p), str(why)) for p, why in answer["ok"]]
