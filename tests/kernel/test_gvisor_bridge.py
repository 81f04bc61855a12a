"""`--runtime gvisor --network bridge` on this machine's runsc, each test in network namespaces
of its own (tests/kernel/bridge_lab.py: a "host" namespace in which nucleus runs, an "upstream"
one with the test's servers; documentation addresses only, no packet leaves them): the
container's namespace and its link are made as for a native run, runsc's netstack takes the
link over, the upstream server is reached through the bridge's NAT, an egress policy still holds
on the host side (its allowed port reached, another refused, names resolved by its resolver),
and afterwards nothing is left: no link, rule or forwarding setting in the host namespace, no
lease, no container directory, no process holding the namespace."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.gvisor_support import gvisor_scope
from tests.helpers import SANDBOX_PYTHON, describe, wait_for
from tests.kernel.bridge_lab import UPSTREAM_ADDRESS, UPSTREAM_PORT, Lab

pytestmark = pytest.mark.requires("root", "bin:runsc", "bin:nft", "bin:iptables", "bin:nsenter",
                                  f"bin:{SANDBOX_PYTHON}")

# Each of argv[2:] (URLs, then HOST:PORT) fetched or connected to in turn.
PROBE = ("import socket, sys, urllib.request\n"
         "for a in sys.argv[2:]:\n"
         "    try:\n"
         "        if a.startswith('http'): print(urllib.request.urlopen(a, timeout=5).read().decode().strip())\n"
         "        else:\n"
         "            host, port = a.rsplit(':', 1)\n"
         "            socket.create_connection((host, int(port)), timeout=2).close(); print(a, 'open')\n"
         "    except OSError as e: print(a, 'no')\n"
         "print(open('/etc/resolv.conf').read().strip())\n"
         "print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n")


@pytest.fixture
def lab():
    with gvisor_scope() as scope, Lab(scope) as made:
        yield made


@pytest.fixture
def site(tmp_path):
    """The upstream server's directory (it serves as root)."""
    (tmp_path / "index.html").write_text("upstream says hello\n")
    return str(tmp_path)


def run(lab: Lab, *options: str, probes: tuple[str, ...]) -> list[str]:
    done = lab.nucleus(*lab.scope.run_args("--runtime", "gvisor", "--network", "bridge", *options), "--",
                       *lab.scope.python(PROBE), *probes, timeout=180)
    assert done.returncode == 0, describe(done)
    return done.stdout.splitlines()


def assert_nothing_left(lab: Lab) -> None:
    """The host namespace as it was, no lease, no process of the scope's (the namespace's holder
    carries the supervisor's command line; the container directories are checked at the scope's
    end, and runsc's cgroup parent goes with the scope)."""
    assert wait_for(lambda: lab.host_state() == lab.before, timeout=10), (lab.host_state(), lab.before)
    network = os.path.join(lab.scope.state_dir, "network")
    assert not os.path.exists(network) or os.listdir(network) == []
    assert wait_for(lambda: not lab.scope.processes(), timeout=20), lab.scope.processes()


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_runsc_s_netstack_reaches_the_upstream_server_through_the_bridge(lab, site, backend):
    lab.serve_upstream(site)
    lines = run(lab, "--nat-backend", backend, "--dns", UPSTREAM_ADDRESS,
                probes=(f"http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT}/",))
    # The link is runsc's now (lo and eth0, gVisor's own), resolv.conf as a native run's.
    assert lines == ["upstream says hello", f"nameserver {UPSTREAM_ADDRESS}", "['eth0', 'lo']"], lines
    assert_nothing_left(lab)


def test_an_egress_policy_holds_on_the_host_side(lab, site):
    lab.serve_upstream(site)
    lab.serve_upstream(site, port=UPSTREAM_PORT + 1)
    lines = run(lab, "--egress-allow", f"{UPSTREAM_ADDRESS}/32", "--egress-tcp-port", str(UPSTREAM_PORT),
                probes=(f"{UPSTREAM_ADDRESS}:{UPSTREAM_PORT}", f"{UPSTREAM_ADDRESS}:{UPSTREAM_PORT + 1}",
                        "10.88.0.1:22"))
    assert lines[:3] == [f"{UPSTREAM_ADDRESS}:{UPSTREAM_PORT} open", f"{UPSTREAM_ADDRESS}:{UPSTREAM_PORT + 1} no",
                         "10.88.0.1:22 no"], lines
    assert lines[3] == "nameserver 10.88.0.1", lines  # the container's own resolver, on the gateway
    assert_nothing_left(lab)


