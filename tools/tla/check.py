"""check and conform: the built-in checker (nucleus/tla, pure Python) on the specs and on
the traces, without Java."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from nucleus.tla.conformance import Verdict, check_behaviour, describe
from nucleus.tla.explore import Result, check, format_violation
from nucleus.tla.model import Model
from tools.tla.behaviours import load_behaviour, trace_files
from tools.tla.errors import ToolError, die
from tools.tla.specs import FORMAL, ROOT, cfg_entries, chosen_specs

BUILTIN = "the built-in checker (nucleus/tla: breadth-first, pure Python)"
RECORDED = "recorded"  # traces/recorded/: real runs, replayed by tests/replay, not the specs' own


def check_spec(spec: str, directory: Path = FORMAL, defines: Mapping[str, str] | None = None) -> tuple[Model, Result]:
    """One spec, with the definitions of `defines` it has overridden (it need not have them all)."""
    model = Model(spec, directory, defines, require_overrides=False)
    return model, check(model)


def checked_names(spec: str, directory: Path = FORMAL) -> str:
    entries = cfg_entries(spec, directory)
    return ", ".join(entries.get("INVARIANT", []) + entries.get("PROPERTY", []))


def parse_defines(pairs: Sequence[str] | None) -> dict[str, str]:
    defines = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            die(f"--define {pair!r}: expected NAME=VALUE (a definition and a TLA+ value, such as MaxMounts=1)")
        defines[name.strip()] = value.strip()
    return defines


def run_builtin(specs: Sequence[str], directory: Path, defines: Mapping[str, str]) -> dict[str, Result]:
    """Check each spec, printing one line per spec and any counterexample; the results by spec."""
    results = {}
    overridden: set[str] = set()
    for spec in specs:
        model, result = check_spec(spec, directory, defines)
        overridden |= model.overridden
        results[spec] = result
        print(f"  {spec:<11} {'ok' if result.ok else 'FAILED':<7} {result.summary()}   "
              f"[{checked_names(spec, directory)}]", flush=True)
        if result.violation is not None:
            print("\n" + format_violation(model, result.violation) + "\n")
    unused = set(defines) - overridden
    if unused:
        raise ToolError(f"--define {', '.join(sorted(unused))}: no such definition in {', '.join(specs)} or their modules")
    return results


def cmd_check(args: argparse.Namespace) -> int:
    directory = Path(args.formal)
    specs = chosen_specs(args.spec, directory)
    defines = parse_defines(args.define)
    print(f"checker: {BUILTIN}")
    if defines:
        print("definitions overridden: " + ", ".join(f"{k} == {v}" for k, v in defines.items()))
    print()
    try:
        results = run_builtin(specs, directory, defines)
    except ToolError as e:
        die(str(e))
    failed = sum(not r.ok for r in results.values())
    print()
    print(f"{failed} of {len(specs)} specs FAILED" if failed else f"{len(specs)} of {len(specs)} specs hold")
    return 1 if failed else 0


def conform(traces: Path, directory: Path = FORMAL, specs: Sequence[str] | None = None) -> list[Verdict]:
    """Whether every model-checker trace under `traces` (not traces/recorded/) is a behaviour of
    its spec in `directory`."""
    models: dict[str, Model] = {}
    verdicts = []
    for path in trace_files(traces):
        if RECORDED in path.relative_to(traces).parts:
            continue
        spec = load_behaviour(path).spec
        if specs is not None and spec not in specs:
            continue
        if spec not in models:
            models[spec] = Model(spec, directory)
        verdicts.append(check_behaviour(models[spec], path))
    return verdicts


def report_conformance(verdicts: Sequence[Verdict], traces: Path, verbose: bool = False) -> bool:
    bad = [v for v in verdicts if not v.ok]
    for v in verdicts if verbose else bad:
        print(describe(v))
    steps = sum(v.steps for v in verdicts)
    where = f"{traces.relative_to(ROOT) if traces.is_relative_to(ROOT) else traces}/"
    if not verdicts:
        print(f"no model-checker traces under {where}")
        return False
    if bad:
        print(f"{len(bad)} of {len(verdicts)} traces in {where} are NOT behaviours of the current specs "
              "(a spec changed: regenerate them with `make traces`)")
        return False
    print(f"{len(verdicts)} traces in {where} ({steps} steps) are behaviours of their specs")
    return True


def cmd_conform(args: argparse.Namespace) -> int:
    traces = Path(args.dir)
    if not traces.is_dir():
        die(f"no such directory: {traces}")
    try:
        verdicts = conform(traces, Path(args.formal), args.spec)
    except ToolError as e:
        die(str(e))
    return 0 if report_conformance(verdicts, traces, args.verbose) else 1
