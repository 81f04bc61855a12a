"""tla-py: run the TLA+ model checkers on formal/ and keep traces/ in step with the specs.

    python -m tools.tla verify   [--tla2tools JAR] [--apalache PATH] [--checker auto|builtin|apalache|tlc]
    python -m tools.tla check    [--spec S] [--formal DIR] [--define NAME=VALUE]
    python -m tools.tla conform  [DIR] [--formal DIR]
    python -m tools.tla traces   --tla2tools JAR --count N [--depth D] [--seed S] [--out DIR] [--workers W]
    python -m tools.tla coverage [DIR] [--tla2tools JAR]

verify    model-checks every spec (formal/<Spec>.tla with formal/<Spec>.cfg) with the built-in
          checker (nucleus/tla, no Java), and with Apalache when apalache-mc is on PATH or
          given with --apalache, otherwise TLC when a tla2tools.jar is given with --tla2tools or
          $TLA2TOOLS; with TLC, the two must find the same number of distinct states. Then every
          model-checker trace in traces/ must still be a behaviour of its spec (see conform). It
          says which checkers ran, with their versions, and exits non-zero on a violation.
check     the built-in checker alone: every reachable state breadth-first, the invariants and
          action properties of the .cfg, a shortest counterexample on a violation. --formal reads
          the specs from another directory (a copy with a planted bug); --define overrides a
          definition with a value (smaller bounds: --define MaxMounts=1).
conform   whether each trace in DIR (default traces/, but for traces/recorded/) is a behaviour of
          its spec: its first state satisfies Init and each step Next (with the primed variables
          bound to the next state), so a spec change the traces no longer follow fails.
traces    simulates random behaviours of every spec with TLC (formal/<Spec>Export.tla, which writes
          one ITF JSON file per behaviour), with deterministic seeds: a uniform random run first;
          while some step the model can reach is still missing, steered runs (no step fails, or
          only one machine's steps fail; the lifecycle's Lost counts as its failure) and more
          seeds. Duplicate behaviours are dropped; the
          behaviours kept are those that together take every step taken, then others from each
          run in turn, up to --count per spec. They are written to <out>/<Spec>/trace_w0_<n>.itf.json
          exactly as TLC wrote them; then the coverage is checked and every trace is replayed
          through the machines (`nucleus trace replay`). The same arguments give the same files,
          whatever --workers: that many runs are simulated at once, their results taken in order.
coverage  lists which (machine, action, argument, outcome, parameters) steps the traces take,
          from the spec's `event` variable, the machine's phase after the step, and the values of
          the machine's parameters (what its Init picks: Booleans such as sec_strict, sets such
          as join_degradable): a seccomp failure that is fatal in a strict mode is another step
          than one that is fatal because degraded security is not allowed. It fails when an action of a spec's Next is never
          taken and, with a tla2tools.jar, when a step the model can reach (TLC's exhaustive
          state dump) is never taken.

Only the standard library; TLC and Apalache run as subprocesses. TLC needs `java` on PATH and
tla2tools.jar; formal/ITF.tla uses only modules that ship in tla2tools.jar (TLC, TLCExt, Json),
so CommunityModules are not needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tools.tla.check import cmd_check, cmd_conform
from tools.tla.coverage import cmd_coverage
from tools.tla.specs import ROOT
from tools.tla.traces import DEFAULT_DEPTH, DEPTHS, SEED_STRIDE, cmd_traces
from tools.tla.verify import cmd_verify


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.tla", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tla2tools", metavar="JAR", help="tla2tools.jar (default: $TLA2TOOLS)")
        p.add_argument("--spec", action="append", metavar="SPEC", help="only this spec (repeatable)")

    p = sub.add_parser("verify", help="model-check every spec")
    common(p)
    p.add_argument("--apalache", metavar="PATH", help="apalache-mc (default: apalache-mc on PATH)")
    p.add_argument("--checker", choices=("auto", "builtin", "apalache", "tlc"), default="auto",
                   help="auto: the built-in checker, and Apalache if available, else TLC if available")
    p.add_argument("--workers", type=int, default=2, help="TLC worker threads (default 2)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("check", help="model-check every spec with the built-in checker alone")
    p.add_argument("--spec", action="append", metavar="SPEC", help="only this spec (repeatable)")
    p.add_argument("--formal", default=str(ROOT / "formal"), metavar="DIR",
                   help="the directory of the specs (default: formal/)")
    p.add_argument("--define", action="append", metavar="NAME=VALUE",
                   help="override a definition with a value, in every module (repeatable)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("conform", help="whether every trace is a behaviour of its spec")
    p.add_argument("dir", nargs="?", default=str(ROOT / "traces"), help="trace directory (default: traces/)")
    p.add_argument("--spec", action="append", metavar="SPEC", help="only this spec's traces (repeatable)")
    p.add_argument("--formal", default=str(ROOT / "formal"), metavar="DIR",
                   help="the directory of the specs (default: formal/)")
    p.add_argument("--verbose", action="store_true", help="a line for every trace")
    p.set_defaults(func=cmd_conform)

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
    p.add_argument("--workers", type=int, default=2,
                   help="TLC worker threads for the search of reachable steps, and runs simulated at "
                   "once (default 2; the traces written are the same for any number)")
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
