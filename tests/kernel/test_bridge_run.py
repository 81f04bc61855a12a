"""--network bridge on the real kernel, each test in network namespaces of its own (see
tests/kernel/bridge_lab.py): the container reaches the test's upstream server through NAT on a
host whose forward policy is drop, a published port reaches a server inside from outside and
from the host itself, concurrent containers get distinct addresses, --dns fills resolv.conf, and
afterwards nothing of the bridge is left."""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, wait_for
from tests.kernel.bridge_lab import UPSTREAM_ADDRESS, UPSTREAM_ADDRESS6, UPSTREAM_PORT, Lab

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:nft", "bin:iptables", "bin:nsenter")]
BACKENDS = ("nft", "iptables")
# Each URL of argv[2:] fetched in turn (argv[1] is the scope's marker).
FETCH = ("import sys, urllib.request\n"
         "for url in sys.argv[2:]: print(urllib.request.urlopen(url, timeout=5).read().decode().strip())")
ADDRESSES = ("import socket, subprocess; "
             "print(subprocess.run(['ip', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'], "
             "capture_output=True, text=True).stdout)")


@pytest.fixture
def lab():
    with Scope() as scope, Lab(scope) as made:
        yield made


@pytest.fixture
def site():
    with tempfile.TemporaryDirectory(prefix="nucleus-test-site-") as d:
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write("upstream says hello\n")
        os.chmod(d, 0o755)
        yield d


def run(lab: Lab, *options: str, argv: tuple[str, ...]) -> str:
    done = lab.nucleus(*lab.scope.run_args("--network", "bridge", *options), "--", *argv)
    assert done.returncode == 0, describe(done)
    return done.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bridged_container_reaches_the_upstream_server_through_nat(lab, site, backend):
    lab.serve_upstream(site)
    lab.serve_upstream(site, UPSTREAM_ADDRESS6, UPSTREAM_PORT + 1)
    out = run(lab, "--nat-backend", backend, argv=(
        *lab.scope.python(FETCH), f"http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT}/",
        f"http://[{UPSTREAM_ADDRESS6}]:{UPSTREAM_PORT + 1}/"))
    assert out == "upstream says hello\nupstream says hello\n"
    lab.assert_clean()


def test_without_a_bridge_the_upstream_server_is_out_of_reach(lab, site):
    lab.serve_upstream(site)
    done = lab.nucleus(*lab.scope.run_args(), "--", *lab.scope.python(FETCH), f"http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT}/")
    assert done.returncode == 1 and "Network is unreachable" in done.stderr, describe(done)
    lab.assert_clean()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_published_port_reaches_a_server_inside_from_outside_and_from_the_host(lab, backend):
    serve = ("import http.server, sys\n"
             "class H(http.server.BaseHTTPRequestHandler):\n"
             "    def do_GET(self):\n"
             "        self.send_response(200); self.end_headers(); self.wfile.write(b'inside answers')\n"
             "http.server.HTTPServer(('0.0.0.0', 80), H).serve_forever()\n")
    done = lab.nucleus(*lab.scope.run_args("-d", "--network", "bridge", "--nat-backend", backend,
                                           "-p", "8080:80"), "--", *lab.scope.python(serve))
    assert done.returncode == 0, describe(done)
    cid = done.stdout.strip()
    try:
        urls = ("http://198.51.100.1:8080/", "http://127.0.0.1:8080/")
        assert wait_for(lambda: lab.get("upstream", urls[0]) == "inside answers", timeout=15)
        for url in urls:  # from the host namespace's own processes: its address and loopback
            assert lab.get("host", url) == "inside answers", url
        row, = json.loads(lab.nucleus("ps", "--format", "json").stdout)
        network = row["network"]
        assert (network["mode"], network["bridge"], network["ports"]) == (
            "bridge", "nucleus0", [["tcp", "", 8080, 80]])
        assert [ipaddress.ip_interface(a).network for a in network["addresses"]] == [
            ipaddress.ip_network("10.88.0.0/16"), ipaddress.ip_network("fd00:6e75::/64")]
        inspected = json.loads(lab.nucleus("inspect", cid).stdout)
        assert inspected["network"] == network
    finally:
        removed = lab.nucleus("rm", "--force", cid)
    assert removed.returncode == 0, describe(removed)
    assert lab.get("upstream", "http://198.51.100.1:8080/") == ""
    lab.assert_clean()


