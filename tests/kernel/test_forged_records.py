"""Forged records, for every management verb (ps, stats, logs, stop, kill, rm, rm --force,
attach): a record says which processes to signal, which cgroup to empty and remove, where a log
is and how a command joins the container, so a record with hostile content must never make root
act outside the container it describes.

The hostile content: the pids (and start times) of a stand-in for a host process (a process this
test starts, which notes every signal it gets), a cgroup parent outside nucleus's (a group this
test makes, holding the stand-in) and the cgroup directories themselves, ids with path
components, a log path pointing at a file outside the state directory, a join policy with extra
capabilities, no seccomp filter, fewer namespaces and a foreign cgroup.procs, and malformed
shapes. In a directory owned by another user every verb is refused; in the caller's own
directory nothing outside the container's derived cgroup is touched, no stand-in is signalled,
no file outside the state directory is read or written, and every error is clear (no traceback).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from nucleus.effects.process import process_start
from nucleus.machines import filesystem, isolation, security, system
from tests.helpers import (
    NUCLEUS,
    SANDBOX_PYTHON,
    SANDBOX_WITH_PYTHON,
    Scope,
    cgroup_mount_points,
    describe,
    wait_for,
)
from tests.kernel.manage_support import TRAPS, gone, ok, started

pytestmark = SANDBOX_WITH_PYTHON

OTHER_UID = 65534
NAME = "forged"
VERBS = [
    ["ps", "--all"], ["ps", "--all", "--format", "json"], ["stats", NAME],
    ["stats", "--format", "json", NAME], ["logs", NAME], ["logs", "-f", NAME], ["kill", NAME],
    ["kill", "-s", "TERM", NAME], ["stop", "-t", "1", NAME], ["rm", NAME],
    ["attach", NAME, "--", "/bin/true"], ["rm", "--force", NAME],
]

# A process standing in for one of the host's: it notes each signal it gets, and lives on.
STAND_IN = """\
import signal, sys, time
log = sys.argv[1]
def note(signo, frame):
    with open(log, "a") as f:
        f.write(f"{signo}\\n")
for s in signal.Signals:
    if s not in (signal.SIGKILL, signal.SIGSTOP):
        try:
            signal.signal(s, note)
        except (OSError, ValueError):
            pass
open(log, "a").close()
while True:
    time.sleep(1)
"""


@dataclass
class Host:
    """What the forged records point at, and how to tell that none of it was touched."""

    stand_in: subprocess.Popen
    signals: str  # the stand-in's note of the signals it got
    outside: list[str]  # a cgroup of the test's own, outside nucleus's parent, in each hierarchy
    parent: str  # its name, below each hierarchy's root
    secret: str  # a file outside the state directory
    secret_stat: tuple[int, int]

    @property
    def pid(self) -> int:
        return self.stand_in.pid

    @property
    def start(self) -> int:
        start = process_start(self.pid)
        assert start is not None
        return start

    def untouched(self, after: str) -> None:
        assert self.stand_in.poll() is None, f"the stand-in died after {after}"
        with open(self.signals) as f:
            got = f.read()
        assert got == "", f"the stand-in got signals {got.split()} after {after}"
        for directory in self.outside:
            assert os.path.isdir(directory), f"{directory} is gone after {after}"
        with open(f"/proc/{self.pid}/cgroup") as f:
            assert f"/{self.parent}" in f.read(), f"the stand-in left its cgroup after {after}"
        st = os.stat(self.secret)
        assert (st.st_size, st.st_mtime_ns) == self.secret_stat, f"{self.secret} changed after {after}"


@pytest.fixture
def host(tmp_path) -> Iterator[Host]:
    token = secrets.token_hex(4)
    parent = f"nucleus-test-outside-{token}"
    signals = str(tmp_path / "signals")
    stand_in = subprocess.Popen([SANDBOX_PYTHON, "-c", STAND_IN, signals], stdin=subprocess.DEVNULL)
    outside = []
    try:
        assert wait_for(lambda: os.path.exists(signals)), "the stand-in never started"
        for point in cgroup_mount_points():
            directory = os.path.join(point, parent)
            try:
                os.mkdir(directory)
            except OSError:
                continue
            outside.append(directory)
            try:
                with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                    f.write(str(stand_in.pid))
            except OSError:  # a hierarchy that takes no process (a v2 group with controllers)
                pass
        secret = tmp_path / "secret.log"
        secret.write_text("host secret: never shown by nucleus logs\n")
        st = os.stat(secret)
        yield Host(stand_in, signals, outside, parent, str(secret), (st.st_size, st.st_mtime_ns))
    finally:
        stand_in.kill()
        stand_in.wait()
        for directory in outside:
            wait_for(lambda d=directory: _rmdir(d), timeout=5)


def _rmdir(directory: str) -> bool:
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def machines(status: str, res: str = "ready", cleaned: bool = False) -> dict:
    state = system.initial(isolation.initial(), filesystem.initial((), "/new"), security.initial())
    state = replace(state, lc=replace(state.lc, status=status, security="enforced", cleaned=cleaned),
                    res=replace(state.res, phase=res, held=res != "released"))
    return {k: sorted(val) if isinstance(val, frozenset) else val for k, val in system.to_tla(state).items()}


def join_policy(host: Host) -> dict:
    """A join policy that would run the attached command with every capability that matters,
    no seccomp filter, in the host's mount namespace, writing its pid into a file of the host."""
    return {"rootless": False, "namespaces": ["user"], "seccomp_sha256": "", "seccomp_log_denied": False,
            "seccomp_mode": "enforce", "caps_keep": ["SYS_ADMIN", "SYS_PTRACE", "DAC_OVERRIDE"],
            "landlock_rules": [], "landlock_min_abi": 0, "env": [["LD_PRELOAD", "/tmp/x.so"]],
            "cwd": "/", "rlimits": [1024, 512, 65536], "cgroup_procs": [host.secret]}


