"""A container's more bridge attachments on the real kernel (nucleus.effects.network), each step
run in network namespaces the test makes: a "host" namespace, where the host-side steps run,
and one namespace per container, held by a sleeping process, where the inside steps run. Only
documentation addresses are used, and everything goes away with the namespaces.

The attachment's interface joins the container and reaches its bridge's other containers; the
teardown takes the veths, the leases and, with the bridge's last lease, the bridge; forwarding
is restored only by the state directory's last bridge; and under an egress policy the
container's interface on a more bridge reaches neither the host (its gateway, its IPv6
link-local address) nor a network the policy does not allow, with either rule backend."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys

import pytest

from nucleus import vocab as v
from tests.helpers import describe, wait_for
from tests.kernel.bridge_lab import NSENTER, ip

pytestmark = pytest.mark.requires("root", "netns", "bin:nsenter")

FIRST, MORE = "192.0.2.0/25", "198.51.100.128/25"
MORE_GATEWAY = "198.51.100.129"
PORT = 7778
FORWARDING = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")
# One effect of nucleus.effects.network: its name, the intent's repr, then the pid it takes.
EFFECT = ("import sys\n"
          "from nucleus import vocab as v\n"
          "from nucleus.effects import network\n"
          "result = getattr(network, sys.argv[1])(eval(sys.argv[2], vars(v)), *map(int, sys.argv[3:]))\n"
          "print(result or '')\n")
# A TCP server on every address of the namespace, IPv4 and IPv6 (link-local included).
LISTEN = ("import socket\n"
          f"s = socket.create_server(('::', {PORT}), family=socket.AF_INET6, dualstack_ipv6=True)\n"
          "while True:\n"
          "    c, _ = s.accept(); c.sendall(b'up'); c.close()\n")
# For each "address%link" given: whether a connection to the port is answered.
REACH = ("import socket, sys\n"
         "for target in sys.argv[1:]:\n"
         "    address, _, link = target.partition('%')\n"
         "    family = socket.AF_INET6 if ':' in address else socket.AF_INET\n"
         f"    where = (address, {PORT}, 0, socket.if_nametoindex(link)) if link else (address, {PORT})\n"
         "    s = socket.socket(family, socket.SOCK_STREAM); s.settimeout(2)\n"
         "    try:\n"
         "        s.connect(where); print('reached')\n"
         "    except OSError:\n"
         "        print('unreachable')\n")


class Namespaces:
    """The test's "host" namespace, its containers' namespaces (each held by a process), the
    servers it started, and the state directory the effects keep their files in."""

    def __init__(self, state: str) -> None:
        self.token = secrets.token_hex(3)
        self.state = state
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.host = self.namespace("h")
        self.before = self.settings()

    def namespace(self, tag: str) -> str:
        name = f"na{tag}{self.token}"
        ip("netns", "add", name)
        self.names.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def container(self, tag: str) -> tuple[str, int]:
        """A container's namespace and the pid of the process holding it."""
        name = self.namespace(tag)
        proc = self.start(name, "sleep", "1000")
        return name, proc.pid

    def start(self, ns: str, *argv: str) -> subprocess.Popen:
        proc = subprocess.Popen([NSENTER, f"--net=/run/netns/{ns}", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, *argv: str) -> subprocess.CompletedProcess:
        done = subprocess.run([NSENTER, f"--net=/run/netns/{ns}", *argv], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, describe(done)
        return done

    def effect(self, ns: str, name: str, op: v.Intent, *pid: int) -> str:
        """The effect `name` of `op`, in namespace `ns`; Done's detail."""
        return self.run(ns, sys.executable, "-c", EFFECT, name, repr(op), *map(str, pid)).stdout.strip()

    def serve(self, ns: str) -> None:
        self.start(ns, sys.executable, "-c", LISTEN)
        assert wait_for(lambda: self.run(ns, "ss", "-Htln", f"sport = :{PORT}").stdout.strip(), timeout=10)

    def reach(self, ns: str, *targets: str) -> list[str]:
        return self.run(ns, sys.executable, "-c", REACH, *targets).stdout.split()

    def links(self, ns: str | None = None) -> list[str]:
        shown = self.run(ns or self.host, "ip", "-o", "link", "show").stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in shown.splitlines())

    def settings(self) -> list[str]:
        return [self.run(self.host, "cat", path).stdout.strip() for path in FORWARDING]

    def link_local(self, ns: str, link: str) -> str:
        """The link's IPv6 link-local address, once it is no longer tentative."""
        def shown() -> str:
            return self.run(ns, "ip", "-6", "-o", "addr", "show", "dev", link, "scope", "link",
                            "-tentative").stdout

        assert wait_for(lambda: shown().strip(), timeout=10), f"{link} has no link-local address"
        return shown().split()[3].split("/")[0]

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture
def ns(tmp_path):
    made = Namespaces(str(tmp_path / "state"))
    try:
        yield made
    finally:
        made.close()


def bridged(ns: Namespaces, owner: str, pid: int, bridge: str = "nbz0", subnet: str = FIRST) -> str:
    """The first bridge's steps for container `owner`: its lease and its veth (eth0)."""
    leased = ns.effect(ns.host, "bridge", v.NetBridge(bridge, (subnet,), ns.state, owner))
    ns.effect(ns.host, "veth", v.NetVeth(bridge, f"vz{owner[:4]}", f"vp{owner[:4]}", "eth0"), pid)
    return leased


def attached(ns: Namespaces, container: str, owner: str, pid: int, bridge: str = "nbz1",
             backend: str = "nft") -> str:
    """One more attachment (eth1) on `bridge`, joined inside the container; the addresses leased."""
    op = v.NetAttach(bridge, (MORE,), ns.state, owner, f"vm{owner[:4]}", f"vq{owner[:4]}", "eth1", backend)
    leased = ns.effect(ns.host, "attach", op, pid)
    ns.effect(container, "join", v.NetJoin("eth1", tuple(leased.split())))
    return leased


def teardown(ns: Namespaces, owner: str, held: tuple[str, ...] = ("bridge", "veth", "attach"),
             bridge: str = "nbz0", attachments: tuple[str, ...] = ("nbz1",), backend: str = "nft") -> None:
    ns.effect(ns.host, "teardown", v.NetTeardown(held, bridge, f"vz{owner[:4]}", backend, (), owner, ns.state,
                                                 tuple((b, f"vm{owner[:4]}") for b in attachments)))


@pytest.mark.requires("bin:nft", "bin:iptables")
def test_an_attachment_joins_the_container_and_the_last_lease_takes_its_bridge(ns):
    one, pid_one = ns.container("c")
    two, pid_two = ns.container("d")
    owner_one, owner_two = "1" * 32, "2" * 32
    # A host that forwards nothing by default (a Docker host's FORWARD policy): the more bridge's
    # own rules let its containers reach each other, the second of which is on it alone.
    ns.run(ns.host, "iptables", "-P", "FORWARD", "DROP")
    bridged(ns, owner_one, pid_one)
    assert attached(ns, one, owner_one, pid_one) == "198.51.100.130/25"
    assert attached(ns, two, owner_two, pid_two) == "198.51.100.131/25"  # the bridge's other container
    shown = ns.run(one, "ip", "-o", "addr", "show", "dev", "eth1").stdout
    assert "inet 198.51.100.130/25" in shown and "state UP" in ns.run(one, "ip", "link", "show", "eth1").stdout
    ns.serve(two)
    ns.serve(ns.host)
    assert ns.reach(one, "198.51.100.131", MORE_GATEWAY) == ["reached", "reached"]
    assert {"nbz0", "nbz1", "vz1111", "vm1111", "vm2222"} <= set(ns.links())

    teardown(ns, owner_one)
    assert not {"nbz0", "vz1111", "vm1111"} & set(ns.links())
    assert "eth1" not in ns.links(one)
    assert {"nbz1", "vm2222"} <= set(ns.links()), "the other container still holds the more bridge"
    assert os.listdir(os.path.join(ns.state, "network")) == ["nbz1.json"]
    assert ns.reach(two, MORE_GATEWAY) == ["reached"]

    teardown(ns, owner_two, held=("attach",), bridge="nbz9")
    assert not {"nbz1", "vm2222"} & set(ns.links())
    assert not os.path.exists(os.path.join(ns.state, "network"))
    assert ns.settings() == ns.before


def test_forwarding_stays_on_until_the_state_directorys_last_bridge_goes(ns):
    assert ns.before[0] == "0", "a new network namespace forwards nothing"
    ns.effect(ns.host, "bridge", v.NetBridge("nbz0", (FIRST,), ns.state, "1" * 32))
    ns.effect(ns.host, "bridge", v.NetBridge("nbz1", (MORE,), ns.state, "2" * 32))
    assert ns.settings()[0] == "1"
    teardown(ns, "1" * 32, held=("bridge",), attachments=())
    assert "nbz0" not in ns.links() and ns.settings()[0] == "1", "nbz1 still carries a container"
    teardown(ns, "2" * 32, held=("bridge",), bridge="nbz1", attachments=())
    assert ns.links() == ["lo"] and ns.settings() == ns.before


@pytest.mark.requires("bin:nft", "bin:iptables", "bin:ip6tables")
@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_under_a_policy_a_more_bridge_reaches_neither_the_host_nor_what_is_not_allowed(ns, backend):
    container, pid = ns.container("c")
    owner = "3" * 32
    # An "upstream" namespace behind the host: 203.0.113.2 in an allowed network, .130 not.
    upstream = ns.namespace("u")
    ip("link", "add", f"nu{ns.token}", "netns", ns.host, "type", "veth", "peer", "name", "up0", "netns", upstream)
    ns.run(ns.host, "ip", "addr", "add", "203.0.113.1/24", "dev", f"nu{ns.token}")
    ns.run(ns.host, "ip", "link", "set", f"nu{ns.token}", "up")
    for address in ("203.0.113.2/24", "203.0.113.130/24"):
        ns.run(upstream, "ip", "addr", "add", address, "dev", "up0")
    ns.run(upstream, "ip", "link", "set", "up0", "up")
    ns.run(upstream, "ip", "route", "add", "default", "via", "203.0.113.1")

    first = bridged(ns, owner, pid)
    ns.effect(container, "addresses", v.NetAddress("eth0", (first,)))
    ns.effect(container, "link_up", v.NetLinkUp("eth0"))
    more = attached(ns, container, owner, pid, backend=backend)
    rules = v.NetEgress(backend, "nbz0", owner, ns.state, (first, more), ("192.0.2.1",),
                        networks=("203.0.113.0/25",), more_bridges=("nbz1",))
    ns.effect(ns.host, "egress", rules)
    # The test routes what the container sends to the upstream through its more bridge.
    ns.run(container, "ip", "route", "add", "203.0.113.0/24", "via", MORE_GATEWAY, "dev", "eth1")
    ns.serve(ns.host)
    ns.serve(upstream)
    assert ns.reach(upstream, MORE_GATEWAY) == ["reached"], "the host answers on the more bridge"

    host_targets = [MORE_GATEWAY, f"{ns.link_local(ns.host, 'nbz1')}%eth1", f"{ns.link_local(ns.host, 'nbz0')}%eth0"]
    assert ns.reach(container, *host_targets) == ["unreachable"] * 3
    assert ns.reach(container, "203.0.113.2", "203.0.113.130") == ["reached", "unreachable"]

    teardown(ns, owner, held=("bridge", "veth", "attach", "egress"), backend=backend)
    assert not {"nbz0", "nbz1"} & set(ns.links())
    assert "nucleus" not in ns.run(ns.host, "nft", "list", "ruleset").stdout.lower()
