"""The egress policy (nucleus.config.egress): its flags' parsing and errors, the domain matcher
(Hypothesis over names and wildcards), the decision for names, addresses and ports, the
DNS-rebinding rule, production's deny-all, and the proxy's environment."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus.config import egress
from nucleus.config.egress import Domain, decide, decide_address, decide_name, parse, parse_domain
from nucleus.config.mode_validation import problems
from nucleus.config.modes import ModeRequest
from nucleus.errors import InvalidInput


def policy(**flags: tuple[str, ...]) -> egress.EgressPolicy:
    result = parse(**flags)
    assert result is not None
    return result


# --- parsing --------------------------------------------------------------------------------------


def test_no_flag_is_no_policy_and_production_denies_all_without_one():
    assert parse() is None
    assert egress.in_force(None, production=False) is None
    deny_all = egress.in_force(None, production=True)
    assert deny_all == egress.EgressPolicy()
    verdict = decide(deny_all, "pkgs.example.org", 443)
    assert (verdict.allowed, verdict.rule) == (False, "production mode denies all egress by default")
    assert not decide(deny_all, "192.0.2.1", 443).allowed
    given_policy = policy(domains=("pkgs.test",))
    assert egress.in_force(given_policy, production=True) is given_policy


def test_flags_are_parsed_and_duplicates_dropped():
    p = policy(allow=("192.0.2.0/24", "2001:db8::/32", "192.0.2.0/24", "198.51.100.7"),
               tcp_ports=("443", "8000-8100"), udp_ports=("53",), domains=("PKGS.test.", "*.example.org", "pkgs.test"))
    assert [str(n) for n in p.networks] == ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"]
    assert [str(d) for d in p.domains] == ["pkgs.test", "*.example.org"]
    assert [str(r) for r in p.tcp_ports] == ["443", "8000-8100"] and [str(r) for r in p.udp_ports] == ["53"]
    assert p.ipv6 and not p.any_port
    assert not policy(allow=("192.0.2.0/24",)).ipv6 and policy(allow=("192.0.2.0/24",)).any_port


@pytest.mark.parametrize(("flags", "message", "hint"), [
    ({"allow": ("10.0.0.1/8",)}, "--egress-allow '10.0.0.1/8': not an IPv4 or IPv6 network",
     "the address bits beyond the prefix must be zero: 10.0.0.0/8"),
    ({"allow": ("example.org",)}, "--egress-allow 'example.org': not an IPv4 or IPv6 network",
     "give an address or a network, e.g. 192.0.2.0/24 or 2001:db8::/32"),
    ({"allow": ("::ffff:10.0.0.0/104",)}, "--egress-allow '::ffff:10.0.0.0/104': an IPv4-mapped IPv6 network",
     "give the IPv4 network itself"),
    ({"domains": ("a.*.example.org",)}, "--egress-domain 'a.*.example.org': '*' is allowed only as the whole first label",
     "write --egress-domain '*.example.org' for every name below example.org, and --egress-domain "
     "example.org for the name itself"),
    ({"domains": ("*",)}, "--egress-domain '*': '*' is allowed only as the whole first label", None),
    ({"domains": ("*example.org",)}, "--egress-domain '*example.org': '*' is allowed only as the whole first label", None),
    ({"domains": ("bücher.example",)}, "--egress-domain 'bücher.example': not a host name",
     "give an internationalised name in its xn-- (punycode) form"),
    ({"domains": ("192.0.2.1",)}, "--egress-domain '192.0.2.1': not a host name", "use an address with --egress-allow"),
    ({"domains": ("-bad.example",)}, "--egress-domain '-bad.example': not a host name",
     "a host name is dot-separated labels of letters, digits, '-' and '_'"),
    ({"domains": ("a" * 64 + ".example",)}, f"--egress-domain '{'a' * 64}.example': not a host name", None),
    ({"domains": ("x", "a..b")}, "--egress-domain 'a..b': not a host name", None),
    ({"domains": ("x",), "tcp_ports": ("0",)}, "--egress-tcp-port '0': ports are 1-65535, the first of a range not above the last", None),
    ({"domains": ("x",), "udp_ports": ("70000",)}, "--egress-udp-port '70000': ports are 1-65535, the first of a range not above the last", None),
    ({"domains": ("x",), "tcp_ports": ("90-80",)}, "--egress-tcp-port '90-80': ports are 1-65535, the first of a range not above the last", None),
    ({"domains": ("x",), "tcp_ports": ("https",)}, "--egress-tcp-port 'https': not a port or a range FIRST-LAST",
     "for example --egress-tcp-port 443 or --egress-tcp-port 8000-8100"),
    ({"tcp_ports": ("5432",)}, "--egress-tcp-port '5432': opens a port to nowhere",
     "name what may be reached with --egress-allow CIDR or --egress-domain NAME"),
])
def test_bad_flags_name_the_flag_and_value(flags, message, hint):
    with pytest.raises(InvalidInput) as e:
        parse(**flags)
    assert e.value.message == message
    if hint is not None:
        assert e.value.hint == hint


def test_the_flags_need_the_bridge():
    p = policy(domains=("pkgs.test",))
    assert egress.network_problem(p, "bridge") is None and egress.network_problem(None, "none") is None
    assert egress.network_problem(p, "none") == (
        "--egress-domain 'pkgs.test': egress rules take effect only with --network bridge or user (this run has --network none)",
        "add --network bridge (--network user without root), or drop the --egress-* flags")
    assert egress.network_problem(policy(allow=("192.0.2.0/24",), tcp_ports=("5432",)), "host")[0].startswith(
        "--egress-allow '192.0.2.0/24': egress rules take effect only with --network bridge or user (this run has --network host)")
    # ... and mode validation says so for a run (the default network is none)
    assert [p.message for p in problems(ModeRequest(egress=p))] == [
        "--egress-domain 'pkgs.test': egress rules take effect only with --network bridge or user (this run has --network none)"]
    assert problems(ModeRequest(egress=p, network="bridge", dns=("192.0.2.53",))) == []
    assert egress.network_problem(p, "user") is None


# --- the matcher ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "name", "matches"), [
    ("example.org", "example.org", True),
    ("example.org", "EXAMPLE.Org.", True),
    ("example.org", "a.example.org", False),
    ("example.org", "badexample.org", False),
    ("*.example.org", "a.example.org", True),
    ("*.example.org", "a.b.example.org", True),
    ("*.example.org", "A.Example.ORG.", True),
    ("*.example.org", "example.org", False),  # the apex is not below itself
    ("*.example.org", "badexample.org", False),
    ("*.example.org", "example.org.evil.test", False),
    ("*.example.org", "a.example.org.evil.test", False),
])
def test_the_matcher(rule, name, matches):
    assert decide_name(policy(domains=(rule,)), name).allowed is matches


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(lambda s: not s.isdigit())
NAMES = st.lists(LABEL, min_size=1, max_size=5)


def _case(data, name: str) -> str:
    """The name in another case, perhaps with a trailing dot: the same name."""
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if f else c for c, f in zip(name, flips, strict=True)) + data.draw(st.sampled_from(["", "."]))


@given(base=NAMES, name=NAMES, data=st.data())
def test_a_wildcard_matches_exactly_the_names_below_its_base(base, name, data):
    rule = parse_domain("*." + ".".join(base))
    below = len(name) > len(base) and name[-len(base):] == base
    assert rule.matches(".".join(name)) is below
    asked = _case(data, ".".join(name))
    assert decide_name(policy(domains=(str(rule),)), asked).allowed is below


@given(base=NAMES, name=NAMES, data=st.data())
def test_a_plain_rule_matches_its_name_only(base, name, data):
    rule = parse_domain(_case(data, ".".join(base)))
    assert rule == Domain(".".join(base))
    assert rule.matches(".".join(name)) is (name == base)


@given(base=NAMES, prefix=LABEL)
def test_a_wildcard_never_matches_across_a_label_boundary(base, prefix):
    """`*.example.org` must not match `evilexample.org`: a suffix that is not a whole label."""
    rule = parse_domain("*." + ".".join(base))
    glued = prefix + ".".join(base)
    assert not rule.matches(glued)


@given(text=st.text(max_size=300))
def test_normal_name_is_idempotent_and_never_raises(text):
    name = egress.normal_name(text)
    if name is not None:
        assert egress.normal_name(name) == name and name == name.lower() and not name.endswith(".")
        assert len(name) <= egress.MAX_NAME


@given(host=st.text(max_size=80), port=st.integers(1, 65535), protocol=st.sampled_from(egress.PROTOCOLS))
def test_decide_is_total_on_any_host_text(host, port, protocol):
    p = policy(allow=("192.0.2.0/24", "2001:db8::/32"), domains=("*.example.org", "pkgs.test"), tcp_ports=("443",))
    verdict = decide(p, host, port, protocol)
    assert verdict.rule
    if verdict.allowed:  # only TCP 443 is open
        assert (protocol, port) == ("tcp", 443)


# --- decisions ------------------------------------------------------------------------------------


def test_names_addresses_and_ports():
    p = policy(allow=("192.0.2.0/24",), tcp_ports=("5432", "443"), domains=("pkgs.test",))
    assert decide(p, "pkgs.test", 443).allowed
    assert decide(p, "192.0.2.7", 5432).allowed and decide(p, "192.0.2.7", 5432).rule == "--egress-allow 192.0.2.0/24"
    refused = decide(p, "192.0.2.7", 22)
    assert (refused.rule, refused.hint) == ("TCP port 22 is not among --egress-tcp-port (5432, 443)",
                                            "add --egress-tcp-port 22")
    refused = decide(p, "93.184.216.34", 5432)
    assert refused.rule == "93.184.216.34 is in no --egress-allow network ('192.0.2.0/24')"
    assert refused.hint == "add --egress-allow 93.184.216.34/32, or reach the host by name with --egress-domain"
    assert decide(p, "192.0.2.7", 53, "udp").rule == "UDP port 53 is not among --egress-udp-port (none)"
    refused = decide(p, "other.test", 443)
    assert (refused.rule, refused.hint) == ("'other.test' matches no --egress-domain rule ('pkgs.test')",
                                            "add --egress-domain other.test")
    assert decide(p, "a.pkgs.test", 443).hint == ("add --egress-domain a.pkgs.test (or --egress-domain "
                                                  "'*.pkgs.test' for every name below pkgs.test)")
    assert decide(p, "pkgs.test", 80).rule == "TCP port 80 is not among --egress-tcp-port (5432, 443)"
    assert decide(p, "127.1", 443).rule == "'127.1' is not a host name"
    refused = decide(policy(domains=("pkgs.test",), udp_ports=("53",)), "pkgs.test", 53, "udp")
    assert refused.rule == "'pkgs.test': names are reached through the proxy, which carries TCP only"
    with pytest.raises(ValueError, match="unknown protocol"):
        decide(p, "pkgs.test", 443, "sctp")


def test_without_a_port_flag_every_port_is_open_and_with_one_only_those():
    assert decide(policy(allow=("192.0.2.0/24",)), "192.0.2.1", 22).allowed
    assert decide(policy(allow=("192.0.2.0/24",)), "192.0.2.1", 5353, "udp").allowed
    tcp_only = policy(allow=("192.0.2.0/24",), tcp_ports=("5432",))
    assert decide(tcp_only, "192.0.2.1", 5432).allowed and not decide(tcp_only, "192.0.2.1", 5432, "udp").allowed


def test_ipv6_is_denied_unless_an_ipv6_network_is_allowed():
    v4 = policy(allow=("0.0.0.0/0",), domains=("pkgs.test",))
    refused = decide(v4, "2606:4700::1", 443)
    assert refused.rule == "2606:4700::1: IPv6 is denied (no --egress-allow network is IPv6)"
    resolved = decide_address(v4, ipaddress.ip_address("2606:4700::1"), 443, name="pkgs.test")
    assert not resolved.allowed and resolved.hint.startswith("add an IPv6 --egress-allow network")
    v6 = policy(allow=("::/0",), domains=("pkgs.test",))
    assert decide(v6, "2606:4700::1", 443).allowed and decide(v6, "[2606:4700::1]", 443).allowed
    assert decide_address(v6, ipaddress.ip_address("2606:4700::1"), 443, name="pkgs.test").allowed


ALLOWED_NAME = policy(domains=("pkgs.test",), allow=("0.0.0.0/0", "::/0"))


@pytest.mark.parametrize(("address", "label", "block"), [
    ("127.0.0.1", "a loopback address", "127.0.0.0/8"),
    ("169.254.169.254", "a link-local address (cloud metadata services live there)", "169.254.0.0/16"),
    ("10.1.2.3", "a private address", "10.0.0.0/8"),
    ("0.0.0.0", "an unspecified ('this network') address", "0.0.0.0/8"),
    ("::1", "the loopback address", "::1/128"),
    ("::ffff:127.0.0.1", "a loopback address", "127.0.0.0/8"),
    ("fe80::1", "a link-local address", "fe80::/10"),
    ("fd00::1", "a unique-local address", "fc00::/7"),
    ("64:ff9b::7f00:1", "a NAT64 address", "64:ff9b::/96"),
    ("224.0.0.1", "a multicast address", "224.0.0.0/4"),
    ("255.255.255.255", "a reserved address", "240.0.0.0/4"),
])
def test_a_name_that_resolves_outside_the_internet_is_refused(address, label, block):
    """DNS rebinding: an allowed name resolving to 127.0.0.1 or 169.254.169.254 reaches nothing
    of the host's, even under --egress-allow 0.0.0.0/0 and ::/0."""
    resolved = ipaddress.ip_address(address)
    verdict = decide_address(ALLOWED_NAME, resolved, 80, name="pkgs.test")
    shown = egress.plain(resolved)
    assert not verdict.allowed
    assert verdict.rule == (f"'pkgs.test' resolved to {shown}, {label}: only an --egress-allow network "
                            f"inside {block} reaches it")
    assert verdict.hint == f"add --egress-allow {ipaddress.ip_network(shown)} if the sandbox may reach it"
    assert not decide(ALLOWED_NAME, address, 80).allowed  # a literal address too


