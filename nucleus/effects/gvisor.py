"""runsc, gVisor's OCI runtime, as the Gvisor machine's intents ask: write the bundle, start
`runsc run`, signal the sandbox, delete it, remove the container's directory; with a bridge,
the network namespace and the Network machine's intents (nucleus.effects.gvisor_net). Each
handler does what its intent says and reports what happened (nucleus.vocab.gvisor); the
machine decides.

runsc is taken only from a directory root controls (never from PATH), and only a file owned by
root that no one else may write: it runs as root with the bundle's mounts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable

from nucleus import linux
from nucleus import vocab as v
from nucleus.config.container import ContainerConfig
from nucleus.effects import abi, fs, gvisor_net, libc
from nucleus.effects.process import WAITED, default_signals, exit_status, poll_exit
from nucleus.errors import HostUnsupported, InvalidInput
from nucleus.vocab import gvisor as gv
from nucleus.vocab.events import Event
from nucleus.vocab.intents import Intent

SEARCHED = ("/usr/local/bin", "/usr/bin", "/opt/gvisor")
POLL = 0.01  # seconds between looks for runsc's pid file while it sets the sandbox up
COMMAND_TIMEOUT = 60.0  # seconds runsc kill or delete may take
NOT_FOUND = ("does not exist", "not found", "no such file")


def find_runsc() -> str:
    """runsc's path; HostUnsupported naming where it was looked for and what was wrong."""
    problems = []
    for directory in SEARCHED:
        path = os.path.join(directory, "runsc")
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
            problems.append(f"{path} is not an executable file")
        elif st.st_uid != 0 or st.st_mode & 0o022:
            problems.append(f"{path} is not root's alone (owner {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})")
        else:
            return path
    where = ", ".join(SEARCHED)
    raise HostUnsupported(f"--runtime gvisor: no usable runsc in {where}"
                          + (f" ({'; '.join(problems)})" if problems else ""),
                          hint="install gVisor's runsc (Debian: apt-get install runsc), owned by root and "
                               "writable by root alone")


PROBE_WAIT = 10.0  # seconds a platform other than ptrace has to run `true` in a sandbox


def platform_refusal(runsc: str, platform: str, scratch: str) -> HostUnsupported | None:
    """Why `platform` cannot run a sandbox here (None when it can): kvm needs /dev/kvm, and a
    sandbox of it must run `true` within PROBE_WAIT seconds (runsc --root SCRATCH do true;
    SCRATCH, a new directory, is removed after)."""
    if platform == "ptrace":
        return None
    hint = "use --gvisor-platform ptrace (the default)"
    if platform == "kvm" and not os.path.exists("/dev/kvm"):
        return HostUnsupported("--gvisor-platform kvm: this host has no /dev/kvm", hint=hint)
    try:
        os.makedirs(scratch, mode=0o700)
        done = subprocess.run((runsc, "--root", scratch, "--platform", platform, "--network", "none", "do", "true"),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=PROBE_WAIT, check=False)
    except subprocess.TimeoutExpired:
        return HostUnsupported(f"--gvisor-platform {platform}: runsc's sandbox did not run `true` within "
                               f"{PROBE_WAIT:.0f} seconds on this host (kernel {os.uname().release})", hint=hint)
    except OSError as e:
        return HostUnsupported(f"--gvisor-platform {platform}: cannot try it: {e.strerror or e}", hint=hint)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return HostUnsupported(f"--gvisor-platform {platform}: runsc cannot run a sandbox with it"
                               + (f": {said[-1]}" if said else ""), hint=hint)
    return None


