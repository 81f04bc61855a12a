"""The container's network, as asked for: the mode, and for a bridge its name, subnets, NAT
backend, published ports and resolvers. Validated before anything happens; pure (the host's
routes are checked against the subnets by nucleus.config.network_host, before any change).

- ``--network none`` (the default but in production with ports or egress): a network namespace
  of the container's own with only ``lo``.
- ``--network bridge``: a veth pair to the host's bridge (``--bridge-name``, default
  ``nucleus0``), an address of each of its subnets (``--subnet``, an IPv4 and an IPv6 network;
  default 10.88.0.0/16 and fd00:6e75::/64), NAT to the host's other links, and the ports
  ``-p/--publish`` forwards. The default in production once ports or egress are asked for.
- ``--network user``: a user-mode network stack (``--user-net pasta`` or ``slirp4netns``; by
  default pasta where it is installed, else slirp4netns) for a run without root (an ordinary
  user's, or ``--rootless``): an interface ``eth0`` with 10.0.2.100/24 behind the gateway
  10.0.2.2, outbound TCP and UDP through the stack's own sockets on the host (IPv4 only), the
  ports ``-p`` forwards, and the stack's DNS forwarder 10.0.2.3 (the host's resolvers) unless
  ``--dns`` names others. The host's own loopback is out of the container's reach.
- ``--network host``: the host's network namespace (agent mode only, with
  ``--allow-host-network``; refused in the strict modes and with ``--trust-level untrusted``, by
  nucleus.config.mode_validation).

``--attach BRIDGE=CIDR[,CIDR]`` (repeatable, at most eight; with ``--network bridge``) gives the
container one more interface (``eth1``, ``eth2``, ...) on each named bridge, with an address of
each of its subnets: no published port and no route through it (the default route stays on ``eth0``), so
the container reaches only that network's own subnets there. Compose uses it for a service on
several networks.

``--dns ADDR`` (repeatable, at most three) is what ``/etc/resolv.conf`` inside names; without it
the file is empty: no resolver is ever chosen for the user.
"""

from __future__ import annotations

import ipaddress
import re

from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

NONE, BRIDGE, HOST, USER = "none", "bridge", "host", "user"
MODES = (NONE, BRIDGE, HOST, USER)
PASTA, SLIRP = "pasta", "slirp4netns"
USER_STACKS = ("auto", PASTA, SLIRP)
# A user-mode network's fixed addresses (slirp4netns's defaults; pasta is told the same): the
# container's, the gateway (the host, through the stack), the stack's DNS forwarder.
USER_SUBNET = "10.0.2.0/24"
USER_ADDRESS = "10.0.2.100/24"
USER_GATEWAY = "10.0.2.2"
USER_DNS = "10.0.2.3"
# The NFLOG group a user-mode network's egress rules log drops to: one of the container's own
# network namespace, where no other socket binds it.
USER_LOG_GROUP = 0x4E00
DEFAULT_BRIDGE = "nucleus0"
# Private ranges little used elsewhere (an overlap with a route of the host is refused).
DEFAULT_SUBNETS = ("10.88.0.0/16", "fd00:6e75::/64")
NAT_BACKENDS = ("auto", "nft", "iptables")
PROTOCOLS = ("tcp", "udp")
MAX_DNS = 3  # the resolver library reads at most three nameserver lines
MAX_ATTACHMENTS = 8  # --attach: bridges beyond the first
ATTACH_HINT = "write --attach BRIDGE=CIDR[,CIDR], e.g. --attach backend=10.89.0.0/16"
# A Linux interface name (at most 15 bytes). No '_' and no '.': the bridge's name goes into the
# names of its nftables table and iptables chains, where '-' becomes '_'.
_BRIDGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,14}")
_PUBLISH_RE = re.compile(r"(?:(?P<ip>\[[^\]]*\]|[^:\[\]]+):)?(?P<host>[^:]*):(?P<container>[^:/]*)"
                         r"(?:/(?P<proto>[^/]*))?")
PUBLISH_HINT = "write -p [IP:]HOST:CONTAINER[/tcp|udp], e.g. -p 8080:80 or -p 127.0.0.1:8080:80/tcp"

Port = tuple[str, str, int, int]  # (protocol, host address or "", host port, container port)
Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