def test_an_explicit_allow_inside_the_block_lets_a_test_reach_its_own_loopback():
    p = policy(domains=("pkgs.test",), allow=("127.0.0.10/32",))
    assert decide_address(p, ipaddress.ip_address("127.0.0.10"), 80, name="pkgs.test").allowed
    assert decide_address(p, ipaddress.ip_address("::ffff:127.0.0.10"), 80, name="pkgs.test").allowed
    assert not decide_address(p, ipaddress.ip_address("127.0.0.1"), 80, name="pkgs.test").allowed
    wide = policy(domains=("pkgs.test",), allow=("127.0.0.0/8",))
    assert decide_address(wide, ipaddress.ip_address("127.0.0.1"), 80, name="pkgs.test").allowed


def test_the_hosts_own_addresses_need_their_own_rule():
    host = frozenset({ipaddress.ip_address("203.0.113.5"), ipaddress.ip_address("10.88.0.1")})
    p = policy(domains=("pkgs.test",), allow=("10.0.0.0/8", "203.0.113.0/24"))
    for address in ("10.88.0.1", "203.0.113.5"):
        verdict = decide_address(p, ipaddress.ip_address(address), 80, host_addresses=host, name="pkgs.test")
        assert verdict.rule == (f"'pkgs.test' resolved to {address}, an address of the host: only "
                                f"--egress-allow {address}/32 reaches it")
    assert decide_address(p, ipaddress.ip_address("10.88.0.2"), 80, host_addresses=host).allowed
    exact = policy(domains=("pkgs.test",), allow=("10.88.0.1/32",))
    assert decide_address(exact, ipaddress.ip_address("10.88.0.1"), 80, host_addresses=host).allowed


