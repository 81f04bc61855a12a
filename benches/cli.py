"""`python -m benches`: run the benchmarks, write the result and the report.

    python -m benches [--quick] [--reps N] [--only cold,escapes,breakdown,memory,workload,throughput]
                      [--out DIR] [--doc BENCHMARKS.md] [--install-peers]
    python -m benches --render RESULT.json [--doc BENCHMARKS.md]

Exit status: 0 when every section ran and nothing was left behind, 1 otherwise, 3 when the
host cannot run the benchmarks (not root).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback

from benches import (
    breakdown,
    cold,
    escapes,
    host,
    memory,
    pgbench,
    report,
    runtimes,
    schema,
    throughput,
    workload,
)
from benches.session import Session

SECTIONS = ("cold", "escapes", "breakdown", "memory", "workload", "throughput")
COLD_RUNTIMES = ("nucleus", "nucleus-warm", "nucleus-served", "nucleus-none", "nucleus-bridge", "nucleus-egress", "runc", "crun", "nspawn", "bwrap", "runsc", "unshare",
                 "python")
MEMORY_RUNTIMES = ("nucleus", "runc", "runc-detached", "crun", "nspawn", "bwrap", "runsc")
WORKLOAD_TARGETS = ("host", "nucleus", "bwrap", "bwrap-noseccomp")
THROUGHPUT_RUNTIMES = ("nucleus", "nucleus-warm", "nucleus-served", "runc", "crun", "nspawn", "bwrap")

DOC_TEMPLATE = """# Benchmarks

`make bench` writes bench-results/latest.json and latest.md and refreshes the section below.

"""


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def config(args) -> dict:
    quick = args.quick
    return {
        "quick": quick,
        "cold_reps": args.reps or (5 if quick else 30),
        "breakdown_reps": 3 if quick else 10,
        "memory_reps": 1 if quick else 3,
        "workload_reps": 2 if quick else 10,
        "workload_scale": 0.2 if quick else 1.0,
        "pgbench_reps": 1 if quick else 3,
        "pgbench_seconds": 2 if quick else 10,
        "throughput_total": 8 if quick else 100,
        "throughput_batch": 8 if quick else 20,
        "throughput_levels": [1, 2, 4, 8],
    }


def _runtimes(ctx, names) -> tuple[list, dict]:
    got, status = [], {}
    for name in names:
        rt = runtimes.ALL[name](ctx)
        try:
            rt.check()
        except runtimes.UnavailableError as e:
            status[name] = {"status": "n/a", "error": str(e)}
            continue
        except Exception as e:  # noqa: BLE001 - a probe that crashed says so, as its n/a reason
            status[name] = {"status": "n/a", "error": f"{type(e).__name__}: {e}"}
            continue
        status[name] = {"status": "ok"}
        got.append(rt)
    return got, status


def _with_unavailable(section: dict, status: dict, names, label_of) -> dict:
    """Add the runtimes that could not run to a section's results, as n/a with the reason."""
    results = section.setdefault("results", {})
    for name in names:
        if name not in results and status.get(name, {}).get("status") == "n/a":
            results[name] = label_of(name, status[name]["error"])
    section["results"] = {n: results[n] for n in names if n in results}
    return section


