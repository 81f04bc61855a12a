"""The container's init shows nothing of the host, from inside a real container: its command line
(which was the supervisor's: the interpreter's path, the project's install path and the whole
`nucleus` command line with the state directory) reads "init", its name "init"; its environment
and executable cannot be read (it is not dumpable); no process the workload can see names a
host path, nor does a process attach runs there."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nucleus
from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, run_json
from tests.kernel.manage_support import ok, started

pytestmark = SANDBOX_WITH_PYTHON

# What the workload sees of every process in its PID namespace.
SURVEY = r"""
import json, os
out = {}
for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
    entry = {}
    for name in ("cmdline", "comm", "environ", "stat", "status"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                entry[name] = f.read().decode(errors="replace")
        except OSError as e:
            entry[name] = f"<{e.strerror}>"
    for link in ("exe", "cwd", "root"):
        try:
            entry[link] = os.readlink(f"/proc/{pid}/{link}")
        except OSError as e:
            entry[link] = f"<{e.strerror}>"
    out[pid] = entry
print(json.dumps(out))
"""


def host_words(state_dir: str | None = None) -> list[str]:
    """Strings of the host that a container must not show."""
    words = [sys.executable, os.path.dirname(os.path.dirname(nucleus.__file__)), "nucleus run",
             "NUCLEUS_STATE_DIR", "/run/nucleus"]
    if state_dir:
        words.append(state_dir)
    return words


def check_init(entry: dict, words: list[str]) -> None:
    assert entry["cmdline"] == "init\0", entry["cmdline"]
    assert entry["comm"] == "init\n", entry["comm"]
    assert entry["stat"].startswith("1 (init) "), entry["stat"]
    assert "Name:\tinit\n" in entry["status"]
    assert entry["environ"] == "<Permission denied>"
    assert entry["exe"] == "<Permission denied>"
    for word in words:
        assert word not in json.dumps(entry), f"{word!r} shows in PID 1's {entry}"


def test_pid_1_shows_nothing_of_the_host():
    seen = {int(k): val for k, val in run_json(SURVEY).items()}
    assert sorted(seen)[:1] == [1], seen
    check_init(seen[1], host_words())
    for pid, entry in seen.items():
        for word in host_words():
            assert word not in entry["cmdline"], f"{word!r} shows in /proc/{pid}/cmdline: {entry['cmdline']!r}"


def test_pid_1_of_a_detached_container_shows_nothing_either():
    with Scope() as scope:
        cid = started(scope, 'echo ready; while :; do sleep 0.05; done')
        result = scope.nucleus("attach", "web", "--", "/usr/bin/python3", "-c", SURVEY)
        assert result.returncode == 0, describe(result)
        seen = {int(k): val for k, val in json.loads(result.stdout).items()}
        words = host_words(scope.state_dir) + [cid]
        check_init(seen[1], words)
        for pid, entry in seen.items():  # the shell, its sleep, the attached python
            for word in words:
                assert word not in entry["cmdline"], f"{word!r} shows in /proc/{pid}/cmdline: {entry['cmdline']!r}"
        ok(scope.nucleus("rm", "--force", "web"), "web\n")
        scope.assert_clean()


def test_the_host_sees_the_init_by_its_new_name_too():
    with Scope() as scope:
        cid = started(scope, 'echo ready; while :; do sleep 0.05; done')
        init = scope.record(cid)["init_pid"]
        # The workload runs before its compiled init has begun (PID 1 executes it once the
        # workload's exec succeeded): wait until PID 1 is that program and has taken its name,
        # which it takes after its command line.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                "memfd:" in os.readlink(f"/proc/{init}/exe") and Path(f"/proc/{init}/comm").read_text() == "init\n"):
            time.sleep(0.01)
        assert "memfd:" in os.readlink(f"/proc/{init}/exe")
        with open(f"/proc/{init}/comm") as f:
            assert f.read() == "init\n"
        with open(f"/proc/{init}/cmdline", "rb") as f:
            assert f.read() == b"init\0"
        ok(scope.nucleus("rm", "--force", "web"), "web\n")
        scope.assert_clean()
