"""A bridged container under an egress policy reaches nothing of the host, on the real kernel, in
a bridge test's own "host" namespace (tests/kernel/bridge_lab.py): neither the gateway's address
nor the bridge's IPv6 link-local address, with either rule backend, an IPv4-only container
included (its interface has a link-local address all the same). The host answers on each
address, so an unreachable one is the rules' doing."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import SANDBOX_PYTHON, SANDBOX_WITH_PYTHON, Scope, describe, wait_for
from tests.kernel.bridge_lab import Lab

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
