"""coverage: which steps the traces take, against the actions of each Next and, with TLC, every
step the model can reach."""

from __future__ import annotations

import argparse
import functools
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.tla.behaviours import Behaviour, Key, load_behaviour, step_keys, trace_files
from tools.tla.checkers import Tlc, error_part, find_tlc
from tools.tla.errors import ToolError, die
from tools.tla.specs import chosen_specs, formal_copy, next_actions, parameters_label


@functools.cache
def reachable_keys(tlc: Tlc, spec: str, workers: int = 1) -> frozenset[Key]:
    """Every (machine, action, argument, outcome) step the model can take: from TLC's dump of all
    reachable states (each state records the step that reached it in `event`), searched with
    `workers` threads (the states are the same for any number)."""
    return _dumped_keys(tlc, spec, workers)


def _dumped_keys(tlc: Tlc, spec: str, workers: int) -> frozenset[Key]:
    with tempfile.TemporaryDirectory(prefix="nucleus-dump-") as tmp:
        dump = Path(tmp) / "states"
        # The state graph alone: a dump needs no liveness check, which at System's bounds takes
        # TLC longer than the search itself.
        copy = formal_copy(spec, Path(tmp) / "formal", graph_only=True)
        proc = tlc.run("-config", f"{spec}.cfg", f"{spec}.tla", "-workers", str(workers), "-dump", str(dump),
                       directory=copy)
        if proc.returncode != 0:
            raise ToolError(f"TLC failed on {spec}:\n{error_part(proc.stdout + proc.stderr)}")
        text = Path(f"{dump}.dump").read_text()
    keys: set[Key] = set()
    for block in re.split(r"\n\s*\n", text):
        ev = re.search(r"/\\ event = \[([^\]]*)\]", block)
        if not ev:
            continue
        fields = dict(re.findall(r'(\w+) \|-> "([^"]*)"', ev.group(1)))
        m = fields.get("m", "")
        if not m:
            continue  # an initial state
        phase = re.search(rf'/\\ {m}_(?:phase|status) = "([^"]*)"', block)
        values = dict(re.findall(r"/\\ (\w+) = (TRUE|FALSE|\{[^}]*\})", block))
        keys.add((m, fields.get("name", ""), fields.get("arg", ""), phase.group(1) if phase else "",
                  parameters_label(m, values.get)))
    if not keys:
        raise ToolError(f"no steps found in TLC's state dump of {spec}")
    return frozenset(keys)


@dataclass
class Coverage:
    spec: str
    traces: int
    steps: int
    taken: dict[Key, tuple[int, int]]  # key -> (traces taking it, times taken)
    untaken_actions: list[tuple[str, str]]
    unreached: list[Key] | None  # None: reachable steps unknown (no TLC)
    impossible: list[Key] | None

    @property
    def ok(self) -> bool:
        return not self.untaken_actions and not self.unreached and not self.impossible


def coverage_of(spec: str, behaviours: Sequence[Behaviour], reachable: frozenset[Key] | None) -> Coverage:
    taken: dict[Key, list[int]] = {}
    steps = 0
    for b in behaviours:
        keys = step_keys(b.states)
        steps += len(keys)
        for key in keys:
            counts = taken.setdefault(key, [0, 0])
            counts[1] += 1
        for key in set(keys):
            taken[key][0] += 1
    names = {(k[0], k[1]) for k in taken}
    untaken = sorted(next_actions(spec) - names)
    unreached = impossible = None
    if reachable is not None:
        unreached = sorted(reachable - set(taken))
        impossible = sorted(set(taken) - reachable)
    return Coverage(
        spec, len(behaviours), steps, {k: (c[0], c[1]) for k, c in sorted(taken.items())},
        untaken, unreached, impossible,
    )


def print_coverage(cov: Coverage, table: bool) -> None:
    status = "ok" if cov.ok else "INCOMPLETE"
    known = "" if cov.unreached is None else f" of {len(cov.taken) + len(cov.unreached)} reachable"
    print(
        f"{cov.spec}: {cov.traces} traces, {cov.steps} steps; {len(cov.taken)}{known} "
        f"(action, arg, outcome, parameters) steps taken, "
        f"{len(next_actions(cov.spec)) - len(cov.untaken_actions)}"
        f"/{len(next_actions(cov.spec))} actions of Next: {status}"
    )
    if table and cov.taken:
        print(f"  {'machine':<8}{'action':<13}{'arg':<13}{'outcome':<11}{'parameters':<22}{'traces':>7}{'steps':>7}")
        for (m, name, arg, phase, params), (n_traces, n_steps) in cov.taken.items():
            print(f"  {m:<8}{name:<13}{arg or '-':<13}{phase:<11}{params or '-':<22}{n_traces:>7}{n_steps:>7}")
    for m, name in cov.untaken_actions:
        print(f"  NEVER TAKEN: action {m}.{name} of Next")
    for m, name, arg, phase, params in cov.unreached or []:
        print(f"  NEVER TAKEN: {m}.{name}({arg}) -> {phase} [{params or '-'}], which the model can reach")
    for m, name, arg, phase, params in cov.impossible or []:
        print(f"  NOT IN THE MODEL: {m}.{name}({arg}) -> {phase} [{params or '-'}] is taken by a trace but unreachable")


def check_coverage(behaviours: Sequence[Behaviour], specs: Sequence[str], tlc: Tlc | None,
                   table: bool, workers: int = 1) -> bool:
    ok = True
    for spec in specs:
        mine = [b for b in behaviours if b.spec == spec]
        reachable = reachable_keys(tlc, spec, workers) if tlc is not None else None
        cov = coverage_of(spec, mine, reachable)
        print_coverage(cov, table)
        if table:
            print()
        ok = ok and cov.ok
    return ok


def cmd_coverage(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not directory.is_dir():
        die(f"no such directory: {directory}")
    tlc = find_tlc(args.tla2tools)
    try:
        behaviours = [load_behaviour(p) for p in trace_files(directory)]
        specs = chosen_specs(args.spec)
        if tlc is None:
            print("(no tla2tools.jar: checking the actions of each Next only, not every reachable step)\n")
        ok = check_coverage(behaviours, specs, tlc, table=not args.brief)
    except ToolError as e:
        die(str(e))
    print("coverage complete" if ok else "coverage INCOMPLETE")
    return 0 if ok else 1