@frozen
class Attachment:
    """One more bridge of a bridged container (--attach): its name and subnets."""

    bridge: str
    subnets: tuple[str, ...]


@frozen
class Bridge:
    """What a bridged run asked of its bridge; flags not given are None or empty (their
    defaults apply: `name`, `networks`)."""

    bridge_name: str | None = None
    subnets: tuple[str, ...] = ()
    nat_backend: str | None = None
    publish: tuple[Port, ...] = ()
    user_net: str | None = None  # --user-net, for --network user
    attach: tuple[str, ...] = ()  # --attach's texts, as given
    attachments: tuple[Attachment, ...] = ()  # and parsed

    @property
    def name(self) -> str:
        return self.bridge_name or DEFAULT_BRIDGE

    @property
    def networks(self) -> tuple[str, ...]:
        return self.subnets or DEFAULT_SUBNETS


def default_mode(service_mode: str, publish: tuple[Port, ...], egress: object) -> str:
    """The mode when --network is not given: a bridge for a production service that asks for
    ports or egress, else none."""
    return BRIDGE if service_mode == "production" and (publish or egress is not None) else NONE


def _port(text: str, what: str, raw: str) -> int:
    if not text.isdigit():
        raise InvalidInput(f"--publish {raw!r}: the {what} port {text!r} is not a number", hint=PUBLISH_HINT)
    number = int(text)
    if not 1 <= number <= 65535:
        raise InvalidInput(f"--publish {raw!r}: the {what} port {number} is out of range (1-65535)",
                           hint=PUBLISH_HINT)
    return number


