"""Container management on the real kernel: detached containers outlive the command that started
them and are listed, logged, signalled, stopped, attached and removed; concurrent commands never
corrupt the state directory; and a supervisor killed at any point of a container's setup leaves
nothing that `nucleus rm --force` does not reclaim.

Every test works in a Scope of its own (tests.helpers): a private state directory, a private
cgroup parent and a marker on every workload's command line, so other containers on the machine
are never looked at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import nucleus
from tests.helpers import (
    CONTAINER_ID,
    SANDBOX_WITH_PYTHON,
    Scope,
    describe,
    find_processes,
    read_proc,
    wait_for,
    wait_for_line,
)

pytestmark = SANDBOX_WITH_PYTHON

# A workload that reports each signal it gets, and keeps running.
TRAPS = ('for s in TERM USR1 USR2 HUP INT; do trap "echo got $s" $s; done; '
         'echo ready; while :; do sleep 0.05; done')
# A workload that exits 0 on TERM.
POLITE = 'trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done'

NOT_FOUND_HINT = "hint: nucleus ps --all lists the containers\n"
OWNER_HINT = "hint: only its creator or root may manage a container\n"


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


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


# --- detached containers ----------------------------------------------------------------------


def test_detached_run_returns_the_id_while_the_workload_keeps_running(scope):
    cid = started(scope)
    workload = find_processes(scope.sh(TRAPS))
    assert len(workload) == 1, "the workload is not running once nucleus run -d returned"
    record = scope.record(cid)
    assert record["status"] == "running" and record["id"] == cid
    assert not gone(record["supervisor_pid"])
    # The state directory keeps one private document per container.
    assert stat.S_IMODE(os.stat(scope.record_path(cid)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(scope.containers_dir).st_mode) == 0o700

    table = scope.nucleus("ps")
    ok(table)
    header = re.split(r"\s{2,}", table.stdout.splitlines()[0])
    assert header == ["ID", "NAME", "STATUS", "CREATED", "COMMAND"], table.stdout
    id_, name, status, created, command = row_of(table.stdout, cid)
    assert (id_, name, status) == (cid[:12], "web", "running")
    assert re.fullmatch(r"\d+[smhd] ago", created) and command.startswith("/bin/sh -c ")
    rows = ps_json(scope)
    assert [(r["id"], r["name"], r["status"]) for r in rows] == [(cid, "web", "running")]
    assert rows[0]["argv"] == scope.sh(TRAPS)

    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    assert wait_for(lambda: gone(workload[0].pid))
    scope.assert_clean()


def test_logs(scope):
    script = ('echo one; echo two >&2; trap "echo three; exit 0" USR1; echo ready; '
              'while :; do sleep 0.05; done')
    cid = scope.detach(scope.sh(script), "--name", "web")
    scope.wait_log(cid, lambda text: text.endswith("ready\n"))
    ok(scope.nucleus("logs", "web"), "one\ntwo\nready\n")
    ok(scope.nucleus("logs", "-n", "1", "web"), "ready\n")
    ok(scope.nucleus("logs", "--tail", "2", "web"), "two\nready\n")

    follower = scope.popen("logs", "-f", "web", text=False, bufsize=0)
    try:
        assert wait_for_line(follower.stdout, "ready")[-1:] == ["ready"]
        time.sleep(0.2)  # the follower has printed what exists; now it waits for more
        ok(scope.nucleus("kill", "--signal", "USR1", "web"), "web\n")
        out, err = follower.communicate(timeout=20)  # it ends when the container stops
    finally:
        follower.kill()
        follower.wait()
    assert (follower.returncode, out, err) == (0, b"three\n", b"")

    record = scope.wait_finished(cid)
    assert record["exit_code"] == 0
    ok(scope.nucleus("logs", "web"), "one\ntwo\nready\nthree\n")
    ok(scope.nucleus("logs", "-f", "web"), "one\ntwo\nready\nthree\n")  # stopped: no waiting
    ok(scope.nucleus("rm", "web"), "web\n")
    scope.assert_clean()


FLOOD = """\
import sys, time
for i in range(20000):
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
    if i % 10 == 0:
        time.sleep(0.001)
