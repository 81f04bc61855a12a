"""The state directory: one JSON document per container, mode 0600, replaced atomically, with
writers serialized by an advisory lock on the directory."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

ROOTFS = "rootfs"  # the mount point under the state directory (see nucleus.plan.run)


class Store:
    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, "containers")

    def ensure(self) -> None:
        """The records' directory, and the mount point where containers' roots are assembled
        (each in its own mount namespace; the directory itself stays empty)."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(self.root, ROOTFS), mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for a read-modify-write of any record."""
        self.ensure()
        fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def path(self, cid: str) -> str:
        return os.path.join(self.dir, f"{cid}.json")

    def log_path(self, cid: str) -> str:
        return os.path.join(self.dir, f"{cid}.log")

    def write(self, record: dict[str, Any]) -> None:
        self.ensure()
        final = self.path(record["id"])
        tmp = f"{final}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            # No fsync: the records describe live processes and belong on a tmpfs (/run); the
            # rename alone keeps every reader's view whole.
            os.write(fd, json.dumps(record, indent=1, sort_keys=True).encode() + b"\n")
        finally:
            os.close(fd)
        os.replace(tmp, final)

    def update(self, cid: str, **fields: Any) -> dict[str, Any] | None:
        with self.locked():
            record = self.read(cid)
            if record is None:
                return None
            record.update(fields)
            self.write(record)
            return record

    def read(self, cid: str) -> dict[str, Any] | None:
        try:
            fd = os.open(self.path(cid), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except PermissionError as e:
            from nucleus.errors import RuntimeFailure

            raise RuntimeFailure(f"cannot read {self.path(cid)}: {e.strerror}",
                                 hint="containers are managed by the user who started them, or root") from None
        with os.fdopen(fd) as f:
            try:
                record: dict[str, Any] = json.load(f)  # what write() wrote: an object
            except json.JSONDecodeError:
                return None
            return record

    def all(self) -> list[dict[str, Any]]:
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        except PermissionError as e:
            from nucleus.errors import RuntimeFailure

            raise RuntimeFailure(f"cannot read the state directory {self.dir}: {e.strerror}",
                                 hint="containers are managed by the user who started them, or root") from None
        out = []
        for name in names:
            if name.endswith(".json"):
                record = self.read(name[:-5])
                if record is not None:
                    out.append(record)
        return out

    def wait_until(self, cid: str, done: Callable[[dict[str, Any] | None], bool], timeout: float,
                   interval: float = 0.02) -> bool:
        """Poll the record until `done(record)` (None once it is deleted); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self.read(cid)):
                return True
            time.sleep(interval)
        return done(self.read(cid))

    def follow_log(self, path: str, offset: int, running: Callable[[], bool], out: TextIO,
                   interval: float = 0.1) -> None:
        """Copy what is appended to a log from `offset` on until `running()` turns false, then
        what is left."""
        with open(path, "rb") as f:
            f.seek(offset)
            while True:
                chunk = f.read()
                if chunk:
                    out.write(chunk.decode(errors="replace"))
                    out.flush()
                    continue
                if not running():
                    rest = f.read()
                    if rest:
                        out.write(rest.decode(errors="replace"))
                    return
                time.sleep(interval)

    def delete(self, cid: str) -> None:
        for path in (self.path(cid), self.log_path(cid)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def process_start(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), to tell a pid from a reused one;
    None when the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] == b"Z":
        return None
    return int(rest[19])


def read_log(path: str) -> bytes:
    """A container's log as it is now (empty when it was never written)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def alive(pid: int | None, start: int | None) -> bool:
    return pid is not None and start is not None and process_start(pid) == start