def parse_publish(raw: str) -> Port:
    """`[IP:]HOST:CONTAINER[/tcp|udp]` (an IPv6 address in brackets: `[::1]:8080:80`)."""
    m = _PUBLISH_RE.fullmatch(raw.strip())
    if m is None:
        raise InvalidInput(f"--publish {raw!r}: expected [IP:]HOST:CONTAINER[/tcp|udp]", hint=PUBLISH_HINT)
    proto = (m.group("proto") or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidInput(f"--publish {raw!r}: unknown protocol {m.group('proto')!r} (tcp or udp)",
                           hint=PUBLISH_HINT)
    address = ""
    if m.group("ip") is not None:
        text = m.group("ip").strip("[]")
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidInput(f"--publish {raw!r}: {text!r} is not an IP address", hint=PUBLISH_HINT) from None
        if ip.is_multicast:
            raise InvalidInput(f"--publish {raw!r}: {text!r} is not an address of this host",
                               hint="name one of the host's addresses, or leave the address out")
        if ip.version == 6 and ip.is_loopback:
            raise InvalidInput(f"--publish {raw!r}: IPv6's loopback cannot be forwarded to a container",
                               hint="use 127.0.0.1, or an address of the host")
        address = "" if ip.is_unspecified else str(ip)
    return proto, address, _port(m.group("host"), "host", raw), _port(m.group("container"), "container", raw)


def parse_subnet(text: str, where: str = "") -> Subnet:
    """A bridge's network; errors start with `where` (default: --subnet and the text)."""
    where = where or f"--subnet {text!r}"
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        hint = (f"the address bits beyond the prefix must be zero: {ipaddress.ip_network(text.strip(), strict=False)}"
                if "host bits set" in str(e) else "give a network, e.g. 10.89.0.0/16 or fd00:1::/64")
        raise InvalidInput(f"{where}: not an IPv4 or IPv6 network", hint=hint) from None
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified or net.is_reserved:
        raise InvalidInput(f"{where}: a loopback, multicast, link-local or reserved network",
                           hint="use a private range, e.g. 10.89.0.0/16 or fd00:1::/64")
    low, high = (8, 30) if net.version == 4 else (48, 124)
    if not low <= net.prefixlen <= high:
        raise InvalidInput(f"{where}: the prefix length must be between {low} and {high}",
                           hint="the bridge takes the first address; each container one more")
    return net


def parse_attach(raw: str) -> Attachment:
    """`BRIDGE=CIDR[,CIDR]`: one more bridge and its subnets (one of each family at most)."""
    flag = f"--attach {raw!r}"
    name, sep, nets = raw.partition("=")
    if not sep or not nets.strip():
        raise InvalidInput(f"{flag}: expected BRIDGE=CIDR[,CIDR]", hint=ATTACH_HINT)
    if not _BRIDGE_RE.fullmatch(name):
        raise InvalidInput(f"{flag}: {name!r} is not a bridge name nucleus uses",
                           hint="1-15 letters, digits and '-', starting with a letter")
    subnets = tuple(parse_subnet(text, f"{flag}: subnet {text!r}") for text in nets.split(","))
    twice = _twice_in_a_family(subnets)
    if twice:
        raise InvalidInput(f"{flag}: one IPv{twice[0].version} subnet only ({str(twice[0])!r} and "
                           f"{str(twice[1])!r})", hint=ATTACH_HINT)
    return Attachment(name, tuple(str(n) for n in subnets))


def _twice_in_a_family(nets: tuple[Subnet, ...] | list[Subnet]) -> tuple[Subnet, Subnet] | None:
    """The first two of `nets` of one address family, if any: a bridge has one of each."""
    for version in (4, 6):
        same = [n for n in nets if n.version == version]
        if len(same) > 1:
            return same[0], same[1]
    return None


def parse_dns(text: str) -> str:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidInput(f"--dns {text!r}: not an IP address",
                           hint="give a resolver's address, e.g. --dns 192.0.2.53 (names are not resolved for it)") from None
    if ip.is_unspecified or ip.is_multicast:
        raise InvalidInput(f"--dns {text!r}: not a resolver's address")
    return str(ip)


def parse(mode: str | None, bridge: Bridge, dns: tuple[str, ...], service_mode: str,
          egress: object) -> tuple[str, Bridge, tuple[str, ...]]:
    """The network mode (the default where --network is not given), the bridge and the
    resolvers of `nucleus run`'s flags, validated; `bridge.publish` holds -p's texts here, parsed
    on the way. InvalidInput names the flag and value."""
    ports = tuple(parse_publish(str(p)) for p in bridge.publish)
    chosen = mode or default_mode(service_mode, ports, egress)
    resolvers = tuple(dict.fromkeys(parse_dns(d) for d in dns))
    attachments = tuple(parse_attach(str(a)) for a in bridge.attach)
    parsed = Bridge(bridge.bridge_name, tuple(bridge.subnets), bridge.nat_backend, ports, bridge.user_net,
                    bridge.attach, attachments)
    validate(chosen, parsed, resolvers)
    return chosen, parsed, resolvers


def validate(mode: str, spec: Bridge, dns: tuple[str, ...]) -> None:
    if mode not in MODES:
        raise InvalidInput(f"--network {mode!r}: expected one of {', '.join(MODES)}")
    if mode != BRIDGE:
        for flag, value in (("--bridge-name", spec.bridge_name),
                            ("--subnet", spec.subnets[0] if spec.subnets else None),
                            ("--nat-backend", spec.nat_backend),
                            ("--publish", None if mode == USER else _shown(spec.publish)),
                            ("--attach", spec.attach[0] if spec.attach else None)):
            if value is not None:
                raise InvalidInput(f"{flag} {value!r}: only with --network bridge (this run has --network "
                                   f"{mode})", hint="add --network bridge")
    if spec.user_net is not None and mode != USER:
        raise InvalidInput(f"--user-net {spec.user_net!r}: only with --network user (this run has --network "
                           f"{mode})", hint="add --network user")
    if spec.user_net is not None and spec.user_net not in USER_STACKS:
        raise InvalidInput(f"--user-net {spec.user_net!r}: expected one of {', '.join(USER_STACKS)}")
    if mode == USER:
        for port in spec.publish:
            if port[1] and ipaddress.ip_address(port[1]).version != 4:
                raise InvalidInput(f"--publish {publish_text(port)!r}: --network user forwards IPv4 only",
                                   hint="name an IPv4 address of the host, or leave the address out")
    if dns and mode == NONE:
        raise InvalidInput(f"--dns {dns[0]!r}: the container has no network (--network none)",
                           hint="add --network bridge, or drop --dns")
    if len(dns) > MAX_DNS:
        raise InvalidInput(f"--dns {dns[MAX_DNS]!r}: at most {MAX_DNS} resolvers",
                           hint="the resolver library reads only the first three")
    if spec.bridge_name is not None and not _BRIDGE_RE.fullmatch(spec.bridge_name):
        raise InvalidInput(f"--bridge-name {spec.bridge_name!r}: not a bridge name nucleus uses",
                           hint="1-15 letters, digits and '-', starting with a letter")
    if spec.nat_backend is not None and spec.nat_backend not in NAT_BACKENDS:
        raise InvalidInput(f"--nat-backend {spec.nat_backend!r}: expected one of {', '.join(NAT_BACKENDS)}")
    nets = [parse_subnet(s) for s in spec.networks]
    twice = _twice_in_a_family(nets)
    if twice:
        raise InvalidInput(f"--subnet {str(twice[1])!r}: one IPv{twice[0].version} subnet only "
                           f"(also {str(twice[0])!r})")
    _check_attachments(spec, nets)
    seen: dict[tuple[str, str, int], str] = {}
    for proto, address, host, _ in spec.publish:
        key = (proto, address, host)
        if key in seen or (proto, "", host) in seen or (address == "" and any(
                k[0] == proto and k[2] == host for k in seen)):
            raise InvalidInput(f"--publish: host port {host}/{proto} is published twice",
                               hint="each host port forwards to one container port")
        seen[key] = address
        if address and not any(ipaddress.ip_address(address).version == n.version for n in nets):
            raise InvalidInput(f"--publish {_shown((spec.publish[len(seen) - 1],))!r}: the bridge has no "
                               f"IPv{ipaddress.ip_address(address).version} subnet to forward to",
                               hint="add a --subnet of that family")


def publish_text(port: Port) -> str:
    """A published port as -p takes it ("127.0.0.1:8080:80/tcp", "[2001:db8::1]:53:53/udp")."""
    proto, address, host, container = port
    where = (f"[{address}]:" if ":" in address else f"{address}:") if address else ""
    return f"{where}{host}:{container}/{proto}"


def _shown(ports: tuple[Port, ...]) -> str | None:
    """The first published port as it would be written (None for none)."""
    return publish_text(ports[0]) if ports else None


def nft_name(bridge: str) -> str:
    """The bridge's name as it goes into an nftables or iptables name ('-' is not allowed in
    nftables identifiers; '_' is not allowed in bridge names, so no two bridges share one)."""
    return bridge.replace("-", "_")


def allocate(subnets: tuple[str, ...], taken: set[str]) -> tuple[str, ...]:
    """The lowest address of each subnet that is neither its network address, the bridge's
    (the first host), its broadcast address nor `taken`, with the subnet's prefix length
    ("10.88.0.2/16"). Walks the real prefix, whatever its length. ValueError when one is full."""
    out = []
    for subnet in subnets:
        net = ipaddress.ip_network(subnet)
        first = int(net.network_address) + 2  # past the network address and the bridge's
        last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
        for number in range(first, last + 1):
            address = str(ipaddress.ip_address(number))
            if address not in taken:
                out.append(f"{address}/{net.prefixlen}")
                break
        else:
            raise ValueError(f"the subnet {subnet} has no free address left")
    return tuple(out)


def _check_attachments(spec: Bridge, nets: list[Subnet]) -> None:
    """At most MAX_ATTACHMENTS, each on a bridge of its own (not the first), no subnet overlapping
    another of the container's."""
    if len(spec.attachments) > MAX_ATTACHMENTS:
        raise InvalidInput(f"--attach {spec.attach[MAX_ATTACHMENTS]!r}: at most {MAX_ATTACHMENTS} more bridges",
                           hint="a container has its first bridge's interface and at most 8 more")
    bridges = {spec.name: "the first bridge (--bridge-name)"}
    taken = [(n, f"the first bridge's {n}") for n in nets]
    for raw, attachment in zip(spec.attach, spec.attachments, strict=True):
        if attachment.bridge in bridges:
            raise InvalidInput(f"--attach {raw!r}: {attachment.bridge} is already {bridges[attachment.bridge]}",
                               hint="each bridge once: a container has one interface on a bridge")
        bridges[attachment.bridge] = f"attached by --attach {raw!r}"
        for text in attachment.subnets:
            net = ipaddress.ip_network(text)
            for other, whose in taken:
                if net.overlaps(other):
                    raise InvalidInput(f"--attach {raw!r}: {text} overlaps {whose}",
                                       hint="each network of a container needs a subnet of its own")
            taken.append((net, f"{text} of --attach {raw!r}"))