"""


def test_logs_follow_misses_nothing(scope):
    cid = scope.detach(scope.python(FLOOD), "--name", "flood")
    scope.wait_log(cid, lambda text: "\n" in text)
    follower = scope.popen("logs", "-f", "flood")  # starts while the workload writes
    try:
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0 and err == ""
    lines = out.splitlines()
    expected = [str(i) for i in range(20000)]
    missing = sorted(set(expected) - set(lines), key=int)
    assert lines == expected, (f"{len(lines)} lines; missing {missing[:10]}...; "
                               f"not numbers: {[x for x in lines if x not in set(expected)][:10]}")
    ok(scope.nucleus("rm", "--force", "flood"), "flood\n")
    scope.assert_clean()


def test_stats(scope):
    cid = started(scope, TRAPS, "--memory", "64M")
    rows = json.loads(scope.nucleus("stats", "--format", "json", "web").stdout)
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["id"], row["name"], row["status"]) == (cid, "web", "running")
    assert row["memory_max"] == 64 << 20 and row["memory_current"] > 0
    assert row["pids_max"] == 512 and row["pids_current"] >= 2  # its init and the shell
    assert row["cpu_usage_usec"] is not None
    everything = scope.nucleus("stats")  # every running container
    ok(everything)
    id_, name, status, memory, _cpu, _throttled, pids = row_of(everything.stdout, cid)
    assert (id_, name, status) == (cid[:12], "web", "running")
    assert memory.endswith(" / 64.0MiB") and pids.endswith(" / 512"), everything.stdout

    ok(scope.nucleus("stop", "-t", "1", "web"), "web\n")
    stopped = scope.nucleus("stats", "web")
    ok(stopped)
    cells = row_of(stopped.stdout, cid)
    assert cells[2] == "stopped"
    assert "None" not in stopped.stdout, stopped.stdout  # absent figures show as "-"
    assert [r["status"] for r in json.loads(scope.nucleus("stats", "--format", "json", "web").stdout)] \
        == ["stopped"]
    listing = scope.nucleus("stats")
    ok(listing)
    assert cid[:12] not in listing.stdout  # without names: the running ones only
    ok(scope.nucleus("rm", "web"), "web\n")
    scope.assert_clean()


# --- signals, stop ----------------------------------------------------------------------------


def test_kill_reaches_the_workload(scope):
    cid = started(scope)
    expected = "ready\n"
    for args, name in [
        (["--signal", "USR1"], "USR1"),
        (["web", "TERM"], "TERM"),
        (["-s", "15"], "TERM"),
        (["-s", "SIGUSR2"], "USR2"),
        (["--signal", "hup"], "HUP"),
        (["web", "2"], "INT"),
        (["-s", "sigusr1"], "USR1"),
    ]:
        argv = ["kill", *args] if args[0] == "web" else ["kill", *args, "web"]
        ok(scope.nucleus(*argv), "web\n")
        expected += f"got {name}\n"
        scope.wait_log(cid, lambda text, e=expected: text == e)
    assert scope.record(cid)["status"] == "running"
    ok(scope.nucleus("kill", "web"), "web\n")  # KILL by default
    record = scope.wait_finished(cid)
    assert record["exit_code"] == 137
    ok(scope.nucleus("rm", "web"), "web\n")
    scope.assert_clean()


def test_stop_escalates_to_kill_when_term_is_ignored(scope):
    cid = started(scope)
    ok(scope.nucleus("stop", "--timeout", "1", "web"), "web\n")
    record = scope.record(cid)
    assert (record["status"], record["exit_code"]) == ("stopped", 137)
    assert scope.log(cid) == "ready\ngot TERM\n"  # TERM came first, and was ignored
    assert not find_processes(scope.sh(TRAPS))
    assert scope.container_cgroups(cid) == []
    rows = ps_json(scope, "--all")
    assert [(r["status"], r["exit_code"], r.get("reason")) for r in rows] == \
        [("stopped", 137, "killed by signal 9")]
    ok(scope.nucleus("rm", "web"), "web\n")
    scope.assert_clean()


def test_stop_of_a_workload_that_exits_on_term(scope):
    cid = started(scope, 'trap "exit 3" TERM; echo ready; while :; do sleep 0.05; done')
    ok(scope.nucleus("stop", "web"), "web\n")
    record = scope.record(cid)
    assert (record["status"], record["exit_code"], record.get("reason")) == ("stopped", 3, None)
    table = scope.nucleus("ps", "--all")
    assert row_of(table.stdout, cid)[2] == "stopped (3)"
    assert scope.nucleus("ps").stdout.splitlines()[1:] == []  # no longer running
    ok(scope.nucleus("rm", "web"), "web\n")
    scope.assert_clean()


# --- rm ---------------------------------------------------------------------------------------


def test_rm_refuses_a_running_container_and_rm_force_removes_everything(scope):
    cid = started(scope)
    fails(scope.nucleus("rm", "web"), 1,
          "error: cannot remove container 'web': it is running\n"
          "hint: stop it first (nucleus stop web), or use nucleus rm --force web\n")
    assert scope.record(cid)["status"] == "running" and find_processes(scope.sh(TRAPS))
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    assert scope.record(cid) is None and not os.path.exists(scope.log_path(cid))
    assert scope.container_cgroups(cid) == []
    scope.assert_clean()


def test_rm_of_several_containers(scope):
    a = started(scope, POLITE, name="a")
    b = started(scope, POLITE, name="b")
    ok(scope.nucleus("stop", "a"), "a\n")
    ok(scope.nucleus("rm", "--force", "a", b[:8]), "a\nb\n")
    assert scope.records() == {} and a != b
    scope.assert_clean()


# --- finding containers -----------------------------------------------------------------------


def test_lookup_by_id_name_and_unique_prefix(scope):
    cid = started(scope)
    for ref in (cid, "web", cid[:3], cid[:12]):
        result = scope.nucleus("stats", "--format", "json", ref)
        assert result.returncode == 0, describe(result)
        assert [r["id"] for r in json.loads(result.stdout)] == [cid], ref
    for ref in (cid[:2], "nope", cid + "0", "WEB"):
        for command in (["stats"], ["logs"], ["kill"], ["stop"], ["rm"], ["rm", "--force"],
                        ["attach"]):
            fails(scope.nucleus(*command, ref), 2, f"error: no container {ref!r}\n{NOT_FOUND_HINT}")
    assert scope.record(cid)["status"] == "running"
    ok(scope.nucleus("rm", "--force", cid[:5]), "web\n")
    scope.assert_clean()


def test_ambiguous_prefix(scope):
    cid = scope.detach(scope.sh("exit 0"), "--name", "first")
    record = scope.wait_finished(cid)
    # A second stopped container whose id shares the first one's first four digits.
    twin_id = cid[:4] + ("0" if cid[4] != "0" else "1") * 28
    twin = {**record, "id": twin_id, "name": "twin", "log_path": scope.log_path(twin_id)}
    twin.pop("cgroup", None)
    fd = os.open(scope.record_path(twin_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(twin, f)
    listed = {r["name"] for r in ps_json(scope, "--all")}
    assert listed == {"first", "twin"}
    ids = ", ".join(sorted([cid[:12], twin_id[:12]]))
    for prefix in (cid[:3], cid[:4]):
        for command in (["stats"], ["logs"], ["rm"], ["kill"], ["stop"]):
            fails(scope.nucleus(*command, prefix), 2,
                  f"error: container {prefix!r} is ambiguous: it prefixes {ids}\n"
                  "hint: type more of the id, or use the name\n")
    ok(scope.nucleus("rm", cid[:5]), "first\n")  # unique again
    ok(scope.nucleus("rm", "twin"), "twin\n")
    scope.assert_clean()


# --- ownership --------------------------------------------------------------------------------

NOBODY = 65534


@pytest.fixture(scope="module")
def nobody_pythonpath():
    """A copy of nucleus and click that uid 65534 can import."""
    if shutil.which("setpriv") is None:
        pytest.skip("requires setpriv (util-linux) to run a command as another user")
    import click

    top = tempfile.mkdtemp(prefix="nucleus-test-nobody-")
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(os.path.dirname(nucleus.__file__), os.path.join(top, "nucleus"), ignore=ignore)
        shutil.copytree(os.path.dirname(click.__file__), os.path.join(top, "click"), ignore=ignore)
        for root, _dirs, files in os.walk(top):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_nobody(scope: Scope, pythonpath: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
         "/usr/bin/python3", "-m", "nucleus", *args],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1",
             "HOME": "/nonexistent", "NUCLEUS_STATE_DIR": scope.state_dir},
        cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def test_another_user_cannot_read_roots_containers(scope, nobody_pythonpath):
    cid = started(scope)
    for args in (["ps", "--all"], ["stop", "web"], ["kill", "web"], ["rm", "--force", "web"],
                 ["logs", "web"], ["stats", "web"]):
        result = as_nobody(scope, nobody_pythonpath, *args)
        assert result.returncode == 1, describe(result)
        # An expected situation, said plainly: not a traceback, not "an internal error".
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, \
            describe(result)
        assert result.stderr.startswith("error: ") and scope.state_dir in result.stderr \
            and "ermission denied" in result.stderr, describe(result)
    assert scope.record(cid)["status"] == "running"
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()


def test_another_user_cannot_stop_kill_remove_or_attach_roots_container(scope, nobody_pythonpath):
    cid = started(scope)
    # Let the other user read the records (as a shared state directory would): what keeps it
    # from managing the container must be nucleus's check, not the file mode.
    os.chmod(scope.containers_dir, 0o755)
    os.chmod(scope.record_path(cid), 0o644)
    listed = as_nobody(scope, nobody_pythonpath, "ps", "--format", "json")
    assert listed.returncode == 0, describe(listed)
    assert [r["id"] for r in json.loads(listed.stdout)] == [cid]
    for args, action in [
        (["kill", "web"], "kill"), (["kill", "-s", "TERM", "web"], "kill"),
        (["stop", "--timeout", "1", "web"], "stop"), (["rm", "web"], "remove"),
        (["rm", "--force", "web"], "remove"), (["attach", "web", "--", "true"], "attach"),
    ]:
        fails(as_nobody(scope, nobody_pythonpath, *args), 1,
              f"error: cannot {action} container 'web': it belongs to uid 0\n{OWNER_HINT}")
    # The log is the owner's: reading it is refused with a message, not a traceback.
    logs = as_nobody(scope, nobody_pythonpath, "logs", "web")
    assert logs.returncode == 1 and logs.stderr.startswith("error: ") \
        and "Traceback" not in logs.stderr and "internal error" not in logs.stderr, describe(logs)
    assert scope.record(cid)["status"] == "running"
    assert scope.log(cid) == "ready\n"  # no signal reached it
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()


# --- attach -----------------------------------------------------------------------------------


def test_attach_runs_inside_the_container(scope):
    started(scope)
    result = scope.nucleus("attach", "web", "--", "/bin/sh", "-c", "id -u; hostname; exit 5")
    assert (result.returncode, result.stdout, result.stderr) == (5, "0\nweb\n", ""), describe(result)
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()


# --- concurrency ------------------------------------------------------------------------------

NAME_TAKEN = re.compile(
    r"error: --name 'same': a container with this name exists \([0-9a-f]{12}, "
    r"(creating|created|running)\)\n"
    r"hint: pick another name, or remove it first: nucleus rm --force same\n")


def test_concurrent_runs_with_the_same_name(scope):
    for _ in range(3):
        argv = [*scope.run_args("-d", "--name", "same"), "--", *scope.sh(POLITE)]
        racers = [scope.popen(*argv) for _ in range(2)]
        results = [(p.wait(timeout=60), *p.communicate()) for p in racers]
        winners = [r for r in results if r[0] == 0]
        losers = [r for r in results if r[0] != 0]
        assert len(winners) == 1 and len(losers) == 1, results
        assert CONTAINER_ID.fullmatch(winners[0][1].strip()), results
        code, out, err = losers[0]
        assert out == "" and NAME_TAKEN.fullmatch(err), results
        assert code == 2, results  # the same status as a refused foreground run
        assert [r["name"] for r in scope.records().values()] == ["same"]
        ok(scope.nucleus("rm", "--force", "same"), "same\n")
        scope.assert_clean()


def test_a_refused_detached_run_leaves_nothing(scope):
    started(scope, POLITE, name="same")
    refused = scope.nucleus(*scope.run_args("-d", "--name", "same"), "--", *scope.sh(POLITE))
    assert refused.returncode != 0 and NAME_TAKEN.fullmatch(refused.stderr), describe(refused)
    assert len(scope.records()) == 1
    ok(scope.nucleus("rm", "--force", "same"), "same\n")
    scope.assert_clean()


def test_parallel_runs_and_management_never_corrupt_records(scope):
    n = 10
    problems: list[str] = []

    def run(i: int) -> subprocess.CompletedProcess:
        return scope.nucleus(*scope.run_args("-d", "--name", f"c{i}"), "--", *scope.sh(POLITE),
                             timeout=120)

    def listing() -> subprocess.CompletedProcess:
        return scope.nucleus("ps", "--all", "--format", "json", timeout=120)

    with ThreadPoolExecutor(max_workers=24) as pool:
        runs = [pool.submit(run, i) for i in range(n)]
        lists = [pool.submit(listing) for _ in range(n)]
        managed: dict[int, list] = {}
        while len(managed) < n or not all(f.done() for fs in managed.values() for f in fs):
            scope.records()  # every record parses, whenever it is read
            for i, f in enumerate(runs):
                if i in managed or not f.done():
                    continue
                name = f"c{i}"
                if i % 3 == 0:
                    managed[i] = [pool.submit(scope.nucleus, "stop", name, timeout=120)]
                elif i % 3 == 1:
                    managed[i] = [pool.submit(scope.nucleus, "rm", "--force", name, timeout=120)]
                else:
                    managed[i] = [pool.submit(scope.nucleus, "kill", "-s", "TERM", name, timeout=120),
                                  pool.submit(listing)]
            time.sleep(0.01)
        for i, f in enumerate(runs):
            result = f.result()
            if result.returncode != 0 or not CONTAINER_ID.fullmatch(result.stdout.strip()):
                problems.append(f"run c{i}: {describe(result)}")
        for f in lists + [f for fs in managed.values() for f in fs]:
            result = f.result()
            if result.returncode != 0:
                problems.append(describe(result))
            elif result.args[1] == "ps":
                try:
                    json.loads(result.stdout)
                except ValueError:
                    problems.append(f"ps printed no JSON: {describe(result)}")
    assert not problems, "\n".join(problems)
    ids = {f.result().stdout.strip() for f in runs}
    assert len(ids) == n
    records = scope.records()
    assert set(records) <= ids
    for cid, record in records.items():
        assert record["status"] in ("running", "stopped"), record
        ok(scope.nucleus("rm", "--force", cid), f"{record['name']}\n")
    scope.assert_clean()


def test_kill_while_the_container_exits(scope):
    for _ in range(8):
        started(scope, POLITE)
        stopper = scope.popen("stop", "web")
        result = scope.nucleus("kill", "-s", "TERM", "web")
        stopper.communicate(timeout=60)
        # Either it reached the container, or the container had already stopped: a message,
        # never a traceback.
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, describe(result)
        if result.returncode == 0:
            assert result.stdout == "web\n", describe(result)
        else:
            assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, \
                describe(result)
        ok(scope.nucleus("rm", "--force", "web"), "web\n")
        scope.assert_clean()


def test_rm_force_while_the_container_stops(scope):
    for _ in range(5):
        started(scope, POLITE)
        stopper = scope.popen("stop", "web")
        ok(scope.nucleus("rm", "--force", "web"), "web\n")
        stopper.communicate(timeout=60)
        scope.assert_clean()


# --- crash recovery ---------------------------------------------------------------------------

# Every step of a container's setup, in order (later occurrences: some mounts already exist),
# then the steps of its teardown.
SETUP_STEPS = [
    "CreateCgroup", "SetCgroupLimits", "SpawnChild", "AttachCgroup", "Unshare", "ForkInit",
    "SetHostname", "LoopbackUp", "SetPropagation", "MountFs", "MakeDirs", "MakeSymlinks",
    "BindMount", "WriteFile", "MountFs#2", "BindMount#3", "MountFs#4", "RemountFs", "MaskPaths",
    "RemountFs#3", "PivotRoot", "DetachOldRoot", "EnterUserNamespace", "WriteIdMaps",
    "BecomeRoot", "DropCapabilities", "LoadSeccomp", "ApplyLandlock", "ExecWorkload",
]
TEARDOWN_STEPS = ["Cleanup", "RemoveCgroup"]


def _crash_workload(scope: Scope, step: str) -> list[str]:
    # Past setup, the workload must end by itself for the teardown to begin.
    return scope.sh("exit 0" if step in TEARDOWN_STEPS else "echo ran; sleep 1000")


def _reclaim(scope: Scope, step: str) -> None:
    records = scope.records()
    assert len(records) == 1, f"paused at {step}: records {list(records)}"
    (cid, record), = records.items()
    removed = scope.nucleus("rm", "--force", cid)
    ok(removed, f"{record['name']}\n")
    scope.assert_clean()


@pytest.mark.parametrize("step", SETUP_STEPS + TEARDOWN_STEPS)
def test_supervisor_killed_at_any_step_then_rm_force_leaves_nothing(scope, step):
    name = step.partition("#")[0]
    proc = scope.popen(*scope.run_args("--memory", "64M"), "--", *_crash_workload(scope, step),
                       extra_env={"NUCLEUS_PAUSE_AT": step}, text=False, bufsize=0)
    try:
        lines = wait_for_line(proc.stderr, f"paused {name}")
        assert lines[-1:] == [f"paused {name}"], f"never paused at {step}: {lines}"
        assert wait_for(lambda: stopped_state(proc.pid)), f"the supervisor did not stop at {step}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.communicate()
    _reclaim(scope, step)


@pytest.mark.parametrize("step", SETUP_STEPS + TEARDOWN_STEPS)
def test_detached_supervisor_killed_at_any_step_then_rm_force_leaves_nothing(scope, step):
    name = step.partition("#")[0]
    cli = scope.popen(*scope.run_args("-d", "--memory", "64M"), "--", *_crash_workload(scope, step),
                      extra_env={"NUCLEUS_PAUSE_AT": step})
    try:
        cid = wait_for(lambda: next(iter(scope.records()), None), timeout=20)
        assert cid, f"no record appeared for a run paused at {step}"
        scope.wait_log(cid, lambda text: f"paused {name}\n" in text)
        supervisor = scope.record(cid)["supervisor_pid"]
        assert wait_for(lambda: stopped_state(supervisor)), f"the supervisor did not stop at {step}"
        os.kill(supervisor, signal.SIGKILL)
        assert wait_for(lambda: gone(supervisor))
        out, err = cli.communicate(timeout=30)
    finally:
        cli.kill()
        cli.wait()
    if step in TEARDOWN_STEPS:
        assert (cli.returncode, out) == (0, f"{cid}\n"), (cli.returncode, out, err)
    else:
        assert (cli.returncode, out, err) == (
            1, "", "error: the supervisor exited before the container started\n"
            f"hint: nucleus rm --force {scope.record(cid)['name']} reclaims what it left\n")
        row, = ps_json(scope, "--all")
        assert (row["status"], row["reason"]) == (
            "lost", "the supervisor is gone; nucleus rm --force cleans up")
    _reclaim(scope, step)


def test_supervisor_of_a_running_container_killed_then_rm_force_leaves_nothing(scope):
    cid = started(scope)
    supervisor = scope.record(cid)["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    assert wait_for(lambda: gone(supervisor))
    row, = ps_json(scope, "--all")
    assert (row["id"], row["status"], row["reason"]) == (
        cid, "lost", "the supervisor is gone; nucleus rm --force cleans up")
    refused = scope.nucleus("rm", "web")
    assert refused.returncode == 1, describe(refused)
    assert refused.stderr.splitlines()[0] == "error: cannot remove container 'web': it is lost"
    fails(scope.nucleus("kill", "web"), 1, "error: cannot kill container 'web': it is lost\n")
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()
