"""The state directory: one JSON document per container, mode 0600, replaced atomically, with
writers serialized by an advisory lock on the directory.

A record says which processes to signal and what to release, so only a directory that the
caller owns and nobody else can write is used: another user's directory (root's `--root` into a
user's, or a `/tmp/nucleus-<uid>` someone else made first) is refused, never trusted. A record
whose name is not a container id, whose file is not a regular file of the caller's that no one
else can write, or whose content is not a record, is passed over with a warning.

A detached container's log lives beside its record, named after its id (never after anything a
record says), rotated as nucleus.effects.logs describes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from nucleus.effects import abi, libc, logs

ROOTFS = "rootfs"  # the mount point under the state directory (see nucleus.plan.run)
CONTAINER_ID = re.compile(r"[0-9a-f]{32}")
MAX_RECORD = 1 << 20  # bytes; a record is a few KiB
Check = Callable[[dict[str, Any]], "str | None"]
LogReader = logs.Reader  # for the management commands, which reach the effects through here
follow_log = logs.follow


def random_id() -> str:
    """128 random bits in hex: secrets.token_hex(16)'s bytes, without importing hmac and random
    on the run path."""
    return os.urandom(16).hex()


def _refused(path: str, why: str) -> Exception:
    from nucleus.errors import RuntimeFailure

    return RuntimeFailure(
        f"the state directory {path!r} {why}",
        hint="use a state directory of your own (--root DIR); a user's containers are managed as "
             "that user")


def owned(path: str) -> bool:
    """Whether `path` is a directory (not a link) that the caller owns and that no one else can
    write; False when it does not exist; refused when it is anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise _refused(path, "is not a directory (a part of its path is a file)") from None
    except OSError as e:
        raise _refused(path, f"cannot be examined: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _refused(path, "is not a directory")
    if st.st_uid != os.geteuid():
        raise _refused(path, f"belongs to uid {st.st_uid}, not to the caller (uid {os.geteuid()})")
    if st.st_mode & 0o022:
        raise _refused(path, f"may be written by others (mode {stat.S_IMODE(st.st_mode):04o})")
    return True


def _file_refusal(st: os.stat_result) -> str | None:
    """Why a record's file is not to be trusted, or None."""
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"belongs to uid {st.st_uid}, not to the caller (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"may be written by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if st.st_size > MAX_RECORD:
        return f"is too large for a record ({st.st_size} bytes)"
    return None


class Store:
    """`check`, when given, says why a record's content is not a record (None when it is): such
    a record is passed over like a damaged one."""

    def __init__(self, root: str, check: Check | None = None) -> None:
        self.root = root
        self.dir = os.path.join(root, "containers")
        self.check = check

    def ensure(self) -> None:
        """The state directory (made 0700 if missing, else checked), the records' directory, and
        the mount point where containers' roots are assembled (each in its own mount namespace;
        the directory itself stays empty)."""
        for path in (self.root, self.dir, os.path.join(self.root, ROOTFS)):
            if not owned(path):
                try:
                    os.makedirs(path, mode=0o700)
                except FileExistsError:
                    pass  # made meanwhile (by a concurrent run of ours, or by someone else): checked below
                except OSError as e:
                    from nucleus.errors import RuntimeFailure

                    raise RuntimeFailure(f"cannot create the state directory {path!r}: {e.strerror}",
                                         hint="pass a directory you may create (--root DIR)") from None
                owned(path)

    def _readable(self) -> bool:
        """Whether there is a state directory to read (checked as `ensure` checks it)."""
        return owned(self.root) and owned(self.dir)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for a read-modify-write of any record."""
        self.ensure()
        fd = os.open(os.path.join(self.root, ".lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def path(self, cid: str) -> str:
        return os.path.join(self.dir, f"{cid}.json")

    def log_path(self, cid: str) -> str:
        """The current file of a detached container's log (older ones carry .1, .2, ...)."""
        if not CONTAINER_ID.fullmatch(cid):
            raise ValueError(f"not a container id: {cid!r}")
        return os.path.join(self.dir, f"{cid}.log")

    def violations_path(self, cid: str) -> str:
        """The current file of a container's violation stream (nucleus.config.violations; the
        one before carries .1)."""
        from nucleus.config.violations import stream_path

        if not CONTAINER_ID.fullmatch(cid):
            raise ValueError(f"not a container id: {cid!r}")
        return stream_path(self.root, cid)

    def stop_path(self, cid: str) -> str:
        """The mark stop, kill and rm leave before they signal a service: its supervisor starts
        it no more (nucleus.app.service)."""
        if not CONTAINER_ID.fullmatch(cid):
            raise ValueError(f"not a container id: {cid!r}")
        return os.path.join(self.dir, f"{cid}.stop")

    def notify_path(self, cid: str) -> str:
        """The socket a --readiness-sd-notify workload's notifications come to
        (nucleus.effects.notify.Relay), bound into its container."""
        if not CONTAINER_ID.fullmatch(cid):
            raise ValueError(f"not a container id: {cid!r}")
        return os.path.join(self.dir, f"{cid}.notify")

    def mark_stop(self, cid: str) -> None:
        os.close(os.open(self.stop_path(cid), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))

    def stop_marked(self, cid: str) -> bool:
        return os.path.lexists(self.stop_path(cid))

    def violations_reader(self, cid: str) -> logs.Reader:
        return logs.Reader(self.violations_path(cid))

    def log_sink(self, cid: str, max_size: int, max_files: int) -> logs.Sink:
        return logs.Sink(self.log_path(cid), max_size, max_files, self.path(cid))

    def log_size(self, cid: str) -> int | None:
        """The bytes a container's log holds (every kept file); None when it has none."""
        return logs.size(self.log_path(cid))

    def log_reader(self, cid: str) -> logs.Reader:
        return logs.Reader(self.log_path(cid))

    def context_path(self, cid: str) -> str:
        """Where a stopped detached container's copied /context is kept (a mount point)."""
        if not CONTAINER_ID.fullmatch(cid):
            raise ValueError(f"not a container id: {cid!r}")
        return os.path.join(self.dir, f"{cid}.context")

    def keep_context(self, cid: str, tree: int) -> None:
        """Attach the detached mount `tree` (the container's /context, read-only, nosuid, nodev,
        noexec) at `context_path`, a directory made 0700 in the records' directory: its memory
        stays the tmpfs's own until `delete` lets it go."""
        path = self.context_path(cid)
        os.mkdir(path, 0o700)
        try:
            libc.move_mount(tree, "", abi.AT_FDCWD, path, abi.MOVE_MOUNT_F_EMPTY_PATH)
        except OSError:
            os.rmdir(path)
            raise

    def kept_context(self, cid: str) -> int | None:
        """The kept /context of a container, opened (O_PATH, never through a symlink), or None
        when it has none (the directory is there but nothing is mounted on it counts as none)."""
        try:
            fd = os.open(self.context_path(cid), os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if os.fstat(fd).st_dev == os.stat(self.dir).st_dev:
            os.close(fd)
            return None
        return fd

    def release_context(self, cid: str) -> None:
        """Unmount and remove a kept /context, if there is one."""
        path = self.context_path(cid)
        if not os.path.lexists(path):
            return
        try:
            libc.umount2(path, abi.MNT_DETACH | abi.UMOUNT_NOFOLLOW)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)

    def write(self, record: dict[str, Any]) -> None:
        self.ensure()
        write_document(self.path(record["id"]), record)

    def update(self, cid: str, **fields: Any) -> dict[str, Any] | None:
        with self.locked():
            record = self.read(cid)
            if record is None:
                return None
            record.update(fields)
            self.write(record)
            return record

    def read(self, cid: str) -> dict[str, Any] | None:
        """The record of container `cid`, or None (no such record, or not a record)."""
        if not CONTAINER_ID.fullmatch(cid) or not self._readable():
            return None
        path = self.path(cid)
        try:
            # Non-blocking: a FIFO in its place must not hang the reader.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                _warn(f"{path} is a link: passed over")
                return None
            _warn(f"{path} cannot be read ({e.strerror}): passed over")
            return None
        with os.fdopen(fd, "rb") as f:
            refusal = _file_refusal(os.fstat(fd))
            if refusal is not None:
                _warn(f"{path} {refusal}: passed over")
                return None
            try:
                data = json.loads(f.read(MAX_RECORD))
            except (ValueError, UnicodeDecodeError, RecursionError):
                return None  # being replaced, or damaged: the next read sees the whole record
        if not isinstance(data, dict) or data.get("id") != cid:
            _warn(f"{path} is not the record of container {cid}: passed over")
            return None
        problem = None if self.check is None else self.check(data)
        if problem is not None:
            _warn(f"{path} is not a record nucleus can use ({problem}): passed over")
            return None
        return data

    def all(self) -> list[dict[str, Any]]:
        if not self._readable():
            return []
        out = []
        for name in sorted(os.listdir(self.dir)):
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

    def delete(self, cid: str) -> None:
        """The record first, then the log (a logger still draining sees the record gone and
        starts no new file), then a kept /context."""
        try:
            os.unlink(self.path(cid))
        except FileNotFoundError:
            pass
        logs.remove(self.log_path(cid))
        logs.remove(self.violations_path(cid))
        for path in (self.stop_path(cid), self.notify_path(cid)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.release_context(cid)


    # --- a topology's persistent volumes (nucleus compose) ----------------------------------------

    def volumes_dir(self, topology: str) -> str:
        return os.path.join(self.root, "topologies", topology, "volumes")

    def volume(self, topology: str, name: str) -> str:
        """The directory of a topology's persistent volume, made (0755) if missing."""
        path = os.path.join(self.volumes_dir(topology), name)
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
        except OSError as e:
            from nucleus.errors import RuntimeFailure

            raise RuntimeFailure(f"cannot create the volume directory {path!r}: {e.strerror}") from None
        return path

    def remove_volumes(self, topology: str) -> list[str]:
        """Remove a topology's persistent volumes (and its directory): the volumes removed."""
        import shutil

        top = os.path.dirname(self.volumes_dir(topology))
        try:
            names = sorted(os.listdir(self.volumes_dir(topology)))
        except FileNotFoundError:
            names = []
        shutil.rmtree(top, ignore_errors=True)
        return names


def write_document(final: str, doc: dict[str, Any]) -> None:
    """`doc` as the JSON file `final` (0600), replaced at once: a reader sees the old or the new
    one whole. No fsync: the state describes live processes and belongs on a tmpfs (/run)."""
    tmp = f"{final}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        # Compact: the C encoder (an indented dump takes the pure-Python one, ten times slower).
        os.write(fd, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, final)


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")
