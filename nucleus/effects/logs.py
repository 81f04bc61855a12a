"""A detached container's log, capped: the container's output arrives on a pipe, and a small
logger process (forked by the detached supervisor, see nucleus.effects.process.detach) copies it
into `<id>.log`, starting a new file when the current one would grow past the size cap and
keeping at most a given number of files: `<id>.log` is the newest, `<id>.log.1` the one before,
and so on (Docker's json-file driver names the two limits max-size and max-file). The logger
exits once every writer has closed the pipe.

Readers take the files oldest first and follow the current file across rotations (a renamed
file is read to its end through the descriptor already open, then the new one from its start).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable

from nucleus.frozen import frozen

CHUNK = 65536


@frozen
class Sink:
    """Where a detached container's output goes: the current file's path, the size at which a
    new file is started, how many files are kept, and the container's record (once it is gone,
    the container was removed: what is left in the pipe is dropped, never written to a new
    file that nothing would remove)."""

    path: str
    max_size: int
    max_files: int
    record: str


def rotated(path: str, n: int) -> str:
    """The nth file before the current one (0: the current one)."""
    return path if n == 0 else f"{path}.{n}"


def files(path: str) -> list[str]:
    """The log's files that exist, oldest first (the current one last)."""
    directory, base = os.path.split(path)
    pattern = re.compile(re.escape(base) + r"\.([1-9][0-9]{0,3})")
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    older = sorted((int(m.group(1)) for name in names if (m := pattern.fullmatch(name))), reverse=True)
    found = [rotated(path, n) for n in older]
    if base in names:
        found.append(path)
    return found


def size(path: str) -> int | None:
    """The bytes the log's files hold together; None when there is no file."""
    total = None
    for name in files(path):
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            total = (total or 0) + st.st_size
    return total


