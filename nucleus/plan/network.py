"""The container's network as a plan: the network machine's initial state (the intents of its
steps) from the configuration, the host facts and the container's id, and what its record keeps
so that `rm --force` can tear it down again. Pure.

The names on the host are the container's: its veth is `nc<id[:12]>` (the peer is created as
`np<id[:12]>` and renamed `eth0` inside), its rules are marked with its id. What this host
cannot do as asked (a subnet that overlaps a route the host has, a bridge asked of an ordinary
user, a NAT tool that is missing) is refused here, before anything changes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nucleus import vocab as v
from nucleus.config import network as rules
from nucleus.config.container import ContainerConfig
from nucleus.errors import HostUnsupported, InvalidInput
from nucleus.facts import HostFacts
from nucleus.machines import network

INSIDE = "eth0"
# Inside the container's own network namespace: its workload may serve on ports below 1024
# (it holds no capability), as a published port usually asks.
NAMESPACE_SYSCTLS = (("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"),)


@dataclass(frozen=True)
class NetworkPlan:
    """What the run's network is: `mode`, and for a bridge its name, subnets, gateways, NAT
    backend and published ports. `egress`: the policy the bridge hands its proxy (None: no
    egress policy is part of a run yet)."""

    mode: str = rules.NONE
    bridge: str = ""
    subnets: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    backend: str = ""
    ports: tuple[v.Port, ...] = ()
    egress: object = None


def veth_names(cid: str) -> tuple[str, str]:
    """The container's veth pair as the host names it: (host side, peer before its move)."""
    return f"nc{cid[:12]}", f"np{cid[:12]}"


def gateway(subnet: str) -> str:
    """The bridge's own address in `subnet`: its first host address."""
    net = ipaddress.ip_network(subnet)
    return str(net.network_address + 1)


def plan(config: ContainerConfig, facts: HostFacts) -> NetworkPlan:
    if config.network != rules.BRIDGE:
        return NetworkPlan(config.network)
    if config.egress is not None:
        flag, value = config.egress.given() or ("--egress-allow", "")
        raise HostUnsupported(f"{flag} {value!r}: egress rules are not enforced by a run yet",
                              hint="drop the --egress-* flags; --network bridge reaches what the host's NAT reaches")
    if facts.euid not in (0, None):
        raise HostUnsupported("--network bridge needs root: an ordinary user cannot make the host's "
                              "bridge, veth pairs and NAT rules",
                              hint="run as root, or use --network none")
    bridge = config.bridge
    if not facts.nat_backend:
        asked = bridge.nat_backend or "auto"
        raise HostUnsupported(f"--nat-backend {asked}: no {'nft or iptables' if asked == 'auto' else asked} "
                              "command on this host",
                              hint="install nftables or iptables (Debian: apt-get install nftables)")
    subnets = tuple(str(rules.parse_subnet(s)) for s in bridge.networks)
    _check_routes(subnets, bridge.name, facts.routes or (), bool(config.bridge.subnets))
    return NetworkPlan(rules.BRIDGE, bridge.name, subnets, tuple(gateway(s) for s in subnets),
                       facts.nat_backend, bridge.publish, None)


def _check_routes(subnets: tuple[str, ...], bridge: str, routes: tuple[tuple[str, str], ...],
                  given: bool) -> None:
    """A subnet that overlaps a route of the host (but the bridge's own) is refused."""
    for subnet in subnets:
        net = ipaddress.ip_network(subnet)
        for destination, link in routes:
            other = ipaddress.ip_network(destination)
            if link == bridge or other.version != net.version or other.prefixlen == 0:
                continue
            if net.overlaps(other):
                flag = f"--subnet {subnet!r}" if given else f"the bridge's default subnet {subnet}"
                raise InvalidInput(f"{flag} overlaps the host's route to {destination} (dev {link})",
                                   hint="choose another network with --subnet, e.g. --subnet 10.123.0.0/16")


def machine(net: NetworkPlan, cid: str, state_root: str) -> network.NetworkState:
    """The network machine's initial state: no steps without a bridge."""
    if net.mode != rules.BRIDGE:
        return network.initial()
    host, peer = veth_names(cid)
    return network.initial(
        bridge=v.NetBridge(net.bridge, net.subnets, state_root, cid),
        veth=v.NetVeth(net.bridge, host, peer, INSIDE),
        nat=v.NetNat(net.backend, net.bridge, net.subnets, (), net.ports, cid, state_root),
        gateways=net.gateways, up=v.NetLinkUp(INSIDE, NAMESPACE_SYSCTLS),
        teardown=teardown(net, cid, state_root),
    )


def teardown(net: NetworkPlan, cid: str, state_root: str, held: tuple[str, ...] = ()) -> v.NetTeardown:
    return v.NetTeardown(held, net.bridge, veth_names(cid)[0], net.backend, net.ports, cid, state_root)


# --- what the container's record keeps ----------------------------------------------------------


def to_record(net: NetworkPlan) -> dict[str, object]:
    return {"mode": net.mode, "bridge": net.bridge, "subnets": list(net.subnets),
            "backend": net.backend, "ports": [list(p) for p in net.ports]}


def from_record(data: object) -> NetworkPlan:
    """The plan a record describes, checked as the flags are: a record is trusted for its shape
    only. ValueError when it is not one."""
    if data is None:
        return NetworkPlan()
    if not isinstance(data, dict):
        raise ValueError("'network' is not an object")
    mode = data.get("mode")
    if mode not in rules.MODES:
        raise ValueError(f"unknown network mode {mode!r}")
    if mode != rules.BRIDGE:
        return NetworkPlan(str(mode))
    name, subnets, backend, ports = (data.get(k) for k in ("bridge", "subnets", "backend", "ports"))
    if not isinstance(name, str) or not isinstance(subnets, list) or not isinstance(ports, list):
        raise ValueError("the bridge's name, subnets or ports are missing")
    if backend not in rules.NAT_BACKENDS[1:]:
        raise ValueError(f"unknown NAT backend {backend!r}")
    try:
        texts = tuple(_port_text(p) for p in ports)
        rules.validate(rules.BRIDGE, rules.Bridge(name, tuple(map(str, subnets)), None,
                                                  tuple(rules.parse_publish(t) for t in texts)), ())
    except InvalidInput as e:
        raise ValueError(e.message) from None
    parsed = tuple(rules.parse_publish(t) for t in texts)
    nets = tuple(str(rules.parse_subnet(str(s))) for s in subnets)
    return NetworkPlan(rules.BRIDGE, name, nets, tuple(gateway(s) for s in nets), str(backend), parsed)


def _port_text(port: object) -> str:
    if not (isinstance(port, list) and len(port) == 4 and all(isinstance(x, str) for x in port[:2])
            and all(isinstance(x, int) and not isinstance(x, bool) for x in port[2:])):
        raise ValueError(f"a published port {port!r} is not [protocol, address, host port, container port]")
    return rules.publish_text((port[0], port[1], port[2], port[3]))
