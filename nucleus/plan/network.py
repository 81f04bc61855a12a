"""The container's network as a plan: the network machine's initial state (the intents of its
steps) from the configuration, the host facts and the container's id, and what its record keeps
so that `rm --force` can tear it down again. Pure.

The names on the host are the container's: its veth is `nc<id[:12]>` (the peer is created as
`np<id[:12]>` and renamed `eth0` inside), its rules are marked with its id. With an egress
policy (the --egress-* flags; production's deny-all without them, nucleus.config.egress.in_force)
the host side gains the policy's rules and its proxy, and inside the container the gateway is
its resolver and its proxy (at PROXY_PORT): the proxy's variables are part of its environment
(`proxy_environment`). What this host
cannot do as asked (a subnet that overlaps a route the host has, a bridge asked of an ordinary
user, a NAT tool that is missing) is refused here, before anything changes.

A user-mode network (--network user) is a run without root's: its stack (pasta or slirp4netns)
is started by the supervisor for the container's namespace and recorded in the state
directory's `network/user-<id[:12]>.json`. With an egress policy its egress process listens on
the host's loopback, which the stack lets the container reach at the gateway (and nothing
else there: the rules inside, made by the setup process, allow only the proxy's and the
resolver's ports of it, and the policy's networks). Without one, the host's loopback is out of
the container's reach.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from nucleus import vocab as v
from nucleus.config import egress as egress_rules
from nucleus.config import network as rules
from nucleus.config import violations
from nucleus.config.container import ContainerConfig
from nucleus.errors import HostUnsupported, InvalidInput
from nucleus.facts import HostFacts
from nucleus.frozen import frozen
from nucleus.machines import network
from nucleus.plan import parameters

INSIDE = "eth0"
# Inside the container's own network namespace: its workload may serve on ports below 1024
# (it holds no capability), as a published port usually asks; and the namespace routes nothing
# between its interfaces (a new namespace may copy the host's forwarding, which a bridge turns
# on): a container on two bridges is no router from one network to the other. Without IPv6 in
# the kernel its setting is skipped (nucleus.effects.network.link_up).
NAMESPACE_SYSCTLS = (("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"),
                     ("/proc/sys/net/ipv4/ip_forward", "0"),
                     ("/proc/sys/net/ipv6/conf/all/forwarding", "0"))


def link_sysctls(link: str) -> tuple[tuple[str, str], ...]:
    """An interface of the container's own settings, written before it comes up: no router
    advertisement is taken (no address of a prefix someone announces on the bridge, which the
    egress rules would not know, and no default route through another interface than eth0)."""
    return ((f"/proc/sys/net/ipv6/conf/{link}/accept_ra", "0"), (f"/proc/sys/net/ipv6/conf/{link}/autoconf", "0"))
# The port of the gateway the container's proxy variables name: its traffic there is forwarded
# to the port leased for its own proxy (nucleus.effects.egress_rules), as port 53 is to its
# resolver's.
PROXY_PORT = 3128
DNS_PORT = 53
LOOPBACK = "127.0.0.1"  # where a user-mode network's egress process listens, on the host


@frozen
class NetworkPlan:
    """What the run's network is: `mode`, and for a bridge its name, subnets, gateways, NAT
    backend and published ports. `egress`: the policy its rules and proxy enforce (None: none,
    egress is what the host's NAT reaches); `upstream`: the resolver the proxy asks (--dns; ""
    for the host's)."""

    mode: str = rules.NONE
    bridge: str = ""
    subnets: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    backend: str = ""
    ports: tuple[v.Port, ...] = ()
    egress: egress_rules.EgressPolicy | None = None
    upstream: str = ""
    # --network user: the stack ("pasta" or "slirp4netns"), its program, and nft's for the rules.
    stack: str = ""
    program: str = ""
    nft: str = ""
    # --attach: the container's more bridges, each with its subnets (an interface eth1, eth2, ...).
    attachments: tuple[rules.Attachment, ...] = ()

    @property
    def proxy(self) -> str:
        """The gateway the container's resolv.conf and proxy variables name ("" without a
        policy): the IPv4 one where the bridge has one."""
        if self.egress is None or not self.gateways:
            return ""
        return sorted(self.gateways, key=lambda g: ":" in g)[0]

    def environment(self) -> dict[str, str]:
        """The proxy's variables, upper and lower case (none without a policy)."""
        return egress_rules.proxy_environment(self.proxy, PROXY_PORT) if self.proxy else {}

    def resolvers(self, asked: tuple[str, ...]) -> tuple[str, ...]:
        """What /etc/resolv.conf inside names: the proxy's gateway (its resolver) with a policy,
        else --dns's; a user-mode network's DNS forwarder (the host's resolvers) without them."""
        if self.proxy:
            return (self.proxy,)
        return asked or ((rules.USER_DNS,) if self.mode == rules.USER else ())


def veth_names(cid: str, attachment: int = 0) -> tuple[str, str]:
    """The container's veth pair as the host names it: (host side, peer before its move); of its
    `attachment`-th more bridge with a digit after (15 bytes: never another container's first)."""
    suffix = str(attachment) if attachment else ""
    return f"nc{cid[:12]}{suffix}", f"np{cid[:12]}{suffix}"


def gateway(subnet: str) -> str:
    """The bridge's own address in `subnet`: its first host address."""
    net = ipaddress.ip_network(subnet)
    return str(net.network_address + 1)


def user_record(cid: str) -> str:
    """The name of a user-mode network's file in the state directory's network/ (a bridge's
    name is at most 15 characters, so never this)."""
    return f"user-{cid[:12]}"


def _user(config: ContainerConfig, facts: HostFacts) -> NetworkPlan:
    if not config.rootless and facts.euid == 0:
        raise InvalidInput("--network user: a user-mode network is for a run without root, in a user "
                           "namespace of its own (this run is root's)",
                           hint="add --rootless, or use --network bridge")
    asked = config.bridge.user_net or "auto"
    found = dict(facts.user_stacks)
    stack = next(iter(found), "") if asked == "auto" else (asked if asked in found else "")
    if not stack:
        missing = "neither pasta nor slirp4netns is" if asked == "auto" else f"{asked} is not"
        raise HostUnsupported(f"--network user: {missing} installed on this host (looked in /usr/sbin, /usr/bin, "
                              "/sbin, /bin)",
                              hint="install one (Debian: apt-get install passt, or apt-get install slirp4netns)")
    policy = egress_rules.in_force(config.egress, parameters.egress_denied(config.service_mode))
    if policy is not None and not facts.nft:
        raise HostUnsupported("--network user with an egress policy: no nft command on this host (the "
                              "policy's rules inside the container are nftables rules)",
                              hint="install nftables (Debian: apt-get install nftables)")
    return NetworkPlan(rules.USER, gateways=(rules.USER_GATEWAY,), ports=config.bridge.publish, egress=policy,
                       upstream=config.dns[0] if config.dns else "", stack=stack, program=found[stack],
                       nft=facts.nft)


def plan(config: ContainerConfig, facts: HostFacts) -> NetworkPlan:
    if config.network == rules.USER:
        return _user(config, facts)
    if config.network != rules.BRIDGE:
        return NetworkPlan(config.network)
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
    for raw, attachment in zip(bridge.attach, bridge.attachments, strict=True):
        _check_routes(attachment.subnets, attachment.bridge, facts.routes or (), True, f"--attach {raw!r}")
    policy = egress_rules.in_force(config.egress, parameters.egress_denied(config.service_mode))
    return NetworkPlan(rules.BRIDGE, bridge.name, subnets, tuple(gateway(s) for s in subnets),
                       facts.nat_backend, bridge.publish, policy, config.dns[0] if config.dns else "",
                       attachments=bridge.attachments)


def _check_routes(subnets: tuple[str, ...], bridge: str, routes: tuple[tuple[str, str], ...],
                  given: bool, flag: str = "") -> None:
    """A subnet that overlaps a route of the host (but the bridge's own) is refused; `flag`
    names where it was given (default: --subnet)."""
    for subnet in subnets:
        net = ipaddress.ip_network(subnet)
        for destination, link in routes:
            other = ipaddress.ip_network(destination)
            if link == bridge or other.version != net.version or other.prefixlen == 0:
                continue
            if net.overlaps(other):
                where = (f"{flag}: {subnet}" if flag else f"--subnet {subnet!r}" if given
                         else f"the bridge's default subnet {subnet}")
                raise InvalidInput(f"{where} overlaps the host's route to {destination} (dev {link})",
                                   hint=f"choose another network, e.g. {flag.split()[0]} BRIDGE=10.123.0.0/16"
                                   if flag else "choose another network with --subnet, e.g. --subnet 10.123.0.0/16")


def machine(net: NetworkPlan, cid: str, state_root: str, name: str = "") -> network.NetworkState:
    """The network machine's initial state: no steps without a bridge; the egress policy's
    rules and proxy with one."""
    if net.mode == rules.USER:
        return _user_machine(net, cid, state_root, name)
    if net.mode != rules.BRIDGE:
        return network.initial()
    host, peer = veth_names(cid)
    egress = proxy = None
    policy = net.egress
    if policy is not None:
        tcp, udp = _ranges(policy.tcp_ports), _ranges(policy.udp_ports)
        egress = v.NetEgress(net.backend, net.bridge, cid, state_root, (), net.gateways, PROXY_PORT,
                             policy.networks, tcp, udp, policy.any_port)
        proxy = v.NetProxy(net.bridge, cid, name or cid[:12], state_root, net.proxy, 0, 0, policy.networks,
                           tuple(str(d) for d in policy.domains), tcp, udp, policy.any_port,
                           (net.upstream, DNS_PORT), violations.stream_path(state_root, cid))
    return network.initial(
        bridge=v.NetBridge(net.bridge, net.subnets, state_root, cid),
        veth=v.NetVeth(net.bridge, host, peer, INSIDE),
        nat=v.NetNat(net.backend, net.bridge, net.subnets, (), net.ports, cid, state_root),
        gateways=net.gateways, up=v.NetLinkUp(INSIDE, NAMESPACE_SYSCTLS + link_sysctls(INSIDE)),
        teardown=teardown(net, cid, state_root), rules=egress, proxy=proxy,
        attachments=tuple(v.NetAttach(a.bridge, a.subnets, state_root, cid, *veth_names(cid, k), f"eth{k}",
                                      net.backend, link_sysctls(f"eth{k}"))
                          for k, a in enumerate(net.attachments, start=1)),
    )


def _user_machine(net: NetworkPlan, cid: str, state_root: str, name: str) -> network.NetworkState:
    """A user-mode stack; with a policy the egress process on the host's loopback first (the
    ports the kernel chooses: 0), then the rules inside."""
    record = user_record(cid)
    usernet = v.NetUser(net.stack, net.program, INSIDE, rules.USER_ADDRESS, rules.USER_GATEWAY, rules.USER_DNS,
                        net.ports, net.egress is not None, cid, record, state_root)
    proxy = filter_ = None
    policy = net.egress
    if policy is not None:
        tcp, udp = _ranges(policy.tcp_ports), _ranges(policy.udp_ports)
        proxy = v.NetProxy(record, cid, name or cid[:12], state_root, LOOPBACK, 0, 0, policy.networks,
                           tuple(str(d) for d in policy.domains), tcp, udp, policy.any_port,
                           (net.upstream, DNS_PORT), violations.stream_path(state_root, cid),
                           rules.USER_LOG_GROUP)
        filter_ = v.NetFilter(net.nft, rules.USER_GATEWAY, rules.USER_SUBNET, PROXY_PORT, 0, 0, policy.networks,
                              tcp, udp, policy.any_port, rules.USER_LOG_GROUP)
    return network.initial(usernet=usernet, addresses=(rules.USER_ADDRESS,), gateways=(rules.USER_GATEWAY,),
                           up=v.NetLinkUp(INSIDE, NAMESPACE_SYSCTLS + link_sysctls(INSIDE)),
                           teardown=teardown(net, cid, state_root),
                           proxy=proxy, filter_=filter_)


def _ranges(ports: tuple[egress_rules.Ports, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((p.first, p.last) for p in ports)


def teardown(net: NetworkPlan, cid: str, state_root: str, held: tuple[str, ...] = ()) -> v.NetTeardown:
    if net.mode == rules.USER:  # the stack's and the egress process's record
        return v.NetTeardown(held, user_record(cid), "", "", (), cid, state_root)
    attached = tuple((a.bridge, veth_names(cid, k)[0]) for k, a in enumerate(net.attachments, start=1))
    return v.NetTeardown(held, net.bridge, veth_names(cid)[0], net.backend, net.ports, cid, state_root, attached)


# --- what the container's record keeps ----------------------------------------------------------


def to_record(net: NetworkPlan) -> dict[str, object]:
    doc: dict[str, object] = {"mode": net.mode, "bridge": net.bridge, "subnets": list(net.subnets),
                              "backend": net.backend, "ports": [list(p) for p in net.ports]}
    if net.mode == rules.USER:
        doc.update(bridge="", subnets=[rules.USER_SUBNET], backend="", stack=net.stack)
    if net.attachments:
        doc["attachments"] = [{"bridge": a.bridge, "subnets": list(a.subnets)} for a in net.attachments]
    if net.egress is not None:
        doc["egress"] = egress_record(net.egress)
        doc["proxy"] = f"{net.proxy}:{PROXY_PORT}" if ":" not in net.proxy else f"[{net.proxy}]:{PROXY_PORT}"
    return doc


def egress_record(policy: egress_rules.EgressPolicy) -> dict[str, object]:
    """The policy as its flags give it: what `nucleus inspect` shows."""
    return {"allow": list(policy.networks), "domain": [str(d) for d in policy.domains],
            "tcp_port": [str(p) for p in policy.tcp_ports], "udp_port": [str(p) for p in policy.udp_ports]}


def _egress_from_record(data: object) -> egress_rules.EgressPolicy | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("the egress policy is not an object")
    values = [data.get(k, []) for k in ("allow", "tcp_port", "udp_port", "domain")]
    if not all(isinstance(x, list) and all(isinstance(t, str) for t in x) for x in values):
        raise ValueError("the egress policy's rules are not lists of strings")
    try:
        return egress_rules.parse(*(tuple(x) for x in values)) or egress_rules.EgressPolicy()
    except InvalidInput as e:
        raise ValueError(e.message) from None


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
    if mode == rules.USER:
        return _user_from_record(data)
    if mode != rules.BRIDGE:
        return NetworkPlan(str(mode))
    name, subnets, backend, ports = (data.get(k) for k in ("bridge", "subnets", "backend", "ports"))
    if not isinstance(name, str) or not isinstance(subnets, list) or not isinstance(ports, list):
        raise ValueError("the bridge's name, subnets or ports are missing")
    if backend not in rules.NAT_BACKENDS[1:]:
        raise ValueError(f"unknown NAT backend {backend!r}")
    try:
        texts = tuple(_port_text(p) for p in ports)
        attach = _attach_texts(data.get("attachments", []))
        attachments = tuple(rules.parse_attach(t) for t in attach)
        rules.validate(rules.BRIDGE, rules.Bridge(name, tuple(map(str, subnets)), None,
                                                  tuple(rules.parse_publish(t) for t in texts), None,
                                                  attach, attachments), ())
    except InvalidInput as e:
        raise ValueError(e.message) from None
    parsed = tuple(rules.parse_publish(t) for t in texts)
    nets = tuple(str(rules.parse_subnet(str(s))) for s in subnets)
    return NetworkPlan(rules.BRIDGE, name, nets, tuple(gateway(s) for s in nets), str(backend), parsed,
                       _egress_from_record(data.get("egress")), attachments=attachments)


def _attach_texts(data: object) -> tuple[str, ...]:
    """The --attach texts of a record's attachments."""
    if not isinstance(data, list) or not all(
            isinstance(a, dict) and isinstance(a.get("bridge"), str) and isinstance(a.get("subnets"), list)
            and a["subnets"] and all(isinstance(t, str) for t in a["subnets"]) for a in data):
        raise ValueError("the attachments are not a list of bridges with their subnets")
    return tuple(f"{a['bridge']}={','.join(a['subnets'])}" for a in data)


def _user_from_record(data: dict[str, Any]) -> NetworkPlan:
    stack, ports = data.get("stack"), data.get("ports")
    if stack not in rules.USER_STACKS[1:] or not isinstance(ports, list):
        raise ValueError("the user-mode network's stack or ports are missing")
    try:
        parsed = tuple(rules.parse_publish(_port_text(p)) for p in ports)
        rules.validate(rules.USER, rules.Bridge(publish=parsed), ())
    except InvalidInput as e:
        raise ValueError(e.message) from None
    return NetworkPlan(rules.USER, gateways=(rules.USER_GATEWAY,), ports=parsed,
                       egress=_egress_from_record(data.get("egress")), stack=str(stack))


def _port_text(port: object) -> str:
    if not (isinstance(port, list) and len(port) == 4 and all(isinstance(x, str) for x in port[:2])
            and all(isinstance(x, int) and not isinstance(x, bool) for x in port[2:])):
        raise ValueError(f"a published port {port!r} is not [protocol, address, host port, container port]")
    return rules.publish_text((port[0], port[1], port[2], port[3]))