def test_a_global_address_of_an_allowed_name_needs_no_network_rule():
    p = policy(domains=("pkgs.test",))
    assert decide_address(p, ipaddress.ip_address("93.184.216.34"), 443, name="pkgs.test").allowed
    assert not decide(p, "93.184.216.34", 443).allowed  # the same address, asked for literally


def test_a_long_list_of_rules_is_shortened_in_a_refusal():
    p = policy(domains=tuple(f"n{i}.test" for i in range(7)))
    assert decide(p, "other.test", 443).rule == (
        "'other.test' matches no --egress-domain rule ('n0.test', 'n1.test', 'n2.test', 'n3.test' and 3 more)")


# --- the proxy's environment ----------------------------------------------------------------------


def test_proxy_environment():
    env = egress.proxy_environment("10.88.0.1", 3128)
    assert env == {
        "HTTP_PROXY": "http://10.88.0.1:3128", "HTTPS_PROXY": "http://10.88.0.1:3128",
        "ALL_PROXY": "socks5h://10.88.0.1:3128", "NO_PROXY": "localhost,127.0.0.1,::1",
        "http_proxy": "http://10.88.0.1:3128", "https_proxy": "http://10.88.0.1:3128",
        "all_proxy": "socks5h://10.88.0.1:3128", "no_proxy": "localhost,127.0.0.1,::1"}
    assert egress.proxy_environment("fd00::1", 3128)["HTTPS_PROXY"] == "http://[fd00::1]:3128"


