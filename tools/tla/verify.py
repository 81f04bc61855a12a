"""verify: model-check every spec with the built-in checker, and with Apalache or TLC where
present (their distinct-state counts compared with the built-in checker's); check that the
model-checker traces in traces/ are still behaviours of the specs; say which checkers ran."""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.tla.check import BUILTIN, checked_names, conform, report_conformance, run_builtin
from tools.tla.checkers import Tlc, apalache_version, error_part, find_apalache, find_tlc
from tools.tla.errors import ToolError, die
from tools.tla.specs import FORMAL, ROOT, chosen_specs, formal_copy

# Apalache's bound per spec: above the diameter of the reachable state graph
# (TLC: 6, 12, 8, 5, 6, 35, 12).
APALACHE_LENGTHS = {
    "Lifecycle": 8, "Isolation": 14, "Filesystem": 10, "Security": 7, "Resources": 8, "System": 37,
    "Join": 14,
}
DEFAULT_LENGTH = 30


# TLC's liveness check grows far faster than its search (it builds the behaviour graph and checks
# it again and again as the search goes on): for these specs TLC searches the state graph at the
# spec's bounds (the invariants, and the distinct states compared with the built-in checker's),
# and checks the liveness properties at these smaller ones. The built-in checker checks every
# property at the spec's bounds.
TLC_LIVENESS_BOUNDS = {"System": {"MaxMounts": "0"}}


@dataclass
class Verdict:
    spec: str
    ok: bool
    summary: str
    detail: str = ""
    distinct: int | None = None
    violated: str | None = None  # TLC: the invariant or property violated
    trace: int = 0  # TLC: the states of its counterexample
    bounds: str = ""  # checked at bounds other than the spec's (TLC_LIVENESS_BOUNDS)


def tlc_check(tlc: Tlc, spec: str, workers: int, directory: Path = FORMAL) -> Verdict:
    proc = tlc.run("-config", f"{spec}.cfg", f"{spec}.tla", "-workers", str(workers), directory=directory)
    out = proc.stdout + proc.stderr
    counts = re.search(r"([\d,]+) states generated, ([\d,]+) distinct states found", out)
    depth = re.search(r"depth of the complete state graph search is (\d+)", out)
    ok = proc.returncode == 0 and "No error has been found" in out
    summary = ""
    if counts:
        summary = f"{counts.group(2)} distinct states ({counts.group(1)} generated)"
        if depth:
            summary += f", depth {depth.group(1)}"
    distinct = int(counts.group(2).replace(",", "")) if counts else None
    if ok:
        return Verdict(spec, True, summary, distinct=distinct)
    violated = re.search(r"^Error: (?:Invariant|Action property|Temporal property) (\w+) (?:is|was) violated", out, re.MULTILINE)
    return Verdict(spec, False, summary or f"TLC exit code {proc.returncode}", error_part(out), distinct,
                   violated.group(1) if violated else None, len(re.findall(r"^State \d+: (?!Stuttering|Back to state)", out, re.MULTILINE)))



def tlc_checks(tlc: Tlc, spec: str, workers: int) -> list[Verdict]:
    """TLC on `spec` as its .cfg says; or, for a spec in TLC_LIVENESS_BOUNDS, its state graph at
    the spec's bounds and its properties at the smaller ones."""
    bounds = TLC_LIVENESS_BOUNDS.get(spec)
    if bounds is None:
        return [tlc_check(tlc, spec, workers)]
    with tempfile.TemporaryDirectory(prefix="nucleus-tlc-copy-") as tmp:
        graph = tlc_check(tlc, spec, workers, formal_copy(spec, Path(tmp) / "graph", graph_only=True))
        properties = tlc_check(tlc, spec, workers, formal_copy(spec, Path(tmp) / "bounded", defines=bounds))
    graph.summary += "   (the state graph: Init, Next, the invariants)"
    properties.bounds = ", ".join(f"{name} = {value}" for name, value in bounds.items())
    properties.summary += f"   (every property, at {properties.bounds})"
    return [graph, properties]