def test_twenty_concurrent_bridged_containers_get_distinct_addresses(lab):
    procs = [lab.popen(*lab.scope.run_args("--network", "bridge"), "--", *lab.scope.python(ADDRESSES))
             for _ in range(20)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [(p.returncode, err) for p, (_, err) in zip(procs, outputs, strict=True)]
    addresses = [tuple(sorted(w for w in out.split() if "/" in w)) for out, _ in outputs]
    assert all(len(a) == 2 for a in addresses), addresses
    assert len(set(addresses)) == 20 and len({a[0] for a in addresses}) == 20
    lab.assert_clean()


def test_dns_is_what_resolv_conf_names_and_nothing_else(lab):
    out = run(lab, "--dns", "192.0.2.53", "--dns", "2001:db8::53", argv=("cat", "/etc/resolv.conf"))
    assert out == "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
    assert run(lab, argv=("cat", "/etc/resolv.conf")) == ""
    lab.assert_clean()


def test_a_subnet_that_overlaps_a_host_route_is_refused_and_nothing_changes(lab):
    done = lab.nucleus(*lab.scope.run_args("--network", "bridge", "--subnet", "198.51.100.0/25"), "--", "true")
    assert done.returncode == 125, describe(done)
    assert done.stderr == ("error: --subnet '198.51.100.0/25' overlaps the host's route to 198.51.100.0/24 "
                           f"(dev {lab.host.replace('nbh', 'h')})\n"
                           "hint: choose another network with --subnet, e.g. --subnet 10.123.0.0/16\n")
    assert lab.scope.records() == {}
    lab.assert_clean()


def test_no_interface_of_the_container_takes_router_advertisements(lab):
    """Neither eth0 nor a more attachment's eth1 takes an address or a route from a router
    advertisement on its bridge (the egress rules know only the leased addresses)."""
    settings = " ".join(f"/proc/sys/net/ipv6/conf/{link}/{name}" for link in ("eth0", "eth1")
                        for name in ("accept_ra", "autoconf"))
    out = run(lab, "--attach", "ntra1=10.89.0.0/16", argv=("/bin/sh", "-c", f"cat {settings}"))
    assert out.split() == ["0", "0", "0", "0"]
    lab.assert_clean()


def test_attaching_to_a_bridge_of_the_hosts_leaves_it_as_it_was(lab):
    """A bridge nucleus did not make: the gateway address it lacked is taken off again, and its
    route_localnet (which an attachment, publishing no port, never needs) is never changed."""
    lab.in_host("ip", "link", "add", "hostbr9", "type", "bridge")
    lab.in_host("ip", "link", "set", "hostbr9", "up")
    try:
        localnet = lab.in_host("cat", "/proc/sys/net/ipv4/conf/hostbr9/route_localnet").stdout
        shown = lambda: lab.in_host("ip", "-o", "addr", "show", "dev", "hostbr9").stdout  # noqa: E731
        before = shown()
        out = run(lab, "--attach", "hostbr9=10.90.0.0/24", argv=("/bin/sh", "-c", "ip -o -4 addr show dev eth1"))
        assert "10.90.0.2/24" in out
        assert shown() == before
        assert lab.in_host("cat", "/proc/sys/net/ipv4/conf/hostbr9/route_localnet").stdout == localnet == "0\n"
        assert not os.path.exists(os.path.join(lab.scope.state_dir, "network", "hostbr9.json"))
    finally:
        lab.in_host("ip", "link", "del", "hostbr9", check=False)
    lab.assert_clean()


def test_an_attachment_to_what_is_no_bridge_is_refused_naming_it_and_nothing_is_left(lab):
    done = lab.nucleus(*lab.scope.run_args("--network", "bridge", "--attach", "lo=10.89.0.0/16"), "--", "true")
    assert (done.returncode, done.stdout) == (125, ""), describe(done)
    assert "--attach lo=10.89.0.0/16: lo exists and is not a bridge" in done.stderr, describe(done)
    lab.assert_clean()