def remove(path: str) -> None:
    for name in files(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


# --- the writer (the logger process) --------------------------------------------------------------


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def _cut(chunk: bytes, room: int, empty: bool) -> int:
    """How much of `chunk` goes into a file with `room` bytes left: all that fits up to the last
    line end; a line longer than a whole file is split; 0 means start a new file first."""
    if len(chunk) <= room:
        return len(chunk)
    end = chunk.rfind(b"\n", 0, room) + 1
    if end:
        return end
    return room if empty else 0


class Writer:
    """Appends to the log, rotating at `sink.max_size`; write errors (a full disk) drop the
    data rather than stop the container.

    With `shared`, other processes append to the same files (a container's violation stream
    has a monitor for the container and one for each command joined into it): each write goes
    to the current file, whoever started it, counting what that file holds; and a rotation is
    made under a lock on the file it rotates, once: a writer that waited for the lock finds the
    file rotated already and writes to the new one."""

    def __init__(self, sink: Sink, shared: bool = False) -> None:
        if sink.max_size < 1 or sink.max_files < 1:
            raise ValueError(f"a log of at most {sink.max_files} files of {sink.max_size} bytes")
        self.sink = sink
        self.shared = shared
        self.fd: int | None = _open(sink.path)
        self.size = os.fstat(self.fd).st_size

    def write(self, chunk: bytes) -> None:
        if self.shared:
            self._follow()
        while chunk and self.fd is not None:
            n = _cut(chunk, self.sink.max_size - self.size, self.size == 0)
            if n == 0:
                self.rotate()
                continue
            self._append(chunk[:n])
            chunk = chunk[n:]

    def _append(self, data: bytes) -> None:
        assert self.fd is not None
        self.size += len(data)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except InterruptedError:
                continue
            except OSError:
                return  # dropped: the size still counts, so the next rotation comes as planned

    def _follow(self) -> bool:
        """Take the current file when another writer started a new one (True then), and count
        what it holds. A log removed meanwhile is not made again: the writes go where they went."""
        assert self.fd is not None
        try:
            current = os.stat(self.sink.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(self.fd)
        moved = (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino)
        if moved:
            try:
                fd = os.open(self.sink.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                return False
            os.close(self.fd)
            self.fd = fd
        self.size = os.fstat(self.fd).st_size
        return moved

    def rotate(self) -> None:
        """Start a new current file, keeping `max_files` in all."""
        assert self.fd is not None
        if not self.shared:
            self._rotate()
            return
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            before = self.size
            if self._follow() or self.size < before:
                return  # another writer rotated it meanwhile: the caller looks at the room again
            self._rotate()
        finally:
            if self.fd is not None:  # (a file rotated away was unlocked as it was closed)
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _rotate(self) -> None:
        assert self.fd is not None
        if not os.path.exists(self.sink.record):
            os.close(self.fd)  # the container was removed with its log: drop the rest
            self.fd = None
            return
        path, keep = self.sink.path, self.sink.max_files
        if keep == 1:
            os.ftruncate(self.fd, 0)
            self.size = 0
            return
        # Each rename replaces the file it lands on at once (the oldest first): no moment
        # without a kept file of each number.
        for n in range(keep - 2, -1, -1):
            with contextlib.suppress(FileNotFoundError):
                os.rename(rotated(path, n), rotated(path, n + 1))
        os.close(self.fd)
        self.fd = _open(path)
        self.size = os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def copy(source: int, sink: Sink, idle: float | None = None) -> bool:
    """The logger: copy what arrives on `source` into the log until every writer has closed it
    (True), or, with `idle`, until nothing has come for that many seconds (False)."""
    import select

    writer = Writer(sink)
    poller = select.poll()
    poller.register(source, select.POLLIN)
    try:
        while True:
            if idle is not None and not poller.poll(int(idle * 1000)):
                return False
            try:
                chunk = os.read(source, CHUNK)
            except InterruptedError:
                continue
            if not chunk:
                return True
            writer.write(chunk)
    finally:
        writer.close()


IDLE = 2.0  # seconds without output after which the logger waits as the keeper (nucleus/init/keeper.c)


def main(argv: list[str]) -> None:
    """A detached supervisor's logger (nucleus.effects.process): `PATH MAX_SIZE MAX_FILES
    RECORD`, copying its standard input; between bursts of output it waits as the keeper's
    few KiB, which starts it again when more comes."""
    from nucleus.effects import process

    path, max_size, max_files, record = argv
    held = os.access(process.KEEPER, os.X_OK)
    if not copy(0, Sink(path, int(max_size), int(max_files), record), IDLE if held else None):
        os.execv(process.KEEPER, [process.KEEPER, "--when-readable", "0", "--",
                                  *process.interpreter(__name__), *argv])


# --- readers --------------------------------------------------------------------------------------


def _read_all(fd: int, offset: int) -> bytes:
    chunks = []
    while chunk := os.pread(fd, CHUNK, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _read_file(name: str) -> bytes:
    """A whole file (nothing when it is gone meanwhile)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    try:
        return _read_all(fd, 0)
    finally:
        os.close(fd)


class Reader:
    """The log oldest file first (`snapshot`), then what is appended after (`more`), across
    rotations."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.offset = 0

    def _open_current(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            self.fd = None
        self.offset = 0

    def skip(self) -> None:
        """Start at the end: `more` returns only what is appended from now on."""
        self._open_current()
        if self.fd is not None:
            self.offset = os.fstat(self.fd).st_size

    def snapshot(self) -> bytes:
        """Everything the log holds now, oldest first."""
        self._open_current()  # first: a rotation meanwhile renames this file, never loses it
        parts = [_read_file(name) for name in files(self.path) if name != self.path]
        parts.append(self.more())
        return b"".join(parts)

    def more(self) -> bytes:
        """What was appended since the last call (following the current file to a new one
        when it was rotated, and from its start when it was truncated)."""
        if self.fd is None:
            self._open_current()
            if self.fd is None:
                return b""
        data = _read_all(self.fd, self.offset)
        self.offset += len(data)
        if data:
            return data
        if os.fstat(self.fd).st_size < self.offset:  # truncated (a single file is kept)
            self.offset = 0
            return self.more()
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        held = os.fstat(self.fd).st_ino
        if current is not None and current != held:
            parts = [_read_all(self.fd, self.offset)]  # what was written before the rename
            os.close(self.fd)
            parts += self._newer_than(held)  # rotated more than once since the last call
            self._open_current()
            return b"".join(parts) + (self.more() if self.fd is not None else b"")
        return b""

    def _newer_than(self, held: int) -> list[bytes]:
        """The whole of each rotated file newer than the one held (all of them when that one
        was rotated out of the log), oldest first."""
        older = [name for name in files(self.path) if name != self.path]
        for i, name in enumerate(older):
            try:
                if os.stat(name).st_ino == held:
                    older = older[i + 1:]
                    break
            except FileNotFoundError:
                continue
        return [_read_file(name) for name in older]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def follow(reader: Reader, pending: bytes, running: Callable[[], bool], write: Callable[[str], None],
           interval: float = 0.1) -> None:
    """Copy `pending`, then what is appended to the log, until `running()` turns false; then
    what is left."""
    import codecs
    import time

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    if pending:
        write(decoder.decode(pending))
    while True:
        chunk = reader.more()
        if chunk:
            write(decoder.decode(chunk))
            continue
        if not running():
            write(decoder.decode(reader.more(), final=True))
            return
        time.sleep(interval)
