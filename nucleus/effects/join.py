"""Joining a running container (`nucleus attach`): enter its cgroup and namespaces, take on
its identity, then the same capability, seccomp and Landlock restrictions as its workload, and
exec. Runs in a forked child of the CLI; never returns."""

from __future__ import annotations

import errno as _errno
import os
import signal

from nucleus.effects import caps, cgroups, landlock, rlimits
from nucleus.effects import libc as k
from nucleus.effects.inside import FORWARDED, WAITED, exit_status

ORDER = ("cgroup", "ipc", "uts", "net", "pid", "time", "mnt")
FLAGS = {
    "user": k.CLONE_NEWUSER, "mnt": k.CLONE_NEWNS, "net": k.CLONE_NEWNET, "uts": k.CLONE_NEWUTS,
    "ipc": k.CLONE_NEWIPC, "cgroup": k.CLONE_NEWCGROUP, "pid": k.CLONE_NEWPID, "time": k.CLONE_NEWTIME,
}


def join_and_exec(init_pid: int, rootless: bool, cgroup, argv: list[str], env: dict[str, str],
                  cwd: str, program: bytes, rules, limits: tuple[int, int, int]) -> None:
    try:
        own = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in FLAGS if os.path.exists(f"/proc/self/ns/{ns}")}
        fds = {}
        for ns in FLAGS:
            path = f"/proc/{init_pid}/ns/{ns}"
            if ns in own and os.path.exists(path) and os.readlink(path) != own[ns]:
                fds[ns] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if cgroup is not None:
            cgroups.attach(cgroup, os.getpid())
        others = [ns for ns in ORDER if ns in fds]
        order = (["user"] + others) if rootless else (others + ["user"])
        if not rootless:
            k.setgroups([])  # host root's groups must not follow into the container
        for ns in order:
            if ns in fds:
                k.setns(fds[ns], FLAGS[ns])
                os.close(fds[ns])
        k.setresgid(0, 0, 0)
        k.setresuid(0, 0, 0)
        caps.set_dumpable(False)
        pid = os.fork()  # the new PID namespace applies to children
        if pid == 0:
            _exec(argv, env, cwd, program, rules, limits)
        while True:
            info = signal.sigwaitinfo(WAITED)
            if info.si_signo != signal.SIGCHLD:
                if info.si_code <= 0:
                    os.kill(pid, info.si_signo)
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                os._exit(exit_status(status))
    except OSError as e:
        os.write(2, f"nucleus: attach: {e}\n".encode())
        os._exit(125)


def _exec(argv, env, cwd, program, rules, limits) -> None:
    try:
        k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
        try:
            os.chdir(cwd)
        except OSError:
            os.chdir("/")
        rlimits.apply(*limits)
        caps.drop_capabilities(frozenset())
        caps.set_no_new_privs()
        k.seccomp_set_mode_filter(program, 0)
        landlock.restrict([(path, frozenset(access)) for path, access in rules])
        k.close_range(3)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, *FORWARDED):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
    except OSError as e:
        os.write(2, f"nucleus: attach: {e}\n".encode())
        os._exit(125)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        os.write(2, f"nucleus: cannot run {argv[0]!r}: {e.strerror}\n".encode())
        os._exit(127 if e.errno in (_errno.ENOENT, _errno.ENOTDIR) else 126)
