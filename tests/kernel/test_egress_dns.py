"""The egress DNS resolver for real, on loopback, in front of the lab's upstream DNS server (which
logs every question it is asked): allowed names answered from upstream over UDP and TCP, other
names REFUSED with a violation line and never asked upstream, AAAA only when IPv6 is allowed,
large answers truncated over UDP, and any datagram at all answered FORMERR or not at all."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kernel.egress_support import lab

BIG = [f"127.0.1.{i}" for i in range(1, 61)]  # 60 A records: about 1000 bytes, more than 512
ZONE = {"pkgs.test": ["127.0.0.10"], "other.test": ["127.0.0.11"], "a.b.example.test": ["127.0.0.12"],
        "example.test": ["127.0.0.13"], "big.test": BIG, "six.test": ["127.0.0.14", "2001:db8::14"]}
POLICY = {"domain": ["pkgs.test", "*.example.test", "big.test", "six.test"],
          "proxy": ["127.0.0.1", 0], "resolver": ["127.0.0.1", 0]}


def start(tmp_path_factory, policy, name):
    folder = tmp_path_factory.mktemp(name)
    return lab(folder, {"dns": ["127.0.0.1", 0], "zone": ZONE, "egress": policy})


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with start(tmp_path_factory, POLICY, "egress-dns") as running:
        yield running


def ask(net, name: str, rdtype: str = "A", tcp: bool = False, payload: int | None = None,
        timeout: float = 10) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=payload is not None, payload=payload or 512)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=net.ports["resolver"], timeout=timeout)


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(rdata.address for rrset in response.answer for rdata in rrset)


def test_allowed_names_are_answered_from_upstream(net):
    for tcp in (False, True):
        response = ask(net, "pkgs.test", tcp=tcp)
        assert (dns.rcode.to_text(response.rcode()), addresses(response)) == ("NOERROR", ["127.0.0.10"])
        assert response.flags & dns.flags.RA
    assert addresses(ask(net, "A.B.Example.Test.")) == ["127.0.0.12"]
    assert "pkgs.test A" in net.queries() and "a.b.example.test A" in net.queries()


def test_other_names_are_refused_and_never_leave(net):
    before = len(net.violations())
    for name, rdtype in (("other.test", "A"), ("example.test", "A"), ("other.test", "AAAA"), ("other.test", "TXT")):
        response = ask(net, name, rdtype)
        assert (dns.rcode.to_text(response.rcode()), response.answer) == ("REFUSED", [])
    records = net.violations()[before:]
    assert [(r["layer"], r["operation"], r["object"], r["action"]) for r in records] == [
        ("egress", "lookup", "other.test A", "REFUSED"), ("egress", "lookup", "example.test A", "REFUSED"),
        ("egress", "lookup", "other.test AAAA", "REFUSED"), ("egress", "lookup", "other.test TXT", "REFUSED")]
    assert records[1]["rule"] == ("'example.test' matches no --egress-domain rule ('pkgs.test', "
                                  "'*.example.test', 'big.test', 'six.test')")
    assert records[1]["hint"] == "add --egress-domain example.test"
    seen = net.queries()
    assert not [q for q in seen if q.startswith(("other.test", "example.test"))], seen


def test_ipv6_lookups_only_when_ipv6_is_allowed(net, tmp_path_factory):
    before = len(net.violations())
    response = ask(net, "six.test", "AAAA")
    assert (dns.rcode.to_text(response.rcode()), response.answer) == ("NOERROR", [])
    assert "six.test AAAA" not in net.queries() and net.violations()[before:] == []
    with start(tmp_path_factory, {**POLICY, "allow": ["2001:db8::/32"]}, "egress-dns-v6") as v6:
        assert addresses(ask(v6, "six.test", "AAAA")) == ["2001:db8::14"]


def test_other_types_of_an_allowed_name_are_answered_empty_without_asking(net):
    for rdtype in ("MX", "TXT", "HTTPS", "ANY"):
        response = ask(net, "pkgs.test", rdtype)
        assert (dns.rcode.to_text(response.rcode()), response.answer) == ("NOERROR", [])
        assert f"pkgs.test {rdtype}" not in net.queries()


def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp(net):
    udp = ask(net, "big.test")
    assert udp.flags & dns.flags.TC and udp.answer == []
    assert addresses(ask(net, "big.test", tcp=True)) == sorted(BIG)
    assert len(addresses(ask(net, "big.test", payload=4096))) == len(BIG)  # 1232 bytes hold them


def test_an_upstream_that_does_not_answer_is_servfail(tmp_path_factory):
    closed = {**POLICY, "upstream": ["127.0.0.1", 9]}  # discard: nothing listens there
    with start(tmp_path_factory, closed, "egress-dns-down") as down:
        # (the resolver gives up on its upstream after 5 s: the client waits longer)
        assert dns.rcode.to_text(ask(down, "pkgs.test", timeout=30).rcode()) == "SERVFAIL"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.one_of(st.binary(max_size=600),
                      st.builds(lambda q, cut, flip: q[:cut] + bytes((q[cut % len(q)] ^ flip,)) + q[cut + 1:],
                                st.sampled_from([dns.message.make_query(n, t).to_wire() for n in ("pkgs.test", "other.test")
                                                 for t in ("A", "AAAA")]),
                                st.integers(0, 40), st.integers(1, 255))))
def test_any_datagram_gets_formerr_or_a_proper_answer_and_the_resolver_goes_on(net, junk):
    """Whatever arrives, the resolver answers a well-formed query right after it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(junk, ("127.0.0.1", net.ports["resolver"]))
        check = dns.message.make_query("pkgs.test", "A")
        sock.sendto(check.to_wire(), ("127.0.0.1", net.ports["resolver"]))
        while True:
            reply = sock.recv(65535)
            if reply[:2] == check.to_wire()[:2] and reply != junk:
                parsed = dns.message.from_wire(reply)
                if parsed.question == check.question:
                    assert addresses(parsed) == ["127.0.0.10"]
                    break
            message = dns.message.from_wire(reply)  # the junk's own reply: a readable message
            assert message.flags & dns.flags.QR and reply[:2] == junk[:2]
