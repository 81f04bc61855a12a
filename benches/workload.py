"""Workload overhead: the same programs inside nucleus and on the host, interleaved.

The microbenchmarks (workload.c) time their own loop, so start-up costs are left out: in wall
time, and in the process's CPU time (user + system), which the other tenants of a shared machine
cannot inflate; the overhead is reported on both, the CPU-time figure first. The binary is built into a directory under /usr/local/libexec/nucleus-bench: under
/usr, it is inside the sandbox (bound read-only) and Landlock lets it execute there; the
directory is removed afterwards. pgbench is in benches/pgbench.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from benches import stats
from benches.procs import LIBEXEC
from benches.runtimes import Runtime, first_line


def error_line(text: str | bytes | None) -> str:
    """The line of a program's output that says what went wrong: the first naming an error,
    else the last one."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    for ln in lines:
        if any(w in ln.lower() for w in ("error", "fatal", "not permitted", "denied")):
            return ln[:200]
    return first_line(text)

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workload.c")

# Iterations per run: about 0.1-0.3 s each on a 2020s x86-64 core.
MODES = {
    "getppid": ("syscall-heavy: getppid(2) loop (seccomp filter on every call)", 300_000),
    "stat": ("syscall-heavy: stat(2) of /usr/bin (path walk)", 150_000),
    "open": ("syscall-heavy: open+read+close of /etc/hostname (Landlock file_open hook)", 60_000),
    "cpu": ("CPU-bound: integer hash loop, no syscalls", 100_000_000),
}

class Helper:
    """The compiled microbenchmark, in a directory of its own under LIBEXEC."""

    def __init__(self) -> None:
        self.created_libexec_parent = False
        self.dir: str | None = None
        self.binary: str | None = None

    def __enter__(self) -> Helper:
        parent = os.path.dirname(LIBEXEC)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755)
            self.created_libexec_parent = True
        os.makedirs(LIBEXEC, mode=0o755, exist_ok=True)
        self.dir = tempfile.mkdtemp(dir=LIBEXEC)
        os.chmod(self.dir, 0o755)
        self.binary = os.path.join(self.dir, "workload")
        r = subprocess.run(["gcc", "-O2", "-o", self.binary, SOURCE], capture_output=True, text=True)
        if r.returncode != 0:
            self.__exit__()
            raise RuntimeError(f"gcc: {first_line(r.stderr)}")
        return self

    def __exit__(self, *exc) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        for path in (LIBEXEC, os.path.dirname(LIBEXEC) if self.created_libexec_parent else None):
            if path is not None:
                try:
                    os.rmdir(path)  # only if empty: a concurrent session may still use it
                except OSError:
                    pass


def _one(rt: Runtime, args: list[str]) -> tuple[float, float]:
    """(wall ms, CPU ms) the program's loop took, as it reports them."""
    proc = rt.spawn(args, rt.ctx.cid(), stdout=subprocess.PIPE)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(error_line(err) or f"exit {proc.returncode}")
    wall, cpu = out.split()[:2]
    return int(wall) / 1e6, int(cpu) / 1e6


def micro(targets: list[Runtime], binary: str, reps: int, scale: float, log=print) -> dict:
    """Each mode on each target (the first is the host), interleaved, rotating the order."""
    samples = {m: {rt.name: [] for rt in targets} for m in MODES}
    cpu_samples = {m: {rt.name: [] for rt in targets} for m in MODES}
    errors: dict[tuple[str, str], str] = {}
    for i in range(reps):
        for mode, (_, n) in MODES.items():
            args = [binary, mode, str(max(1, int(n * scale)))]
            for rt in stats.rotated(targets, i):
                if (mode, rt.name) in errors:
                    continue
                try:
                    wall, cpu = _one(rt, args)
                    samples[mode][rt.name].append(wall)
                    cpu_samples[mode][rt.name].append(cpu)
                except RuntimeError as e:
                    errors[(mode, rt.name)] = str(e)
    base = targets[0].name
    results = {}
    for mode, (what, n) in MODES.items():
        entry: dict = {"what": what, "iterations": max(1, int(n * scale)), "unit": "ms",
                       "baseline": base, "targets": {}}
        host_median = stats.summary(samples[mode][base])["median"]
        host_cpu = stats.summary(cpu_samples[mode][base])["median"]
        for rt in targets:
            s = stats.summary(samples[mode][rt.name])
            c = stats.summary(cpu_samples[mode][rt.name])
            t: dict = {"label": rt.label, **s, "cpu": c}
            if (mode, rt.name) in errors:
                t.update(status="n/a", error=errors[(mode, rt.name)])
            else:
                r = stats.ratio(s["median"], host_median, 4)
                rc = stats.ratio(c["median"], host_cpu, 4)
                t.update(status="ok", ratio=r, overhead_pct=round((r - 1) * 100, 2) if r else None,
                         cpu_ratio=rc, cpu_overhead_pct=round((rc - 1) * 100, 2) if rc else None)
            entry["targets"][rt.name] = t
        results[mode] = entry
    return results
