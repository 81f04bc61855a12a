"""pgbench inside nucleus against bare: the same script (initdb, a server listening only on a
unix socket in its data directory, pgbench -i, pgbench -S -c 2) as the `postgres` user, once on
the host and once inside `nucleus run --user postgres`, interleaved.

PostgreSQL refuses to run as root ("initdb: cannot be run as root"), so inside the container it
must run as a user of the container's /etc/passwd; the generated one names only root and
nobody, so the container runs on a closure of the host's own files (`--rootfs`, agent mode):
dash as /bin/sh, the server's programs and modules, their shared objects (ldd), its share
directory and the time zones, and an etc/passwd naming `postgres` with the host's uid and gid.
Its data directory is on the sandbox's /tmp (a tmpfs); the bare run's is in the work directory.
With -S (select-only, scale 1) every query is answered from shared buffers, so neither run waits
on storage after the load.

When nucleus runs with --cpus, the bare run gets the same CPU bandwidth in a cpu cgroup of the
session's own: a run in the machine's root group is scheduled differently (on a loaded 2-core
machine, 30-50% fewer tps than the same run in a group with a one-CPU quota), which would
credit the container with the difference.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from benches import host, stats
from benches.runtimes import Context, Nucleus
from benches.workload import error_line

USER = "postgres"
CLIENTS = 2
PROGRAMS = ("initdb", "pg_ctl", "postgres", "pgbench")
TIMEOUT = 300  # seconds for one run of the script, load included
CPU_V1 = "/sys/fs/cgroup/cpu"
CPU_V2 = "/sys/fs/cgroup"
PERIOD_US = 100_000

SCRIPT = r"""
set -e
bin=$1; data=$2; seconds=$3; clients=$4
"$bin/initdb" -D "$data" -A trust -U bench >/dev/null
"$bin/pg_ctl" -D "$data" -l "$data/log" -w -o "-c listen_addresses='' -k $data -c fsync=off" start >/dev/null
trap '"$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true' EXIT
"$bin/pgbench" -h "$data" -U bench -i -s 1 postgres >/dev/null 2>&1
"$bin/pgbench" -h "$data" -U bench -S -T "$seconds" -c "$clients" -j "$clients" postgres 2>&1
"""


def _copy(src: str, root: str) -> None:
    """src (a symlink's target, under the link's name) at the same path below root."""
    dest = os.path.join(root, src.lstrip("/"))
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    shutil.copy2(src, dest)


def make_closure(path: str, bindir: str, account: pwd.struct_passwd) -> str:
    """A root directory for `--rootfs` holding what the script runs, and an etc naming the
    postgres user (the host's ids)."""
    prefix = os.path.dirname(bindir)  # /usr/lib/postgresql/<major>
    major = os.path.basename(prefix)
    os.makedirs(os.path.join(path, "bin"), mode=0o755)
    shutil.copy2("/bin/dash", os.path.join(path, "bin", "sh"))
    programs = [os.path.join(bindir, p) for p in PROGRAMS]
    # The server's modules (initdb loads dict_snowball, plpgsql); not the JIT, which needs LLVM.
    modules = [m for m in sorted(glob.glob(os.path.join(prefix, "lib", "*.so")))
               if os.path.basename(m) != "llvmjit.so"]
    for file in [*programs, *modules, *host.shared_objects(["/bin/dash", *programs])]:
        _copy(file, path)
    share = os.path.join(path, "usr", "share")
    os.makedirs(os.path.join(share, "postgresql"), mode=0o755)
    shutil.copytree(f"/usr/share/postgresql/{major}", os.path.join(share, "postgresql", major), symlinks=True)
    shutil.copytree("/usr/share/zoneinfo", os.path.join(share, "zoneinfo"), symlinks=True)
    os.makedirs(os.path.join(path, "etc"), mode=0o755)
    uid, gid = account.pw_uid, account.pw_gid
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write(f"root:x:0:0:root:/root:/bin/sh\n{USER}:x:{uid}:{gid}:PostgreSQL:/var/lib/postgresql:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write(f"root:x:0:\n{USER}:x:{gid}:\n")
    for directory, _dirs, _files in os.walk(path):
        os.chmod(directory, 0o755)
    return path


@contextlib.contextmanager
def bare_cgroup(ctx: Context):
    """The cgroup.procs file of a cpu cgroup named after the session with nucleus's --cpus
    quota (v1 cpu hierarchy, or v2 where it has the cpu controller), removed afterwards; None
    when nucleus runs without --cpus or the host has no cpu controller to use."""
    cpus = ctx.limits.get("cpus")
    quota = int(float(cpus) * PERIOD_US) if cpus else None
    if quota is None:
        yield None
        return
    if os.path.exists(os.path.join(CPU_V1, "cpu.cfs_quota_us")):
        path = os.path.join(CPU_V1, f"{ctx.marker}-pgbench-bare")
        settings = {"cpu.cfs_period_us": str(PERIOD_US), "cpu.cfs_quota_us": str(quota)}
    elif "cpu" in host.read_text(os.path.join(CPU_V2, "cgroup.subtree_control")).split():
        path = os.path.join(CPU_V2, f"{ctx.marker}-pgbench-bare")
        settings = {"cpu.max": f"{quota} {PERIOD_US}"}
    else:
        yield None
        return
    os.mkdir(path, 0o755)
    procs = os.path.join(path, "cgroup.procs")
    try:
        for name, value in settings.items():
            with open(os.path.join(path, name), "w") as f:
                f.write(value)
        yield procs
    finally:
        # Every process of the runs has ended (_stop_server) or is ending: wait, then remove.
        deadline = time.monotonic() + 15
        while host.read_text(procs).split() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in host.read_text(procs).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        while True:
            try:
                os.rmdir(path)
                break
            except OSError:
                if time.monotonic() > deadline + 15:
                    raise
                time.sleep(0.05)


def _tps(output: str) -> float | None:
    for line in output.splitlines():
        if line.startswith("tps"):
            return float(line.split()[2])
    return None


def _once(argv: list[str], cgroup_procs: str | None = None) -> tuple[float | None, str | None]:
    """One run of the script (in the cgroup whose cgroup.procs is given): (tps, None), or
    (None, why not). A run past TIMEOUT is ended, with its whole process group."""
    def enter() -> None:
        if cgroup_procs is not None:
            with open(cgroup_procs, "w") as f:
                f.write(str(os.getpid()))

    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=enter)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return None, f"no result within {TIMEOUT} s"
    tps = _tps(out)
    if tps is not None:
        return tps, None
    return None, error_line(err) or error_line(out) or f"exit {proc.returncode}"


def _stop_server(bindir: str, data: str) -> None:
    """Stop a bare server the script left running (it starts in a session of its own, which
    ending the script does not reach)."""
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        subprocess.run(["runuser", "-u", USER, "--", os.path.join(bindir, "pg_ctl"), "-D", data,
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)


def measure(nucleus: Nucleus, workdir: str, reps: int, seconds: int) -> dict:
    """tps bare and inside nucleus, `reps` rounds of each, alternating which goes first; the
    ratio is nucleus's median over bare's."""
    what = f"pgbench -S -c {CLIENTS} -T {seconds} (scale 1, unix socket, fsync off)"
    bindir = host.postgres_bindir()
    if bindir is None:
        return {"what": what, "status": "n/a", "error": "PostgreSQL is not installed (apt-get install postgresql)"}
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        return {"what": what, "status": "n/a", "error": f"no {USER} user"}
    script = ["/bin/sh", "-c", SCRIPT, "pgbench", bindir]
    args = [str(seconds), str(CLIENTS)]
    closure = tempfile.mkdtemp(dir=workdir, prefix="pg-closure-")
    try:
        make_closure(closure, bindir, account)
        options = ["--rootfs", closure, "--user", USER]
        inside = nucleus.argv([*script, "/tmp/pgdata", *args], nucleus.ctx.cid(), options)
        bare_s: list[float] = []
        nuc_s: list[float] = []
        nuc_err = None
        with bare_cgroup(nucleus.ctx) as cgroup_procs:
            for i in range(reps):
                parent = tempfile.mkdtemp(dir=workdir, prefix="pg-")
                os.chown(parent, account.pw_uid, account.pw_gid)
                data = os.path.join(parent, "data")
                bare = ["runuser", "-u", USER, "--", *script, data, *args]
                order = [("bare", bare), ("nucleus", inside)]
                if i % 2:
                    order.reverse()
                try:
                    for where, argv in order:
                        if where == "nucleus" and nuc_err is not None:
                            continue
                        tps, err = _once(argv, cgroup_procs if where == "bare" else None)
                        if where == "bare" and tps is None:
                            return {"what": what, "status": "n/a", "error": f"bare run failed: {err}"}
                        if where == "bare":
                            bare_s.append(tps)
                        elif tps is None:
                            nuc_err = err
                        else:
                            nuc_s.append(tps)
                finally:
                    _stop_server(bindir, data)
                    shutil.rmtree(parent, ignore_errors=True)
    finally:
        shutil.rmtree(closure, ignore_errors=True)
    cpus = nucleus.ctx.limits.get("cpus")
    entry = {"what": what, "unit": "tps", "user": USER,
             "command": f"nucleus run --rootfs CLOSURE --user {USER} -- sh -c SCRIPT",
             "bare_cpus": cpus if cgroup_procs is not None else None,
             "bare": stats.summary(bare_s, 1), "nucleus": stats.summary(nuc_s, 1)}
    if nuc_err is not None:
        entry.update(status="n/a", error=f"inside nucleus: {nuc_err}")
    else:
        r = stats.ratio(entry["nucleus"]["median"], entry["bare"]["median"], 4)
        entry.update(status="ok", ratio=r, overhead_pct=round((1 - r) * 100, 2) if r else None)
    return entry
