"""One benchmark session: the work directory, the peers' shared root filesystem and seccomp
program, the OCI runtimes' mount namespace, and the teardown that leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from benches import host, peers, procs
from benches.runtimes import Context, reap_orphans

LIMIT_VALUES = {"--memory": "1G", "--cpus": "1", "--pids": "1024"}


def nucleus_limit_flags(marker: str) -> tuple[list[str], dict[str, str]]:
    """The cgroup limit flags `nucleus run --help` lists (none before cgroup support), and the
    same limits for the OCI bundles (cpus and pids: the memory hierarchy is hidden from them).
    With --cgroup-parent, nucleus's cgroups go under one named after the session, so that the
    leftover check can tell them from those of other users of the machine."""
    try:
        text = subprocess.run([*host.nucleus_command(), "run", "--help"], capture_output=True,
                              text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return [], {}
    flags: list[str] = []
    limits: dict[str, str] = {}
    for flag, value in LIMIT_VALUES.items():
        if flag in text.split():
            flags += [flag, value]
            if flag != "--memory":
                limits[flag.lstrip("-")] = value
    if flags and "--cgroup-parent" in text.split():
        flags += ["--cgroup-parent", marker]
    return flags, limits


class Session:
    def __init__(self, log=print, need_mntns: bool = True) -> None:
        self.log = log
        self.need_mntns = need_mntns
        self.marker = f"nucleus-bench-{os.getpid()}"
        self.ctx: Context | None = None
        self.snapshot: procs.Snapshot | None = None
        self.notes: list[str] = []

    def __enter__(self) -> Context:
        host.set_child_subreaper()
        workdir = tempfile.mkdtemp(prefix=f"{self.marker}-")
        os.chmod(workdir, 0o755)  # the containers' root (uid 100000) walks through it
        self.snapshot = procs.Snapshot(self.marker, workdir)
        ctx = Context(workdir=workdir, marker=self.marker)
        self.ctx = ctx
        try:
            ctx.rootfs = peers.make_rootfs(os.path.join(workdir, "rootfs"))
            program = peers.seccomp_program()
            ctx.seccomp_file = os.path.join(workdir, "seccomp.bpf")
            with open(ctx.seccomp_file, "wb") as f:
                f.write(program)
            ctx.limit_flags, ctx.limits = nucleus_limit_flags(self.marker)
            if self.need_mntns:
                hide = peers.hidden_cgroup_mounts()
                try:
                    ctx.mntns = peers.MountNamespace(hide).__enter__()
                except OSError as e:
                    ctx.mntns_error = str(e)
                if hide:
                    self.notes.append(
                        "runc and crun start in a private mount namespace without "
                        + ", ".join(hide) + " (crun refuses the hybrid layout; the memory "
                        "hierarchy is hidden so containers stay in the harness's memory cgroup)")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return ctx

    def __exit__(self, *exc) -> None:
        ctx = self.ctx
        if ctx is None:
            return
        if ctx.mntns is not None:
            ctx.mntns.close()
            ctx.mntns = None
        stray = reap_orphans()
        if stray:
            self.log(f"warning: still alive at teardown: {stray}")
        shutil.rmtree(ctx.workdir, ignore_errors=True)
        if self.snapshot is not None:
            self.snapshot.remove_created_roots()

    def leftovers(self) -> dict:
        assert self.snapshot is not None
        return self.snapshot.leftovers()
