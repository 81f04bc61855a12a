"""`nucleus oci`'s state directory (runc's --root): one directory per container id holding its
state (state.json: the machine's status, the bundle, the supervisor's and init's pids with their
start times, the annotations) and the fifo its init waits on between create and start (runc's
exec.fifo: the waiting side reads one byte, "s" to start, or a signal number to end); and the
terminal handed to the caller's --console-socket; and the supervisor's share of its container's
namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal as signals
import socket
import stat
import sys
import tempfile
import termios
import tty
from collections.abc import Callable
from typing import Any

from nucleus.config.oci import RLIM_INFINITY, container_id, where
from nucleus.effects import namespaces, rlimits
from nucleus.effects.process import process_start
from nucleus.errors import InvalidInput, RuntimeFailure

DEFAULT_ROOT = "/run/nucleus-oci"
STATE = "state.json"
FIFO = "exec.fifo"
PROFILE = "seccomp.json"  # the config's own profile, when the bundle asks for it
START = b"s"
# The namespaces of a container its supervisor joins: those containerd's CRI plugin names by the
# --pid-file's /proc/PID/ns path to a pod's other containers (a pid namespace cannot be joined by
# the process itself: a pod sharing its pid namespace is not supported through the pid file).
POD_SHARED = ("net", "ipc", "uts")


class Container:
    """One container's directory under the state root. The id is checked here, so that no verb
    reaches outside the root; the root and the directory are opened without following a symlink
    and must be the caller's alone (its own, writable by no one else), and every file in them is
    reached through the directory's descriptor, never followed."""

    def __init__(self, root: str, cid: str) -> None:
        self.root = root
        self.id = container_id(cid)
        self.dir = os.path.join(root, cid)
        self._fd: int | None = None

    def _root(self, create: bool = False) -> int | None:
        """--root's descriptor (made 0700 when `create`); None when there is none."""
        if create:
            try:
                os.makedirs(os.path.dirname(self.root), 0o755, exist_ok=True)
                os.mkdir(self.root, 0o700)
            except FileExistsError:
                pass
            except OSError as e:
                raise RuntimeFailure(f"--root {self.root!r}: cannot make it: {e.strerror}") from None
        try:
            fd = os.open(self.root, DIRECTORY)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RuntimeFailure(f"--root {self.root!r}: {_not_a_directory(e)}", hint=HINT_ROOT) from None
        _own(fd, f"--root {self.root!r}")
        return fd

    def _dir(self) -> int:
        """The container's directory's descriptor; RuntimeFailure naming the id when there is none."""
        if self._fd is not None:
            return self._fd
        root = self._root()
        if root is None:
            raise self._missing()
        try:
            fd = os.open(self.id, DIRECTORY, dir_fd=root)
        except FileNotFoundError:
            raise self._missing() from None
        except OSError as e:
            raise RuntimeFailure(f"container {self.id!r}: {self.dir!r}: {_not_a_directory(e)}",
                                 hint=HINT_ROOT) from None
        finally:
            os.close(root)
        _own(fd, f"container {self.id!r}: {self.dir!r}")
        self._fd = fd
        return fd

    def _missing(self) -> RuntimeFailure:
        return RuntimeFailure(f"container {self.id!r} does not exist (in {self.root!r})")

    def make(self) -> None:
        """The directory (0700) and its fifo; RuntimeFailure when the id is in use."""
        root = self._root(create=True)
        if root is None:
            raise RuntimeFailure(f"--root {self.root!r}: it was removed while the container was being made")
        try:
            os.mkdir(self.id, 0o700, dir_fd=root)
        except FileExistsError:
            raise RuntimeFailure(f"container id {self.id!r} is in use (in {self.root!r})",
                                 hint="delete it first, or choose another id") from None
        except OSError as e:
            raise RuntimeFailure(f"--root {self.root!r}: cannot make {self.dir!r}: {e.strerror}") from None
        finally:
            os.close(root)
        os.mkfifo(FIFO, 0o600, dir_fd=self._dir())

    def exists(self) -> bool:
        """Whether the container's directory is there (RuntimeFailure when it is but is not the
        caller's own)."""
        root = self._root()
        if root is None:
            return False
        try:
            os.stat(self.id, dir_fd=root, follow_symlinks=False)
        except FileNotFoundError:
            return False
        finally:
            os.close(root)
        self._dir()
        return True

    def read(self) -> dict[str, Any]:
        """The state record; RuntimeFailure naming the id when there is none."""
        try:
            fd = os.open(STATE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self._dir())
        except FileNotFoundError:
            raise self._missing() from None
        except OSError as e:
            raise RuntimeFailure(f"container {self.id!r}: cannot read {STATE}: {e.strerror}") from None
        with os.fdopen(fd) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RuntimeFailure(f"container {self.id!r}: {STATE} is not a regular file", hint=HINT_ROOT)
            try:
                data: dict[str, Any] = json.load(f)
            except (OSError, ValueError) as e:
                raise RuntimeFailure(f"container {self.id!r}: cannot read {STATE}: {e}") from None
        return data

    def write(self, data: dict[str, Any]) -> None:
        """Replace the state record in one rename."""
        self.keep(STATE, data)

    def keep(self, name: str, data: Any) -> str:
        """`data` as JSON in the container's directory under `name` (written whole, in one
        rename); its path."""
        directory = self._dir()
        tmp = f".{name}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=directory)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=directory)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
        return os.path.join(self.dir, name)

    def remove(self) -> None:
        root = self._root()
        if root is None:
            return
        try:
            shutil.rmtree(self.id, dir_fd=root, ignore_errors=True)
        finally:
            os.close(root)

    def send_word(self, word: bytes) -> bool:
        """Write `word` to the init waiting on the fifo; False when none waits there."""
        try:
            fd = os.open(FIFO, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir())
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.ENOENT):
                return False
            raise RuntimeFailure(f"container {self.id!r}: cannot open {FIFO}: {e.strerror}", hint=HINT_ROOT) from None
        try:
            self._fifo(fd)
            os.write(fd, word)
        finally:
            os.close(fd)
        return True

    def wait_for_word(self) -> bytes:
        """Block until `start`, `kill` or `delete` writes to the fifo; what it wrote. The fifo is
        held open for reading and writing, so that a writer finds a reader until this returns."""
        fd = os.open(FIFO, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir())
        try:
            self._fifo(fd)
            return os.read(fd, 16)
        finally:
            os.close(fd)

    def _fifo(self, fd: int) -> None:
        """`fd` (opened without blocking) is a fifo: made blocking again; RuntimeFailure if not."""
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise RuntimeFailure(f"container {self.id!r}: {FIFO} in {self.dir!r} is not a fifo", hint=HINT_ROOT)
        os.set_blocking(fd, True)


DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
HINT_ROOT = "the state root and what is in it must be nucleus-oci's own: choose another --root"


def _not_a_directory(e: OSError) -> str:
    if e.errno in (errno.ELOOP, errno.ENOTDIR):
        return "is a symlink or not a directory"
    return f"cannot open it: {e.strerror}"


def _own(fd: int, what: str) -> None:
    """RuntimeFailure (closing `fd`) unless the directory is the caller's and writable by it alone."""
    st = os.fstat(fd)
    why = (f"owned by uid {st.st_uid}, not by uid {os.geteuid()} that runs nucleus-oci"
           if st.st_uid != os.geteuid() else
           f"writable by its group or by others (mode {stat.S_IMODE(st.st_mode):04o})"
           if st.st_mode & 0o022 else None)
    if why is not None:
        os.close(fd)
        raise RuntimeFailure(f"{what}: {why}", hint=HINT_ROOT)


def read_bundle(bundle: str) -> tuple[str, Any]:
    """The bundle's absolute directory and its config.json, parsed; InvalidInput naming
    --bundle and the file when it cannot be read."""
    directory = os.path.abspath(bundle)
    path = os.path.join(directory, "config.json")
    return directory, read_json(path, "--bundle")


def real_path(path: str) -> str:
    """`path` with every symlink on it resolved (a bundle's root is checked where it leads)."""
    return os.path.realpath(path)


