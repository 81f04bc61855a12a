"""A container's more bridge attachments (nucleus.effects.network) against a fake kernel: links,
rules and settings are held in memory, the bridges' files are written in a real state directory.
Each attachment leases and releases as the first bridge does; a bridge's last lease restores the
forwarding settings only once no other bridge of the state directory has a lease; a failure on
one attachment's removal still removes the others and the first; the egress rules' link-local
drop covers every bridge; an IPv6 setting is skipped where the kernel has no IPv6."""

from __future__ import annotations

import errno
import json
import os

import pytest

from nucleus import vocab as v
from nucleus.effects import egress_rules, network
from nucleus.effects.nat import NetError

OWNER, OTHER = "a" * 32, "b" * 32
FORWARD4 = network.FORWARDING[4]


class FakeHost:
    """Links by name (their kind), the settings written and read, and the bridges' rules."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}
        self.settings: dict[str, str] = {path: "0" for path in network.FORWARDING.values()}
        self.rules: set[str] = set()
        self.broken: set[str] = set()  # links whose deletion fails

    def sysctl(self, path: str, value: str | None = None) -> str:
        if value is not None:
            self.settings[path] = value
        return self.settings[path]

    def kind(self, name: str) -> str | None:
        return self.links.get(name)

    def make_bridge(self, name: str, addresses: tuple[str, ...]) -> None:
        self.links[name] = "bridge"

    def make_veth(self, host: str, peer: str, bridge: str, pid: int, inside: str) -> None:
        assert self.links.get(bridge) == "bridge", f"no bridge {bridge} for {host}"
        self.links[host] = "veth"

    def delete_link(self, name: str) -> bool:
        if name in self.broken:
            raise NetError(errno.EBUSY, f"delete link {name}: EBUSY")
        return self.links.pop(name, None) is not None

    def remove_bridge(self, backend: str, bridge: str) -> None:
        self.rules.discard(bridge)


@pytest.fixture
def host(monkeypatch) -> FakeHost:
    fake = FakeHost()
    monkeypatch.setattr(network, "_sysctl", fake.sysctl)
    for name in ("kind", "make_bridge", "make_veth", "delete_link"):
        monkeypatch.setattr(network.netlink, name, getattr(fake, name))
    monkeypatch.setattr(network.netlink, "ensure_addresses", lambda name, addresses: None)
    monkeypatch.setattr(network.nat, "remove_bridge", fake.remove_bridge)
    return fake


def first(state: str, owner: str, bridge: str = "nb0", subnet: str = "192.0.2.0/25") -> str:
    return network.bridge(v.NetBridge(bridge, (subnet,), state, owner))


def attach(state: str, owner: str, bridge: str, subnet: str, host_veth: str) -> str:
    return network.attach(v.NetAttach(bridge, (subnet,), state, owner, host_veth, host_veth + "p", "eth1"), 4242)


def teardown(state: str, owner: str, attached: tuple[tuple[str, str], ...] = (), bridge: str = "nb0") -> None:
    network.teardown(v.NetTeardown(("bridge", "attach") if attached else ("bridge",), bridge, "", "nft", (),
                                   owner, state, attached))


def leases(state: str, bridge: str) -> list[str]:
    with open(os.path.join(state, "network", f"{bridge}.json")) as f:
        return sorted(json.load(f)["leases"])


def test_an_attachment_leases_on_its_bridge_and_the_teardown_takes_it(host, tmp_path):
    state = str(tmp_path)
    assert first(state, OWNER) == "192.0.2.2/25"
    assert attach(state, OWNER, "nb1", "198.51.100.128/25", "vha") == "198.51.100.130/25"
    assert attach(state, OTHER, "nb1", "198.51.100.128/25", "vhb") == "198.51.100.131/25"
    assert host.links == {"nb0": "bridge", "nb1": "bridge", "vha": "veth", "vhb": "veth"}
    assert leases(state, "nb1") == [OWNER, OTHER]
    teardown(state, OWNER, (("nb1", "vha"),))
    assert host.links == {"nb1": "bridge", "vhb": "veth"}  # another container still holds nb1
    assert leases(state, "nb1") == [OTHER] and host.settings[FORWARD4] == "1"
    network.teardown(v.NetTeardown(("attach",), "nb9", "", "nft", (), OTHER, state, (("nb1", "vhb"),)))
    assert host.links == {} and host.settings[FORWARD4] == "0"
    assert not os.path.exists(os.path.join(state, "network"))


def test_an_attachment_refuses_a_bridge_that_carries_other_subnets(host, tmp_path):
    state = str(tmp_path)
    first(state, OTHER, "nb1", "198.51.100.0/25")
    with pytest.raises(NetError, match="carries 198.51.100.0/25 for its containers, not 198.51.100.128/25"):
        attach(state, OWNER, "nb1", "198.51.100.128/25", "vha")
    assert "vha" not in host.links


def test_an_attachments_file_names_its_bridge_before_the_bridge_is_made(host, tmp_path, monkeypatch):
    state = str(tmp_path)

    def crash(name: str, addresses: tuple[str, ...]) -> None:
        raise NetError(errno.EPERM, f"make bridge {name}: EPERM")

    monkeypatch.setattr(network.netlink, "make_bridge", crash)
    with pytest.raises(NetError):
        attach(state, OWNER, "nb1", "198.51.100.128/25", "vha")
    with open(os.path.join(state, "network", "nb1.json")) as f:
        written = json.load(f)
    assert written["made"] == {"bridge": True, "forwarding": {FORWARD4: "0"}}
    assert list(written["leases"]) == [OWNER]


@pytest.mark.parametrize("order", ["first bridge first", "second bridge first"])
def test_forwarding_is_restored_only_when_the_state_directorys_last_bridge_goes(host, tmp_path, order):
    state = str(tmp_path)
    first(state, OWNER, "nb0")  # found forwarding off: records "0"
    first(state, OTHER, "nb1", "198.51.100.0/25")  # found it on (nb0's doing): records "1"
    gone, stays = (OWNER, "nb0"), (OTHER, "nb1")
    if order == "second bridge first":
        gone, stays = stays, gone
    teardown(state, gone[0], bridge=gone[1])
    assert host.settings[FORWARD4] == "1", "a bridge still carries a container"
    assert gone[1] not in host.links and stays[1] in host.links
    with open(os.path.join(state, "network", f"{stays[1]}.json")) as f:
        assert json.load(f)["made"]["forwarding"] == {FORWARD4: "0"}  # the host's own value, kept
    teardown(state, stays[0], bridge=stays[1])
    assert host.settings[FORWARD4] == "0"


def test_a_handed_over_setting_the_heir_never_changed_is_restored_by_it(host, tmp_path):
    state = str(tmp_path)
    first(state, OWNER, "nb0", "2001:db8:1::/64")  # IPv6 forwarding found off
    first(state, OTHER, "nb1", "198.51.100.0/25")  # IPv4 forwarding found off
    teardown(state, OWNER)
    assert host.settings[network.FORWARDING[6]] == "1"
    teardown(state, OTHER, bridge="nb1")
    assert (host.settings[FORWARD4], host.settings[network.FORWARDING[6]]) == ("0", "0")


def test_a_failed_attachment_removal_still_removes_the_others_and_the_first(host, tmp_path):
    state = str(tmp_path)
    first(state, OWNER)
    attach(state, OWNER, "nb1", "198.51.100.0/25", "vha")
    attach(state, OWNER, "nb2", "198.51.100.128/25", "vhb")
    host.broken.add("vha")
    with pytest.raises(NetError, match="delete link vha"):
        teardown(state, OWNER, (("nb1", "vha"), ("nb2", "vhb")))
    assert set(host.links) == {"nb1", "vha"}  # the second attachment and the first bridge are gone
    assert leases(state, "nb1") == [OWNER]
    assert host.settings[FORWARD4] == "1", "the failed attachment's bridge still holds a lease"
    host.broken.clear()
    teardown(state, OWNER, (("nb1", "vha"), ("nb2", "vhb")))  # again, what is gone is fine
    assert host.links == {} and host.settings[FORWARD4] == "0"


def test_link_up_skips_only_an_ipv6_setting_the_kernel_lacks(monkeypatch):
    up: list[str] = []
    monkeypatch.setattr(network.netlink, "link_up", up.append)
    missing6 = "/proc/sys/net/ipv6/conf/nucleus-absent/forwarding"
    network.link_up(v.NetLinkUp("eth0", ((missing6, "0"),)))
    assert up == ["eth0"]
    with pytest.raises(FileNotFoundError):
        network.link_up(v.NetLinkUp("eth0", (("/proc/sys/net/ipv4/conf/nucleus-absent/forwarding", "0"),)))
    assert up == ["eth0"]


def test_the_link_local_drop_covers_every_bridge_of_the_container():
    op = v.NetEgress("nft", "nb0", OWNER, "/state", ("192.0.2.2/25", "198.51.100.2/25"), ("192.0.2.1/25",),
                     more_bridges=("nb1", "nb2"))
    script = egress_rules._nft_script(op, 40000, 40001)
    assert 'iifname { "nb0", "nb1", "nb2" } ip6 saddr fe80::/10 meta l4proto { tcp, udp } drop' in script
    drops = [rule for _, rule in egress_rules._ipt_rules(op, 6, 40000, 40001) if "fe80::/10" in rule]
    assert [(rule[rule.index("-i") + 1], rule[rule.index("-p") + 1]) for rule in drops] == [
        (bridge, proto) for bridge in ("nb0", "nb1", "nb2") for proto in ("udp", "tcp")]