def apalache_check(apalache: str, spec: str) -> Verdict:
    length = APALACHE_LENGTHS.get(spec, DEFAULT_LENGTH)
    with tempfile.TemporaryDirectory(prefix="nucleus-apalache-") as outdir:
        proc = subprocess.run(
            [apalache, "check", f"--config={spec}.cfg", "--inv=Inv", f"--length={length}",
             "--no-deadlock", f"--out-dir={outdir}", f"{spec}.tla"],
            cwd=FORMAL, capture_output=True, text=True, check=False,
        )
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return Verdict(spec, True, f"no error up to length {length}")
    return Verdict(spec, False, f"Apalache exit code {proc.returncode}", "\n".join(out.splitlines()[-60:]))


def cmd_verify(args: argparse.Namespace) -> int:
    specs = chosen_specs(args.spec)
    builtin = args.checker in ("auto", "builtin")
    apalache = find_apalache(args.apalache) if args.checker in ("auto", "apalache") else None
    if args.checker == "apalache" and apalache is None:
        die("Apalache is not available: put apalache-mc on PATH or pass --apalache PATH")
    tlc = None
    if apalache is None and args.checker in ("auto", "tlc"):
        tlc = find_tlc(args.tla2tools, required=args.checker == "tlc")
    failed: set[str] = set()
    traces_ok = True
    try:
        counts: dict[str, int] = {}
        if builtin:
            print(f"checker: {BUILTIN}\n")
            results = run_builtin(specs, FORMAL, {})
            failed |= {spec for spec, r in results.items() if not r.ok}
            counts = {spec: r.distinct for spec, r in results.items() if r.ok}
            print()
        if apalache is not None or tlc is not None:
            external = external_checks(specs, apalache, tlc, args.workers)
            failed |= {v.spec for v in external if not v.ok}
            if builtin and tlc is not None:
                failed |= compare_counts(counts, external)
            print()
        elif builtin:
            print("(neither Apalache nor TLC: the built-in checker alone; give --tla2tools "
                  "path/to/tla2tools.jar or put apalache-mc on PATH to cross-check)\n")
        if builtin:
            traces = ROOT / "traces"
            traces_ok = report_conformance(conform(traces, FORMAL, specs), traces)
            print()
    except ToolError as e:
        die(str(e))
    if failed:
        print(f"{len(failed)} of {len(specs)} specs FAILED: {', '.join(s for s in specs if s in failed)}")
        return 1
    print(f"{len(specs)} of {len(specs)} specs hold")
    return 0 if traces_ok else 1


def external_checks(specs: list[str], apalache: str | None, tlc: Tlc | None, workers: int) -> list[Verdict]:
    if apalache is not None:
        print(f"checker: Apalache {apalache_version(apalache)} ({apalache})")
    else:
        assert tlc is not None
        print(f"checker: TLC, {tlc.version()} ({tlc.jar})")
    print()
    verdicts = []
    for spec in specs:
        if apalache is not None:
            found = [apalache_check(apalache, spec)]
        else:
            assert tlc is not None
            found = tlc_checks(tlc, spec, workers)
        for verdict in found:
            print(f"  {spec:<11} {'ok' if verdict.ok else 'FAILED':<7} {verdict.summary}   [{checked_names(spec)}]",
                  flush=True)
            if not verdict.ok:
                print("\n" + verdict.detail.rstrip() + "\n")
        verdicts += found
    return verdicts


def compare_counts(counts: dict[str, int], verdicts: list[Verdict]) -> set[str]:
    """The specs on which TLC and the built-in checker found different numbers of states."""
    at_bounds = [v for v in verdicts if not v.bounds]
    differ = {v.spec for v in at_bounds if v.ok and v.spec in counts and v.distinct != counts[v.spec]}
    for v in at_bounds:
        if v.spec in differ:
            print(f"  {v.spec}: TLC found {v.distinct} distinct states, the built-in checker {counts[v.spec]}")
    if not differ:
        print("\nTLC and the built-in checker find the same number of distinct states wherever both hold")
    return differ
