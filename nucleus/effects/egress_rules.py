"""A bridged container's egress rules, with nftables (`nft`) or iptables (`iptables`,
`ip6tables`), beside the bridge's own (nucleus.effects.nat).

They are the container's alone and carry its id: with nft a table `inet nucleus_egress_<id>`
(the first 12 characters of the id) whose base chains run just before the usual ones; with
iptables chains `NUCLEUS-E<id>-IN|FWD|PRE` jumped to from the top of INPUT, FORWARD and nat's
PREROUTING. Removing them removes the table or the chains and their jumps, nothing else.

What the container's addresses send:

- to the gateway's port 53 and to its proxy port (PROXY_PORT): rewritten (DNAT) to the ports
  leased for its own resolver and proxy on the gateway, and accepted there (INPUT);
- anything else to the host: dropped, as is what answers nothing it asked (established
  connections, such as a published port's replies, are let through);
- forwarded: only to the allowed networks, on the allowed ports (every port when no port flag
  was given), IPv6 only to IPv6 networks allowed; everything else dropped (counted);
- a TCP or UDP packet of theirs dropped, forwarded or to the host, is also logged to the NFLOG
  group leased to the container (`group`; none: counted only), at most LOG_RATE a second per
  rule (LOG_BURST at once), for its egress process to write to the violation stream
  (nucleus.effects.nflog): a flood is dropped all the same but cannot fill the stream;
- and no other sender reaches the leased ports (another container of the bridge cannot use this
  one's proxy), nor the host through an IPv6 link-local address of the bridge, nor of any bridge
  of the container's more attachments (whose addresses are the container's too: what they send
  is held to the same rules).

A drop in one base chain is final whatever the other chains say, so a host whose forward
policy is drop keeps its rules (the bridge's accept comes after, nucleus.effects.nat).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator

from nucleus import vocab as v
from nucleus.effects.nat import _run, tool
from nucleus.effects.nflog import COPY_RANGE

DNS_PORT = 53
LOG_RATE = 10  # dropped packets logged a second, per rule
LOG_BURST = 20
LINK_LOCAL6 = "fe80::/10"
Ranges = tuple[tuple[int, int], ...]


def _id(owner: str) -> str:
    return owner[:12]


def _version(address: str) -> int:
    return ipaddress.ip_interface(address).version


def _plain(address: str) -> str:
    return str(ipaddress.ip_interface(address).ip)


def _of(version: int, addresses: tuple[str, ...]) -> list[str]:
    return [_plain(a) for a in addresses if _version(a) == version]


def _bridges(op: v.NetEgress) -> tuple[str, ...]:
    """Every bridge the container is attached to: the first, then its more attachments'."""
    return (op.bridge, *op.more_bridges)


# --- nftables ---------------------------------------------------------------------------------

def _table(owner: str) -> str:
    return f"nucleus_egress_{_id(owner)}"


def _set(values: list[str]) -> str:
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def _quoted(name: str) -> str:
    return f'"{name}"'


def _nft_ports(ranges: Ranges) -> str:
    return _set([str(a) if a == b else f"{a}-{b}" for a, b in ranges])


def _nft_log(group: int | None) -> list[str]:
    """The statement logging a dropped TCP or UDP packet to `group` (none without one)."""
    if group is None:
        return []
    return [f"meta l4proto {{ tcp, udp }} limit rate {LOG_RATE}/second burst {LOG_BURST} packets "
            f"log group {group}"]


