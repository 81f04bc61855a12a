"""The egress policy: where a bridged container may connect, and the one decision every layer
that enforces it asks (the host-side proxy, the DNS resolver the sandbox's resolv.conf names).

Flags, each repeatable, all taking effect with ``--network bridge``:

- ``--egress-allow CIDR``: an IPv4 or IPv6 network (``192.0.2.10/32``, ``2001:db8::/48``; a bare
  address is its own /32 or /128). Host bits must be zero (``10.0.0.1/8`` is refused as
  ambiguous). Giving any IPv6 network is what allows IPv6 at all: without one, no AAAA lookup is
  answered and no IPv6 address is connected to.
- ``--egress-tcp-port PORT``, ``--egress-udp-port PORT``: a port or a range ``FIRST-LAST``. With
  no port flag at all, every port of an allowed destination is open; once any port flag is given
  the ports are an allowlist for both protocols (``--egress-tcp-port 5432`` alone opens TCP 5432
  and no UDP port). They apply to names reached through the proxy too.
- ``--egress-domain NAME``: a host name (``pkgs.example.org``: that name only) or a wildcard
  ``*.example.org``, which matches every name *below* example.org at any depth
  (``a.example.org``, ``a.b.example.org``) but never example.org itself: give both to allow
  both. ``*`` is allowed only as the whole first label. Names compare case-insensitively, with
  one trailing dot ignored; they are ASCII (an internationalised name is given in its ``xn--``
  form).

Deny by default: once any egress flag is given, only what the flags allow is reachable; in
production mode a bridged container denies everything it is not allowed even with none
(``in_force``).

Names are checked as names: a request for ``pkgs.example.org`` is allowed by the domain rule, and
only then resolved; the addresses it resolves to are checked again (``decide_address``). An
address outside the public internet (loopback, link-local such as 169.254.169.254, private,
unique-local, multicast, reserved, documentation; see ``SPECIAL_BLOCKS``) is refused even for an
allowed name, so that a name that resolves to one (DNS rebinding) reaches nothing of the host or
its networks: only an ``--egress-allow`` network that lies inside that block allows it
(``--egress-allow 127.0.0.1/32`` does; ``--egress-allow 0.0.0.0/0`` does not). The host's own
addresses are refused unless an ``--egress-allow`` names that very address (/32 or /128).

Pure: the policy is data, the decisions are functions of it and their arguments.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import TypeAlias

from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_FLAG = "--egress-allow"
TCP_PORT_FLAG = "--egress-tcp-port"
UDP_PORT_FLAG = "--egress-udp-port"
DOMAIN_FLAG = "--egress-domain"
FLAGS = (ALLOW_FLAG, TCP_PORT_FLAG, UDP_PORT_FLAG, DOMAIN_FLAG)
PROTOCOLS = ("tcp", "udp")
NETWORK_MODE = "bridge"  # the network mode the flags take effect with (and a user-mode network's)
NETWORK_MODES = (NETWORK_MODE, "user")

MAX_NAME = 253
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_SHOWN_RULES = 4  # rules a refusal lists before "and N more"

# Address blocks outside the public internet, with what a user reads for each. IPv4-mapped IPv6
# addresses are taken as the IPv4 address they carry; the IPv6 forms that embed an IPv4 address
# (NAT64, 6to4, Teredo) are blocks of their own. ``ipaddress``'s ``is_global`` catches the rest.
SPECIAL_BLOCKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (cloud metadata services live there)"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "the loopback address"),
    ("::/96", "an IPv4-compatible (deprecated) address"),
    ("64:ff9b::/96", "a NAT64 address"),
    ("64:ff9b:1::/48", "a NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo address"),
    ("2001:db8::/32", "a documentation address"),
    ("2002::/16", "a 6to4 address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local (deprecated) address"),
    ("ff00::/8", "a multicast address"),
)
_SPECIAL = tuple((ipaddress.ip_network(net), label) for net, label in SPECIAL_BLOCKS)


# --- names ----------------------------------------------------------------------------------------


def normal_name(text: str) -> str | None:
    """``text`` as a host name compares (lower case, one trailing dot dropped), or None when it
    is not one: ASCII labels of letters, digits, '-' and '_' (not at either end of a label), at
    most 63 characters each and 253 in all, the last not all digits (that is an address's form,
    such as ``127.1``)."""
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > MAX_NAME or not name.isascii():
        return None
    name = name.lower()
    labels = name.split(".")
    if not all(_LABEL_RE.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return None
    return name


def parse_address(text: str) -> Address | None:
    """A literal address (``192.0.2.1``, ``2001:db8::1``, ``[2001:db8::1]``), IPv4-mapped IPv6
    taken as IPv4; None for anything else (a name, an address with a zone)."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return plain(address)


def plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address as the IPv4 address it is on the wire."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@frozen
class Domain:
    """One ``--egress-domain`` rule: ``base`` (a normal name) and whether it is ``*.base``."""

    base: str
    wildcard: bool = False

    def __str__(self) -> str:
        return f"*.{self.base}" if self.wildcard else self.base

    def matches(self, name: str) -> bool:
        """Whether the normal name ``name`` is this rule's: the base itself for a plain rule;
        a name below the base (never the base) for a wildcard."""
        if self.wildcard:
            return name.endswith("." + self.base)
        return name == self.base


def parse_domain(text: str) -> Domain:
    """An ``--egress-domain`` value; InvalidInput naming the flag and value."""
    wildcard = text.startswith("*.")
    rest = text[2:] if wildcard else text
    if "*" in rest:
        raise InvalidInput(f"{DOMAIN_FLAG} {text!r}: '*' is allowed only as the whole first label",
                           hint=f"write {DOMAIN_FLAG} '*.example.org' for every name below "
                                f"example.org, and {DOMAIN_FLAG} example.org for the name itself")
    base = normal_name(rest)
    if base is None:
        hint = ("give an internationalised name in its xn-- (punycode) form" if not rest.isascii()
                else "use an address with --egress-allow" if parse_address(rest) is not None
                else "a host name is dot-separated labels of letters, digits, '-' and '_'")
        raise InvalidInput(f"{DOMAIN_FLAG} {text!r}: not a host name", hint=hint)
    return Domain(base, wildcard)


# --- networks and ports ---------------------------------------------------------------------------


