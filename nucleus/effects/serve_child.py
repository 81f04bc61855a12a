"""What a `nucleus serve` child does between the fork and the run: become exactly the process a
cold `nucleus run` of the caller would be, then run it.

In order, before anything of the request is read: its own session; the caller's stdin, stdout
and stderr as 0-2 and no other descriptor (the server's socket, its connections and pidfds
closed); the default signal dispositions; for a root server, the caller's cgroups (where they
differ from the server's), supplementary groups, gid and uid, all three of each, so that the
capabilities are gone as for any process of that uid, and the dumpable flag a process of that
user has; the caller's resource limits (read from the caller itself, under its uid: never above
the server's hard limits); then the caller's umask, environment and working directory, and the
run with the arguments as `nucleus run` takes them. The status is the process's exit status."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from nucleus.errors import EXIT_FAILURE, NucleusError
from nucleus.linux import PR_SET_DUMPABLE

LIMITS = tuple(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))


def become(request: dict[str, Any], peer: tuple[int, int, int, tuple[int, ...]], fds: list[int],
           body: Callable[[list[str]], int]) -> NoReturn:
    """Take the caller's place, then `body(argv)` (the run, as the CLI runs it); exit with its
    status. A failure before the run is told on the caller's stderr, 125."""
    code = EXIT_FAILURE
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        take_identity(*peer)
        os.umask(int(request.get("umask", 0o022)) & 0o777)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request.get("env", {})).items()})
        os.chdir(str(request.get("cwd", "/")))
        argv = [str(a) for a in request.get("argv", [])]
        sys.argv = ["nucleus", "run", *argv]
        code = body(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else EXIT_FAILURE
    except NucleusError as e:
        sys.stderr.write(e.render() + "\n")
        code = e.exit_code
    except OSError as e:
        sys.stderr.write(f"error: cannot take the caller's place: {e}\n")
    except BaseException:  # noqa: BLE001 - an interrupt before the run: nothing was made
        code = 130
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def take_identity(pid: int, uid: int, gid: int, groups: tuple[int, ...]) -> None:
    """The caller's identity: for a root server, its cgroups, groups, gid and uid; then its
    resource limits."""
    from nucleus.effects import libc

    if os.geteuid() == 0:
        if uid != 0:
            join_cgroups(pid)
        libc.setgroups(groups)
        libc.setresgid(gid, gid, gid)
        libc.setresuid(uid, uid, uid)
        if uid != 0:  # a process that changed its uid is not dumpable; the caller's is
            libc.prctl(PR_SET_DUMPABLE, 1)
    for limit in LIMITS:
        soft, hard = resource.prlimit(pid, limit)
        _, own_hard = resource.getrlimit(limit)
        resource.setrlimit(limit, (_within(soft, own_hard), _within(hard, own_hard)))


def _within(value: int, hard: int) -> int:
    """`value`, at most `hard` (raising a hard limit needs CAP_SYS_RESOURCE)."""
    if hard == resource.RLIM_INFINITY or (value != resource.RLIM_INFINITY and value <= hard):
        return value
    return hard


def join_cgroups(pid: int) -> None:
    """Move this process into the caller's groups of each hierarchy nucleus uses, where they
    differ from the server's (a cold run starts in the caller's)."""
    from nucleus.effects import probe

    layout = probe.cgroup_layout()
    mine, theirs = _groups(f"/proc/{os.getpid()}/cgroup"), _groups(f"/proc/{pid}/cgroup")
    for controllers, path in theirs.items():
        if mine.get(controllers) == path:
            continue
        if controllers == "":
            mount = layout.unified
        else:
            mount = next((m for c, m in layout.mounts if c in controllers.split(",")), None)
        if mount is None:
            continue
        with open(os.path.join(mount, path.lstrip("/"), "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def _groups(path: str) -> dict[str, str]:
    with open(path) as f:
        return {parts[1]: parts[2] for line in f if len(parts := line.rstrip("\n").split(":", 2)) == 3}
