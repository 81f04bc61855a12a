"""A service on several networks (nucleus.config.topology, nucleus.app.compose): up to nine,
each once; the first is its `--network bridge` (eth0), each other an `--attach` (eth1, ..) in
the file's order, all of them in its configuration hash; an instance resolves every running
instance it shares a network with, at that one's address on the first network they share,
and none it shares no network with."""

from __future__ import annotations

import json

import pytest

from nucleus.app import compose as app
from nucleus.cli import compose
from nucleus.config import topology
from nucleus.config.network import Attachment
from nucleus.errors import InvalidInput

TEXT = """
name = "mesh"
[networks.a]
subnet = "10.1.0.0/24"
[networks.b]
subnet = "10.2.0.0/24"
[networks.c]
subnet = "10.3.0.0/24"
[services.backend]
command = ["backend"]
networks = ["a"]
[services.other]
command = ["other"]
networks = ["c"]
[services.proxy]
command = ["proxy"]
networks = ["a", "b"]
[services.edge]
command = ["edge"]
networks = ["b", "a"]
[services.client]
command = ["client"]
networks = ["b"]
"""


def parse(text: str = TEXT) -> topology.Topology:
    return topology.parse(text, "t.toml")


def pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def record(t: topology.Topology, first: str, address: str, *attached: tuple[str, str]) -> dict:
    """A running container's record as run writes it: its first network's addresses, and an
    attachment for each other network."""
    return {"status": "running", "network": {
        "mode": "bridge", "bridge": t.bridge(first), "addresses": [f"{address}/24"],
        "attachments": [{"bridge": t.bridge(net), "subnets": [t.networks[net]], "addresses": [f"{a}/24"]}
                        for net, a in attached]}}


@pytest.fixture
def found(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    monkeypatch.setattr(app.manage, "supervisor_alive", lambda record: True)
    t = parse()
    return {"backend": record(t, "a", "10.1.0.2"), "other": record(t, "c", "10.3.0.2"),
            "proxy": record(t, "a", "10.1.0.3", ("b", "10.2.0.3")),
            "edge": record(t, "b", "10.2.0.4", ("a", "10.1.0.4")),
            "client": record(t, "b", "10.2.0.5")}


def test_a_service_lists_its_networks_in_order_and_the_first_is_its_own_bridge():
    t = parse()
    assert t.services["proxy"].networks == ("a", "b") and t.services["edge"].networks == ("b", "a")
    args = topology.run_arguments(t, "proxy", str)
    assert pairs(args, "--network") == ["bridge"] and pairs(args, "--bridge-name") == [t.bridge("a")]
    assert pairs(args, "--subnet") == ["10.1.0.0/24"] and pairs(args, "--attach") == [f"{t.bridge('b')}=10.2.0.0/24"]
    assert pairs(topology.run_arguments(t, "backend", str), "--attach") == []
    assert topology.to_json(t)["services"]["edge"]["networks"] == ["b", "a"]


def test_nine_networks_become_one_bridge_and_eight_attachments_run_accepts():
    nets = "".join(f'[networks.n{i}]\nsubnet = "10.{i}.0.0/24"\n' for i in range(10))
    listed = [f"n{i}" for i in range(9)]
    t = parse(f'name = "x"\n{nets}[services.a]\ncommand = ["a"]\nnetworks = {json.dumps(listed)}')
    config = compose.service_config(t, "a")
    assert config.bridge.name == t.bridge("n0") and config.bridge.subnets == ("10.0.0.0/24",)
    assert config.bridge.attachments == tuple(Attachment(t.bridge(f"n{i}"), (f"10.{i}.0.0/24",)) for i in range(1, 9))
    with pytest.raises(InvalidInput) as e:
        parse(f'name = "x"\n{nets}[services.a]\ncommand = ["a"]\nnetworks = {json.dumps(listed + ["n9"])}')
    assert e.value.message == f"t.toml: services.a.networks: {json.dumps(listed + ['n9'])}: a service joins at " \
                              "most 9 networks"


def test_a_network_listed_twice_is_refused_at_its_index():
    with pytest.raises(InvalidInput) as e:
        parse(TEXT.replace('networks = ["b", "a"]', 'networks = ["b", "a", "c", "a"]'))
    assert e.value.message == "t.toml: services.edge.networks[3]: 'a' is also services.edge.networks[1]"
    assert e.value.hint == "list each network once: a container has one interface on each"


def test_the_hash_covers_every_network_of_the_service_and_their_order():
    before = parse()
    moved = parse(TEXT.replace("10.2.0.0/24", "10.20.0.0/24"))
    assert topology.config_hash(before, "proxy") != topology.config_hash(moved, "proxy")
    assert topology.config_hash(before, "backend") == topology.config_hash(moved, "backend")
    swapped = parse(TEXT.replace('networks = ["a", "b"]', 'networks = ["b", "a"]'))
    assert topology.config_hash(before, "proxy") != topology.config_hash(swapped, "proxy")


def test_an_instance_resolves_each_other_at_its_address_on_the_first_network_they_share(found):
    t = parse()
    assert app.hosts_for(t, "client", found) == (
        ("proxy", "10.2.0.3"), ("mesh-proxy", "10.2.0.3"), ("edge", "10.2.0.4"), ("mesh-edge", "10.2.0.4"))
    assert app.hosts_for(t, "backend", found) == (
        ("proxy", "10.1.0.3"), ("mesh-proxy", "10.1.0.3"), ("edge", "10.1.0.4"), ("mesh-edge", "10.1.0.4"))
    # proxy and edge share a and b: each is reached on the first of its own networks.
    assert dict(app.hosts_for(t, "proxy", found))["edge"] == "10.2.0.4"
    assert dict(app.hosts_for(t, "edge", found))["proxy"] == "10.1.0.3"
    assert app.hosts_for(t, "other", found) == ()


def test_an_instance_without_an_address_on_the_shared_network_is_not_named(found):
    t = parse()
    found["proxy"]["network"]["attachments"] = []
    assert dict(app.hosts_for(t, "client", found)) == {"edge": "10.2.0.4", "mesh-edge": "10.2.0.4"}
    found["proxy"]["status"] = "stopped"
    assert "proxy" not in dict(app.hosts_for(t, "backend", found))


def test_ps_shows_the_addresses_of_every_network(found):
    assert app.addresses(found["proxy"]) == ("10.1.0.3", "10.2.0.3")
    assert app.addresses(found["backend"]) == ("10.1.0.2",)
    assert app.addresses({"network": {"addresses": "10.1.0.9/24", "attachments": [5]}}) == ()
