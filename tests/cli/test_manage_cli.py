"""The management commands (ps, stats, logs, kill, stop, rm, attach) and the resource flags of
`nucleus run`: every error a user can meet, with its exact message and exit status.

Each test uses a state directory of its own (NUCLEUS_STATE_DIR), so other containers on the
machine never show up. Tests that need a live container carry the sandbox marker; the others
run anywhere.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import replace

import pytest

from nucleus.machines import filesystem, isolation, security, system
from tests.helpers import (
    SANDBOX_WITH_PYTHON,
    Scope,
    describe,
    read_proc,
    wait_for,
)

NOT_FOUND_HINT = "hint: nucleus ps --all lists the containers\n"
SIGNAL_HINT = ("hint: use one of TERM, INT, HUP, QUIT, USR1, USR2, WINCH, KILL "
               "(with or without SIG, or its number)\n")
SIZE_HINT = "hint: use a number with an optional K, M, G or T suffix, e.g. 512M\n"
PARENT_HINT = "hint: give a path below the hierarchy root, such as nucleus or nucleus/agents\n"
IO_HINT = 'hint: use "MAJOR:MINOR key=value ...", e.g. --io-limit "8:0 rbps=10M wiops=100"\n'
RUNNING = 'trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done'


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def fails(result: subprocess.CompletedProcess, code: int, stderr: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (code, "", stderr), describe(result)


def usage_error(result: subprocess.CompletedProcess, usage: str, message: str) -> None:
    """A click usage error: the usage line, where to get help, the error; exit status 2."""
    assert result.returncode == 125, describe(result)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"Usage: {usage}", describe(result)
    assert lines[-1] == f"Error: {message}", describe(result)


def _machines(status: str) -> dict:
    """The System machine's variables of a container that ended and was cleaned up."""
    state = system.initial(isolation.initial(), filesystem.initial((), "/new"), security.initial())
    state = replace(state, lc=replace(state.lc, status=status, security="enforced", cleaned=True),
                    res=replace(state.res, phase="released"))
    return {k: sorted(val) if isinstance(val, frozenset) else val for k, val in system.to_tla(state).items()}