def forged(host: Host, cid: str, **fields) -> dict:
    """A running container's record whose every process, path and policy points at the host."""
    record = {
        "id": cid, "name": NAME, "status": "running", "argv": ["sleep", "1000"],
        "created_at": time.time(), "creator_uid": 0, "detached": True,
        "supervisor_pid": host.pid, "supervisor_start": host.start,
        "init_pid": host.pid, "init_start": host.start,
        "cgroup_parent": host.parent,
        "cgroup": {"backend": "v1", "dirs": {os.path.basename(d): d for d in host.outside}},
        "log_path": host.secret,
        "plan": {"join": join_policy(host), "required": False},
        "machines": machines("running"),
    }
    record.update(fields)
    return record


def write(directory: str, cid: str, content: object, mode: int = 0o600) -> str:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"{cid}.json")
    text = content if isinstance(content, str) else json.dumps(content)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def clear(result: subprocess.CompletedProcess) -> None:
    """A clear outcome: success, or an error a user can read; never a traceback."""
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, describe(result)
    assert result.returncode in (0, 125), describe(result)
    said = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    if result.returncode:
        assert said and said[0].startswith("error: "), describe(result)


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


# --- a directory another user owns: refused, whatever it holds ---------------------------------


def test_another_users_directory_is_refused_by_every_verb(host):
    state = tempfile.mkdtemp(prefix="nucleus-test-forged-")
    try:
        cid = secrets.token_hex(16)
        containers = os.path.join(state, "containers")
        path = write(containers, cid, forged(host, cid))
        for entry in (state, containers, path):
            os.chown(entry, OTHER_UID, OTHER_UID)
        os.chmod(state, 0o755)
        refusal = (f"error: the state directory {state!r} belongs to uid {OTHER_UID}, not to the caller "
                   "(uid 0)\nhint: use a state directory of your own (--root DIR); a user's containers "
                   "are managed as that user\n")
        for verb in VERBS:
            result = subprocess.run([NUCLEUS, "--root", state, *verb], capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, timeout=60)
            assert (result.returncode, result.stdout, result.stderr) == (125, "", refusal), describe(result)
            host.untouched(" ".join(verb))
        assert sorted(os.listdir(state)) == ["containers"]
        assert os.listdir(containers) == [f"{cid}.json"]
    finally:
        shutil.rmtree(state, ignore_errors=True)