def run(args) -> int:
    if os.geteuid() != 0:
        print("benches: must run as root (runc, crun and runsc bundles, user-namespace id maps)\n"
              "hint: sudo make bench", file=sys.stderr)
        return 3
    cfg = config(args)
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    started = time.monotonic()
    notes: list[str] = []
    if args.install_peers:
        for problem in host.install_peers(_log):
            notes.append(f"not installed: {problem}")
    result: dict = {
        "schema": schema.SCHEMA, "date": host.now_iso(), "duration_s": 0.0,
        "machine": host.machine(), "config": cfg, "notes": notes,
    }
    version = subprocess.run([*host.nucleus_command(), "--version"], capture_output=True, text=True)
    result["nucleus"] = {"command": host.nucleus_command(), "limit_flags": [],
                         "version": version.stdout.strip() or "unknown"}
    for s in schema.SECTIONS:
        result[s] = {"status": "skipped", "error": "not selected (--only)"}
    failed = False
    session = Session(log=_log)
    with session as ctx:
        result["tools"] = host.tools()  # after the session's snapshot: crun --version makes /run/crun
        notes.extend(session.notes)
        result["nucleus"]["limit_flags"] = ctx.limit_flags
        if ctx.limit_flags:
            notes.append("nucleus has cgroup limits: it runs with " + " ".join(ctx.limit_flags)
                         + "; the OCI bundles get the same cpu and pids limits (no memory limit: "
                         "their memory hierarchy is hidden), bwrap and runsc none")
        else:
            notes.append("`nucleus run --help` lists no --memory/--cpus/--pids: nucleus runs "
                         "without cgroup limits, and so do the peers")
        names = sorted(set(COLD_RUNTIMES + MEMORY_RUNTIMES + WORKLOAD_TARGETS + THROUGHPUT_RUNTIMES),
                       key=lambda n: list(runtimes.ALL).index(n))
        _log("checking runtimes")
        available, status = _runtimes(ctx, names)
        result["runtimes"] = status
        by_name = {rt.name: rt for rt in available}
        pick = lambda ns: [by_name[n] for n in ns if n in by_name]  # noqa: E731

        def section(key, title, fn):
            nonlocal failed
            if key not in only:
                return
            _log(title)
            try:
                result[schema_key[key]] = fn()
            except Exception as e:  # noqa: BLE001 - one broken section must not hide the others
                failed = True
                traceback.print_exc()
                result[schema_key[key]] = {"status": "error", "error": f"{type(e).__name__}: {e}"}

        schema_key = {"cold": "cold_start", "escapes": "escapes", "breakdown": "breakdown", "memory": "memory",
                      "workload": "workload", "throughput": "throughput"}
        na = lambda n, err: {"label": runtimes.ALL[n].label, "command": runtimes.ALL[n].command, "status": "n/a",  # noqa: E731
                             "error": err, "n": 0, "median": None, "min": None, "max": None, "samples": []}
        na_mem = lambda n, err: {"label": runtimes.ALL[n].label, "unit": "MiB", "status": "n/a", "error": err,  # noqa: E731
                                 "rss": cold.stats.summary([]), "pss": cold.stats.summary([])}

        section("cold", f"cold start: {cfg['cold_reps']} rounds",
                lambda: cold.with_network_ratio(_with_unavailable(
                    cold.measure(pick(COLD_RUNTIMES), cfg["cold_reps"], _log), status, COLD_RUNTIMES, na)))
        section("escapes", "escape attempts", lambda: escapes.measure(ctx, by_name, status, _log))
        if "nucleus" in by_name:
            section("breakdown", "nucleus breakdown",
                    lambda: breakdown.measure(ctx.limit_flags, ctx.workdir, cfg["breakdown_reps"], _log))
        section("memory", "memory kept",
                lambda: _with_unavailable(memory.measure(pick(MEMORY_RUNTIMES), cfg["memory_reps"], _log),
                                          status, MEMORY_RUNTIMES, na_mem))

        def _workload() -> dict:
            out: dict = {"micro": {}}
            targets = pick(WORKLOAD_TARGETS)
            if "nucleus" not in by_name:
                raise RuntimeError(f"nucleus cannot run: {status['nucleus'].get('error')}")
            try:
                with workload.Helper() as helper:
                    out["micro"] = workload.micro(targets, helper.binary, cfg["workload_reps"],
                                                  cfg["workload_scale"], _log)
            except RuntimeError as e:
                notes.append(f"microbenchmarks not run: {e}")
            _log("  pgbench")
            out["pgbench"] = pgbench.measure(by_name["nucleus"], ctx.workdir, cfg["pgbench_reps"],
                                             cfg["pgbench_seconds"])
            return out

        section("workload", "workload overhead", _workload)
        section("throughput", "throughput",
                lambda: throughput.measure(pick(THROUGHPUT_RUNTIMES), cfg["throughput_total"],
                                           cfg["throughput_batch"], cfg["throughput_levels"], _log))
        for name, st in status.items():
            if st["status"] == "n/a":
                notes.append(f"{runtimes.ALL[name].label}: n/a: {st['error']}")
    runtimes.stop_servers()
    result["leftovers"] = session.leftovers()
    result["duration_s"] = round(time.monotonic() - started, 1)
    result["targets"] = report.targets(result)
    problems = schema.validate(result)
    if problems:
        failed = True
        for p in problems:
            _log(f"schema: {p}")
    _write(result, args.out, args.doc)
    if not result["leftovers"]["clean"]:
        _log(f"LEFTOVERS: {json.dumps(result['leftovers'])}")
        failed = True
    return 1 if failed else 0


def _write(result: dict, out_dir: str, doc: str | None) -> None:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "latest.json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    md = report.render(result)
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write(md)
    _log(f"wrote {path} and {os.path.join(out_dir, 'latest.md')}")
    if doc:
        report.update_doc(doc, md, DOC_TEMPLATE)
        _log(f"updated {doc}")
    print(md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                   help="a fast pass with few repetitions (also BENCH_QUICK=1)")
    p.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS") or 0) or None,
                   help="cold-start rounds (default 30, quick 5; also BENCH_REPS)")
    p.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--out", default="bench-results", help="result directory (default bench-results)")
    p.add_argument("--doc", default="BENCHMARKS.md", help="document to refresh ('' for none)")
    p.add_argument("--install-peers", action="store_true",
                   help="apt-get install the peers and helpers that are missing")
    p.add_argument("--render", metavar="RESULT.json", help="only render an existing result")
    args = p.parse_args(argv)
    if args.only:
        unknown = set(args.only.split(",")) - set(SECTIONS)
        if unknown:
            p.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    if args.render:
        with open(args.render) as f:
            result = json.load(f)
        problems = schema.validate(result)
        for problem in problems:
            print(f"schema: {problem}", file=sys.stderr)
        md = report.render(result)
        if args.doc:
            report.update_doc(args.doc, md, DOC_TEMPLATE)
        print(md)
        return 1 if problems else 0
    return run(args)