class GvisorExecutor:
    """Carries out the Gvisor machine's intents; `warn` says what a cleanup step could not do."""

    def __init__(self, warn: Callable[[str], None] | None = None, fault: tuple[str, int] | None = None) -> None:
        self.warn = warn
        # NUCLEUS_FAIL_AT (nucleus.effects.executor.parse_fault): the nth such network intent
        # fails, for the tests of the failure paths.
        self.fault = fault
        self.counts: dict[str, int] = {}
        self.runsc_pid: int | None = None
        self.exec_status: int | None = None  # an ExecSandbox's command's status
        self.holder: int | None = None  # the process holding the container's network namespace

    def perform(self, intents: tuple[Intent, ...]) -> list[Event]:
        events: list[Event] = []
        for intent in intents:
            match intent:
                case gv.WriteBundle():
                    events.append(write_bundle(intent))
                case gv.MakeNetns():
                    event, self.holder = gvisor_net.make_netns(intent)
                    events.append(event)
                case gv.EndNetns():
                    events.append(gvisor_net.end_netns(intent))
                    self.holder = None
                case gv.RunSandbox():
                    event = self.run(intent)
                    events.append(event)
                case gv.SignalSandbox():
                    problem = _command(intent.argv)
                    if problem and self.warn is not None:
                        self.warn(f"runsc kill: {problem}")
                case gv.ExecSandbox():
                    self.exec_status = self.exec(intent)
                case gv.DeleteSandbox():
                    if intent.kill:
                        _command(intent.kill)
                    problem = _command(intent.argv)
                    if problem and not any(text in problem.lower() for text in NOT_FOUND):
                        if self.warn is not None:
                            self.warn(f"runsc delete: {problem}")
                        return events
                    events.append(gv.Deleted())
                case gv.RemoveBundle():
                    try:
                        shutil.rmtree(intent.directory)
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        if self.warn is not None:
                            self.warn(f"cannot remove {intent.directory!r}: {e.strerror}")
                        return events
                    events.append(gv.Unbundled())
                case _ if intent.reports is not None and intent.reports[0] == "net":
                    n = self.counts[intent.name] = self.counts.get(intent.name, 0) + 1
                    if self.fault == (intent.name, n):
                        events.append(v.failed(intent, errno.EIO, f"injected failure of {intent.name} #{n}"))
                    else:
                        events.append(gvisor_net.perform(intent, self.holder))
                case _:
                    raise TypeError(f"the gVisor executor has no handler for {intent.name}")
            if events and (isinstance(events[-1], gv.Fail) or v.is_failure(events[-1])):
                return events
        return events

    def run(self, intent: gv.RunSandbox) -> Event:
        """Start runsc run; Started once it has written its pid file (the sandbox exists and the
        workload is started), Fail when it exits before that, with its first error."""
        try:
            pid = _spawn(intent.argv, intent.stdin, intent.masked)
        except OSError as e:
            return gv.Fail(step="run", message=f"cannot fork for runsc: {e.strerror}")
        self.runsc_pid = pid
        while True:
            if os.path.exists(intent.pid_file):
                return gv.Started(pid=pid)
            code = poll_exit(pid)
            if code is not None:
                self.runsc_pid = None
                return gv.Fail(step="run", message=f"runsc run exited with status {code}{_first_error(intent.log)}")
            time.sleep(POLL)

    def exec(self, intent: gv.ExecSandbox) -> int:
        """Run runsc exec with the caller's stdio to its end; the command's status (runsc exec
        exits with it), 126 when runsc cannot be started."""
        try:
            pid = _spawn(intent.argv, intent.stdin)
        except OSError:
            return 126
        _, status = os.waitpid(pid, 0)
        return exit_status(status)

    def wait_forwarding(self, forward: Callable[[str], object]) -> int:
        """Wait for runsc run to end (the caller has blocked WAITED), handing each signal sent
        on purpose (si_code <= 0: kill, sigqueue, tkill) to `forward` by name (the machine
        decides which go on); the workload's status, as runsc run exits with it. A terminal's
        signals reach runsc's process group directly."""
        pid = self.runsc_pid
        assert pid is not None
        while True:
            info = signal.sigwaitinfo(WAITED)
            if info.si_signo == signal.SIGCHLD:
                code = poll_exit(pid)
                if code is not None:
                    self.runsc_pid = None
                    return code
                continue
            if info.si_code <= 0:
                forward(signal_name(info.si_signo))