# --- the caller's own directory: records trusted for their shape only -------------------------


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "foreground"])
def test_a_record_naming_host_processes_cgroups_and_files(scope, host, detached):
    """A detached container's supervisor leads a session of its own: the stand-in does not, so
    the container shows as lost. A foreground one's is believed alive, but the init it names is
    no container's init: what would act on the processes is refused."""
    cid = secrets.token_hex(16)
    write(scope.containers_dir, cid, forged(host, cid, detached=detached))
    outcomes = {}
    for verb in VERBS:
        result = scope.nucleus(*verb)
        clear(result)
        host.untouched(" ".join(verb))
        assert "host secret" not in result.stdout + result.stderr
        # The outside group is named only as the record's parent, or in the derived path.
        shown = result.stdout.replace(f'"cgroup_parent": "{host.parent}"', "").replace(f"{host.parent}/{cid}/", "")
        assert host.parent not in shown, describe(result)
        outcomes[" ".join(verb)] = (result.returncode, result.stdout, result.stderr)
    if detached:
        lost = "error: cannot {} container 'forged': it is lost\n"
        refused = {verb: (125, "", lost.format(action)) for verb, action in (
            ("kill forged", "kill"), ("kill -s TERM forged", "kill"), ("stop -t 1 forged", "stop"),
            ("attach forged -- /bin/true", "attach to"))}
        # The log is the one named after the id (there is none): never the record's log_path.
        refused["logs forged"] = refused["logs -f forged"] = (0, "", "")
    else:
        not_its = (
            "error: cannot {} container 'forged': the processes its record names (init {pid}, "
            "supervisor {pid}) are not the container's; nothing was done to them\nhint: nucleus rm "
            "--force forged removes the record and the container's own cgroup, and signals no process "
            "the record names\n")
        refused = {verb: (125, "", not_its.format(action, pid=host.pid)) for verb, action in (
            ("kill forged", "kill"), ("kill -s TERM forged", "kill"), ("stop -t 1 forged", "stop"),
            ("attach forged -- /bin/true", "attach to"))}
        no_log = ("error: container 'forged' has no log: it runs in the foreground\n"
                  "hint: its output goes to the terminal that started it\n")
        refused["logs forged"] = refused["logs -f forged"] = (125, "", no_log)
    assert {verb: outcomes[verb] for verb in refused} == refused
    assert outcomes["rm forged"][0] == 125
    assert outcomes["rm forged"][2].startswith("error: cannot remove container 'forged': it is ")
    assert outcomes["rm --force forged"] == (0, "forged\n", "")
    # No figures: the derived cgroup does not exist, and the record's directories are not read.
    row, = json.loads(outcomes[f"stats --format json {NAME}"][1])
    figures = {k: val for k, val in row.items() if k not in ("id", "name", "status", "error")}
    assert all(val is None for val in figures.values()), row
    assert f"/{host.parent}/{cid}/" in row.get("error", f"/{host.parent}/{cid}/"), row
    row, = json.loads(outcomes["ps --all --format json"][1])
    assert row["status"] == ("lost" if detached else "running")
    assert "log_path" not in row and "cgroup" not in row and row["log_size"] is None
    assert scope.records() == {}
    assert scope.cgroup_dirs() == []  # nothing was made either


@pytest.mark.parametrize("stand_in_for", ["supervisor", "init"])
def test_a_real_containers_record_naming_a_stand_in(scope, host, stand_in_for):
    """One process of a running container's record replaced by the stand-in: the supervisor
    named is not its init's parent, or the init named is no container's init. The record lies,
    so no verb acts on what it names; rm --force ends the container it describes through its
    derived cgroup (and only that)."""
    cid = started(scope)
    real = scope.record(cid)
    if stand_in_for == "supervisor":
        # Its own session, as a detached supervisor's: it passes for one until held against the init.
        write(scope.containers_dir, cid, {**real, "supervisor_pid": host.pid, "supervisor_start": host.start,
                                          "detached": False})
    else:
        write(scope.containers_dir, cid, {**real, "init_pid": host.pid, "init_start": host.start})
    for verb in (["kill", "web"], ["stop", "-t", "1", "web"], ["attach", "web", "--", "/bin/true"]):
        result = scope.nucleus(*verb)
        clear(result)
        assert result.returncode == 125 and "are not the container's; nothing was done" in result.stderr, \
            describe(result)
        host.untouched(" ".join(verb))
    assert scope.log(cid) == "ready\n"  # the real container got nothing either
    ok(scope.nucleus("rm", "--force", "web"), "web\n")  # its derived cgroup is emptied and removed
    host.untouched("rm --force")
    assert wait_for(lambda: scope.container_cgroups(cid) == [], timeout=10)
    # The real supervisor finds its container ended, records that and exits.
    assert wait_for(lambda: gone(real["supervisor_pid"]), timeout=20)
    if scope.record(cid) is not None:
        ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()


