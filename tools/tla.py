"""tla-py: run the TLA+ model checkers on formal/ and keep traces/ in step with the specs.

    python -m tools.tla verify   [--tla2tools JAR] [--apalache PATH] [--checker auto|apalache|tlc]
    python -m tools.tla traces   --tla2tools JAR --count N [--depth D] [--seed S] [--out DIR]
    python -m tools.tla coverage [DIR] [--tla2tools JAR]

verify    model-checks every spec (formal/<Spec>.tla with formal/<Spec>.cfg). Apalache runs when
          apalache-mc is on PATH or given with --apalache; otherwise TLC, when a tla2tools.jar is
          given with --tla2tools or $TLA2TOOLS. It says which checker ran, with its version, and
          exits non-zero on a violation, or with a message when no checker is available.
traces    simulates random behaviours of every spec with TLC (formal/<Spec>Export.tla, which writes
          one ITF JSON file per behaviour), with deterministic seeds: a uniform random run first;
          while some step the model can reach is still missing, steered runs (no step fails, or
          only one machine's steps fail; the lifecycle's Lost counts as its failure) and more
          seeds. Duplicate behaviours are dropped; the
          behaviours kept are those that together take every step taken, then others from each
          run in turn, up to --count per spec. They are written to <out>/<Spec>/trace_w0_<n>.itf.json
          exactly as TLC wrote them; then the coverage is checked and every trace is replayed
          through the machines (`nucleus trace replay`). The same arguments give the same files.
coverage  lists which (machine, action, argument, outcome, parameters) steps the traces take,
          from the spec's `event` variable, the machine's phase after the step, and the values of
          the machine's parameters (what its Init picks: Booleans such as sec_strict, sets such
          as join_degradable): a seccomp failure that is fatal in a strict mode is another step
          than one that is fatal because degraded security is not allowed. It fails when an action of a spec's Next is never
          taken and, with a tla2tools.jar, when a step the model can reach (TLC's exhaustive
          state dump) is never taken.

Only the standard library; the checkers run as subprocesses. TLC needs `java` on PATH and
tla2tools.jar; formal/ITF.tla uses only modules that ship in tla2tools.jar (TLC, TLCExt, Json),
so CommunityModules are not needed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
FORMAL = ROOT / "formal"
# The specs in a fixed order (seeds depend on it); a new formal/<Spec>.tla with a .cfg is
# picked up after these.
KNOWN_SPECS = ("Lifecycle", "Isolation", "Filesystem", "Security", "Resources", "System", "Join")

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
# Apalache's bound per spec: above the diameter of the reachable state graph
# (TLC: 6, 12, 8, 5, 6, 35, 12).
APALACHE_LENGTHS = {
    "Lifecycle": 8, "Isolation": 14, "Filesystem": 10, "Security": 7, "Resources": 8, "System": 37,
    "Join": 14,
}
DEFAULT_LENGTH = 30
SEED_STRIDE = 100  # run r of spec i simulates with seed S + 100*i + r

# (machine, action, argument, the machine's phase after the step, its parameters that are TRUE or non-empty)
Key = tuple[str, str, str, str, str]


class ToolError(Exception):
    """A checker could not run, or reported something other than a verdict."""


def die(message: str, code: int = 2) -> NoReturn:
    print(f"tools.tla: {message}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# The checkers.


@dataclass(frozen=True)
class Tlc:
    jar: Path
    java: str

    def command(self, *args: str, props: dict[str, str] | None = None) -> list[str]:
        defines = [f"-D{k}={v}" for k, v in (props or {}).items()]
        return [self.java, "-XX:+UseParallelGC", *defines, "-cp", str(self.jar), "tlc2.TLC", *args]

    def run(self, *args: str, props: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run TLC in formal/ with its metadata (states/) in a temporary directory."""
        with tempfile.TemporaryDirectory(prefix="nucleus-tlc-") as meta:
            return subprocess.run(
                self.command(*args, "-metadir", meta, "-noGenerateSpecTE", props=props),
                cwd=FORMAL, capture_output=True, text=True, check=False,
            )

    def version(self) -> str:
        with tempfile.TemporaryDirectory(prefix="nucleus-tlc-") as cwd:
            proc = subprocess.run(
                self.command("-version"), cwd=cwd, capture_output=True, text=True, check=False
            )
        m = re.search(r"TLC2 Version [^\n]*", proc.stdout + proc.stderr)
        if not m:
            raise ToolError(f"cannot tell the TLC version of {self.jar}:\n{proc.stdout}{proc.stderr}")
        return m.group(0).strip()