# --- the violation record -------------------------------------------------------------------------


def test_a_refusal_is_a_record_of_the_violation_stream():
    from nucleus.config import violations

    ctx = violations.Context("ab" * 16, "agent")
    verdict = decide(policy(domains=("pkgs.test",)), "other.test", 443)
    record = violations.egress_violation(ctx, when="2025-06-01T12:00:00.125Z", operation="connect",
                                         obj="other.test:443", action="403", rule=verdict.rule,
                                         hint=verdict.hint, client="10.88.0.2:41234")
    assert record == {
        "time": "2025-06-01T12:00:00.125Z", "container": {"id": "ab" * 16, "name": "agent"}, "pid": 0,
        "executable": "", "layer": "egress", "operation": "connect", "object": "other.test:443",
        "client": "10.88.0.2:41234", "action": "403",
        "rule": "'other.test' matches no --egress-domain rule ('pkgs.test')", "hint": "add --egress-domain other.test"}
    assert violations.parse(violations.line(record)) == [record]  # the stream keeps egress lines
    assert violations.blocked(record) == ("blocked: connect other.test:443 is not allowed by the egress policy; "
                                          "add --egress-domain other.test")


def test_a_run_carries_its_policy_as_plain_data():
    """A run's configuration goes into its record and trace as plain data, the policy with it."""
    from nucleus.config.container import ContainerConfig
    from nucleus.plain import rebuild, to_plain

    config = ContainerConfig(argv=("true",), egress=policy(allow=("192.0.2.0/24", "2001:db8::/32"),
                                                           tcp_ports=("443", "8000-8100"),
                                                           domains=("pkgs.test", "*.example.org")))
    again = rebuild(ContainerConfig, to_plain(config))
    assert again == config and again.egress is not None
    assert decide(again.egress, "a.example.org", 8080).allowed and again.egress.ipv6