def test_a_creating_record_with_a_stand_in_supervisor(scope, host):
    """No init yet, and a foreground supervisor (nothing to hold it against): it is only
    waited for, never signalled, and rm --force gives up after a while."""
    cid = secrets.token_hex(16)
    record = forged(host, cid, status="creating", machines=machines("creating", res="waiting"),
                    detached=False)
    del record["init_pid"], record["init_start"]
    write(scope.containers_dir, cid, record)
    for verb in (["kill", NAME], ["stop", "-t", "1", NAME], ["attach", NAME, "--", "/bin/true"],
                 ["rm", NAME], ["rm", "--force", NAME]):
        result = scope.nucleus(*verb, timeout=60)
        clear(result)
        assert result.returncode == 125, describe(result)
        host.untouched(" ".join(verb))
    assert list(scope.records()) == [cid]
    os.unlink(scope.record_path(cid))


def test_a_running_record_without_its_init_is_no_record(scope, host, tmp_path):
    cid = secrets.token_hex(16)
    record = forged(host, cid)
    del record["init_pid"], record["init_start"]
    path = write(scope.containers_dir, cid, record)
    result = scope.nucleus("ps", "--all")
    assert result.returncode == 0 and result.stdout.count("\n") == 1, describe(result)
    assert result.stderr == (f"warning: {path} is not a record nucleus can use (its status is 'running' "
                             "but it names no init): passed over\n")
    os.unlink(path)


ESCAPE = "/tmp/nucleus-test-escape"


def shapes(host: Host) -> list[tuple[str, object, int]]:
    """(what, record content, file mode) of records that are no records."""
    def rec(cid: str, **fields) -> dict:
        return forged(host, cid, **fields)

    ids = [secrets.token_hex(16) for _ in range(16)]
    return [
        (ids[0], {**rec(ids[0]), "id": f"../../..{ESCAPE}"}, 0o600),
        (ids[1], rec(ids[1], init_pid="../../../etc/passwd"), 0o600),
        (ids[2], rec(ids[2], init_pid=[host.pid]), 0o600),
        (ids[3], rec(ids[3], argv="sleep 1000"), 0o600),
        (ids[4], rec(ids[4], name="../../x"), 0o600),
        (ids[5], rec(ids[5], cgroup_parent="../../.."), 0o600),
        (ids[6], rec(ids[6], cgroup_parent="/"), 0o600),
        (ids[7], {k: val for k, val in rec(ids[7]).items() if k != "machines"}, 0o600),
        (ids[8], rec(ids[8], machines={"lc_status": "running"}), 0o600),
        (ids[9], rec(ids[9], supervisor_start=str(host.start)), 0o600),
        (ids[10], rec(ids[10], plan={"join": {"caps_keep": "ALL"}}), 0o600),
        (ids[11], [rec(ids[11])], 0o600),
        (ids[12], "{" * 100000, 0o600),
        (ids[13], rec(ids[13]), 0o666),
        (ids[14], rec(ids[14], status="running", machines=machines("stopped", cleaned=True)), 0o600),
        (ids[15], rec(ids[15], detached="yes"), 0o600),
    ]


def test_records_of_the_wrong_shape_are_passed_over_by_every_verb(scope, host, tmp_path):
    bad = shapes(host)
    for cid, content, mode in bad:
        write(scope.containers_dir, cid, content, mode)
    # A record owned by another user, a FIFO and a link in place of records.
    other = secrets.token_hex(16)
    os.chown(write(scope.containers_dir, other, forged(host, other)), OTHER_UID, OTHER_UID)
    fifo = secrets.token_hex(16)
    os.mkfifo(os.path.join(scope.containers_dir, f"{fifo}.json"), 0o600)
    link = secrets.token_hex(16)
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(forged(host, link)))
    os.symlink(target, os.path.join(scope.containers_dir, f"{link}.json"))
    every = [cid for cid, _, _ in bad] + [other, fifo, link]

    listing = scope.nucleus("ps", "--all")
    clear(listing)
    assert listing.returncode == 0 and listing.stdout.count("\n") == 1, describe(listing)
    warnings = listing.stderr.splitlines()
    assert len(warnings) == len(every) - 1, describe(listing)  # the unparsable one passes silently
    assert all(w.startswith("warning: ") and w.endswith(": passed over") for w in warnings), describe(listing)
    for verb in VERBS:
        for ref in (NAME, every[1][:12]):
            args = [ref if arg == NAME else arg for arg in verb]
            result = scope.nucleus(*args)
            clear(result)
            if "ps" not in verb:
                assert result.returncode == 125 and f"error: no container {ref!r}\n" in result.stderr, \
                    describe(result)
            host.untouched(" ".join(args))
    assert not os.path.exists(f"{ESCAPE}.json") and not os.path.exists(f"{ESCAPE}.log")
    assert sorted(n[:-5] for n in os.listdir(scope.containers_dir)) == sorted(every)
    for cid in every:
        os.unlink(os.path.join(scope.containers_dir, f"{cid}.json"))


