"""A bridged container under an egress policy reaches nothing of the host, on the real kernel, in
a bridge test's own "host" namespace (tests/kernel/bridge_lab.py): neither the gateway's address
nor the bridge's IPv6 link-local address, with either rule backend, an IPv4-only container
included (its interface has a link-local address all the same). The host answers on each
address, so an unreachable one is the rules' doing. A container with one more bridge (--attach)
reaches a peer there, reaches the host through neither bridge under a policy, and routes nothing
between its two interfaces."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import SANDBOX_PYTHON, SANDBOX_WITH_PYTHON, Scope, describe, wait_for
from tests.kernel.bridge_lab import NSENTER, Lab

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:nft", "bin:iptables", "bin:nsenter")]

SUBNET = "203.0.113.0/25"
PORT = 7777
# A TCP server on every address of the host namespace, IPv4 and IPv6 (link-local included).
LISTEN = ("import socket\n"
          f"s = socket.create_server(('::', {PORT}), family=socket.AF_INET6, dualstack_ipv6=True)\n"
          "while True:\n"
          "    c, _ = s.accept(); c.sendall(b'host'); c.close()\n")
# For each "address%link" given: whether a connection to the port is answered (the link's index
# from if_nameindex, by netlink: the seccomp profile refuses the SIOCGIFINDEX ioctl).
REACH = ("import socket, sys\n"
         "for target in sys.argv[1:]:\n"
         "    address, _, link = target.partition('%')\n"
         "    family = socket.AF_INET6 if ':' in address else socket.AF_INET\n"
         "    index = dict((name, i) for i, name in socket.if_nameindex()).get(link, 0)\n"
         f"    where = (address, {PORT}, 0, index) if link else (address, {PORT})\n"
         "    s = socket.socket(family, socket.SOCK_STREAM); s.settimeout(2)\n"
         "    try:\n"
         "        s.connect(where); print(target, 'reached')\n"
         "    except OSError as e:\n"
         "        print(target, 'unreachable', e.errno)\n")


@pytest.fixture
def lab():
    with Scope() as scope, Lab(scope) as made:
        yield made


def link_local(lab: Lab, bridge: str) -> str:
    """The bridge's IPv6 link-local address, once it is no longer tentative."""
    def shown() -> str:
        return lab.in_host("ip", "-6", "-o", "addr", "show", "dev", bridge, "scope", "link", "-tentative").stdout

    assert wait_for(lambda: shown().strip(), timeout=10), f"{bridge} has no link-local address"
    return shown().split()[3].split("/")[0]


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_neither_the_gateway_nor_the_bridge_s_link_local_address_is_reached(lab, backend):
    lab.servers.append(subprocess.Popen(lab.argv(lab.host, SANDBOX_PYTHON, "-c", LISTEN),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert wait_for(lambda: lab.in_host("ss", "-Htln", f"sport = :{PORT}").stdout.strip(), timeout=10)
    done = lab.nucleus(*lab.scope.run_args("-d", "--network", "bridge", "--bridge-name", "nreach", "--subnet",
                                           SUBNET, "--nat-backend", backend, "--egress-allow", "192.0.2.0/24"),
                       "--", *lab.scope.sh("sleep 1000"))
    assert done.returncode == 0, describe(done)
    cid = done.stdout.strip()
    targets = ["203.0.113.1", f"{link_local(lab, 'nreach')}%eth0"]
    assert lab.in_host(SANDBOX_PYTHON, "-c", REACH, targets[0]).stdout.split()[1] == "reached"
    inside = lab.nucleus("exec", cid, "--", SANDBOX_PYTHON, "-c", REACH, *targets)
    assert inside.returncode == 0, describe(inside)
    assert [line.split()[1] for line in inside.stdout.splitlines()] == ["unreachable"] * 2, inside.stdout
    assert lab.nucleus("rm", "--force", cid).returncode == 0
    lab.assert_clean()


MORE = "203.0.113.128/25"  # the more bridge's
MORE_GATEWAY = "203.0.113.129"


def detached(lab: Lab, *options: str, workload: tuple[str, ...] = ()) -> str:
    """A container of the lab's, run -d in its host namespace; its id."""
    done = lab.nucleus(*lab.scope.run_args("-d", "--network", "bridge", *options), "--",
                       *(workload or lab.scope.sh("sleep 1000")))
    assert done.returncode == 0, describe(done)
    return done.stdout.strip()


def test_an_attached_container_reaches_a_peer_on_its_more_bridge(lab):
    peer = detached(lab, "--bridge-name", "nmore", "--subnet", MORE, workload=(SANDBOX_PYTHON, "-c", LISTEN))
    cid = detached(lab, "--bridge-name", "nreach", "--subnet", SUBNET, "--attach", f"nmore={MORE}")
    addresses = lab.nucleus("exec", cid, "--", "/bin/cat", "/proc/net/fib_trie")
    assert addresses.returncode == 0, describe(addresses)
    assert "203.0.113.131" in addresses.stdout, addresses.stdout  # on the more bridge (.130: the peer's)

    def reach() -> subprocess.CompletedProcess:
        return lab.nucleus("exec", cid, "--", SANDBOX_PYTHON, "-c", REACH, "203.0.113.130")

    assert wait_for(lambda: reach().stdout.split()[1] == "reached", timeout=10), describe(reach())
    for container in (cid, peer):
        assert lab.nucleus("rm", "--force", container).returncode == 0
    lab.assert_clean()


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_under_a_policy_neither_bridge_of_an_attached_container_reaches_the_host(lab, backend):
    lab.servers.append(subprocess.Popen(lab.argv(lab.host, SANDBOX_PYTHON, "-c", LISTEN),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert wait_for(lambda: lab.in_host("ss", "-Htln", f"sport = :{PORT}").stdout.strip(), timeout=10)
    cid = detached(lab, "--bridge-name", "nreach", "--subnet", SUBNET, "--attach", f"nmore={MORE}",
                   "--nat-backend", backend, "--egress-allow", "192.0.2.0/24")
    targets = ["203.0.113.1", MORE_GATEWAY, f"{link_local(lab, 'nreach')}%eth0", f"{link_local(lab, 'nmore')}%eth1"]
    assert [line.split()[1] for line in lab.in_host(SANDBOX_PYTHON, "-c", REACH, *targets[:2]).stdout.splitlines()] \
        == ["reached"] * 2
    inside = lab.nucleus("exec", cid, "--", SANDBOX_PYTHON, "-c", REACH, *targets)
    assert inside.returncode == 0, describe(inside)
    assert [line.split()[1] for line in inside.stdout.splitlines()] == ["unreachable"] * 4, inside.stdout
    assert lab.nucleus("rm", "--force", cid).returncode == 0
    lab.assert_clean()


@pytest.fixture
def open_lab():
    """A lab whose host forwards whatever its rules do not drop (an attach-only bridge has no
    rules of its own: its bridged traffic meets the forward chain, br_netfilter on)."""
    with Scope() as scope, Lab(scope, drop_forward=False) as made:
        yield made


def test_an_attached_container_routes_nothing_between_its_interfaces(open_lab):
    lab = open_lab
    peer = detached(lab, "--bridge-name", "nreach", "--subnet", SUBNET, workload=(SANDBOX_PYTHON, "-c", LISTEN))
    cid = detached(lab, "--bridge-name", "nreach", "--subnet", SUBNET, "--attach", f"nmore={MORE}")
    settings = lab.nucleus("exec", cid, "--", "/bin/cat", "/proc/sys/net/ipv4/ip_forward",
                           "/proc/sys/net/ipv6/conf/all/forwarding")
    assert settings.returncode == 0, describe(settings)
    assert settings.stdout.split() == ["0", "0"]
    assert lab.in_host("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"  # the host's: on
    # A prober on the more bridge routes to the first bridge's network through the container
    # (203.0.113.130, its eth1); the peer (203.0.113.2) answers through the host.
    prober = f"{lab.host}p"
    subprocess.run(["ip", "netns", "add", prober], check=True, timeout=30)
    try:
        lab.in_host("ip", "link", "add", f"{prober}a", "type", "veth", "peer", "name", "eth0", "netns", prober)
        lab.in_host("ip", "link", "set", f"{prober}a", "master", "nmore", "up")
        for args in (("addr", "add", "203.0.113.200/25", "dev", "eth0"), ("link", "set", "eth0", "up"),
                     ("route", "add", SUBNET, "via", "203.0.113.130")):
            subprocess.run(["ip", "-n", prober, *args], check=True, timeout=30)

        def probe() -> str:
            done = subprocess.run(lab.argv(prober, SANDBOX_PYTHON, "-c", REACH, "203.0.113.2"),
                                  capture_output=True, text=True, timeout=30)
            return done.stdout.split()[1]

        assert probe() == "unreachable"
        # The same path with the container's forwarding turned on (by the test, from outside):
        # the prober is then answered, so the container is what stopped it.
        inside = lab.scope.record(cid)["init_pid"]
        forwarding = [NSENTER, f"--net=/proc/{inside}/ns/net", "sysctl", "-q", "-w"]
        subprocess.run([*forwarding, "net.ipv4.ip_forward=1"], check=True, timeout=30)
        assert wait_for(lambda: probe() == "reached", timeout=10)
        subprocess.run([*forwarding, "net.ipv4.ip_forward=0"], check=True, timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", prober], capture_output=True, timeout=30)
    for container in (cid, peer):
        assert lab.nucleus("rm", "--force", container).returncode == 0
    lab.assert_clean()
