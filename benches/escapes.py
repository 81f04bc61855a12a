"""What each runtime isolates, measured: the same escape attempts (benches/escape_probe.py) made
inside every runtime as the cold-start rows run it (the same bundles and command lines), beside
a reference run as root in namespaces of its own and no filter, which shows what this kernel
itself answers. One table: a row per attempt, a column per runtime."""

from __future__ import annotations

import json
import subprocess

from benches import escape_probe
from benches.runtimes import ALL, Context, Runtime, UnavailableError, Unshare, first_line

RUNTIMES = ("nucleus", "runc", "crun", "nspawn", "bwrap", "runsc")
PYTHON = "/usr/bin/python3"
COMMAND = f'{PYTHON} -I -c "$(cat benches/escape_probe.py)"'
OUTCOMES = ("blocked", "allowed", "skipped", "error")
FIELDS = ("outcome", "errno", "signal", "detail")
TIMEOUT = 60


class Kernel(Unshare):
    """The reference column: root with every capability, in mount, pid and network namespaces
    of its own (so PID 1 is its own and nothing it mounts is seen outside), no filter."""

    name = "kernel"
    label = "kernel (root, unshare -fmpn)"
    command = "unshare -fmpn --mount-proc CMD"

    def argv(self, args: list[str], cid: str) -> list[str]:
        return ["unshare", "-fmpn", "--mount-proc", *args]


def attempts() -> list[str]:
    """The attempts' names, in the probe's order."""
    return [name for name, _ in escape_probe.attempts(0)]


def probe_argv() -> list[str]:
    with open(escape_probe.__file__) as f:
        return [PYTHON, "-I", "-c", f.read()]


def parse(text: str) -> dict[str, dict]:
    """The probe's lines by attempt; any other line (a runtime's own output) is left out."""
    out = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (isinstance(record, dict) and isinstance(record.get("attempt"), str)
                and record.get("outcome") in OUTCOMES):
            out[record["attempt"]] = {k: record.get(k) for k in FIELDS}
            out[record["attempt"]]["detail"] = str(record.get("detail") or "")
    return out


def run_once(rt: Runtime, names: list[str]) -> dict:
    """The runtime's entry: its label, status and the outcome of every attempt."""
    cid = rt.ctx.cid()
    proc = rt.spawn(probe_argv(), cid, stdout=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        rt.stop(proc, cid)
        return _unavailable(rt, f"the probe did not finish within {TIMEOUT} s")
    finally:
        rt.finish(cid)
    got = parse(out.decode(errors="replace"))
    if not got:
        return _unavailable(rt, first_line(err) or f"the probe said nothing (exit {proc.returncode})")
    entry: dict = {"label": rt.label, "command": rt.command, "status": "ok"}
    lost = {"outcome": "error", "errno": None, "signal": None,
            "detail": f"no answer (the probe ended with exit {proc.returncode})"}
    entry["attempts"] = {name: got.get(name, lost) for name in names}
    return entry


def _unavailable(rt: Runtime | type[Runtime], error: str) -> dict:
    return {"label": rt.label, "command": rt.command, "status": "n/a", "error": error, "attempts": {}}


def measure(ctx: Context, available: dict[str, Runtime], status: dict, log=print) -> dict:
    """The attempts in the reference and in every runtime of RUNTIMES (n/a with the reason of
    those that cannot run here: `status` gives the reason)."""
    names = attempts()
    reference = Kernel(ctx)
    results: dict[str, dict] = {}
    try:
        reference.check()
        available = {reference.name: reference, **available}
    except UnavailableError as e:
        status = {**status, reference.name: {"error": str(e)}}
    for n in [reference.name, *RUNTIMES]:
        rt = available.get(n)
        if rt is None:
            cls = ALL.get(n, Kernel)
            results[n] = _unavailable(cls, status.get(n, {}).get("error", "not checked"))
            continue
        log(f"  escape attempts in {rt.label}")
        try:
            results[n] = run_once(rt, names)
        except Exception as e:  # noqa: BLE001 - one runtime's failure is its column's n/a
            results[n] = _unavailable(rt, f"{type(e).__name__}: {e}")
    return {"command": COMMAND, "attempts": names, "reference": reference.name, "results": results}


def cell(entry: dict | None) -> str:
    """One table cell: "blocked (EPERM)", "allowed", "allowed (EINVAL)", "n/a (...)"."""
    if entry is None:
        return "n/a"
    why = entry.get("errno") or entry.get("signal")
    outcome = entry["outcome"]
    if outcome == "blocked":
        text = f"blocked ({why or entry.get('detail') or '?'})"
    elif outcome == "allowed":
        text = f"**allowed** ({why})" if why else "**allowed**"
    elif outcome == "skipped":
        text = f"n/a ({entry.get('detail', '')})"
    else:
        text = f"error ({why or entry.get('detail', '')})"
    return text.replace("|", "\\|")


def table(section: dict) -> list[str]:
    """The section as markdown: the table, how to read it, and why a column is n/a."""
    results = section["results"]
    out = [f"### What each runtime isolates: the same escape attempts inside each (`{section['command']}`)", "",
           "| attempt | " + " | ".join(e["label"] for e in results.values()) + " |",
           "| --- |" + " --- |" * len(results)]
    for name in section["attempts"]:
        cells = [cell(e["attempts"].get(name)) if e["status"] == "ok" else "n/a" for e in results.values()]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += ["", "blocked (ERRNO): refused by a seccomp filter, a missing capability, a read-only or "
            "masked mount, or absent; **allowed**: it succeeded (and was undone); **allowed** "
            "(ERRNO): the call got past every control and the kernel answered the deliberately "
            "invalid argument. The first column runs the probe as root without a sandbox (own "
            "mount, pid and network namespaces only): what this kernel answers by itself. runsc's "
            "answers come from its sentry, the user-space kernel between the workload and the host's."]
    missing = [f"{e['label']}: {e.get('error', '')}" for e in results.values() if e["status"] != "ok"]
    if missing:
        out += ["", "n/a: " + "; ".join(missing).replace("|", "\\|")]
    return out + [""]
