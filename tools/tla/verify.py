"""verify: model-check every spec with Apalache or TLC, and say which ran."""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from dataclasses import dataclass

from tools.tla.checkers import Tlc, apalache_version, error_part, find_apalache, find_tlc
from tools.tla.errors import ToolError, die
from tools.tla.specs import FORMAL, cfg_entries, chosen_specs

# Apalache's bound per spec: above the diameter of the reachable state graph
# (TLC: 6, 12, 8, 5, 6, 35, 12).
APALACHE_LENGTHS = {
    "Lifecycle": 8, "Isolation": 14, "Filesystem": 10, "Security": 7, "Resources": 8, "System": 37,
    "Join": 14,
}
DEFAULT_LENGTH = 30


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
    return Verdict(spec, False, summary or f"TLC exit code {proc.returncode}", error_part(out))



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
