"""A bridged container's supervisor killed (SIGKILL) at every step of its network's setup and
teardown, then `nucleus rm --force`; and every network step failed on the way in: either way no
link, rule, lease or process is left (each test in network namespaces of its own, see
tests/kernel/bridge_lab.py)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, kill_paused
from tests.kernel.bridge_lab import Lab

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:nft", "bin:iptables", "bin:nsenter")]

# The network's steps on the way in, in order (the host side in the supervisor, then the
# container side in the setup process), and its teardown.
SETUP = ["NetBridge", "NetVeth", "NetNat", "NetAddress", "NetLinkUp", "NetRoute"]
TEARDOWN = ["NetTeardown"]
OPTIONS = ("--network", "bridge", "-p", "8080:80")


@pytest.fixture
def lab():
    with Scope() as scope, Lab(scope) as made:
        yield made


@pytest.mark.parametrize("backend", ["nft", "iptables"])
@pytest.mark.parametrize("step", SETUP + TEARDOWN)
def test_supervisor_killed_at_a_network_step_then_rm_force_leaves_nothing(lab, step, backend):
    # A container of the bridge's before, still running: the killed one's teardown must leave it be.
    other = lab.nucleus(*lab.scope.run_args("-d", *OPTIONS[:2], "--nat-backend", backend), "--",
                        *lab.scope.sh("sleep 1000"))
    assert other.returncode == 0, describe(other)
    workload = lab.scope.sh("exit 0" if step in TEARDOWN else "echo ran; sleep 1000")
    proc = lab.popen(*lab.scope.run_args(*OPTIONS, "--nat-backend", backend), "--", *workload,
                     extra_env={"NUCLEUS_PAUSE_AT": step}, text=False, bufsize=0)
    kill_paused(proc, step)
    lost = [cid for cid in lab.scope.records() if cid != other.stdout.strip()]
    assert len(lost) == 1, lab.scope.records()
    removed = lab.nucleus("rm", "--force", lost[0])
    assert removed.returncode == 0, describe(removed)
    # The other container still has its link and its address's lease.
    leases = lab.scope.state_dir + "/network/nucleus0.json"
    with open(leases) as f:
        assert list(json.load(f)["leases"]) == [other.stdout.strip()]
    assert lab.nucleus("rm", "--force", other.stdout.strip()).returncode == 0
    lab.assert_clean()


@pytest.mark.parametrize("step", SETUP)
def test_a_failed_network_step_removes_what_came_before(lab, step):
    done = lab.nucleus(*lab.scope.run_args(*OPTIONS), "--", "true", extra_env={"NUCLEUS_FAIL_AT": step})
    assert done.returncode == 125, describe(done)
    machine_step = {"NetBridge": "bridge", "NetVeth": "veth", "NetNat": "nat", "NetAddress": "address",
                    "NetLinkUp": "up", "NetRoute": "route"}[step]
    assert f"error: setup failed at net.{machine_step}: injected failure of {step} #1" in done.stderr, describe(done)
    assert lab.scope.records() == {}
    lab.assert_clean()