def _nft_script(op: v.NetEgress, proxy: int, dns: int, group: int | None = None) -> str:
    host_side: list[str] = []
    forward: list[str] = []
    nat: list[str] = []
    for version, ip in ((4, "ip"), (6, "ip6")):
        mine = _of(version, op.addresses)
        if not mine:
            continue
        me = f"{ip} saddr {_set(mine)}"
        for gateway in _of(version, op.gateways):
            to = gateway if version == 4 else f"[{gateway}]"
            nat += [f"{me} {ip} daddr {gateway} meta l4proto {{ tcp, udp }} th dport {DNS_PORT} "
                    f"dnat {ip} to {to}:{dns}",
                    f"{me} {ip} daddr {gateway} tcp dport {op.proxy_port} dnat {ip} to {to}:{proxy}"]
            host_side += [f"{me} {ip} daddr {gateway} tcp dport {proxy} accept",
                          f"{me} {ip} daddr {gateway} meta l4proto {{ tcp, udp }} th dport {dns} accept"]
        if version == 6:  # neighbour discovery of the gateway, from the container's own address
            host_side.append(f"{me} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept")
        host_side += [f"{me} ct state established,related accept", *(f"{me} {log}" for log in _nft_log(group)),
                      f"{me} counter drop"]
        forward.append(f"{me} ct state established,related accept")
        networks = [n for n in op.networks if ipaddress.ip_network(n).version == version]
        if networks:
            to = f"{me} {ip} daddr {_set(networks)}"
            if op.any_port:
                forward.append(f"{to} accept")
            forward += [f"{to} {proto} dport {_nft_ports(ranges)} accept"
                        for proto, ranges in (("tcp", op.tcp_ports), ("udp", op.udp_ports)) if ranges]
        forward += [*(f"{me} {log}" for log in _nft_log(group)), f"{me} counter drop"]
    host_side += [f"tcp dport {proxy} drop", f"meta l4proto {{ tcp, udp }} th dport {dns} drop",
                  f"iifname {_set([_quoted(b) for b in _bridges(op)])} ip6 saddr {LINK_LOCAL6} "
                  "meta l4proto { tcp, udp } drop"]
    lines = [
        f"table inet {_table(op.owner)} {{",
        "  chain prerouting { type nat hook prerouting priority dstnat - 10; policy accept;",
        *(f"    {rule}" for rule in nat),
        "  }",
        "  chain input { type filter hook input priority filter - 10; policy accept;",
        *(f"    {rule}" for rule in host_side),
        "  }",
        "  chain forward { type filter hook forward priority filter - 10; policy accept;",
        *(f"    {rule}" for rule in forward),
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _nft_has_table(owner: str) -> bool:
    return _run(["nft", "list", "table", "inet", _table(owner)], check=False).returncode == 0


# --- iptables ---------------------------------------------------------------------------------

_CHAINS = (("filter", "INPUT", "IN"), ("filter", "FORWARD", "FWD"), ("nat", "PREROUTING", "PRE"))


def _chain(owner: str, part: str) -> str:
    return f"NUCLEUS-E{_id(owner)}-{part}"


def _ipt_ports(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}:{last}"


def _ipt_log(group: int | None) -> list[list[str]]:
    """The matches and target logging a dropped TCP or UDP packet to `group` (none without one)."""
    if group is None:
        return []
    return [["-p", proto, "-m", "limit", "--limit", f"{LOG_RATE}/second", "--limit-burst", str(LOG_BURST),
             "-j", "NFLOG", "--nflog-group", str(group), "--nflog-size", str(COPY_RANGE)] for proto in ("tcp", "udp")]


def _ipt_rules(op: v.NetEgress, version: int, proxy: int, dns: int,
               group: int | None = None) -> Iterator[tuple[str, list[str]]]:
    """(table, rule without -A and its chain) of the container's rules of one family."""
    host, fwd, pre = (_chain(op.owner, p) for p in ("IN", "FWD", "PRE"))
    established = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]
    for me in _of(version, op.addresses):
        gateways = _of(version, op.gateways)
        for gateway in gateways:
            to = gateway if version == 4 else f"[{gateway}]"
            mine = ["-s", me, "-d", gateway]
            for proto in ("udp", "tcp"):
                yield "nat", [pre, *mine, "-p", proto, "--dport", str(DNS_PORT), "-j", "DNAT",
                              "--to-destination", f"{to}:{dns}"]
                yield "filter", [host, *mine, "-p", proto, "--dport", str(dns), "-j", "ACCEPT"]
            yield "nat", [pre, *mine, "-p", "tcp", "--dport", str(op.proxy_port), "-j", "DNAT",
                          "--to-destination", f"{to}:{proxy}"]
            yield "filter", [host, *mine, "-p", "tcp", "--dport", str(proxy), "-j", "ACCEPT"]
        if version == 6:  # neighbour discovery of the gateway, from the container's own address
            for kind in ("neighbour-solicitation", "neighbour-advertisement"):
                yield "filter", [host, "-s", me, "-p", "ipv6-icmp", "--icmpv6-type", kind, "-j", "ACCEPT"]
        yield "filter", [host, "-s", me, *established]
        for log in _ipt_log(group):
            yield "filter", [host, "-s", me, *log]
        yield "filter", [host, "-s", me, "-j", "DROP"]
        yield "filter", [fwd, "-s", me, *established]
        for network in (n for n in op.networks if ipaddress.ip_network(n).version == version):
            if op.any_port:
                yield "filter", [fwd, "-s", me, "-d", network, "-j", "ACCEPT"]
            for proto, ranges in (("tcp", op.tcp_ports), ("udp", op.udp_ports)):
                for first, last in ranges:
                    yield "filter", [fwd, "-s", me, "-d", network, "-p", proto, "--dport",
                                     _ipt_ports(first, last), "-j", "ACCEPT"]
        for log in _ipt_log(group):
            yield "filter", [fwd, "-s", me, *log]
        yield "filter", [fwd, "-s", me, "-j", "DROP"]
    yield "filter", [host, "-p", "tcp", "--dport", str(proxy), "-j", "DROP"]
    for proto in ("udp", "tcp"):
        yield "filter", [host, "-p", proto, "--dport", str(dns), "-j", "DROP"]
    if version == 6:
        for bridge in _bridges(op):
            for proto in ("udp", "tcp"):
                yield "filter", [host, "-i", bridge, "-s", LINK_LOCAL6, "-p", proto, "-j", "DROP"]


