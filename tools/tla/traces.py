"""traces: simulate behaviours of every spec with TLC, keep those that together take every step,
write them without TLC's version (so that the same command gives the same bytes), check their
coverage and replay them through the machines."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tools.tla.behaviours import Behaviour, load_behaviour, natural_key
from tools.tla.checkers import Tlc, error_part, find_tlc
from tools.tla.coverage import check_coverage, reachable_keys
from tools.tla.errors import ToolError, die
from tools.tla.specs import FORMAL, ROOT, all_specs, chosen_specs, next_actions

# Simulation depth per spec (states after the initial one): every behaviour reaches a terminal
# state well within it, but for loops: Lifecycle's Kill and Attach steps can repeat (repeated
# identical states are not recorded), a cgroup whose removal fails or is abandoned can be
# released again (Resources, System), and a supervisor can be lost again during the cleanup
# (Lifecycle, System), so these need some slack.
DEPTHS = {
    "Lifecycle": 25, "Isolation": 15, "Filesystem": 12, "Security": 12, "Resources": 15,
    "System": 60, "Join": 15,
}
DEFAULT_DEPTH = 40
SEED_STRIDE = 100  # run r of spec i simulates with seed S + 100*i + r


def simulate(tlc: Tlc, spec: str, run: Run, depth: int, num: int, outdir: Path) -> list[Path]:
    """Simulate `num` behaviours of formal/<spec>Export.tla into outdir (one file each)."""
    outdir.mkdir(parents=True, exist_ok=True)
    props = {"tlc.itf.dir": str(outdir.resolve())}
    if run.failing != "any":
        props["tlc.itf.failing"] = run.failing
    proc = tlc.run(
        "-config", f"{spec}Export.cfg", f"{spec}Export.tla",
        "-simulate", f"num={num}", "-depth", str(depth), "-seed", str(run.seed), "-fp", "0",
        "-workers", "1", "-deadlock",
        props=props,
    )
    if proc.returncode != 0:
        raise ToolError(
            f"TLC simulation of {spec} ({run}) failed:\n{error_part(proc.stdout + proc.stderr)}"
        )
    return sorted(outdir.glob("trace_w*_*.itf.json"), key=natural_key)


def simulated_runs(tlc: Tlc, spec: str, runs: Sequence[Run], depth: int, num: int, tmp: Path,
                   workers: int) -> Iterator[tuple[Run, list[Path]]]:
    """Each run with the files it simulated, in the order of `runs`: `workers` of them at a time
    (TLC simulates with one thread), so the caller that stops taking them early sees what a
    run-by-run loop would have seen; the rest of the last batch is thrown away."""
    def one(run: Run) -> list[Path]:
        rundir = tmp / f"seed{run.seed}"
        shutil.rmtree(rundir, ignore_errors=True)
        return simulate(tlc, spec, run, depth, num, rundir)

    size = max(1, workers)
    with ThreadPoolExecutor(max_workers=size) as pool:
        for start in range(0, len(runs), size):
            batch = runs[start:start + size]
            yield from zip(batch, pool.map(one, batch), strict=True)


@dataclass(frozen=True)
class Run:
    seed: int
    failing: str  # "any": uniform random; "none": no step fails; a machine: only its steps fail

    def __str__(self) -> str:
        how = {"any": "random", "none": "no failures"}.get(self.failing, f"only {self.failing} fails")
        return f"seed {self.seed} {how}"


@functools.cache
def failure_actions(spec: str) -> frozenset[str]:
    """The actions a steered run of formal/<spec>Export.tla counts as failures (FailureActions)."""
    text = (FORMAL / f"{spec}Export.tla").read_text()
    m = re.search(r"^FailureActions\s*==\s*\{([^}]*)\}", text, re.MULTILINE)
    return frozenset(re.findall(r'"(\w+)"', m.group(1))) if m else frozenset({"Fail"})


def schedule(spec: str, base_seed: int, rounds: int) -> list[Run]:
    """The runs tried for a spec, in order, until every reachable step is taken: a random run,
    then steered runs (no failures, then only one machine failing), then more random seeds."""
    failures = failure_actions(spec)
    machines = sorted({m for m, action in next_actions(spec) if action in failures})
    steered = (["none"] + (machines if len(machines) > 1 else [])) if machines else []
    kinds = ["any", *steered] + ["any"] * max(0, rounds - 1 - len(steered))
    first = base_seed + SEED_STRIDE * all_specs().index(spec)
    return [Run(first + k, kind) for k, kind in enumerate(kinds[:rounds])]


def select(pool: Sequence[Behaviour], count: int) -> list[Behaviour]:
    """Behaviours that together take every step the pool takes (greedy, earliest first on ties),
    then others taken from each run in turn, up to `count`; in pool order."""
    chosen: list[int] = []
    uncovered = set().union(*(b.keys for b in pool)) if pool else set()
    while uncovered:
        best = max(range(len(pool)), key=lambda j: (len(pool[j].keys & uncovered), -j))
        gain = pool[best].keys & uncovered
        if not gain:
            break
        chosen.append(best)
        uncovered -= gain
    by_run: dict[int, list[int]] = {}
    for j, b in enumerate(pool):
        if j not in chosen:
            by_run.setdefault(b.run, []).append(j)
    queues = [by_run[r] for r in sorted(by_run)]
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return [pool[j] for j in sorted(chosen)]


def reproducible(data: bytes) -> bytes:
    """A trace as TLC wrote it, but for its `#meta` description, which names TLC's version
    ("Created by TLC <version> rev <tag>"): the same command and seeds then give byte-identical
    files whatever TLC built them (the version is in traces/README.md). TLC writes compact JSON,
    which is written back the same way."""
    doc = json.loads(data)
    doc.get("#meta", {}).pop("description", None)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def cmd_traces(args: argparse.Namespace) -> int:
    tlc = find_tlc(args.tla2tools, required=True)
    assert tlc is not None
    out = Path(args.out)
    specs = chosen_specs(args.spec)
    missing = [s for s in specs if not all((FORMAL / f"{s}Export{ext}").is_file() for ext in (".tla", ".cfg"))]
    if missing:
        die(
            "no TLC export wrapper for " + ", ".join(missing) + ": every spec needs "
            "formal/<Spec>Export.tla and .cfg (see formal/README.md)"
        )
    pool_size = args.pool or max(10 * args.count, 200)
    written: list[Behaviour] = []
    tmp_root = out / ".tmp"  # the raw simulation output (ignored by git), removed at the end
    try:
        version = tlc.version()
        print(f"checker: TLC, {version} ({tlc.jar})")
        print(f"simulating: count {args.count} per spec, base seed {args.seed}, {pool_size} behaviours per run\n")
        for spec in specs:
            depth = args.depth or DEPTHS.get(spec, DEFAULT_DEPTH)
            reachable = reachable_keys(tlc, spec, args.workers)
            pool: list[Behaviour] = []
            seen: set[str] = set()
            runs: list[Run] = []
            simulated = 0
            planned = schedule(spec, args.seed, args.rounds)
            for number, (run, files) in enumerate(simulated_runs(tlc, spec, planned, depth, pool_size,
                                                                 tmp_root / spec, args.workers)):
                runs.append(run)
                simulated += len(files)
                before = len(pool)
                for path in files:
                    b = load_behaviour(path, spec)
                    b.run = number
                    if b.fingerprint not in seen:
                        seen.add(b.fingerprint)
                        pool.append(b)
                covered = set().union(*(b.keys for b in pool))
                if reachable <= covered and (len(pool) >= args.count or len(pool) == before):
                    break
            chosen = select(pool, args.count)
            target = out / spec
            target.mkdir(parents=True, exist_ok=True)
            for old in target.glob("trace_*.itf.json"):
                old.unlink()
            for n, b in enumerate(chosen, start=1):
                path = target / f"trace_w0_{n}.itf.json"
                data = reproducible(b.data)
                path.write_bytes(data)
                written.append(Behaviour(spec, path, data, b.states, b.keys))
            covered = set().union(*(b.keys for b in chosen)) if chosen else set()
            size = sum(len(b.data) for b in chosen)
            print(
                f"  {spec:<11} {len(chosen):>3} traces ({size / 1024:.0f} KiB), depth {depth}, "
                f"{'; '.join(map(str, runs))}: {simulated} behaviours simulated, "
                f"{len(pool)} distinct; {len(covered & reachable)}/{len(reachable)} reachable steps taken"
            )
        print()
        ok = check_coverage(written, specs, tlc, table=False, workers=args.workers)
    except ToolError as e:
        die(str(e))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    print()
    replayed = replay([b.path for b in written], verbose=args.verbose)
    return 0 if ok and replayed else 1


def replay(paths: Sequence[Path], verbose: bool = False) -> bool:
    """`nucleus trace replay` on every file; print its verdicts (only the failures unless verbose)."""
    if not paths:
        return True
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "nucleus", "trace", "replay", *map(str, paths)],
        capture_output=True, text=True, check=False, env=env,
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    for line in lines:
        if verbose or not line.startswith("ok "):
            print(line)
    return proc.returncode == 0
