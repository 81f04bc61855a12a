"""Where nucleus's cold start goes: phases of one run (benches/phases.py), the import profile
(`python -X importtime`), and a cProfile of the supervisor."""

from __future__ import annotations

import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import time

from benches import host, stats

PHASES_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "phases.py")
COMMAND = ["/bin/true"]

ISO = {"Unshare", "ForkInit", "SetHostname", "LoopbackUp", "EnterUserNamespace", "BecomeRoot"}
FS = {"SetPropagation", "MountFs", "BindMount", "RemountFs", "MakeDirs", "MakeSymlinks", "CopyTree",
      "MaskPaths", "WriteFile", "PivotRoot", "Chroot", "DetachOldRoot"}
SEC = {"DropCapabilities", "LoadSeccomp", "ApplyLandlock"}

# Phase names, in order, as the report prints them.
PHASES = (
    ("interpreter", "interpreter start (python -IS as the launcher starts it; with pip's script, site and the editable finder too): spawn to first line"),
    ("import_cli", "import the CLI entry point (nucleus.cli.entry and run's flag table; click where run still parses with it)"),
    ("import_run", "import the run path (vocab, machines, plan, effects, config)"),
    ("cli", "CLI: parse arguments, validate the configuration"),
    ("plan", "host facts (probe), seccomp program (cache read), the plan"),
    ("spawn", "fork the setup process (SpawnChild)"),
    ("namespaces", "namespaces: unshare, fork PID 1, hostname, lo, user namespace, id maps"),
    ("filesystem", "filesystem: mounts, /etc, /dev, /proc, pivot_root"),
    ("security", "security: capabilities, seccomp, Landlock"),
    ("cgroups", "cgroups: create, set limits, attach, remove"),
    ("state", "state records for ps/rm: register, write at phase changes, delete"),
    ("machines", "state machine steps (pure: step and advance)"),
    ("pipe", "sync pipe round trips beyond the setup work (JSON, scheduling, reaping)"),
    ("other", "other supervisor work between steps (application, driver loop)"),
    ("workload", "exec /bin/true, its exit and init's exit (wait)"),
    ("cleanup", "cleanup: kill and reap what is left, close the pipe"),
    ("exit", "interpreter exit (after the run returns)"),
)


def _union(spans, pred) -> int:
    """Nanoseconds covered by the spans whose name satisfies pred (nested ones counted once)."""
    covered, end = 0, None
    for _, a, b in sorted((s for s in spans if pred(s[0]) and s[2]), key=lambda s: s[1]):
        if end is None or a >= end:
            covered += b - a
            end = b
        elif b > end:
            covered += b - end
            end = b
    return covered


def _phases_of(raw: dict, t_spawn: int, t_exit: int) -> dict[str, float]:
    marks = dict(raw["marks"])
    spans = raw["spans"]
    child = raw["child"]

    def total(pred, items) -> int:
        return sum(b - a for n, a, b in items if pred(n) and b)

    out: dict[str, int] = {
        "interpreter": marks["script"] - t_spawn,
        "import_cli": marks["import cli"] - marks["script"],
        "import_run": marks["import run path"] - marks["import cli"],
        "cli": marks["run"] - marks["import run path"],
        "plan": total(lambda n: n in ("probe", "prepare", "plan"), spans),
        "state": _union(spans, lambda n: n.startswith("state ")),
        "spawn": total(lambda n: n == "host SpawnChild", spans),
        "namespaces": total(lambda n: n in ISO, child) + total(lambda n: n == "host WriteIdMaps", spans),
        "filesystem": total(lambda n: n in FS, child),
        "security": total(lambda n: n in SEC, child),
        "workload": total(lambda n: n == "wait", spans),
        "cgroups": _union(spans, lambda n: n.startswith("host ") and "Cgroup" in n),
        "cleanup": _union(spans, lambda n: n in ("host Cleanup", "cleanup")),
        "machines": total(lambda n: n == "step", spans),
    }
    pipes = [s for s in spans if s[0].startswith("pipe ")]
    inside = sum(cb - ca for _, ca, cb in child
                 if cb and any(a <= ca and cb <= b for _, a, b in pipes))
    out["pipe"] = sum(b - a for _, a, b in pipes) - inside
    in_run = marks["run returned"] - marks["run"]
    # whatever no span covers: the application's and the driver's own code between steps
    out["other"] = max(0, in_run - _union(spans, lambda n: True))
    out["exit"] = t_exit - marks["run returned"]
    # whatever lies between the import marks and run() (argument parsing) is in "cli"
    return {k: v / 1e6 for k, v in out.items()}