def test_a_detached_bridged_container_is_removed_with_its_network(lab, site):
    lab.serve_upstream(site)
    done = lab.nucleus(*lab.scope.run_args("-d", "--runtime", "gvisor", "--network", "bridge"), "--",
                       *lab.scope.sh("sleep 300"), timeout=180)
    assert done.returncode == 0, describe(done)
    cid = done.stdout.strip()
    record = lab.scope.record(cid)
    assert record is not None and record["status"] == "running", record
    assert record["network"]["addresses"], record
    assert any(link.startswith("nc") for link in lab.host_state()["links"])  # type: ignore[union-attr]
    removed = lab.nucleus("rm", "--force", cid, timeout=120)
    assert removed.returncode == 0 and removed.stderr == "", describe(removed)
    assert lab.scope.record(cid) is None
    assert_nothing_left(lab)


@pytest.mark.parametrize("step", ["NetVeth", "NetProxy", "NetRoute"])
def test_a_failed_network_step_removes_what_came_before(lab, step):
    """A step of the host side, the egress proxy, a step inside the namespace: the run fails
    naming it, before runsc runs, and the teardown leaves the host namespace as it was."""
    done = lab.nucleus(*lab.scope.run_args("--runtime", "gvisor", "--network", "bridge", "--egress-allow",
                                           f"{UPSTREAM_ADDRESS}/32"), "--", *lab.scope.sh("echo ran"),
                       extra_env={"NUCLEUS_FAIL_AT": step}, timeout=180)
    assert done.returncode == 125 and done.stdout == "", describe(done)
    assert f"gVisor setup failed: network step {step.removeprefix('Net').lower()!r} failed: injected failure" \
        in done.stderr, describe(done)
    assert lab.nucleus("ps", "--all", "--format", "json").stdout.strip() == "[]"
    assert_nothing_left(lab)


def test_a_lost_supervisor_s_network_is_torn_down_by_rm_force(lab):
    done = lab.nucleus(*lab.scope.run_args("-d", "--runtime", "gvisor", "--network", "bridge", "--egress-allow",
                                           f"{UPSTREAM_ADDRESS}/32"), "--", *lab.scope.sh("sleep 300"), timeout=180)
    assert done.returncode == 0, describe(done)
    cid = done.stdout.strip()
    record = lab.scope.record(cid)
    assert record is not None and record["status"] == "running", record
    os.kill(record["supervisor_pid"], signal.SIGKILL)  # the namespace's holder goes with it
    assert wait_for(lambda: [r["status"] for r in json.loads(lab.nucleus("ps", "--format", "json").stdout)]
                    == ["lost"], timeout=20)
    removed = lab.nucleus("rm", "--force", cid, timeout=120)
    assert removed.returncode == 0 and removed.stderr == "", describe(removed)
    assert lab.scope.record(cid) is None
    assert_nothing_left(lab)


def test_a_bridged_run_s_trace_replays_and_is_a_behaviour_of_the_spec(lab):
    path = os.path.join(lab.scope.state_dir, "run.itf.json")
    done = lab.nucleus(*lab.scope.run_args("--runtime", "gvisor", "--network", "bridge", "--trace", path), "--",
                       *lab.scope.sh("exit 3"), timeout=180)
    assert done.returncode == 3, describe(done)
    with open(path) as f:
        steps = [(s["event"]["m"], s["event"]["name"]) for s in json.load(f)["states"]]
    assert steps[:4] == [("", ""), ("gv", "Create"), ("gv", "Written"), ("gv", "Netns")]
    assert steps[-6:] == [("gv", "Deleted"), ("net", "Release"), ("net", "Done"), ("gv", "Unshared"),
                          ("gv", "Unbundled"), ("gv", "Remove")]
    for verb, said in (("replay", "1 of 1 traces agree with the machines"),
                       ("check", "1 of 1 traces are behaviours of their spec")):
        checked = lab.nucleus("trace", verb, path)
        assert checked.returncode == 0 and said in checked.stdout, describe(checked)
    assert_nothing_left(lab)
