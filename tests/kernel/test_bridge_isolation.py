"""Two bridges side by side on the real kernel, in network namespaces of the test's own (see
tests/kernel/bridge_lab.py), with either NAT backend: a container on one bridge cannot open a
connection to a container on the other, in either direction and in either family, while each
still reaches a server on its own bridge, the upstream server beyond the host (whose forward
policy is drop) and the other bridge's published port through the host's address; afterwards
nothing of either bridge is left."""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile

import pytest

from tests.helpers import SANDBOX_PYTHON, SANDBOX_WITH_PYTHON, Scope, describe, wait_for
from tests.kernel.bridge_lab import (
    HOST_ADDRESS,
    HOST_ADDRESS6,
    UPSTREAM_ADDRESS,
    UPSTREAM_ADDRESS6,
    UPSTREAM_PORT,
    Lab,
)

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:nft", "bin:iptables", "bin:nsenter")]
PORT = 7777
PUBLISHED = 8077
BRIDGES = {"nbiso0": ("203.0.113.0/26", "2001:db8:a::/64"), "nbiso1": ("203.0.113.64/26", "2001:db8:b::/64")}
LISTEN = ("import socket\n"
          f"s = socket.create_server(('::', {PORT}), family=socket.AF_INET6, dualstack_ipv6=True)\n"
          "while True:\n"
          "    c, _ = s.accept(); c.sendall(b'up'); c.close()\n")
# For each ADDRESS,PORT of argv[1:]: "ADDRESS,PORT reached" or "ADDRESS,PORT unreachable".
PROBE = ("import socket, sys\n"
         "for target in sys.argv[1:]:\n"
         "    address, port = target.split(',')\n"
         "    family = socket.AF_INET6 if ':' in address else socket.AF_INET\n"
         "    s = socket.socket(family, socket.SOCK_STREAM); s.settimeout(3)\n"
         "    try:\n"
         "        s.connect((address, int(port))); print(target, 'reached')\n"
         "    except OSError:\n"
         "        print(target, 'unreachable')\n")


@pytest.fixture
def lab():
    with Scope() as scope, Lab(scope) as made:
        yield made


@pytest.fixture
def site():
    with tempfile.TemporaryDirectory(prefix="nucleus-test-site-") as d:
        os.chmod(d, 0o755)
        yield d


def start(lab: Lab, bridge: str, backend: str, *options: str, argv: list[str]) -> str:
    """A detached container on `bridge`; its id."""
    subnets = [arg for subnet in BRIDGES[bridge] for arg in ("--subnet", subnet)]
    done = lab.nucleus(*lab.scope.run_args("-d", "--network", "bridge", "--bridge-name", bridge, *subnets,
                                           "--nat-backend", backend, *options), "--", *argv)
    assert done.returncode == 0, describe(done)
    return done.stdout.strip()


def addresses(lab: Lab, cid: str) -> list[str]:
    """The container's addresses, IPv4 first."""
    network = json.loads(lab.nucleus("inspect", cid).stdout)["network"]
    return sorted((str(ipaddress.ip_interface(a).ip) for a in network["addresses"]), key=lambda a: ":" in a)


def probe(lab: Lab, cid: str, *targets: tuple[str, int]) -> dict[str, bool]:
    """Whether the container opens a TCP connection to each (address, port)."""
    done = lab.nucleus("exec", cid, "--", SANDBOX_PYTHON, "-c", PROBE, *(f"{a},{p}" for a, p in targets))
    assert done.returncode == 0, describe(done)
    seen = dict(line.split() for line in done.stdout.splitlines())
    return {target: seen[target] == "reached" for target in (f"{a},{p}" for a, p in targets)}


@pytest.mark.parametrize("backend", ("nft", "iptables"))
def test_containers_on_two_bridges_cannot_reach_each_other(lab, site, backend):
    lab.serve_upstream(site)
    lab.serve_upstream(site, UPSTREAM_ADDRESS6, UPSTREAM_PORT + 1)
    first, second = BRIDGES
    made = []
    try:
        servers, clients = {}, {}
        for bridge in BRIDGES:
            published = ("-p", f"{PUBLISHED}:{PORT}") if bridge == first else ()
            servers[bridge] = start(lab, bridge, backend, *published, argv=lab.scope.python(LISTEN))
            made.append(servers[bridge])
            clients[bridge] = start(lab, bridge, backend, argv=lab.scope.sh("sleep 1000"))
            made.append(clients[bridge])
        for bridge in BRIDGES:  # each server answers a client of its own bridge
            own = [(a, PORT) for a in addresses(lab, servers[bridge])]
            assert wait_for(lambda b=bridge, t=own: all(probe(lab, clients[b], *t).values()), timeout=15), bridge
        upstream = [(UPSTREAM_ADDRESS, UPSTREAM_PORT), (UPSTREAM_ADDRESS6, UPSTREAM_PORT + 1)]
        for bridge, other in ((first, second), (second, first)):
            targets = [(a, PORT) for a in addresses(lab, servers[other])]
            for cid in (clients[bridge], servers[bridge]):
                assert probe(lab, cid, *targets) == dict.fromkeys((f"{a},{p}" for a, p in targets), False)
                assert all(probe(lab, cid, *upstream).values())
        published = [(HOST_ADDRESS, PUBLISHED), (HOST_ADDRESS6, PUBLISHED)]
        assert all(probe(lab, clients[second], *published).values())
    finally:
        for cid in made:
            removed = lab.nucleus("rm", "--force", cid)
            assert removed.returncode == 0, describe(removed)
    lab.assert_clean()