def _launcher_path() -> list[str] | None:
    """The sys.path entries the virtualenv's `nucleus` launcher (tools/launcher.py) puts first,
    or None when the command is pip's script (started with site)."""
    try:
        with open(host.nucleus_command()[0]) as f:
            text = f.read(4096)
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"^sys\.path\[:0\] = (\[.*\])$", text, re.M)
    if not text.startswith("#!") or " -IS\n" not in text.split("\n", 1)[0] + "\n" or not m:
        return None
    import ast

    return [str(p) for p in ast.literal_eval(m.group(1))]


def run_phases(limit_flags: list[str], workdir: str, preload: str | None = None
               ) -> tuple[dict[str, float], dict]:
    """One run of phases.py; `preload` names a file listing the modules to import first."""
    out = os.path.join(workdir, "phases.json")
    env = {**os.environ, **({"BENCH_PRELOAD": preload} if preload else {})}
    argv = [sys.executable, PHASES_SCRIPT, out, "run", *limit_flags, "--", *COMMAND]
    paths = _launcher_path()
    if paths:  # started as the `nucleus` launcher starts it: python -IS, the path named
        argv[1:1] = ["-IS"]
        env["BENCH_SYS_PATH"] = os.pathsep.join(paths)
    t0 = time.monotonic_ns()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, preexec_fn=lambda: None, env=env)
    t1 = time.monotonic_ns()
    if r.returncode != 0:
        raise RuntimeError(f"phases run failed: {r.stderr.decode(errors='replace').strip()[-300:]}")
    with open(out) as f:
        raw = json.load(f)
    os.unlink(out)
    phases = _phases_of(raw, t0, t1)
    phases["total"] = (t1 - t0) / 1e6
    return phases, raw


def child_steps(raws: list[dict], key: str = "child") -> dict[str, float]:
    """Median over runs of the time per step (summed over repeats of the same intent): the
    setup process's steps, or with key="spans" the supervisor's own host steps."""
    per_run = []
    for raw in raws:
        sums: dict[str, float] = {}
        for name, a, b in raw[key]:
            if key == "spans":
                if not name.startswith("host "):
                    continue
                name = name[5:]
            if b:
                sums[name] = sums.get(name, 0) + (b - a) / 1e6
        per_run.append(sums)
    names = sorted({n for s in per_run for n in s})
    return {n: round(statistics.median(s.get(n, 0.0) for s in per_run), 3) for n in names}


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)")


