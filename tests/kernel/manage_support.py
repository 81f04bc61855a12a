"""What the container management tests share: workloads that report their signals, and checks of
what a nucleus command printed and of the processes it left."""

from __future__ import annotations

import json
import re
import subprocess

from tests.helpers import Scope, describe, read_proc

# A workload that reports each signal it gets, and keeps running.
TRAPS = ('for s in TERM USR1 USR2 HUP INT; do trap "echo got $s" $s; done; '
         'echo ready; while :; do sleep 0.05; done')
# A workload that exits 0 on TERM.
POLITE = 'trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done'


def ok(result: subprocess.CompletedProcess, stdout: str | None = None) -> None:
    assert result.returncode == 0 and result.stderr == "", describe(result)
    if stdout is not None:
        assert result.stdout == stdout, describe(result)


def fails(result: subprocess.CompletedProcess, code: int, stderr: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (code, "", stderr), describe(result)


def started(scope: Scope, script: str = TRAPS, *options: str, name: str = "web") -> str:
    """A detached container running ``script``, once it has printed its first line."""
    cid = scope.detach(scope.sh(script), "--name", name, *options)
    scope.wait_log(cid, lambda text: text.startswith("ready\n"))
    return cid


def ps_json(scope: Scope, *options: str) -> list[dict]:
    result = scope.nucleus("ps", *options, "--format", "json")
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)


def row_of(text: str, cid: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(cid[:12] + " ")]
    assert len(rows) == 1, f"no single row for {cid[:12]} in:\n{text}"
    return re.split(r"\s{2,}", rows[0])


def stopped_state(pid: int) -> bool:
    proc = read_proc(pid)
    return proc is not None and proc.state == "T"


def gone(pid: int) -> bool:
    proc = read_proc(pid)
    return proc is None or not proc.alive