def _commands(addresses: tuple[str, ...]) -> list[tuple[str, int]]:
    """The tools of the container's families; ip6tables whenever the kernel has IPv6: every
    interface has a link-local address, whose traffic to the host is dropped."""
    return [(cmd, version) for cmd, version in (("iptables", 4), ("ip6tables", 6))
            if _of(version, addresses) or (version == 6 and os.path.exists("/proc/sys/net/ipv6"))]


# --- the steps ----------------------------------------------------------------------------------

def add(op: v.NetEgress, proxy: int, dns: int, group: int | None = None) -> None:
    """The container's rules, for the leased ports `proxy` and `dns` and NFLOG `group` (none of
    its own there yet: a supervisor lost before the rules were all added leaves nothing the
    teardown misses)."""
    if op.backend == "nft":
        _run(["nft", "-f", "-"], stdin=_nft_script(op, proxy, dns, group))
        return
    for cmd, version in _commands(op.addresses):
        for table, _, part in _CHAINS:
            _run([cmd, "-w", "-t", table, "-N", _chain(op.owner, part)])
        for table, rule in _ipt_rules(op, version, proxy, dns, group):
            _run([cmd, "-w", "-t", table, "-A", *rule])
        for table, builtin, part in _CHAINS:
            _run([cmd, "-w", "-t", table, "-I", builtin, "1", "-j", _chain(op.owner, part)])


def remove(backend: str, owner: str) -> None:
    """The container's rules, with either backend; what is not there is fine."""
    if backend == "nft":
        if _nft_has_table(owner):
            _run(["nft", "delete", "table", "inet", _table(owner)])
        return
    for cmd in ("iptables", "ip6tables"):
        if tool(cmd) is None:
            continue
        for table, builtin, part in _CHAINS:
            chain = _chain(owner, part)
            _run([cmd, "-w", "-t", table, "-D", builtin, "-j", chain], check=False)
            _run([cmd, "-w", "-t", table, "-F", chain], check=False)
            _run([cmd, "-w", "-t", table, "-X", chain], check=False)
