"""A topology's tmpfs volumes and replicated services (nucleus.config.topology): a tmpfs volume
becomes a --tmpfs of each container that mounts it, with its size and owner (a persistent
one's owner is its -v's owner=); `replicas = N`
makes N instances S-1 .. S-N, each a container of its own with its own name and hash, each a
process of the Topology machine that the dependents of S wait for."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.app import compose as app
from nucleus.cli import compose
from nucleus.config import topology
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.plan.run import Artifacts, plan

TEXT = """
name = "shop"
[networks.internal]
subnet = "10.42.0.0/24"
[volumes.cache]
volume_type = "tmpfs"
size = "32M"
owner = "65534:65534"
[volumes.data]
owner = "999:999"
[services.db]
command = ["db"]
networks = ["internal"]
volumes = ["data:/var/lib/db", "cache:/var/cache/db"]
health_check = "true"
[services.api]
command = ["api"]
networks = ["internal"]
replicas = 3
[[services.api.depends_on]]
service = "db"
condition = "healthy"
[services.web]
command = ["web"]
networks = ["internal"]
[[services.web.depends_on]]
service = "api"
"""


FACTS = HostFacts(arch="x86_64", euid=1000, egid=1000, state_root="/s", system=(),
                  cgroups=CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("pids",), ("pids",), None,
                                       "/sys/fs/cgroup"))


def parse(text: str = TEXT) -> topology.Topology:
    return topology.parse(text, "t.toml")


def pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_a_tmpfs_volume_is_each_containers_own_tmpfs_and_a_persistent_one_a_bound_directory():
    t = parse()
    assert t.volumes == {"cache": topology.Volume("tmpfs", "32M", "65534:65534"),
                         "data": topology.Volume(owner="999:999")}
    args = topology.run_arguments(t, "db", lambda name: f"/state/{name}")
    assert pairs(args, "--tmpfs") == ["/var/cache/db:size=32M,owner=65534:65534"]
    assert pairs(args, "--volume") == ["/state/data:/var/lib/db:rw,owner=999:999"]
    bare = parse(TEXT.replace('size = "32M"\nowner = "65534:65534"\n', ""))
    assert pairs(topology.run_arguments(bare, "db", str), "--tmpfs") == ["/var/cache/db"]
    doc = topology.to_json(t)
    assert doc["volumes"] == {"cache": {"volume_type": "tmpfs", "size": "32M", "owner": "65534:65534"},
                              "data": {"volume_type": "persistent", "owner": "999:999"}}


def test_a_tmpfs_volume_reaches_the_container_configuration_as_run_checks_it():
    config = compose.service_config(parse(), "db")
    assert [(fs.target, fs.size, fs.owner) for fs in config.tmpfs] == [("/var/cache/db", 32 << 20, "65534:65534")]
    assert [(vol.target, vol.writable, vol.owner) for vol in config.volumes] == [("/var/lib/db", True, "999:999")]
    with pytest.raises(InvalidInput) as e:
        compose.service_config(parse(TEXT.replace('"/var/cache/db"', '"/tmp"').replace(':/var/cache/db"', ':/tmp"')), "db")
    assert e.value.message.startswith("t.toml: services.db.volumes: --tmpfs '/tmp:size=32M,owner=65534:65534': /tmp "
                                      "would replace what nucleus makes there"), e.value.message


def test_replicas_are_instances_named_s_1_to_s_n_each_its_own_container():
    t = parse()
    assert t.instances("api") == ("api-1", "api-2", "api-3") and t.instances("db") == ("db",)
    assert t.instance_order == ("db", "api-1", "api-2", "api-3", "web")
    assert t.service_of("api-2") == "api" and t.service_of("api") is None and t.service_of("db") == "db"
    args = topology.run_arguments(t, "api-2", str)
    assert args[:5] == ["--detach", "--name", "shop-api-2", "--hostname", "api-2"]
    hashes = {topology.config_hash(t, i) for i in t.instances("api")}
    assert len(hashes) == 3
    doc = topology.to_json(t)
    assert doc["services"]["api"]["replicas"] == 3
    assert list(doc["services"]["api"]["instances"]) == ["api-1", "api-2", "api-3"]
    assert doc["services"]["api"]["instances"]["api-1"]["container"] == "shop-api-1"
    assert doc["services"]["db"]["instances"] == {"db": {"container": "shop-db",
                                                         "config_hash": topology.config_hash(t, "db")}}


def test_scaling_keeps_the_replicas_that_stay_unchanged():
    three, two = parse(), parse(TEXT.replace("replicas = 3", "replicas = 2"))
    assert topology.config_hash(three, "api-1") == topology.config_hash(two, "api-1")
    assert two.service_of("api-3") is None


def test_the_dependents_of_a_replicated_service_wait_for_every_replica():
    t = parse()
    assert t.instance_dependencies("web") == (("api-1", "started"), ("api-2", "started"), ("api-3", "started"))
    assert t.instance_dependencies("api-3") == (("db", "healthy"),)
    state = app.initial(t, {})
    assert state.order == t.instance_order
    assert ("web", "api-2", "started") in state.deps and ("api-1", "db", "healthy") in state.deps
    assert state.health_checked == frozenset({"db"}) and state.wanted == frozenset(t.instance_order)


def test_a_verb_names_a_service_s_replicas_or_one_of_them():
    t = parse()
    assert app.instances_of(t, "api") == ("api-1", "api-2", "api-3")
    assert app.instances_of(t, "api-2") == ("api-2",) and app.instances_of(t, "db") == ("db",)


def test_a_name_of_several_addresses_resolves_to_all_of_them():
    t = parse()
    hosts = (("api-1", "10.42.0.3"), ("api", "10.42.0.3"), ("api-2", "10.42.0.4"), ("api", "10.42.0.4"))
    config = dataclasses.replace(compose.service_config(t, "web", None, hosts), network="none")
    ops = plan(config, FACTS, Artifacts(), "c1").state.fs.plan
    files = {op.path: op.content for op in ops if isinstance(op, v.WriteFile)}
    assert files["/s/rootfs/etc/host.conf"] == "multi on\n"
    assert "10.42.0.3\tapi\n" in files["/s/rootfs/etc/hosts"] and "10.42.0.4\tapi\n" in files["/s/rootfs/etc/hosts"]
    single = dataclasses.replace(compose.service_config(t, "web", None, hosts[:2]), network="none")
    ops = plan(single, FACTS, Artifacts(), "c1").state.fs.plan
    assert not any(isinstance(op, v.WriteFile) and op.path.endswith("/host.conf") for op in ops)
