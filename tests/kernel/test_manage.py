"""Container management on the real kernel: detached containers outlive the command that started
them and are listed, logged, signalled, stopped, attached and removed, by their owner only.
Concurrent commands are in test_manage_races.py, a supervisor killed at any point in
test_manage_crash.py.

Every test works in a Scope of its own (tests.helpers): a private state directory, a private
cgroup parent and a marker on every workload's command line, so other containers on the machine
are never looked at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from tests.helpers import (
    SANDBOX_WITH_PYTHON,
    Scope,
    describe,
    find_processes,
    wait_for,
    wait_for_line,
)
from tests.kernel.manage_support import POLITE, TRAPS, fails, gone, ok, ps_json, row_of, started

pytestmark = SANDBOX_WITH_PYTHON

NOT_FOUND_HINT = "hint: nucleus ps --all lists the containers\n"


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


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
    fails(scope.nucleus("rm", "web"), 125,
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
            fails(scope.nucleus(*command, ref), 125, f"error: no container {ref!r}\n{NOT_FOUND_HINT}")
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
            fails(scope.nucleus(*command, prefix), 125,
                  f"error: container {prefix!r} is ambiguous: it prefixes {ids}\n"
                  "hint: type more of the id, or use the name\n")
    ok(scope.nucleus("rm", cid[:5]), "first\n")  # unique again
    ok(scope.nucleus("rm", "twin"), "twin\n")
    scope.assert_clean()


# --- ownership --------------------------------------------------------------------------------

NOBODY = 65534


def as_nobody(scope: Scope, pythonpath: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
         "/usr/bin/python3", "-m", "nucleus", *args],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1",
             "HOME": "/nonexistent", "NUCLEUS_STATE_DIR": scope.state_dir},
        cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("shared", [False, True], ids=["private", "readable"])
def test_another_users_state_directory_is_never_used(scope, nobody_pythonpath, shared):
    """A state directory says which processes to signal and what to release: one that is not
    the caller's is refused for every command, even where its files can be read (as a shared
    directory's would), and nothing reaches the container."""
    cid = started(scope)
    if shared:
        os.chmod(scope.containers_dir, 0o755)
        os.chmod(scope.record_path(cid), 0o644)
        os.chmod(scope.log_path(cid), 0o644)
    refusal = (f"error: the state directory {scope.state_dir!r} belongs to uid 0, not to the "
               "caller (uid 65534)\nhint: use a state directory of your own (--root DIR); a "
               "user's containers are managed as that user\n")
    for args in (["ps", "--all"], ["stop", "--timeout", "1", "web"], ["kill", "web"],
                 ["kill", "-s", "TERM", "web"], ["rm", "web"], ["rm", "--force", "web"],
                 ["logs", "web"], ["stats", "web"], ["attach", "web", "--", "true"]):
        fails(as_nobody(scope, nobody_pythonpath, *args), 125, refusal)
    assert scope.record(cid)["status"] == "running"
    assert scope.log(cid) == "ready\n"  # no signal reached it
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()


def test_a_rootless_run_under_a_parent_root_made_keeps_its_status(scope, nobody_pythonpath):
    """An ordinary user's run cannot make its group under root's parent: it runs without limits
    (a warning), leaves root's parent and container alone, exits with its workload's status
    and leaves no record behind."""
    started(scope)  # root's container: the scope's cgroup parent exists, made by root
    state = tempfile.mkdtemp(prefix="nucleus-test-nobody-state-")
    try:
        os.chown(state, NOBODY, NOBODY)
        done = subprocess.run(
            ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
             "/usr/bin/python3", "-m", "nucleus", "run", "--cgroup-parent", scope.cgroup_parent,
             "--", "/bin/sh", "-c", "exit 3"],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": nobody_pythonpath, "PYTHONDONTWRITEBYTECODE": "1",
                 "HOME": state, "NUCLEUS_STATE_DIR": os.path.join(state, "nucleus")},
            cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, describe(done)
        assert done.stderr.startswith("warning: cgroup create failed ("), describe(done)
        assert done.stderr.endswith("running without resource limits\n"), describe(done)
        assert os.listdir(os.path.join(state, "nucleus", "containers")) == []
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert [r["status"] for r in scope.records().values()] == ["running"]
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()


# --- attach -----------------------------------------------------------------------------------


def test_attach_runs_inside_the_container(scope):
    started(scope)
    result = scope.nucleus("attach", "web", "--", "/bin/sh", "-c", "id -u; hostname; exit 5")
    assert (result.returncode, result.stdout, result.stderr) == (5, "0\nweb\n", ""), describe(result)
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()

