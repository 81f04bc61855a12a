"""`nucleus run --runtime gvisor` on this machine's runsc (ptrace platform): the workload runs
under gVisor's kernel, its exit status and the signals the supervisor gets pass through, a limit
reaches the sandbox's cgroup, a detached one stops and goes with `nucleus stop` and `rm`, and
nothing of runsc's state, the bundle or the cgroup is left afterwards.
"""

from __future__ import annotations

import glob
import json
import os
import signal

import pytest

from nucleus.plan.gvisor import BASE, directory
from tests.gvisor_support import gvisor_entries, gvisor_scope
from tests.gvisor_support import run_gvisor as run
from tests.helpers import Scope, describe, wait_for, wait_for_line

pytestmark = pytest.mark.requires("root", "bin:runsc")


@pytest.fixture
def scope():
    with gvisor_scope() as s:
        yield s


def cgroup_dirs(scope: Scope, cid: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/**/{scope.cgroup_parent}/{cid}", recursive=True)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_a_command_runs_under_gvisor_and_its_status_passes_through(scope):
    result = run(scope, "dmesg | head -1; cat /proc/version; hostname; echo x > /written && cat /written; exit 7",
                 "--hostname", "sandboxed")
    assert result.returncode == 7, describe(result)
    lines = result.stdout.splitlines()
    assert "Starting gVisor..." in lines[0], describe(result)
    # gVisor's kernel names itself as Linux 4.4.0, whatever the host runs.
    assert lines[1].startswith("Linux version 4.4.0") and os.uname().release not in lines[1], describe(result)
    assert lines[2:] == ["sandboxed", "x"], describe(result)
    assert scope.nucleus("ps", "--all", "--format", "json").stdout.strip() == "[]"


def test_the_bundle_is_the_run_s_configuration(scope):
    """No capability, the rlimits and the environment of a native run, and none of the host's
    processes in sight (gVisor's /proc shows the sandbox's own)."""
    result = run(scope, "grep -E '^(CapEff|CapBnd)' /proc/self/status; ulimit -n; echo $GREETING; "
                 "echo /proc/[0-9]*", "-e", "GREETING=hello")
    assert result.returncode == 0, describe(result)
    lines = result.stdout.splitlines()
    assert lines[:4] == ["CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "1024", "hello"], describe(result)
    pids = [int(p.removeprefix("/proc/")) for p in lines[4].split()]
    assert pids and max(pids) < 100 and os.getpid() not in pids, describe(result)


def test_a_run_s_trace_replays_and_is_a_behaviour_of_the_spec(scope):
    path = os.path.join(scope.state_dir, "run.itf.json")
    result = run(scope, "exit 3", "--trace", path)
    assert result.returncode == 3, describe(result)
    with open(path) as f:
        names = [s["event"]["name"] for s in json.load(f)["states"]]
    assert names == ["", "Create", "Written", "Started", "Exit", "Deleted", "Unbundled", "Remove"]
    for verb, said in (("replay", "1 of 1 traces agree with the machines"),
                       ("check", "1 of 1 traces are behaviours of their spec")):
        checked = scope.nucleus("trace", verb, path)
        assert checked.returncode == 0 and said in checked.stdout, describe(checked)


def test_host_network_is_runsc_s_hostinet(scope):
    result = run(scope, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", "--network", "host",
                 "--allow-host-network")
    assert result.returncode == 0, describe(result)
    assert sorted(result.stdout.split()) == sorted(os.listdir("/sys/class/net")), describe(result)


def test_a_memory_limit_reaches_the_sandbox_s_cgroup_and_goes_with_it(scope):
    cid = scope.detach(scope.sh("echo up; sleep 300"), "--runtime", "gvisor", "--memory", "96M")
    dirs = wait_for(lambda: cgroup_dirs(scope, cid), timeout=20)
    limits = [read(p) for d in dirs for p in (f"{d}/memory.limit_in_bytes", f"{d}/memory.max")
              if os.path.exists(p)]
    assert str(96 << 20) in limits, (dirs, limits)
    removed = scope.nucleus("rm", "--force", cid, timeout=60)
    assert removed.returncode == 0, describe(removed)
    assert scope.record(cid) is None
    assert cgroup_dirs(scope, cid) == []


def test_a_detached_container_stops_and_is_removed(scope):
    cid = scope.detach(scope.sh("echo up; sleep 300"), "--runtime", "gvisor", "--name", "gv-detached")
    assert wait_for(lambda: "up" in (scope.nucleus("logs", cid).stdout or ""), timeout=20)
    rows = json.loads(scope.nucleus("ps", "--format", "json").stdout)
    assert [(r["name"], r["status"], r["runtime"]) for r in rows] == [("gv-detached", "running", "gvisor")]
    stopped = scope.nucleus("stop", "gv-detached", timeout=60)
    assert stopped.returncode == 0, describe(stopped)
    record = scope.record(cid)
    assert record is not None and record["status"] == "stopped" and record["exit_code"] == 128 + 15, record
    assert not os.path.exists(directory(cid))  # runsc's state and the bundle went at the exit
    removed = scope.nucleus("rm", "gv-detached", timeout=60)
    assert removed.returncode == 0, describe(removed)
    assert scope.record(cid) is None


def test_a_signal_to_the_supervisor_reaches_the_workload(scope):
    proc = scope.popen(*scope.run_args("--runtime", "gvisor"), "--",
                       *scope.sh("trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done"),
                       text=False, bufsize=0)
    try:
        assert wait_for_line(proc.stdout, "ready", timeout=60)[-1:] == ["ready"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, (out, err)
    assert b"got-term" in out, (out, err)


def test_a_refused_option_changes_nothing(scope):
    before = gvisor_entries()
    result = run(scope, "true", "--seccomp-mode", "trace", "--seccomp-log", "/tmp/never.ndjson")
    assert result.returncode == 125, describe(result)
    assert "--seccomp-mode trace with --runtime gvisor" in result.stderr, describe(result)
    assert gvisor_entries() == before and not os.path.exists("/tmp/never.ndjson")


def test_a_failed_start_leaves_nothing(scope):
    """runsc refuses the bundle (its gofer cannot bind another process's /proc entry): the run
    fails naming runsc's first error, and the sandbox, its state and the bundle are gone."""
    before = gvisor_entries()
    result = run(scope, "true", "-v", "/proc/self/fd:/x")
    assert result.returncode == 125, describe(result)
    assert "gVisor setup failed: runsc run exited with status 128: " in result.stderr, describe(result)
    assert scope.nucleus("ps", "--all", "--format", "json").stdout.strip() == "[]"
    assert gvisor_entries() == before


def test_a_lost_supervisor_s_sandbox_is_reclaimed_by_rm_force(scope):
    cid = scope.detach(scope.sh("sleep 300"), "--runtime", "gvisor")
    record = scope.record(cid)
    assert record is not None and record["status"] == "running", record
    os.kill(record["supervisor_pid"], signal.SIGKILL)
    rows = wait_for(lambda: [r for r in json.loads(scope.nucleus("ps", "--format", "json").stdout)
                             if r["status"] == "lost"], timeout=20)
    assert [r["id"] for r in rows] == [cid]
    removed = scope.nucleus("rm", "--force", cid, timeout=120)
    assert removed.returncode == 0 and removed.stderr == "", describe(removed)
    assert scope.record(cid) is None and not os.path.exists(directory(cid))
    assert wait_for(lambda: not runsc_processes(cid), timeout=20), runsc_processes(cid)
    assert cgroup_dirs(scope, cid) == []


def runsc_processes(cid: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "runsc" in line and cid in line:
            found.append(line)
    return found


def test_exec_runs_a_command_in_the_sandbox(scope):
    cid = scope.detach(scope.sh("echo made > /tmp/by-workload; sleep 300"), "--runtime", "gvisor")
    assert wait_for(lambda: scope.nucleus("exec", cid, "/bin/cat", "/tmp/by-workload").stdout == "made\n",
                    timeout=20)
    result = scope.nucleus("exec", "-u", "1000", "-w", "/tmp", "-e", "FOO=bar", cid, "/bin/sh", "-c",
                           "id -u; pwd; echo $FOO; grep CapEff /proc/self/status; exit 4", timeout=60)
    assert result.returncode == 4, describe(result)
    assert result.stdout.splitlines() == ["1000", "/tmp", "bar", "CapEff:\t0000000000000000"], describe(result)
    attached = scope.nucleus("attach", cid, input="echo in-attach; exit 5", stdin=None, timeout=60)
    assert attached.returncode == 5 and attached.stdout == "in-attach\n", describe(attached)
    copied = scope.nucleus("cp", f"{cid}:/tmp/by-workload", os.path.join(scope.state_dir, "copied"))
    assert copied.returncode == 125 and "it runs under gVisor" in copied.stderr, describe(copied)
    removed = scope.nucleus("rm", "--force", cid, timeout=60)
    assert removed.returncode == 0, describe(removed)
    refused = scope.nucleus("exec", cid, "/bin/true")
    assert refused.returncode == 125 and "no container" in refused.stderr, describe(refused)


def test_a_seccomp_profile_is_applied_inside_the_sandbox(scope):
    profile = os.path.join(scope.state_dir, "no-mkdir.json")
    with open(profile, "w") as f:
        json.dump({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}, f)
    result = run(scope, "mkdir /tmp/d && echo made; echo x > /tmp/f && echo wrote", "--seccomp-profile", profile)
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines() == ["wrote"], describe(result)
    assert "Operation not permitted" in result.stderr, describe(result)


def test_the_kvm_platform_runs_or_is_refused_with_the_reason(scope):
    """runsc's KVM platform is tried (`runsc do true`, 10 s at most) before a run is planned on
    it: where it hangs (kernel 6.18 with Debian's runsc 2022) or /dev/kvm is missing, the run is
    refused naming the platform, and nothing of the attempt is left."""
    result = run(scope, "echo kvm", "--gvisor-platform", "kvm")
    if result.returncode == 0:
        assert result.stdout == "kvm\n", describe(result)
    else:
        assert result.returncode == 125, describe(result)
        assert result.stderr.startswith("error: --gvisor-platform kvm: "), describe(result)
        assert "hint: use --gvisor-platform ptrace (the default)" in result.stderr, describe(result)
    assert wait_for(lambda: not [p for p in runsc_processes("") if f"{BASE}/.platform-" in p], timeout=20)
    assert scope.nucleus("ps", "--all", "--format", "json").stdout.strip() == "[]"


def test_a_copied_context_is_the_filtered_copy_never_the_host_tree(scope, tmp_path):
    """--context-mode copy (the default): runsc binds the copy a native run would hold (the
    secret entries left out), writable and the container's own; the host's tree is never bound,
    and the copy goes with the container."""
    context = tmp_path / "project"
    (context / "src").mkdir(parents=True)
    (context / "src" / "main.py").write_text("print('hi')\n")
    (context / ".env").write_text("TOKEN=do-not-copy\n")
    context.chmod(0o755)
    before = sorted(p.name for p in context.rglob("*"))
    code = ("import os; print(sorted(os.listdir('/context')), sorted(os.listdir('/context/src')));"
            "open('/context/made-inside', 'w').write('x'); print(open('/proc/mounts').read().count(' /context '))")
    result = scope.nucleus(*scope.run_args("--runtime", "gvisor", "--context", str(context)), "--",
                           "/usr/bin/python3", "-c", code, timeout=120)
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines() == ["['src'] ['main.py']", "1"], describe(result)
    assert "left out 1 secret entry: '.env'" in result.stderr, describe(result)
    assert sorted(p.name for p in context.rglob("*")) == before  # nothing written to the host's tree