# --- a real container whose record was rewritten -----------------------------------------------


def rewrite(scope: Scope, cid: str, change) -> None:
    record = scope.record(cid)
    change(record)
    write(scope.containers_dir, cid, record)


@pytest.mark.parametrize("change,message", [
    (lambda p: p.update(caps_keep=["SYS_ADMIN"]), "its record keeps SYS_ADMIN, which its init does not have"),
    (lambda p: p.update(seccomp_sha256=""), "its init runs under a seccomp filter and its record names none"),
    (lambda p: p.update(env=[["LD_PRELOAD", "/tmp/x.so"]]), "its record sets 'LD_PRELOAD', which a run refuses"),
], ids=["extra-caps", "no-seccomp", "loader-env"])
def test_attach_holds_a_rewritten_join_policy_against_the_running_container(scope, host, change, message):
    cid = started(scope, TRAPS)
    rewrite(scope, cid, lambda r: change(r["plan"]["join"]))
    result = scope.nucleus("attach", "web", "--", "/bin/sh", "-c", "echo joined")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (f"error: cannot attach to container 'web': {message}\nhint: its record does "
                             "not match the running container; nothing was joined\n")
    assert scope.record(cid)["status"] == "running" and scope.log(cid) == "ready\n"
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    host.untouched("attach")
    scope.assert_clean()


def test_attach_enters_every_namespace_and_the_cgroup_the_container_has(scope, host):
    """Whatever the record says of namespaces and cgroup.procs files: the joined command is in
    the container's namespaces (its host name, its /proc) and cgroup, and no file of the host
    is written."""
    cid = started(scope, TRAPS)
    rewrite(scope, cid, lambda r: r["plan"]["join"].update(namespaces=["user"], cgroup_procs=[host.secret]))
    result = scope.nucleus("attach", "web", "--", "/bin/sh", "-c",
                           "hostname; tr -d '\\0' < /proc/1/cmdline; echo; cat /proc/self/cgroup")
    assert result.returncode == 0, describe(result)
    hostname, init, *cgroups = result.stdout.splitlines()
    assert (hostname, init) == ("web", "init"), describe(result)
    # At the root of the container's cgroup namespace, which is rooted at its cgroup: a process
    # left outside it would show a path above the root ("/../..").
    assert cgroups and all(line.endswith(":/") for line in cgroups), describe(result)
    host.untouched("attach")
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()


def test_kill_and_logs_of_a_real_container_whose_record_points_elsewhere(scope, host):
    """A record's log path and cgroup directories are never used: the signal reaches the
    container (its init confirmed in its derived cgroup), the log shown is its own, and its
    figures are its cgroup's."""
    cid = started(scope, TRAPS, "--memory", "64M")
    rewrite(scope, cid, lambda r: r.update(
        log_path=host.secret, cgroup={"backend": "v1", "dirs": {os.path.basename(d): d for d in host.outside}}))
    ok(scope.nucleus("kill", "-s", "USR1", "web"), "web\n")
    scope.wait_log(cid, lambda text: text == "ready\ngot USR1\n")
    ok(scope.nucleus("logs", "web"), "ready\ngot USR1\n")
    row, = json.loads(scope.nucleus("stats", "--format", "json", "web").stdout)
    assert row["memory_max"] == 64 << 20 and row["pids_current"] >= 2, row
    host.untouched("kill")
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    host.untouched("rm --force")
    scope.assert_clean()
