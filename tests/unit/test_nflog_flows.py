"""Reading what the kernel logs to a container's NFLOG group (nucleus.effects.nflog): the flows
of IPv4 and IPv6 packets carrying TCP or UDP, inside netlink messages as the kernel sends them;
and the rules that log a dropped packet, at a limited rate (nucleus.effects.egress_rules)."""

from __future__ import annotations

import ipaddress
import struct

from nucleus import vocab as v
from nucleus.effects import egress_rules, nflog
from nucleus.effects.nflog import Flow


def ipv4(protocol: int, source: str, destination: str, sport: int, dport: int, fragment: int = 0) -> bytes:
    return (struct.pack("!BBHHHBBH", 0x45, 0, 40, 1, fragment, 64, protocol, 0)
            + ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
            + struct.pack("!HH", sport, dport) + b"\0" * 16)


def ipv6(next_header: int, source: str, destination: str, rest: bytes) -> bytes:
    return (struct.pack("!IHBB", 6 << 28, len(rest), next_header, 64)
            + ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(destination).packed + rest)


def message(payload: bytes) -> bytes:
    """A packet message as nfnetlink_log sends it: nfgenmsg, a packet header attribute, the payload."""
    attributes = struct.pack("=HHHBx", 8, 1, 0x0800, 3)
    size = 4 + len(payload)
    attributes += struct.pack("=HH", size, nflog.NFULA_PAYLOAD) + payload + b"\0" * (-size % 4)
    body = struct.pack("!BBH", 2, 0, nflog.FIRST_GROUP) + attributes
    return struct.pack("=IHHII", 16 + len(body), nflog.NFNL_SUBSYS_ULOG << 8, 0, 0, 0) + body


def test_tcp_and_udp_flows_of_both_families_in_one_read():
    tcp = ipv4(6, "10.88.0.2", "192.0.2.7", 40000, 5433)
    udp6 = ipv6(17, "fd00::2", "2001:db8::7", struct.pack("!HHHH", 5000, 53, 8, 0))
    # hop-by-hop options, then TCP
    hop = ipv6(0, "fd00::2", "2001:db8::7", struct.pack("!BB6x", 6, 0) + struct.pack("!HH", 41000, 443) + b"\0" * 16)
    assert nflog.flows(message(tcp) + message(udp6) + message(hop)) == [
        Flow("tcp", "10.88.0.2", 40000, "192.0.2.7", 5433),
        Flow("udp", "fd00::2", 5000, "2001:db8::7", 53),
        Flow("tcp", "fd00::2", 41000, "2001:db8::7", 443),
    ]


def test_what_carries_no_ports_is_passed_over():
    icmp = ipv4(1, "10.88.0.2", "192.0.2.7", 0, 0)
    later_fragment = ipv4(17, "10.88.0.2", "192.0.2.7", 1, 2, fragment=0x0010)
    cut = ipv4(6, "10.88.0.2", "192.0.2.7", 1, 2)[:22]
    assert nflog.flows(message(icmp) + message(later_fragment) + message(cut)) == []
    assert nflog.flows(b"\x10\x00") == [] and nflog.packet_flow(b"") is None


def test_the_rules_log_dropped_packets_to_the_group_at_a_limited_rate():
    op = v.NetEgress("nft", "nucleus0", "c" * 64, "/state", ("10.88.0.2/16",), ("10.88.0.1/16",), 3128,
                     ("192.0.2.0/24",), ((5432, 5432),), (), False)
    script = egress_rules._nft_script(op, 40000, 40001, 19968)
    log = "ip saddr 10.88.0.2 meta l4proto { tcp, udp } limit rate 10/second burst 20 packets log group 19968"
    assert script.count(log) == 2  # forwarded, and to the host
    assert script.index(log) < script.index("ip saddr 10.88.0.2 counter drop")
    assert "log group" not in egress_rules._nft_script(op, 40000, 40001, None)
    rules = [rule for _, rule in egress_rules._ipt_rules(op.replace(backend="iptables"), 4, 40000, 40001, 19968)]
    logged = [rule for rule in rules if "NFLOG" in rule]
    assert len(logged) == 4 and all(r[r.index("--limit") + 1] == "10/second" and
                                    r[r.index("--nflog-group") + 1] == "19968" for r in logged)
