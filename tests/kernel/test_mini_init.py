"""The container's compiled init (nucleus/init/init.c) as PID 1 of real containers: it is what runs
there once the workload has started (a sealed memory file, a few KiB), holds no descriptor, is not
dumpable, reaps the orphans a workload leaves, passes SIGTERM on to the workload and exits with
the workload's status. Without the binary, agent mode warns and keeps the interpreter as PID 1
(the same duties, checked by the same tests); production refuses to start.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.helpers import SANDBOX, Scope, describe, wait_for_line
from tests.kernel.manage_support import ok, started
from tests.kernel.test_modes_run import closure, production  # noqa: F401 - the closure fixture

pytestmark = [SANDBOX, pytest.mark.requires("mini-init")]

MISSING = {"NUCLEUS_INIT": "/nonexistent/nucleus-init"}
FALLBACK_WARNING = ("warning: the container's init '/nonexistent/nucleus-init': No such file or directory; "
                    "PID 1 stays the interpreter (about 10 MiB more)\n"
                    "hint: build it with `make setup` (gcc), or name it with NUCLEUS_INIT=PATH\n")
INITS = {"compiled": ({}, ""), "interpreter": (MISSING, FALLBACK_WARNING)}


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def test_pid_1_is_the_compiled_init_holding_nothing_and_not_dumpable(scope):
    cid = started(scope, "echo ready; while :; do sleep 0.05; done")
    init = scope.record(cid)["init_pid"]
    assert os.readlink(f"/proc/{init}/exe") == "/memfd:init (deleted)"
    assert os.listdir(f"/proc/{init}/fd") == []
    with open(f"/proc/{init}/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f)
    assert status["Name"] == "init"
    # Not dumpable: its /proc files belong to the host's root, not to its own (mapped) user.
    uid = int(status["Uid"].split()[0])
    assert uid != 0
    assert os.stat(f"/proc/{init}/fd").st_uid == 0
    with open(f"/proc/{init}/smaps_rollup") as f:
        pss = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    assert pss < 256, f"PID 1 keeps {pss} KiB"
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()


# Orphans: subshells that exit at once, leaving a sleep each, reparented to PID 1; once they
# have ended, nothing in the container may be a zombie.
ORPHANS = """
(sleep 1 & echo $! > /tmp/long)
for i in 1 2 3 4 5; do (sleep 0.1 &); (true &); done
echo "orphan's parent: $(grep PPid /proc/$(cat /tmp/long)/status | tr -d '\\t')"
sleep 1.5
echo "zombies: $(grep -h '^State:' /proc/[0-9]*/status | grep -c Z)"
"""


@pytest.mark.parametrize("init", INITS)
def test_orphans_are_reaped(scope, init):
    extra, warning = INITS[init]
    result = scope.nucleus(*scope.run_args(), "--", *scope.sh(ORPHANS), extra_env=extra)
    assert (result.returncode, result.stderr) == (0, warning), describe(result)
    assert result.stdout == "orphan's parent: PPid:1\nzombies: 0\n", describe(result)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize(("script", "code"), [
    ("exit 3", 3),
    ("kill -KILL $$", 128 + signal.SIGKILL),
    ("sleep 100 & exit 5", 5),  # what the workload leaves running ends with the container
])
def test_the_workload_status_is_the_container_status(scope, init, script, code):
    extra, warning = INITS[init]
    result = scope.nucleus(*scope.run_args(), "--", *scope.sh(script), extra_env=extra)
    assert (result.returncode, result.stdout, result.stderr) == (code, "", warning), describe(result)


TRAPPED = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done"


@pytest.mark.parametrize("init", INITS)
def test_sigterm_to_the_container_reaches_the_workload(scope, init):
    extra, warning = INITS[init]
    proc = scope.popen(*scope.run_args(), "--", *scope.sh(TRAPPED), extra_env=extra, text=False, bufsize=0)
    try:
        assert wait_for_line(proc.stdout, "ready") == ["ready"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out, err) == (7, b"got TERM\n", warning.encode())
    scope.assert_clean()


def test_a_detached_container_stops_through_the_compiled_init(scope):
    cid = started(scope, "trap 'echo stopped; exit 9' TERM; echo ready; while :; do sleep 0.05; done")
    ok(scope.nucleus("stop", "web"), "web\n")
    record = scope.wait_status(cid, "stopped")
    assert record.get("exit_code") == 9, record
    with open(scope.log_path(cid)) as f:
        assert f.read() == "ready\nstopped\n"
    ok(scope.nucleus("rm", "web"), "web\n")
    scope.assert_clean()


def test_production_refuses_to_start_without_the_compiled_init(scope, closure):  # noqa: F811
    result = scope.nucleus(*production(scope, closure), "--", "/bin/sh", "-c", "echo ran", extra_env=MISSING)
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (
        "error: production mode requires the compiled init (row \"PID 1 init\"): the container's init "
        "'/nonexistent/nucleus-init': No such file or directory\n"
        "hint: build it with `make setup` (gcc), or name it with NUCLEUS_INIT=PATH\n")
    scope.assert_clean()


def test_production_runs_with_the_compiled_init(scope, closure):  # noqa: F811
    result = scope.nucleus(*production(scope, closure), "--", "/bin/sh", "-c", "echo ran; exit 4")
    assert (result.returncode, result.stdout, result.stderr) == (4, "ran\n", ""), describe(result)
    scope.assert_clean()