def write_record(scope: Scope, cid: str, name: str, status: str = "stopped") -> None:
    """A stopped container's record, as `nucleus run -d` leaves it once the container ended."""
    os.makedirs(scope.containers_dir, mode=0o700, exist_ok=True)
    record = {
        "id": cid, "name": name, "status": status, "exit_code": 0, "argv": ["true"],
        "created_at": time.time(), "finished_at": time.time(), "creator_uid": os.getuid(),
        "supervisor_pid": None, "supervisor_start": None, "detached": True,
        "log_path": scope.log_path(cid), "cgroup_parent": scope.cgroup_parent,
        "machines": _machines(status),
    }
    fd = os.open(scope.record_path(cid), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    with open(scope.log_path(cid), "w") as f:
        f.write("done\n")


def started(scope: Scope, name: str, script: str = RUNNING) -> str:
    cid = scope.detach(scope.sh(script), "--name", name)
    scope.wait_log(cid, lambda text: text.startswith("ready\n"))
    return cid


# --- finding containers -----------------------------------------------------------------------

COMMANDS = [["stats"], ["logs"], ["logs", "-f"], ["logs", "-n", "3"], ["kill"],
            ["kill", "-s", "TERM"], ["stop"], ["stop", "-t", "1"], ["rm"], ["rm", "--force"],
            ["attach"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unknown_container(scope, command):
    fails(scope.nucleus(*command, "nope"), 125, f"error: no container 'nope'\n{NOT_FOUND_HINT}")


def test_unknown_container_among_others(scope):
    write_record(scope, "a1" + secrets.token_hex(15), "first")
    for command in COMMANDS:
        fails(scope.nucleus(*command, "nope"), 125, f"error: no container 'nope'\n{NOT_FOUND_HINT}")
    # Too short to be a prefix, and names are matched exactly.
    for ref in ("a1", "a", "First", "firs"):
        fails(scope.nucleus("rm", ref), 125, f"error: no container {ref!r}\n{NOT_FOUND_HINT}")
    assert len(scope.records()) == 1


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_ambiguous_prefix(scope, command):
    one, two = "abc1" + secrets.token_hex(14), "abc2" + secrets.token_hex(14)
    write_record(scope, one, "one")
    write_record(scope, two, "two")
    fails(scope.nucleus(*command, "abc"), 125,
          f"error: container 'abc' is ambiguous: it prefixes {one[:12]}, {two[:12]}\n"
          "hint: type more of the id, or use the name\n")
    assert sorted(scope.records()) == [one, two]


def test_unique_prefix_name_and_id_find_a_stopped_container(scope):
    one, two = "abc1" + secrets.token_hex(14), "abc2" + secrets.token_hex(14)
    write_record(scope, one, "one")
    write_record(scope, two, "two")
    for ref in ("abc1", one, "one"):
        result = scope.nucleus("logs", ref)
        assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", ""), describe(result)
    result = scope.nucleus("rm", "abc2", "one")
    assert (result.returncode, result.stdout, result.stderr) == (0, "two\none\n", ""), describe(result)
    assert scope.records() == {} and os.listdir(scope.containers_dir) == []


# --- listings with nothing in them ------------------------------------------------------------


def test_empty_listings(scope):
    for args, out in [
        (["ps"], "ID  NAME  STATUS  CREATED  COMMAND\n"),
        (["ps", "--all"], "ID  NAME  STATUS  CREATED  LOG  COMMAND\n"),
        (["ps", "--format", "json"], "[]\n"),
        (["stats"], "ID  NAME  STATUS  MEMORY  CPU TIME  THROTTLED  PIDS\n"),
        (["stats", "--format", "json"], "[]\n"),
    ]:
        result = scope.nucleus(*args)
        assert (result.returncode, result.stdout, result.stderr) == (0, out, ""), describe(result)
    assert os.listdir(scope.state_dir) == []  # listing creates nothing


# --- click usage errors -----------------------------------------------------------------------


@pytest.mark.parametrize("args,usage,message", [
    (["ps", "--format", "bad"], "nucleus ps [OPTIONS]",
     "Invalid value for '--format': 'bad' is not one of 'table', 'json'."),
    (["stats", "--format", "yaml"], "nucleus stats [OPTIONS] [CONTAINERS]...",
     "Invalid value for '--format': 'yaml' is not one of 'table', 'json'."),
    (["logs", "-n", "x", "web"], "nucleus logs [OPTIONS] CONTAINER",
     "Invalid value for '-n' / '--tail': 'x' is not a valid integer."),
    (["stop", "-t", "soon", "web"], "nucleus stop [OPTIONS] CONTAINER",
     "Invalid value for '-t' / '--timeout': 'soon' is not a valid float."),
    (["rm"], "nucleus rm [OPTIONS] CONTAINERS...", "Missing argument 'CONTAINERS...'."),
    (["kill"], "nucleus kill [OPTIONS] CONTAINER [SIGNAL]", "Missing argument 'CONTAINER'."),
    (["stop"], "nucleus stop [OPTIONS] CONTAINER", "Missing argument 'CONTAINER'."),
    (["logs"], "nucleus logs [OPTIONS] CONTAINER", "Missing argument 'CONTAINER'."),
    (["attach"], "nucleus attach [OPTIONS] CONTAINER [COMMAND]...", "Missing argument 'CONTAINER'."),
    (["ps", "--bogus"], "nucleus ps [OPTIONS]", "No such option '--bogus'."),
    (["rm", "-x", "web"], "nucleus rm [OPTIONS] CONTAINERS...", "No such option '-x'."),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_usage_errors(scope, args, usage, message):
    usage_error(scope.nucleus(*args), usage, message)


def test_option_without_its_value(scope):
    fails(scope.nucleus("kill", "-s"), 125, "Error: Option '-s' requires an argument.\n")


# --- signals ----------------------------------------------------------------------------------

BAD_SIGNALS = [
    (["-s", "BOGUS"], "BOGUS"), (["--signal", "SIGBOGUS"], "SIGBOGUS"), (["-s", "0"], "0"),
    (["-s", "99"], "99"), (["-s", "-9"], "-9"), (["-s", "STOP"], "STOP"),
    (["-s", "SIGSTOP"], "SIGSTOP"), (["-s", "19"], "19"), (["-s", "CONT"], "CONT"),
    (["-s", ""], ""), (["-s", "9x"], "9x"), (["-s", "SIG"], "SIG"),
]


@pytest.mark.parametrize("args,text", BAD_SIGNALS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_kill_with_a_bad_signal(scope, args, text):
    write_record(scope, secrets.token_hex(16), "web")
    fails(scope.nucleus("kill", *args, "web"), 125,
          f"error: --signal {text!r}: not a signal nucleus sends\n{SIGNAL_HINT}")


@SANDBOX_WITH_PYTHON
def test_bad_signals_never_reach_a_running_container(scope):
    cid = started(scope, "web")
    for args, text in BAD_SIGNALS:
        fails(scope.nucleus("kill", *args, "web"), 125,
              f"error: --signal {text!r}: not a signal nucleus sends\n{SIGNAL_HINT}")
    fails(scope.nucleus("kill", "web", "BOGUS"), 125,
          f"error: --signal 'BOGUS': not a signal nucleus sends\n{SIGNAL_HINT}")
    assert scope.record(cid)["status"] == "running" and scope.log(cid) == "ready\n"
    result = scope.nucleus("rm", "--force", "web")
    assert result.returncode == 0, describe(result)
    scope.assert_clean()


# --- containers in the wrong state ------------------------------------------------------------


@SANDBOX_WITH_PYTHON
def test_rm_of_a_running_container(scope):
    cid = started(scope, "web")
    for ref in ("web", cid, cid[:6]):
        fails(scope.nucleus("rm", ref), 125,
              "error: cannot remove container 'web': it is running\n"
              "hint: stop it first (nucleus stop web), or use nucleus rm --force web\n")
    assert scope.record(cid)["status"] == "running"
    result = scope.nucleus("rm", "--force", "web")
    assert (result.returncode, result.stdout) == (0, "web\n"), describe(result)
    scope.assert_clean()


@SANDBOX_WITH_PYTHON
def test_commands_on_a_stopped_container(scope):
    cid = scope.detach(scope.sh("echo bye"), "--name", "done")
    scope.wait_finished(cid)
    fails(scope.nucleus("kill", "done"), 125, "error: cannot kill container 'done': it is stopped\n")
    fails(scope.nucleus("kill", "-s", "TERM", "done"), 125,
          "error: cannot kill container 'done': it is stopped\n")
    fails(scope.nucleus("stop", "done"), 125, "error: cannot stop container 'done': it is stopped\n")
    fails(scope.nucleus("attach", "done", "--", "true"), 125,
          "error: cannot attach to container 'done': it is stopped\n")
    logs = scope.nucleus("logs", "done")
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "bye\n", ""), describe(logs)
    result = scope.nucleus("rm", "done")
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", ""), describe(result)
    fails(scope.nucleus("rm", "done"), 125, f"error: no container 'done'\n{NOT_FOUND_HINT}")
    scope.assert_clean()


@SANDBOX_WITH_PYTHON
def test_logs_of_a_foreground_container(scope):
    proc = scope.popen(*scope.run_args("--name", "fg"), "--", *scope.sh(RUNNING))
    try:
        assert wait_for(lambda: any(r.get("status") == "running" for r in scope.records().values()),
                        timeout=20), "the foreground container never ran"
        for args in (["logs", "fg"], ["logs", "-f", "fg"], ["logs", "-n", "1", "fg"]):
            fails(scope.nucleus(*args), 125,
                  "error: container 'fg' has no log: it runs in the foreground\n"
                  "hint: its output goes to the terminal that started it\n")
        stopped = scope.nucleus("stop", "fg")
        assert (stopped.returncode, stopped.stdout) == (0, "fg\n"), describe(stopped)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert (proc.returncode, out, err) == (0, "ready\n", "")
    scope.assert_clean()


@SANDBOX_WITH_PYTHON
def test_commands_on_a_lost_container(scope):
    cid = started(scope, "web")
    supervisor = scope.record(cid)["supervisor_pid"]
    os.kill(supervisor, 9)
    assert wait_for(lambda: (p := read_proc(supervisor)) is None or not p.alive)
    fails(scope.nucleus("kill", "web"), 125, "error: cannot kill container 'web': it is lost\n")
    fails(scope.nucleus("stop", "web"), 125, "error: cannot stop container 'web': it is lost\n")
    refused = scope.nucleus("rm", "web")
    assert refused.returncode == 125 and refused.stdout == "", describe(refused)
    error, hint = refused.stderr.splitlines()
    assert error == "error: cannot remove container 'web': it is lost"
    # The way out is rm --force: `nucleus stop` cannot act on a lost container.
    assert "nucleus rm --force web" in hint and "nucleus stop" not in hint, hint
    result = scope.nucleus("rm", "--force", "web")
    assert (result.returncode, result.stdout) == (0, "web\n"), describe(result)
    scope.assert_clean()


# --- names ------------------------------------------------------------------------------------


@SANDBOX_WITH_PYTHON
@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_name_taken(scope, detach):
    cid = started(scope, "web")
    options = ["-d"] if detach else []
    fails(scope.nucleus(*scope.run_args(*options, "--name", "web"), "--", "true"), 125,
          f"error: --name 'web': a container with this name exists ({cid[:12]}, running)\n"
          "hint: pick another name, or remove it first: nucleus rm --force web\n")
    assert list(scope.records()) == [cid]
    result = scope.nucleus("rm", "--force", "web")
    assert result.returncode == 0, describe(result)
    scope.assert_clean()


# --- resource flags ---------------------------------------------------------------------------

RESOURCE_ERRORS = [
    (["--memory", "12Q"], "error: --memory '12Q': not a size\n" + SIZE_HINT),
    (["--memory", "-1"], "error: --memory '-1': not a size\n" + SIZE_HINT),
    (["--memory", "1.5"], "error: --memory '1.5': not a whole number of bytes\n"
                          "hint: give whole bytes, or a suffix such as 1.5K\n"),
    (["--memory", "1M"], "error: --memory '1M': must be at least 6M\n"
                         "hint: a smaller limit kills most programs while they start\n"),
    (["--memory", "8388608T"], "error: --memory '8388608T': too large\n"
                               "hint: at most 8388607T (2^63-1 bytes)\n"),
    (["--swap", "1G"], "error: --swap '1G': needs --memory\n"
                       "hint: swap is allowed on top of the memory limit, e.g. --memory 512M --swap 256M\n"),
    (["--memory", "1G", "--swap", "lots"], "error: --swap 'lots': not a size\n" + SIZE_HINT),
    (["--cpus", "0"], "error: --cpus '0': must be more than 0\n"),
    (["--cpus", "-1"], "error: --cpus '-1': must be more than 0\n"),
    (["--cpus", "abc"], "error: --cpus 'abc': not a number\n"
                        "hint: give a number of CPUs such as 0.5 or 2\n"),
    (["--cpus", "inf"], "error: --cpus 'inf': not a number\n"
                        "hint: give a number of CPUs such as 0.5 or 2\n"),
    (["--cpus", "0.001"], "error: --cpus '0.001': must be at least 0.01\n"
                          "hint: the kernel's smallest CPU quota is 1 ms per 100 ms period\n"),
    (["--cpu-weight", "0"], "error: --cpu-weight '0': must be between 1 and 10000\n"
                            "hint: 100 is the default; 200 gets twice the CPU time of 100 under contention\n"),
    (["--cpu-weight", "high"], "error: --cpu-weight 'high': not a whole number\n"),
    (["--pids", "0"], "error: --pids '0': must be at least 1\n"
                      "hint: the container's first process counts as one\n"),
    (["--pids", "-3"], "error: --pids '-3': must be at least 1\n"
                       "hint: the container's first process counts as one\n"),
    (["--pids", "many"], "error: --pids 'many': not a whole number\n"),
    (["--pids", "5000000"], "error: --pids '5000000': must be at most 4194304\n"
                            "hint: that is the kernel's largest pid number\n"),
    (["--io-limit", "8:0"], "error: --io-limit '8:0': no limit given\n" + IO_HINT),
    (["--io-limit", ""], "error: --io-limit '': empty\n" + IO_HINT),
    (["--io-limit", "sda rbps=1M"], "error: --io-limit 'sda rbps=1M': 'sda' is not a MAJOR:MINOR "
                                    "device number\nhint: find it with: lsblk -o NAME,MAJ:MIN\n"),
    (["--io-limit", "8:0 speed=1"], "error: --io-limit '8:0 speed=1': unknown key 'speed'\n"
                                    "hint: use riops, wiops, rbps or wbps\n"),
    (["--io-limit", "8:0 rbps=0"], "error: --io-limit '8:0 rbps=0': rbps must be more than 0\n"
                                   "hint: leave the key out for no limit in that direction\n"),
    (["--io-limit", "8:0 wiops=1 wiops=2"], "error: --io-limit '8:0 wiops=1 wiops=2': wiops is given twice\n"),
    (["--io-limit", "8:0 riops=x"], "error: --io-limit '8:0 riops=x': riops 'x': not a whole number\n"),
    (["--io-limit", "8:0 rbps=1M", "--io-limit", "8:0 wbps=1M"],
     "error: --io-limit '8:0 wbps=1M': device 8:0 is limited twice\n"
     "hint: put all limits of one device in one --io-limit\n"),
    (["--memlock", "12Q"], "error: --memlock '12Q': not a size\n" + SIZE_HINT),
    (["--cgroup-parent", "../x"], "error: --cgroup-parent '../x': '..' is not allowed\n" + PARENT_HINT),
    (["--cgroup-parent", "nucleus/./x"],
     "error: --cgroup-parent 'nucleus/./x': '.' is not allowed\n" + PARENT_HINT),
    (["--cgroup-parent", "/"], "error: --cgroup-parent '/': is the hierarchy root\n" + PARENT_HINT),
    (["--cgroup-parent", "a//b"],
     "error: --cgroup-parent 'a//b': has an empty path component\n" + PARENT_HINT),
    (["--cgroup-parent", "process_api"],
     "error: --cgroup-parent 'process_api': refused: 'process_api' belongs to the machine's "
     "supervisor\nhint: choose another parent, e.g. nucleus\n"),
    (["--cgroup-parent", "nucleus/Process_API/x"],
     "error: --cgroup-parent 'nucleus/Process_API/x': refused: 'process_api' belongs to the "
     "machine's supervisor\nhint: choose another parent, e.g. nucleus\n"),
]


@pytest.mark.parametrize("flags,stderr", RESOURCE_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_bad_resource_flags(scope, flags, stderr, detach):
    args = ["run", *(["-d"] if detach else []), *flags]
    if "--cgroup-parent" not in flags:
        args += ["--cgroup-parent", scope.cgroup_parent]
    fails(scope.nucleus(*args, "--", "true"), 125, stderr)
    # Refused before anything was done.
    assert os.listdir(scope.state_dir) == [] and scope.cgroup_dirs() == []
