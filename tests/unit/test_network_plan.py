"""The network as configured and planned (pure): the default mode, addresses allocated from the
real prefix, the host's routes checked against the subnets, the plan's intents and names, and a
record's network read back as the flags are."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from nucleus import vocab as v
from nucleus.config import egress
from nucleus.config import network as rules
from nucleus.config.container import ContainerConfig
from nucleus.errors import HostUnsupported, InvalidInput
from nucleus.facts import HostFacts
from nucleus.machines import network
from nucleus.plan import network as plan

CID = "0123456789abcdef" * 2
BRIDGED = ContainerConfig(argv=("true",), network="bridge",
                          bridge=rules.Bridge(publish=(("tcp", "", 8080, 80), ("udp", "127.0.0.1", 53, 53))))
FACTS = HostFacts(euid=0, state_root="/run/nucleus", routes=(("0.0.0.0/0", "eth0"), ("192.0.2.0/24", "eth0")),
                  nat_backend="nft")


def test_production_with_ports_or_egress_defaults_to_a_bridge():
    assert rules.default_mode("production", (("tcp", "", 80, 80),), None) == rules.BRIDGE
    assert rules.default_mode("production", (), object()) == rules.BRIDGE
    assert rules.default_mode("production", (), None) == rules.NONE
    assert rules.default_mode("agent", (("tcp", "", 80, 80),), None) == rules.NONE


@pytest.mark.parametrize("subnet,taken,expected", [
    ("10.88.0.0/16", set(), "10.88.0.2/16"),
    ("10.88.0.0/16", {"10.88.0.2", "10.88.0.3"}, "10.88.0.4/16"),
    # A /16's addresses go past .255: no /24 is assumed.
    ("10.88.0.0/16", {str(ipaddress.ip_address("10.88.0.0") + n) for n in range(2, 300)}, "10.88.1.44/16"),
    ("192.0.2.0/30", set(), "192.0.2.2/30"),
    ("fd00:6e75::/64", {"fd00:6e75::2"}, "fd00:6e75::3/64"),
])
def test_addresses_are_the_lowest_free_of_the_real_prefix(subnet, taken, expected):
    assert rules.allocate((subnet,), taken) == (expected,)


def test_a_full_subnet_is_said_to_be_full():
    with pytest.raises(ValueError, match=r"the subnet 192.0.2.0/30 has no free address left"):
        rules.allocate(("192.0.2.0/30",), {"192.0.2.2"})


def test_the_plan_names_the_containers_own_veth_and_its_rules():
    net = plan.plan(BRIDGED, FACTS)
    assert (net.mode, net.bridge, net.subnets, net.gateways, net.backend, net.egress) == (
        "bridge", "nucleus0", ("10.88.0.0/16", "fd00:6e75::/64"), ("10.88.0.1", "fd00:6e75::1"), "nft", None)
    state = plan.machine(net, CID, "/run/nucleus")
    assert (state.bridged, state.egress, state.plan) == (True, False, network.BRIDGE_PLAN)
    assert state.bridge == v.NetBridge("nucleus0", net.subnets, "/run/nucleus", CID)
    assert state.veth == v.NetVeth("nucleus0", "nc0123456789ab", "np0123456789ab", "eth0")
    assert state.teardown == v.NetTeardown((), "nucleus0", "nc0123456789ab", "nft", BRIDGED.bridge.publish, CID,
                                           "/run/nucleus")
    assert plan.machine(plan.plan(ContainerConfig(argv=("true",)), FACTS), CID, "/run") == network.initial()


@pytest.mark.parametrize("routes,subnets,message", [
    ((("10.88.4.0/24", "eth1"),), (), "the bridge's default subnet 10.88.0.0/16 overlaps the host's route to "
     "10.88.4.0/24 (dev eth1)"),
    ((("10.0.0.0/8", "wg0"),), ("10.77.0.0/16",), "--subnet '10.77.0.0/16' overlaps the host's route to 10.0.0.0/8 "
     "(dev wg0)"),
    ((("fd00:6e75::/48", "eth0"),), (), "the bridge's default subnet fd00:6e75::/64 overlaps the host's route to "
     "fd00:6e75::/48 (dev eth0)"),
])
def test_a_subnet_that_overlaps_a_route_of_the_host_is_refused(routes, subnets, message):
    config = ContainerConfig(argv=("true",), network="bridge", bridge=rules.Bridge(subnets=subnets))
    with pytest.raises(InvalidInput) as e:
        plan.plan(config, HostFacts(euid=0, routes=routes, nat_backend="nft"))
    assert e.value.message == message


def test_the_bridges_own_routes_and_the_default_route_are_no_overlap():
    routes = (("0.0.0.0/0", "eth0"), ("10.88.0.0/16", "nucleus0"), ("::/0", "eth0"))
    assert plan.plan(BRIDGED, HostFacts(euid=0, routes=routes, nat_backend="nft")).mode == "bridge"


def test_what_this_host_cannot_do_is_refused_before_anything_runs():
    with pytest.raises(HostUnsupported, match="needs root"):
        plan.plan(BRIDGED, HostFacts(euid=1000, routes=(), nat_backend="nft"))
    with pytest.raises(HostUnsupported, match="--nat-backend auto: no nft or iptables command"):
        plan.plan(BRIDGED, HostFacts(euid=0, routes=(), nat_backend=""))


def test_a_records_network_is_read_back_as_the_flags_are():
    net = plan.plan(BRIDGED, FACTS)
    assert plan.from_record(plan.to_record(net)) == net
    assert plan.from_record(None) == plan.NetworkPlan()
    assert plan.from_record({"mode": "host"}) == plan.NetworkPlan("host")
    for bad in ({"mode": "bridge", "bridge": "x/y", "subnets": [], "backend": "nft", "ports": []},
                {**plan.to_record(net), "backend": "pf"},
                {**plan.to_record(net), "ports": [["tcp", "", 0, 80]]},
                {**plan.to_record(net), "subnets": ["127.0.0.0/8"]},
                {"mode": "wifi"}, []):
        with pytest.raises(ValueError):
            plan.from_record(bad)


def test_published_ports_are_written_as_taken():
    for text in ("8080:80/tcp", "127.0.0.1:53:53/udp", "[2001:db8::1]:8443:443/tcp"):
        assert rules.publish_text(rules.parse_publish(text)) == text


EGRESS = egress.parse(("192.0.2.0/24",), ("5432", "8000-8100"), (), ("pkgs.test", "*.example.org"))
POLICED = ContainerConfig(argv=("true",), network="bridge", egress=EGRESS, dns=("192.0.2.53",))


def test_an_egress_policy_plans_its_rules_and_its_proxy_on_the_gateway():
    net = plan.plan(POLICED, FACTS)
    assert (net.egress, net.proxy, net.upstream) == (EGRESS, "10.88.0.1", "192.0.2.53")
    assert net.environment()["HTTPS_PROXY"] == net.environment()["https_proxy"] == "http://10.88.0.1:3128"
    state = plan.machine(net, CID, "/run/nucleus", "web")
    assert (state.egress, state.plan) == (True, network.EGRESS_PLAN)
    assert state.rules == v.NetEgress("nft", "nucleus0", CID, "/run/nucleus", (), ("10.88.0.1", "fd00:6e75::1"),
                                      3128, ("192.0.2.0/24",), ((5432, 5432), (8000, 8100)), (), False)
    assert state.proxy == v.NetProxy("nucleus0", CID, "web", "/run/nucleus", "10.88.0.1", 0, 0, ("192.0.2.0/24",),
                                     ("pkgs.test", "*.example.org"), ((5432, 5432), (8000, 8100)), (), False,
                                     ("192.0.2.53", 53), f"/run/nucleus/containers/{CID}.violations")


def test_the_egress_steps_rules_are_about_the_leased_addresses_and_the_proxy_takes_the_leased_ports():
    state = plan.machine(plan.plan(POLICED, FACTS), CID, "/run/nucleus")
    step = network.step(state, v.NetBegin())
    for name, detail in (("bridge", "10.88.0.2/16 fd00:6e75::2/64"), ("veth", ""), ("nat", "")):
        step = network.step(step.state, v.NetDone(name, detail))
    [rules_intent] = step.intents
    assert isinstance(rules_intent, v.NetEgress) and rules_intent.addresses == ("10.88.0.2/16", "fd00:6e75::2/64")
    step = network.step(step.state, v.NetDone("egress", "40001 40002"))
    [proxy_intent] = step.intents
    assert isinstance(proxy_intent, v.NetProxy) and (proxy_intent.port, proxy_intent.dns_port) == (40001, 40002)


def test_production_on_the_bridge_denies_all_egress_without_flags():
    production = plan.plan(ContainerConfig(argv=("true",), network="bridge", service_mode="production"), FACTS)
    assert production.egress == egress.EgressPolicy() and production.proxy == "10.88.0.1"
    assert plan.plan(ContainerConfig(argv=("true",), network="bridge"), FACTS).egress is None


def test_a_records_egress_policy_is_read_back_as_the_flags_are():
    net = plan.plan(replace(POLICED, dns=()), FACTS)
    record = plan.to_record(net)
    assert (record["proxy"], record["egress"]) == ("10.88.0.1:3128", {
        "allow": ["192.0.2.0/24"], "domain": ["pkgs.test", "*.example.org"], "tcp_port": ["5432", "8000-8100"],
        "udp_port": []})
    assert plan.from_record(record) == net
    for bad in ([], {"allow": ["192.0.2.1/24"]}, {"domain": [7]}):
        with pytest.raises(ValueError):
            plan.from_record({**record, "egress": bad})


def _attached(*attach: str) -> ContainerConfig:
    bridge = rules.Bridge(attach=attach, attachments=tuple(rules.parse_attach(a) for a in attach))
    return ContainerConfig(argv=("true",), network="bridge", bridge=bridge)


def test_more_attachments_plan_a_veth_of_their_own_on_each_bridge_and_a_teardown_naming_them():
    net = plan.plan(_attached("front=10.89.0.0/16", "back=10.90.0.0/24,fd00:90::/64"), FACTS)
    assert net.attachments == (rules.Attachment("front", ("10.89.0.0/16",)),
                               rules.Attachment("back", ("10.90.0.0/24", "fd00:90::/64")))
    state = plan.machine(net, CID, "/run/nucleus")
    assert state.plan == ("bridge", "veth", "nat", "attach", "attach", "address", "up", "join", "join", "route")
    assert state.attachments == (
        v.NetAttach("front", ("10.89.0.0/16",), "/run/nucleus", CID, "nc0123456789ab1", "np0123456789ab1", "eth1",
                    "nft", plan.link_sysctls("eth1")),
        v.NetAttach("back", ("10.90.0.0/24", "fd00:90::/64"), "/run/nucleus", CID, "nc0123456789ab2",
                    "np0123456789ab2", "eth2", "nft", plan.link_sysctls("eth2")))
    assert plan.link_sysctls("eth1") == (("/proc/sys/net/ipv6/conf/eth1/accept_ra", "0"),
                                         ("/proc/sys/net/ipv6/conf/eth1/autoconf", "0"))
    assert state.up.sysctls == plan.NAMESPACE_SYSCTLS + plan.link_sysctls("eth0")
    assert all(len(a.host) <= 15 and len(a.peer) <= 15 for a in state.attachments)  # a Linux link name
    assert state.teardown.attached == (("front", "nc0123456789ab1"), ("back", "nc0123456789ab2"))
    assert plan.teardown(net, CID, "/run/nucleus", ("attach",)).attached == state.teardown.attached


def test_a_records_attachments_are_read_back_as_the_flags_are():
    net = plan.plan(_attached("front=10.89.0.0/16"), FACTS)
    record = plan.to_record(net)
    assert record["attachments"] == [{"bridge": "front", "subnets": ["10.89.0.0/16"]}]
    assert plan.from_record(record) == net
    leased = {**record, "attachments": [{"bridge": "front", "subnets": ["10.89.0.0/16"], "addresses": ["10.89.0.2/16"]}]}
    assert plan.from_record(leased) == net
    for bad in ({"bridge": "front"}, [{"bridge": "front", "subnets": []}], [{"bridge": "nucleus0", "subnets":
                                                                              ["10.89.0.0/16"]}]):
        with pytest.raises(ValueError):
            plan.from_record({**record, "attachments": bad})


def test_an_attachment_that_overlaps_a_route_of_the_host_is_refused():
    with pytest.raises(InvalidInput) as e:
        plan.plan(_attached("front=192.0.2.0/25"), FACTS)
    assert e.value.message == ("--attach 'front=192.0.2.0/25': 192.0.2.0/25 overlaps the host's route to "
                               "192.0.2.0/24 (dev eth0)")
    assert e.value.hint == "choose another network, e.g. --attach BRIDGE=10.123.0.0/16"


def test_the_containers_namespace_forwards_nothing_between_its_interfaces():
    assert ("/proc/sys/net/ipv4/ip_forward", "0") in plan.NAMESPACE_SYSCTLS
    assert ("/proc/sys/net/ipv6/conf/all/forwarding", "0") in plan.NAMESPACE_SYSCTLS