def _spawn(argv: tuple[str, ...], stdin: bool, masked: tuple[str, ...] = ()) -> int:
    """Fork and exec `argv` with the caller's stdout and stderr (stdin /dev/null unless
    `stdin`), default signal dispositions and an empty mask, and each of `masked` covered by an
    empty read-only tmpfs in a mount namespace of its own; its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs
        try:
            default_signals()
            if not stdin:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
            if masked:
                _mask(masked)
            os.execv(argv[0], list(argv))
        except OSError as e:
            os.write(2, f"error: cannot start {argv[0]}: {e}\n".encode())
        finally:
            os._exit(127)
    return pid


def _mask(paths: tuple[str, ...]) -> None:  # pragma: no cover - in the child, before it execs
    """A mount namespace of the process's own (the host's mounts reach it, its own go nowhere),
    with each of `paths` covered by an empty read-only tmpfs."""
    libc.unshare(linux.CLONE_NEWNS)
    libc.mount(None, "/", None, abi.MS_REC | abi.MS_SLAVE)
    for path in paths:
        libc.mount("tmpfs", path, "tmpfs", abi.MS_RDONLY | abi.MS_NOSUID | abi.MS_NODEV | abi.MS_NOEXEC,
                   "size=4k,mode=0555")


def write_bundle(intent: gv.WriteBundle) -> Event:
    """Make the bundle; on a failure nothing of it is left (Fail at the bundle step)."""
    try:
        # 0711: the gofer, as the container's mapped root, passes through to the root alone.
        os.makedirs(os.path.dirname(intent.directory), mode=0o711, exist_ok=True)
        os.mkdir(intent.directory, 0o711)
        os.chmod(intent.directory, 0o711)  # past the umask
    except OSError as e:
        return gv.Fail(step="bundle", message=f"cannot make {intent.directory!r}: {e.strerror}")
    try:
        _write(os.path.join(intent.directory, "config.json"), intent.config, 0o600)
        os.mkdir(intent.root, 0o755)
        for rel in intent.dirs:
            os.makedirs(_inside(intent.root, rel), mode=0o755, exist_ok=True)
        for rel, target in intent.links:
            path = _inside(intent.root, rel)
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            os.symlink(target, path)
        for rel, text in intent.files:
            _write(_inside(intent.root, rel), text, 0o644)
        # Owned by the container's root, as a native run's root tmpfs is: writable inside (in
        # the sandbox's memory), and nothing there is written to this directory.
        os.chown(intent.root, *intent.owner)
        if intent.context is not None:
            _copy_context(intent.context, intent.owner)
    except (OSError, ValueError) as e:
        shutil.rmtree(intent.directory, ignore_errors=True)
        return gv.Fail(step="bundle", message=f"cannot write the bundle in {intent.directory!r}: "
                                              f"{getattr(e, 'strerror', None) or e}")
    return gv.Written()


def _copy_context(op: v.CopyTree, root: tuple[int, int]) -> None:
    """The context's filtered copy, as a native run makes it (nucleus.effects.fs.copy_tree), in a
    forked process (the copy may read as other users: their identities stay its own). Its
    directory is the workload's, 0755, as inside, below one only the container's root may enter
    (0700): no other user of the host reaches the copy, which may hold what only the caller
    could read. The descriptor it was read from is closed after."""
    try:
        parent = os.path.dirname(op.target)
        os.mkdir(parent, 0o700)
        os.chown(parent, *root)
        os.mkdir(op.target, 0o755)
        os.chown(op.target, *(op.owner or root))
        gvisor_net.forked(lambda: fs.copy_tree(op), "the context's copy")
    finally:
        with contextlib.suppress(OSError):
            os.close(op.opened)


def _inside(root: str, rel: str) -> str:
    """`rel` below `root`, never above it."""
    path = os.path.normpath(os.path.join(root, rel))
    if not path.startswith(root.rstrip("/") + "/"):
        raise ValueError(f"{rel!r} is outside the bundle's root")
    return path


def _write(path: str, text: str, mode: int) -> None:
    # O_EXCL and O_NOFOLLOW: the directory is new and nucleus's own; nothing is there to follow.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _command(argv: tuple[str, ...]) -> str:
    """Run a runsc command to its end; "" when it succeeded, else what it said."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, errors="replace", check=False)
    except subprocess.TimeoutExpired:
        return f"no answer within {COMMAND_TIMEOUT:.0f} seconds"
    except OSError as e:
        return e.strerror or str(e)
    if done.returncode == 0:
        return ""
    said = (done.stderr or done.stdout).strip().splitlines()
    return said[-1] if said else f"exit status {done.returncode}"


def _first_error(log: str) -> str:
    """The first error of runsc's log (the cause; what follows is runsc run giving up), as
    ": <text>" ("" when there is none)."""
    with contextlib.suppress(OSError), open(log, errors="replace") as f:
        # One JSON object per message, not always a line each.
        messages = re.findall(r'"msg":"((?:[^"\\]|\\.)*)","level":"(?:error|fatal)"', f.read())
        if messages:
            return f": {json.loads(chr(34) + messages[0] + chr(34))}"
    return ""


def signal_name(signo: int) -> str:
    """A signal's name without SIG, as runsc kill and the machine take it."""
    return signal.Signals(signo).name.removeprefix("SIG")


def sources(config: ContainerConfig, etc: tuple[tuple[str, str], ...]
            ) -> tuple[tuple[tuple[str, str, bool], ...], str | None, tuple[str, ...]]:
    """The volumes as (host path resolved, path inside, writable), a bound context resolved,
    and the mount points whose sources are files (the host's /etc entries among them);
    InvalidInput for one that is not there."""
    volumes = []
    for volume in config.volumes:
        source = os.path.realpath(volume.host)
        if not os.path.exists(source):
            raise InvalidInput(f"--volume {volume.host!r}: no such file or directory on the host")
        volumes.append((source, volume.target, volume.writable))
    context = None
    if config.context is not None and config.context_mode == "bind":  # a copy is made as a native run's
        context = os.path.realpath(config.context)
        if not os.path.isdir(context):
            raise InvalidInput(f"--context {config.context!r}: not a directory")
    bound = [(f"/etc/{rel}", f"/etc/{rel}") for rel, target in etc if not target]
    bound += [(source, target) for source, target, _ in volumes]
    files = tuple(target for source, target in bound if not os.path.isdir(source))
    return tuple(volumes), context, files