def find_tlc(jar: str | None, required: bool = False) -> Tlc | None:
    path = jar or os.environ.get("TLA2TOOLS") or ""
    if not path:
        if required:
            die("TLC is needed: pass --tla2tools path/to/tla2tools.jar (or set TLA2TOOLS)")
        return None
    if not Path(path).is_file():
        die(f"tla2tools.jar not found: {path}")
    java = shutil.which("java")
    if java is None:
        die("TLC needs a Java runtime: no `java` on PATH")
    return Tlc(Path(path).resolve(), java)


def find_apalache(path: str | None) -> str | None:
    if path:
        found = shutil.which(path) or (path if Path(path).is_file() else None)
        if found is None:
            die(f"apalache-mc not found: {path}")
        return str(Path(found).resolve())
    return shutil.which("apalache-mc")


def apalache_version(apalache: str) -> str:
    proc = subprocess.run([apalache, "version"], capture_output=True, text=True, check=False)
    lines = [ln.strip() for ln in (proc.stdout or proc.stderr).splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown version"


# ---------------------------------------------------------------------------------------------
# Specs and configurations.

CFG_KEYWORDS = {
    "CONSTANT", "CONSTANTS", "INIT", "NEXT", "SPECIFICATION", "INVARIANT", "INVARIANTS",
    "PROPERTY", "PROPERTIES", "CONSTRAINT", "CONSTRAINTS", "ACTION_CONSTRAINT",
    "ACTION_CONSTRAINTS", "SYMMETRY", "VIEW", "ALIAS", "POSTCONDITION", "CHECK_DEADLOCK",
}


def cfg_entries(spec: str) -> dict[str, list[str]]:
    """The names listed under each keyword of formal/<spec>.cfg (INVARIANTS folded into INVARIANT)."""
    text = (FORMAL / f"{spec}.cfg").read_text()
    text = re.sub(r"\(\*.*?\*\)", " ", text, flags=re.DOTALL)
    text = re.sub(r"\\\*[^\n]*", " ", text)
    entries: dict[str, list[str]] = {}
    current = ""
    for token in text.split():
        if token in CFG_KEYWORDS:
            current = token.rstrip("S") if token.endswith(("INVARIANTS", "CONSTRAINTS")) else token
            current = "PROPERTY" if current == "PROPERTIES" else current
            entries.setdefault(current, [])
        elif current:
            entries[current].append(token)
    return entries


@functools.cache
def next_actions(spec: str) -> frozenset[tuple[str, str]]:
    """The (machine, action) pairs a spec's Next records in `event`."""
    text = (FORMAL / f"{spec}.tla").read_text()
    pairs = set(re.findall(r'\bEv\("(\w+)",\s*"(\w+)",', text))
    if pairs:  # the composition names the machine in every Ev(m, name, arg)
        return frozenset(pairs)
    m = re.search(r"""^Ev\(\w+,\s*\w+\)\s*==\s*event'\s*=\s*\[m \|-> "(\w+)\"""", text, re.MULTILINE)
    if not m:
        raise ToolError(f"formal/{spec}.tla: cannot find its Ev(name, arg) definition")
    body = text.split("\nNext ==", 1)[1].split("\nSpec ==", 1)[0]
    return frozenset((m.group(1), name) for name in re.findall(r'\bEv\("(\w+)"', body))


def all_specs() -> list[str]:
    """Every formal/<Spec>.tla with a <Spec>.cfg (not the TLC-only wrappers)."""
    found = {
        p.stem for p in FORMAL.glob("*.tla")
        if (FORMAL / f"{p.stem}.cfg").is_file() and not p.stem.endswith("Export") and p.stem != "ITF"
    }
    return [s for s in KNOWN_SPECS if s in found] + sorted(found - set(KNOWN_SPECS))


def chosen_specs(names: Sequence[str] | None) -> list[str]:
    specs = all_specs()
    for name in names or ():
        if name not in specs:
            die(f"no spec {name} in {FORMAL} (specs: {', '.join(specs)})")
    return list(names) if names else specs


@functools.cache
def machines_of(spec: str) -> frozenset[str]:
    return frozenset(m for m, _ in next_actions(spec))


@functools.cache
def parameters_of(machine: str) -> tuple[str, ...]:
    """A machine's parameters: the variables the Init of its own spec picks freely, Booleans
    (`x \\in BOOLEAN` in <M>Init, such as sec_allowDegraded and sec_strict) and sets of strings
    (`x \\in SUBSET S`, such as join_degradable). No step changes them; a step's outcome can
    depend on them, so coverage counts a step once per their values."""
    for spec in all_specs():
        if machines_of(spec) == {machine}:
            text = (FORMAL / f"{spec}.tla").read_text()
            init = re.search(r"^\w+Init ==\n((?:[ \t]+\S.*\n)+)", text, re.MULTILINE)
            return tuple(re.findall(r"(\w+) \\in (?:BOOLEAN|SUBSET)\b", init.group(1))) if init else ()
    return ()


def _parameter_value(value: Any) -> bool | frozenset[str]:
    """A parameter's value as read from an ITF state (a bool, {"#set": [...]}) or TLC's state
    dump (TRUE/FALSE, {"a", "b"})."""
    if isinstance(value, dict) and "#set" in value:
        return frozenset(map(str, value["#set"]))
    if isinstance(value, (list, set, frozenset)):
        return frozenset(map(str, value))
    if isinstance(value, str) and value.startswith("{"):
        return frozenset(re.findall(r'"([^"]*)"', value))
    return value in (True, "TRUE")


def parameters_label(machine: str, value: Any) -> str:
    """The parameters of `machine` that are TRUE or non-empty, without the machine's prefix:
    "allowDegraded,strict", "degradable:landlock+seccomp". `value(name)` gives a variable's value
    (as an ITF state or TLC's state dump has it)."""
    labels = []
    for p in parameters_of(machine):
        v = _parameter_value(value(p))
        name = p.split("_", 1)[1]
        if v is True:
            labels.append(name)
        elif isinstance(v, frozenset) and v:
            labels.append(f"{name}:{'+'.join(sorted(v))}")
    return ",".join(labels)


def phase_var(machine: str, names: Iterable[str]) -> str | None:
    """The variable holding a machine's phase (<m>_phase or <m>_status)."""
    have = set(names)
    return next((v for v in (f"{machine}_phase", f"{machine}_status") if v in have), None)


def module_of(meta: dict[str, Any], names: Iterable[str]) -> str | None:
    """The spec a trace is for: its #meta module, else the spec whose machines own its variables."""
    specs = all_specs()
    module = meta.get("module")
    if module in specs:
        return str(module)
    prefixes = {n.split("_", 1)[0] for n in names if "_" in n}
    for spec in specs:
        if machines_of(spec) == prefixes:
            return spec
    return None


# ---------------------------------------------------------------------------------------------
# verify


@dataclass
class Verdict:
    spec: str
    ok: bool
    summary: str
    detail: str = ""


def tlc_check(tlc: Tlc, spec: str, workers: int) -> Verdict:
    proc = tlc.run("-config", f"{spec}.cfg", f"{spec}.tla", "-workers", str(workers))
    out = proc.stdout + proc.stderr
    counts = re.search(r"([\d,]+) states generated, ([\d,]+) distinct states found", out)
    depth = re.search(r"depth of the complete state graph search is (\d+)", out)
    ok = proc.returncode == 0 and "No error has been found" in out
    summary = ""
    if counts:
        summary = f"{counts.group(2)} distinct states ({counts.group(1)} generated)"
        if depth:
            summary += f", depth {depth.group(1)}"
    if ok:
        return Verdict(spec, True, summary)
    return Verdict(spec, False, summary or f"TLC exit code {proc.returncode}", _error_part(out))


def _error_part(out: str) -> str:
    """TLC's report from its first error on (the violated property and the behaviour)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Error") or "is violated" in line or line.startswith("***"):
            return "\n".join(lines[i:])
    return "\n".join(lines[-40:])


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
    apalache = None if args.checker == "tlc" else find_apalache(args.apalache)
    tlc = None
    if apalache is None:
        if args.checker == "apalache":
            die("Apalache is not available: put apalache-mc on PATH or pass --apalache PATH")
        tlc = find_tlc(args.tla2tools)
    if apalache is None and tlc is None:
        die(
            "no model checker available: put apalache-mc on PATH (or pass --apalache PATH), "
            "or pass --tla2tools path/to/tla2tools.jar (or set TLA2TOOLS)"
        )
    try:
        if apalache is not None:
            print(f"checker: Apalache {apalache_version(apalache)} ({apalache})")
        else:
            assert tlc is not None
            print(f"checker: TLC, {tlc.version()} ({tlc.jar})")
        print()
        failed = 0
        for spec in specs:
            entries = cfg_entries(spec)
            checked = ", ".join(entries.get("INVARIANT", []) + entries.get("PROPERTY", []))
            if apalache is not None:
                verdict = apalache_check(apalache, spec)
            else:
                assert tlc is not None
                verdict = tlc_check(tlc, spec, args.workers)
            status = "ok" if verdict.ok else "FAILED"
            print(f"  {spec:<11} {status:<7} {verdict.summary}   [{checked}]")
            if not verdict.ok:
                failed += 1
                print("\n" + verdict.detail.rstrip() + "\n")
    except ToolError as e:
        die(str(e))
    print()
    if failed:
        print(f"{failed} of {len(specs)} specs FAILED")
        return 1
    print(f"{len(specs)} of {len(specs)} specs hold")
    return 0


# ---------------------------------------------------------------------------------------------
# Traces: reading, coverage.


@dataclass
class Behaviour:
    spec: str
    path: Path
    data: bytes
    states: list[dict[str, Any]]
    keys: set[Key] = field(default_factory=set)
    run: int = 0  # which simulation run of the spec produced it

    @property
    def fingerprint(self) -> str:
        plain = [{k: v for k, v in s.items() if k != "#meta"} for s in self.states]
        return json.dumps(plain, sort_keys=True, separators=(",", ":"))


def step_keys(states: Sequence[dict[str, Any]]) -> list[Key]:
    keys = []
    for state in states[1:]:
        ev = state.get("event") or {}
        m = str(ev.get("m", ""))
        var = phase_var(m, state)
        phase = state.get(var, "") if var else ""
        keys.append((m, str(ev.get("name", "")), str(ev.get("arg", "")), str(phase),
                     parameters_label(m, state.get)))
    return keys


def load_behaviour(path: Path, spec: str | None = None) -> Behaviour:
    data = path.read_bytes()
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("states"), list):
        raise ToolError(f"{path}: not an ITF trace")
    states = doc["states"]
    module = spec or module_of(doc.get("#meta", {}), doc.get("vars") or (states[0] if states else {}))
    if module is None:
        raise ToolError(f"{path}: cannot tell which spec the trace is for")
    return Behaviour(module, path, data, states, set(step_keys(states)))


@functools.cache
def reachable_keys(tlc: Tlc, spec: str) -> frozenset[Key]:
    """Every (machine, action, argument, outcome) step the model can take: from TLC's dump of all
    reachable states (each state records the step that reached it in `event`)."""
    with tempfile.TemporaryDirectory(prefix="nucleus-dump-") as tmp:
        dump = Path(tmp) / "states"
        proc = tlc.run("-config", f"{spec}.cfg", f"{spec}.tla", "-workers", "1", "-dump", str(dump))
        if proc.returncode != 0:
            raise ToolError(f"TLC failed on {spec}:\n{_error_part(proc.stdout + proc.stderr)}")
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


def trace_files(directory: Path) -> list[Path]:
    return sorted(
        (p for p in directory.rglob("*.itf.json")
         if not any(part.startswith(".") for part in p.relative_to(directory).parts)),
        key=_natural,
    )


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def check_coverage(behaviours: Sequence[Behaviour], specs: Sequence[str], tlc: Tlc | None,
                   table: bool) -> bool:
    ok = True
    for spec in specs:
        mine = [b for b in behaviours if b.spec == spec]
        reachable = reachable_keys(tlc, spec) if tlc is not None else None
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


# ---------------------------------------------------------------------------------------------
# traces


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
            f"TLC simulation of {spec} ({run}) failed:\n{_error_part(proc.stdout + proc.stderr)}"
        )
    return sorted(outdir.glob("trace_w*_*.itf.json"), key=_natural)


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
            reachable = reachable_keys(tlc, spec)
            pool: list[Behaviour] = []
            seen: set[str] = set()
            runs: list[Run] = []
            simulated = 0
            for number, run in enumerate(schedule(spec, args.seed, args.rounds)):
                runs.append(run)
                rundir = tmp_root / spec / f"seed{run.seed}"
                shutil.rmtree(rundir, ignore_errors=True)
                files = simulate(tlc, spec, run, depth, pool_size, rundir)
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
                path.write_bytes(b.data)
                written.append(Behaviour(spec, path, b.data, b.states, b.keys))
            covered = set().union(*(b.keys for b in chosen)) if chosen else set()
            size = sum(len(b.data) for b in chosen)
            print(
                f"  {spec:<11} {len(chosen):>3} traces ({size / 1024:.0f} KiB), depth {depth}, "
                f"{'; '.join(map(str, runs))}: {simulated} behaviours simulated, "
                f"{len(pool)} distinct; {len(covered & reachable)}/{len(reachable)} reachable steps taken"
            )
        print()
        ok = check_coverage(written, specs, tlc, table=False)
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


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.tla", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tla2tools", metavar="JAR", help="tla2tools.jar (default: $TLA2TOOLS)")
        p.add_argument("--spec", action="append", metavar="SPEC", help="only this spec (repeatable)")

    p = sub.add_parser("verify", help="model-check every spec")
    common(p)
    p.add_argument("--apalache", metavar="PATH", help="apalache-mc (default: apalache-mc on PATH)")
    p.add_argument("--checker", choices=("auto", "apalache", "tlc"), default="auto",
                   help="auto: Apalache if available, else TLC")
    p.add_argument("--workers", type=int, default=2, help="TLC worker threads (default 2)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("traces", help="simulate ITF traces into traces/, check coverage, replay them")
    common(p)
    p.add_argument("--count", type=int, required=True, help="traces kept per spec (at most)")
    p.add_argument("--depth", type=int, help="simulation depth for every spec (default per spec: "
                   + ", ".join(f"{s} {d}" for s, d in DEPTHS.items()) + f"; others {DEFAULT_DEPTH})")
    p.add_argument("--seed", type=int, default=1,
                   help=f"base seed (default 1): spec i, run r uses seed + {SEED_STRIDE}*i + r")
    p.add_argument("--out", default=str(ROOT / "traces"), help="output directory (default: traces/)")
    p.add_argument("--pool", type=int, help="behaviours simulated per run (default max(10*count, 200))")
    p.add_argument("--rounds", type=int, default=8,
                   help="at most this many runs (seeds) per spec, until every reachable step is taken (default 8)")
    p.add_argument("--verbose", action="store_true", help="print every replay verdict")
    p.set_defaults(func=cmd_traces)

    p = sub.add_parser("coverage", help="which steps the traces take; fail if an action is never taken")
    common(p)
    p.add_argument("dir", nargs="?", default=str(ROOT / "traces"), help="trace directory (default: traces/)")
    p.add_argument("--brief", action="store_true", help="one line per spec, no table")
    p.set_defaults(func=cmd_coverage)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
