"""Running the egress lab (``tests.kernel.egress_lab``) from a test: on the machine's loopback or in
a network namespace the test makes (``unshare --net``), and reading what it saw: the violation
lines the egress process wrote, the questions the upstream DNS server was asked, the requests
the HTTP servers read."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30


@dataclass
class Lab:
    proc: subprocess.Popen[str]
    ports: dict
    folder: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def violations(self) -> list[dict]:
        path = self.folder / "violations.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def queries(self) -> list[str]:
        """The upstream DNS server's questions, ``name TYPE`` each."""
        path = self.folder / "queries.txt"
        return path.read_text().splitlines() if path.exists() else []

    def requests(self) -> list[list[str]]:
        """The HTTP servers' requests: [request line, Host]."""
        path = self.folder / "requests.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def netns(self) -> list[str]:
        """The argv prefix that runs a command in the lab's network namespace."""
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--"]


@contextlib.contextmanager
def lab(folder: Path, config: dict, netns: bool = False, within: tuple[str, ...] = ()) -> Iterator[Lab]:
    """Start the lab with ``config`` (see its module; the log, request log and violation stream
    are placed in ``folder``), wait until it listens, and stop it afterwards: its stdin closed,
    or SIGKILL if it does not end. With ``netns`` it runs in a network namespace of its own;
    ``within``: the argv prefix that runs it elsewhere (in a namespace the test made)."""
    config = {"log": str(folder / "queries.txt"), "http_log": str(folder / "requests.jsonl"), **config}
    if "egress" in config:
        config["egress"] = {"stream": str(folder / "violations.jsonl"), **config["egress"]}
    (folder / "lab.json").write_text(json.dumps(config))
    argv = [sys.executable, "-m", "tests.kernel.egress_lab"]
    if netns:
        argv = ["unshare", "--net", "--", *argv, "--netns"]
    argv = [*within, *argv]
    proc = subprocess.Popen([*argv, str(folder / "lab.json")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        assert line, f"the lab did not start (exit {proc.poll()})"
        yield Lab(proc, json.loads(line), folder)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _ended(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (a zombie counts), looking once and then for at most
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while not _ended(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def kill_hard(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