@frozen
class Ports:
    """One port flag's value: the ports FIRST to LAST."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last


def parse_ports(text: str, flag: str) -> Ports:
    match = _PORT_RE.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"{flag} {text!r}: not a port or a range FIRST-LAST",
                           hint=f"for example {flag} 443 or {flag} 8000-8100")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if not 1 <= first <= last <= 65535:
        raise InvalidInput(f"{flag} {text!r}: ports are 1-65535, the first of a range not above the last")
    return Ports(first, last)


def parse_network(text: str) -> Network:
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        hint = (f"the address bits beyond the prefix must be zero: {ipaddress.ip_network(text.strip(), strict=False)}"
                if "host bits set" in str(e) else "give an address or a network, e.g. 192.0.2.0/24 or 2001:db8::/32")
        raise InvalidInput(f"{ALLOW_FLAG} {text!r}: not an IPv4 or IPv6 network", hint=hint) from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        raise InvalidInput(f"{ALLOW_FLAG} {text!r}: an IPv4-mapped IPv6 network",
                           hint="give the IPv4 network itself")
    return network


# --- the policy -----------------------------------------------------------------------------------


@frozen
class EgressPolicy:
    """What a bridged container may reach: ``networks`` in their normal text (``192.0.2.0/24``;
    plain data, as a run's record and trace carry it), the domain rules, the ports.
    ``any_port``: no port flag was given, so every port of an allowed destination is open; else
    ``tcp_ports`` and ``udp_ports`` are the only ones."""

    networks: tuple[str, ...] = ()
    domains: tuple[Domain, ...] = ()
    tcp_ports: tuple[Ports, ...] = ()
    udp_ports: tuple[Ports, ...] = ()
    any_port: bool = True

    @functools.cached_property
    def nets(self) -> tuple[Network, ...]:
        """The networks, as ``ipaddress`` networks."""
        return tuple(ipaddress.ip_network(n) for n in self.networks)

    @property
    def ipv6(self) -> bool:
        """Whether IPv6 is allowed at all: some --egress-allow network is IPv6."""
        return any(n.version == 6 for n in self.nets)

    def given(self) -> tuple[str, str] | None:
        """The first flag and value this policy was made from (for a message), or None for the
        empty policy (production's deny-all)."""
        for flag, values in ((ALLOW_FLAG, self.networks), (DOMAIN_FLAG, self.domains),
                             (TCP_PORT_FLAG, self.tcp_ports), (UDP_PORT_FLAG, self.udp_ports)):
            if values:
                return flag, str(values[0])
        return None


def parse(allow: tuple[str, ...] = (), tcp_ports: tuple[str, ...] = (), udp_ports: tuple[str, ...] = (),
          domains: tuple[str, ...] = ()) -> EgressPolicy | None:
    """The policy of the egress flags as given; None when none was given. Duplicates are
    dropped; InvalidInput names the flag and value of the first bad one."""
    if not (allow or tcp_ports or udp_ports or domains):
        return None
    policy = EgressPolicy(
        networks=tuple(dict.fromkeys(str(parse_network(t)) for t in allow)),
        domains=tuple(dict.fromkeys(parse_domain(t) for t in domains)),
        tcp_ports=tuple(dict.fromkeys(parse_ports(t, TCP_PORT_FLAG) for t in tcp_ports)),
        udp_ports=tuple(dict.fromkeys(parse_ports(t, UDP_PORT_FLAG) for t in udp_ports)),
        any_port=not (tcp_ports or udp_ports))
    if not (policy.networks or policy.domains):
        flag, value = policy.given() or ("", "")
        raise InvalidInput(f"{flag} {value!r}: opens a port to nowhere",
                           hint=f"name what may be reached with {ALLOW_FLAG} CIDR or {DOMAIN_FLAG} NAME")
    return policy


def network_problem(policy: EgressPolicy | None, network: str) -> tuple[str, str] | None:
    """(message, hint) when egress flags are given to a run whose network mode is neither the
    bridge nor a user-mode network (they would do nothing: with ``none`` there is no egress at all, with ``host`` no
    proxy stands between the workload and the host's network); None when they may be."""
    given = policy.given() if policy is not None else None
    if given is None or network in NETWORK_MODES:
        return None
    flag, value = given
    return (f"{flag} {value!r}: egress rules take effect only with --network {NETWORK_MODE} or user (this run "
            f"has --network {network})",
            f"add --network {NETWORK_MODE} (--network user without root), or drop the --egress-* flags")


# Capabilities that would let a user-mode network's workload get around the egress rules of its
# own network namespace: NET_ADMIN changes or removes them; NET_RAW sends packet-socket frames,
# which no nftables hook sees.
BYPASSING_CAPABILITIES = ("CAP_NET_ADMIN", "CAP_NET_RAW")


def caps_problem(policy: EgressPolicy | None, network: str, kept: tuple[str, ...], caps: str,
                 rootless: bool = False) -> tuple[str, str] | None:
    """(message, hint) when a user-mode network's egress rules, which live in the workload's
    own network namespace, would be the workload's to undo: the capability policy (``caps``,
    its flag and file) keeps one of BYPASSING_CAPABILITIES (``kept``: normal names,
    ``CAP_NET_ADMIN``). ``policy``: the policy in force (``in_force``)."""
    bypass = [c for c in BYPASSING_CAPABILITIES if c in kept]
    if policy is None or network != "user" or not bypass:
        return None
    given = policy.given()
    egress = f"{given[0]} {given[1]!r}" if given is not None else "production's deny-all egress"
    where = "--rootless --network user" if rootless else "--network user"
    return (f"{caps} keeps {', '.join(bypass)}, with which the workload could undo {egress}: with {where} "
            "the egress rules live in the workload's own network namespace",
            f"drop {', '.join(bypass)} from {caps}, or use --network {NETWORK_MODE} (as root), whose rules "
            "are the host's")


def in_force(policy: EgressPolicy | None, production: bool) -> EgressPolicy | None:
    """The policy a bridged container's egress obeys: the flags' policy; production's deny-all
    when there are none; None (unrestricted) for another mode without flags."""
    if policy is not None:
        return policy
    return EgressPolicy() if production else None


# --- decisions ------------------------------------------------------------------------------------


@frozen
class Verdict:
    """A decision: allowed or not, the rule that decided (a sentence naming the flag and value),
    and for a refusal a hint that says which flag would allow it."""

    allowed: bool
    rule: str
    hint: str = ""


def _listed(values: tuple[object, ...]) -> str:
    shown = ", ".join(repr(str(v)) if not isinstance(v, Ports) else str(v) for v in values[:_SHOWN_RULES])
    more = len(values) - _SHOWN_RULES
    return shown + (f" and {more} more" if more > 0 else "") if values else "none"


def _nothing(policy: EgressPolicy) -> Verdict | None:
    if policy.networks or policy.domains:
        return None
    return Verdict(False, "production mode denies all egress by default",
                   f"allow what the service needs with {DOMAIN_FLAG} NAME or {ALLOW_FLAG} CIDR")


def _port(policy: EgressPolicy, port: int, protocol: str) -> Verdict | None:
    """A refusal when ``port`` is closed for ``protocol``; None when it is open."""
    if policy.any_port:
        return None
    flag, ports = (TCP_PORT_FLAG, policy.tcp_ports) if protocol == "tcp" else (UDP_PORT_FLAG, policy.udp_ports)
    if any(port in p for p in ports):
        return None
    return Verdict(False, f"{protocol.upper()} port {port} is not among {flag} ({_listed(ports)})",
                   f"add {flag} {port}")


def special_block(address: Address) -> tuple[Network, str] | None:
    """The block outside the public internet that ``address`` lies in, with its description;
    None for a global address."""
    address = plain(address)
    for network, label in _SPECIAL:
        if address.version == network.version and address in network:
            return network, label
    if not address.is_global:
        return ipaddress.ip_network(address), "an address outside the public internet"
    return None


def decide_address(policy: EgressPolicy, address: Address, port: int, protocol: str = "tcp",
                   host_addresses: frozenset[Address] = frozenset(), name: str | None = None) -> Verdict:
    """Whether ``address`` may be connected to on ``port``: given literally (``name`` None), or
    as what the allowed ``name`` resolved to. ``host_addresses``: the host's own addresses."""
    address = plain(address)
    refused = _nothing(policy) or _port(policy, port, protocol)
    if refused is not None:
        return refused
    what = f"{name!r} resolved to {address}" if name is not None else str(address)
    covering = [n for n in policy.nets if n.version == address.version and address in n]
    exact = ipaddress.ip_network(address)
    if address in {plain(a) for a in host_addresses}:
        if exact in covering:
            return Verdict(True, f"{ALLOW_FLAG} {exact}")
        return Verdict(False, f"{what}, an address of the host: only {ALLOW_FLAG} {exact} reaches it",
                       f"add {ALLOW_FLAG} {exact} if the sandbox may reach the host there")
    special = special_block(address)
    if special is not None:
        block, label = special
        inside = [n for n in covering if n.subnet_of(block)]  # type: ignore[arg-type]
        if inside:
            return Verdict(True, f"{ALLOW_FLAG} {inside[0]}")
        return Verdict(False, f"{what}, {label}: only an {ALLOW_FLAG} network inside {block} reaches it",
                       f"add {ALLOW_FLAG} {exact} if the sandbox may reach it")
    if address.version == 6 and not policy.ipv6:
        return Verdict(False, f"{what}: IPv6 is denied (no {ALLOW_FLAG} network is IPv6)",
                       f"add {ALLOW_FLAG} {exact}" if name is None else
                       f"add an IPv6 {ALLOW_FLAG} network (::/0 for every global address) to allow IPv6")
    if name is not None:
        return Verdict(True, "the name's domain rule")
    if covering:
        return Verdict(True, f"{ALLOW_FLAG} {covering[0]}")
    return Verdict(False, f"{address} is in no {ALLOW_FLAG} network ({_listed(policy.networks)})",
                   f"add {ALLOW_FLAG} {exact}, or reach the host by name with {DOMAIN_FLAG}")


def decide_dropped(policy: EgressPolicy, address: Address, port: int, protocol: str,
                   host_addresses: frozenset[Address] = frozenset()) -> Verdict:
    """The rule by which the firewall dropped a packet the sandbox sent to ``address`` on
    ``port`` over ``protocol`` (the container's egress rules follow ``decide_address``; what
    they drop beyond it is the host's, which the sandbox reaches only at its proxy and
    resolver)."""
    verdict = decide_address(policy, address, port, protocol, host_addresses)
    if not verdict.allowed:
        return verdict
    return Verdict(False, f"{plain(address)} is reached from the sandbox only at its proxy and resolver",
                   f"reach it through the proxy (HTTP_PROXY) with {DOMAIN_FLAG} or {ALLOW_FLAG}")


def decide_name(policy: EgressPolicy, name: str) -> Verdict:
    """Whether the host name ``name`` may be looked up and connected to (on an open port): a
    name an ``--egress-domain`` rule matches."""
    normal = normal_name(name)
    refused = _nothing(policy)
    if refused is not None:
        return refused
    if normal is None:
        return Verdict(False, f"{name!r} is not a host name", "name the host by a name or an address")
    for domain in policy.domains:
        if domain.matches(normal):
            return Verdict(True, f"{DOMAIN_FLAG} {str(domain)!r}")
    wider = [str(d) for d in policy.domains if normal.endswith("." + d.base) and not d.wildcard]
    hint = (f"add {DOMAIN_FLAG} {normal}" + (f" (or {DOMAIN_FLAG} '*.{wider[0]}' for every name below "
                                             f"{wider[0]})" if wider else ""))
    return Verdict(False, f"{normal!r} matches no {DOMAIN_FLAG} rule ({_listed(policy.domains)})", hint)


def decide(policy: EgressPolicy, host: str, port: int, protocol: str = "tcp",
           host_addresses: frozenset[Address] = frozenset()) -> Verdict:
    """The decision for a connection to ``host`` (a name or a literal address) on ``port`` over
    ``protocol``, before any name is resolved. A name is checked as a name (its addresses are
    checked by ``decide_address`` once resolved); names are reached through the proxy, over TCP."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    address = parse_address(host)
    if address is not None:
        return decide_address(policy, address, port, protocol, host_addresses)
    verdict = decide_name(policy, host)
    if not verdict.allowed:
        return verdict
    if protocol != "tcp":
        return Verdict(False, f"{host!r}: names are reached through the proxy, which carries TCP only",
                       f"reach the host by address with {ALLOW_FLAG} and {UDP_PORT_FLAG}")
    return _port(policy, port, protocol) or verdict


def proxy_environment(address: str, port: int) -> dict[str, str]:
    """The variables that send a sandbox's HTTP clients (pip, npm, git, curl) through the
    proxy at ``address``:``port``: HTTP_PROXY and HTTPS_PROXY (HTTPS through CONNECT), ALL_PROXY
    as SOCKS5 with names resolved by the proxy (``socks5h``: the name is what it checks), each
    in upper and lower case, and NO_PROXY for the sandbox's own loopback."""
    host = f"[{address}]" if ":" in address else address
    values = {"HTTP_PROXY": f"http://{host}:{port}", "HTTPS_PROXY": f"http://{host}:{port}",
              "ALL_PROXY": f"socks5h://{host}:{port}", "NO_PROXY": "localhost,127.0.0.1,::1"}
    return {**values, **{key.lower(): value for key, value in values.items()}}