def parse_importtime(text: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) for each line of -X importtime output."""
    out = []
    for line in text.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            out.append((m.group(4), int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2))
    return out


def importtime(limit_flags: list[str], runs: int) -> dict:
    totals, selfs, cums, groups = [], {}, {}, {}
    modules: list[str] = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "nucleus", "run", *limit_flags,
                            "--", *COMMAND], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        rows = parse_importtime(r.stderr)
        if r.returncode != 0 or not rows:
            raise RuntimeError(f"nucleus run under -X importtime failed: exit {r.returncode}")
        modules = modules or [name for name, *_ in rows]
        totals.append(sum(c for _, _, c, d in rows if d == 0) / 1000)
        run_groups: dict[str, float] = {}
        for name, s, c, d in rows:
            selfs.setdefault(name, []).append(s / 1000)
            if d == 0:
                cums.setdefault(name, []).append(c / 1000)
            root = name.split(".")[0]
            group = ("nucleus" if root == "nucleus" else "click" if root == "click"
                     else "site and import hooks" if root in ("site", "_distutils_hack") or root.startswith("__editable__")
                     else "standard library")
            run_groups[group] = run_groups.get(group, 0) + s / 1000
        for g, v in run_groups.items():
            groups.setdefault(g, []).append(v)
    med = lambda xs: round(statistics.median(xs), 2)  # noqa: E731
    top_self = sorted(((med(v), k) for k, v in selfs.items()), reverse=True)[:15]
    top_cum = sorted(((med(v), k) for k, v in cums.items()), reverse=True)[:12]
    return {
        "runs": runs,
        "total_ms": stats.summary(totals, 2),
        "by_group_ms": {g: med(v) for g, v in sorted(groups.items(), key=lambda kv: -statistics.median(kv[1]))},
        "top_self_ms": [{"module": k, "ms": v} for v, k in top_self],
        "top_level_cumulative_ms": [{"module": k, "ms": v} for v, k in top_cum],
        "note": "-X importtime adds its own overhead; compare the modules, not the sum, with the phases",
        "modules": modules,
    }


def cprofile(limit_flags: list[str], workdir: str, runs: int) -> dict:
    files = []
    for i in range(runs):
        path = os.path.join(workdir, f"supervisor-{i}.prof")
        r = subprocess.run([sys.executable, "-m", "cProfile", "-o", path, "-m", "nucleus", "run",
                            *limit_flags, "--", *COMMAND], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if r.returncode == 0 and os.path.exists(path):
            files.append(path)
    if not files:
        return {"runs": 0, "error": "cProfile runs failed"}
    st = pstats.Stats(*files)
    rows = []
    for (filename, line, func), (_, nc, tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
        where = func if filename == "~" else f"{os.path.basename(filename)}:{line}({func})"
        rows.append({"function": where, "calls": nc // len(files), "tottime_ms": round(tt * 1000 / len(files), 2),
                     "cumtime_ms": round(ct * 1000 / len(files), 2)})
    for path in files:
        os.unlink(path)
    top_tot = sorted(rows, key=lambda r: -r["tottime_ms"])[:15]
    compile_calls = [r for r in rows if r["function"].endswith("builtins.compile>")]
    dc = [r for r in rows if "dataclasses.py" in r["function"] and "_process_class" in r["function"]]
    return {
        "runs": len(files),
        "top_tottime": top_tot,
        "dataclass_processing_ms": dc[0]["cumtime_ms"] if dc else None,
        "compile_ms": compile_calls[0]["tottime_ms"] if compile_calls else None,
        "note": "per run, averaged; the supervisor only: time blocked on the sync pipe is the setup process working",
    }


def measure(limit_flags: list[str], workdir: str, reps: int, log=print) -> dict:
    imports = importtime(limit_flags, max(3, reps // 2))
    preload = os.path.join(workdir, "preload.txt")
    with open(preload, "w") as f:
        f.write("\n".join(imports.pop("modules")) + "\n")
    samples: dict[str, list[float]] = {}
    raws = []
    for _ in range(reps):
        phases, raw = run_phases(limit_flags, workdir, preload)
        raws.append(raw)
        for k, v in phases.items():
            samples.setdefault(k, []).append(v)
    interp = []
    venv = []
    for _ in range(reps):
        for argv, acc in (([host.base_python(), "-I", "-S", "-c", "pass"], interp),
                          ([sys.executable, "-c", "pass"], venv)):
            t0 = time.perf_counter_ns()
            subprocess.run(argv, stdin=subprocess.DEVNULL, preexec_fn=lambda: None)
            acc.append((time.perf_counter_ns() - t0) / 1e6)
    log("  breakdown: phases done; cProfile")
    phases = [{"phase": key, "what": what, **stats.summary(samples[key], 2)} for key, what in PHASES]
    return {
        "reps": reps,
        "command": "nucleus run -- " + " ".join(COMMAND),
        "method": "benches/phases.py runs nucleus's CLI in-process with timestamps around its "
                  "own functions (host steps, sync-pipe round trips, and each setup step in the "
                  "setup process, all on CLOCK_MONOTONIC); the modules a run imports (as listed by "
                  "-X importtime) are preloaded, so that imports are one phase",
        "total_ms": stats.summary(samples["total"], 2),
        "phases": phases,
        "setup_steps_ms": child_steps(raws),
        "host_steps_ms": child_steps(raws, "spans"),
        "late_imports": sorted({m for raw in raws for m in raw["late_imports"]}),
        "python_floor_ms": stats.summary(interp, 2),
        "python_venv_site_ms": stats.summary(venv, 2),
        "importtime": imports,
        "cprofile": cprofile(limit_flags, workdir, 3),
    }