def read_json(path: str, what: str) -> Any:
    """The JSON file at `path` (`what` names the flag it came from in an error)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise InvalidInput(f"{what} {path!r}: no such file") from None
    except OSError as e:
        raise InvalidInput(f"{what} {path!r}: cannot read it: {e.strerror}") from None
    except ValueError as e:
        raise InvalidInput(f"{what} {path!r}: not JSON: {e}") from None


class Channel:
    """One JSON message, a line, from a forked child to its parent: the child's other
    descendants (the run's own helpers) may hold the pipe open after it, so the parent reads
    one line, not to the end."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        self.sent = False

    def send(self, message: dict[str, Any]) -> None:
        """In the child: the message (only the first is sent)."""
        if self.sent:
            return
        self.sent = True
        try:
            os.write(self.w, json.dumps(message).encode() + b"\n")
        finally:
            os.close(self.w)

    def receive(self) -> dict[str, Any]:
        """In the parent: the message, or {} when the child ended without one."""
        with os.fdopen(self.r, "rb") as f:
            line = f.readline()
        message: dict[str, Any] = json.loads(line) if line else {}
        return message


def fork(child: Callable[[], int], terminal: int | None = None, channel: Channel | None = None) -> int:
    """A child process in a session of its own that runs `child` and leaves with the status
    it returns; with `terminal` (a console's slave, closed here in the parent), that terminal
    is its controlling terminal and its stdio. The child's pid."""
    pid = os.fork()
    if pid == 0:
        status = 125
        try:
            if channel is not None:
                os.close(channel.r)
            os.setsid()
            if terminal is not None:
                take_terminal(terminal)
            status = child()
        finally:
            sys.stderr.flush()
            os._exit(status)
    if channel is not None:
        os.close(channel.w)
    if terminal is not None:
        os.close(terminal)
    return pid


def alive(pid: int) -> bool:
    """Whether the child `pid` has not ended yet (it is not reaped here)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def signal(processes: dict[int, int | None], number: int) -> None:
    """Send signal `number` to each process (its pid: the start time it must still have),
    through a pidfd opened before the start time is checked, so that a pid reused meanwhile is
    never signalled; one already gone is no error."""
    for pid, start in processes.items():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if process_start(pid) == start:
                signals.pidfd_send_signal(fd, number)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)


def write_pid_file(path: str, pid: int) -> None:
    """runc's --pid-file: the pid, written whole (a new temporary file in the same directory,
    never a link followed, renamed over it)."""
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=os.path.dirname(os.path.abspath(path)))
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, 0o644)
            f.write(str(pid))
        os.replace(tmp, path)
    except OSError as e:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise RuntimeFailure(f"--pid-file {path!r}: cannot write it: {e.strerror}") from None


def console(path: str) -> int:
    """runc's --console-socket: a new pseudo-terminal whose master is sent to the socket at
    `path` (SCM_RIGHTS, with the terminal's name as the message, as runc sends it); the slave,
    which becomes the supervisor's stdin, stdout and stderr: it relays them to the terminal the
    workload gets inside (nucleus.effects.terminal)."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # a plain pipe: the terminal the workload sees is its own, inside
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            socket.send_fds(sock, [os.ttyname(slave).encode()], [master])
    except OSError as e:
        os.close(slave)
        raise RuntimeFailure(f"--console-socket {path!r}: cannot hand the terminal over: {e.strerror}") from None
    finally:
        os.close(master)
    return slave


def take_terminal(slave: int) -> None:
    """In a new session: `slave` becomes its controlling terminal (so the window size's changes
    reach it) and its stdin, stdout and stderr."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def check_rlimits(given: tuple[tuple[str, int, int], ...]) -> None:
    """Refuse, before anything is made, a hard limit of process.rlimits above the runtime's own:
    the container inherits the runtime's limits, and raising one needs CAP_SYS_RESOURCE in the
    host's user namespace, which the container's processes never have."""
    for label, asked, allowed in rlimits.over_host(given):
        index = [name for name, _soft, _hard in given].index(label)
        shown = RLIM_INFINITY if asked == -1 else asked
        raise InvalidInput(f"{where(f'process.rlimits[{index}].hard')} {shown}: {label} is above the "
                           f"runtime's own hard limit {allowed}, which the container cannot exceed",
                           hint=f"ask for at most {allowed}, or raise the limit nucleus-oci runs with")


def root_entries(rootfs: str | None) -> tuple[str, ...]:
    """The top-level entries of a bundle's root that are directories or regular files (never
    followed: a symlink is left out)."""
    if rootfs is None:
        return ()
    try:
        with os.scandir(rootfs) as listing:
            return tuple(sorted(e.name for e in listing
                                if e.is_dir(follow_symlinks=False) or e.is_file(follow_symlinks=False)))
    except OSError as e:
        raise InvalidInput(f"config.json: root.path {rootfs!r}: cannot list it: {e.strerror}") from None


def cgroup_pids(procs_files: tuple[str, ...]) -> list[int]:
    """The pids in the container's cgroup (its cgroup.procs files), each once."""
    pids: set[int] = set()
    for path in procs_files:
        with contextlib.suppress(OSError), open(path) as f:
            pids.update(int(line) for line in f if line.strip())
    return sorted(pids)


def share_namespaces(init: int, start: int | None) -> None:
    """The supervisor joins its container's POD_SHARED namespaces (those it does not share yet)."""
    try:
        namespaces.share(init, start, POD_SHARED)
    except OSError as e:
        raise RuntimeFailure(f"the container's {'/'.join(POD_SHARED)} namespaces could not be shared "
                             f"with its supervisor: {e.strerror or e}") from None
