"""The topology file (nucleus.config.topology): the reference's format read key for key, each
malformed file refused with one error naming the file, the key's dotted path, what was
expected and the value; the graph ordered, a cycle printed; the run arguments each service
becomes, and the hash that tells reconciliation what changed. Every service is then checked by
`nucleus run`'s own parsing and validation (nucleus.cli.compose.service_config)."""

from __future__ import annotations

import pytest

from nucleus.cli import compose
from nucleus.config import topology
from nucleus.errors import InvalidInput

REFERENCE = """
name = "myapp"

[networks.internal]
subnet = "10.42.0.0/24"

[services.postgres]
rootfs = "/nix/store/x-postgres"
command = ["postgres", "-D", "/var/lib/postgresql/data"]
memory = "2G"
cpus = 2.0
networks = ["internal"]
health_check = "pg_isready -U myapp"

[services.web]
rootfs = "/nix/store/x-web"
command = ["/bin/web-server"]
memory = "512M"
networks = ["internal"]
port_forwards = ["8443:8443"]
egress_allow = ["10.42.0.0/24"]

[[services.web.depends_on]]
service = "postgres"
condition = "healthy"
"""


def parse(text: str) -> topology.Topology:
    return topology.parse(text, "t.toml")


def refused(text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as e:
        parse(text)
    return e.value


def test_the_reference_example_reads_key_for_key():
    t = parse(REFERENCE)
    assert t.name == "myapp" and t.order == ("postgres", "web") and t.networks == {"internal": "10.42.0.0/24"}
    web = t.services["web"]
    assert web.depends_on == (topology.Dependency("postgres", "healthy"),)
    assert web.option("port_forwards") == ("8443:8443",) and web.option("memory") == ("512M",)
    assert t.services["postgres"].health_checked and not web.health_checked
    args = topology.run_arguments(t, "web", lambda v: f"/vol/{v}", (("postgres", "10.42.0.2"),), ("k=v",))
    assert args[:5] == ["--detach", "--name", "myapp-web", "--hostname", "web"]
    assert args[-2:] == ["--", "/bin/web-server"]
    for pair in (["--memory", "512M"], ["--publish", "8443:8443"], ["--egress-allow", "10.42.0.0/24"],
                 ["--network", "bridge"], ["--bridge-name", t.bridge("internal")],
                 ["--subnet", "10.42.0.0/24"], ["--add-host", "postgres:10.42.0.2"], ["--label", "k=v"]):
        i = args.index(pair[0])
        assert args[i:i + 2] == pair, pair
    assert len(t.bridge("internal")) <= 15


@pytest.mark.parametrize("text,message", [
    ('name = "x"\n[services.web]\ncommand = ["a"]\nhelth_check = "true"',
     "t.toml: services.web.helth_check: no such key"),
    ('name = "x"\ncolour = 1\n[services.web]\ncommand = ["a"]', "t.toml: colour: no such key"),
    ('name = "x"\n[services.web]\ncommand = ["a"]\nmemory = [1]',
     't.toml: services.web.memory: expected a size ("512M" or a number of bytes), got [1] (an array)'),
    ('name = "x"\n[services.web]\ncommand = 5',
     "t.toml: services.web.command: expected a command (an array of strings, or a string split at "
     "spaces), got 5 (an integer)"),
    ('name = "x"\n[services.web]\ncommand = ["a"]\nenvironment = { A = 1 }',
     "t.toml: services.web.environment.A: expected a string, got 1 (an integer)"),
    ('name = "x"\n[services.web]\ncommand = ["a"]\ncpus = "two"',
     "t.toml: services.web.cpus: expected a number, got 'two' (a string)"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\n[[services.a.depends_on]]\nservice = "zz"',
     "t.toml: services.a.depends_on[0].service: no service 'zz'"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\n[[services.a.depends_on]]\nservice = "b"\n'
     '[services.b]\ncommand = ["b"]\n[[services.b.depends_on]]\nservice = "c"\n'
     '[services.c]\ncommand = ["c"]\n[[services.c.depends_on]]\nservice = "a"',
     "t.toml: services.a.depends_on: a cycle: a -> b -> c -> a"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\n[services.b]\ncommand = ["b"]\n'
     '[[services.b.depends_on]]\nservice = "a"\ncondition = "healthy"',
     "t.toml: services.b.depends_on[0].condition: 'healthy', but 'a' has no health_check"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\n[[services.a.depends_on]]\nservice = "a"\ncondition = "ready"',
     "t.toml: services.a.depends_on[0].condition: 'ready' is neither started nor healthy"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\nnetworks = ["back"]', "t.toml: services.a.networks: no network 'back'"),
    ('name = "x"\n[networks.n]\nsubnet = "10.1.2.3/24"\n[services.a]\ncommand = ["a"]',
     "t.toml: networks.n.subnet: '10.1.2.3/24' is not a network: 10.1.2.3/24 has host bits set"),
    ('name = "x"\n[networks.n]\n[services.a]\ncommand = ["a"]', "t.toml: networks.n.subnet: missing"),
    ('name = "x"\n[networks.n]\nsubnet = "10.1.0.0/24"\n[networks.m]\nsubnet = "10.2.0.0/24"\n'
     '[services.a]\ncommand = ["a"]\nnetworks = ["n", "m", "n"]',
     "t.toml: services.a.networks[2]: 'n' is also services.a.networks[0]"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\nvolumes = ["data:/d"]', "t.toml: services.a.volumes: no volume 'data'"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\nvolumes = ["data"]',
     "t.toml: services.a.volumes: 'data' is not VOLUME:/PATH[:ro|rw]"),
    ('name = "x"\n[volumes.v]\nvolume_type = "ephemeral"\n[services.a]\ncommand = ["a"]',
     "t.toml: volumes.v.volume_type: 'ephemeral' is neither persistent nor tmpfs"),
    ('name = "x"\n[volumes.v]\nsize = "1G"\n[services.a]\ncommand = ["a"]',
     "t.toml: volumes.v.size: 1G: a persistent volume is a directory of the state directory's file system, "
     "whose size nucleus cannot limit"),
    ('name = "x"\n[volumes.v]\nowner = ""\n[services.a]\ncommand = ["a"]',
     "t.toml: volumes.v.owner: owner '': the user is empty"),
    ('name = "x"\n[volumes.v]\nvolume_type = "tmpfs"\nsize = [1]\n[services.a]\ncommand = ["a"]',
     't.toml: volumes.v.size: expected a size ("512M" or a number of bytes), got [1] (an array)'),
    ('name = "x"\n[volumes.v]\nvolume_type = "tmpfs"\nowner = 1000\n[services.a]\ncommand = ["a"]',
     "t.toml: volumes.v.owner: expected a string, got 1000 (an integer)"),
    ('name = "x"\n[volumes.v]\nvolume_type = "tmpfs"\nsize = "lots"\n[services.a]\ncommand = ["a"]',
     "t.toml: volumes.v.size: size 'lots': not a size"),
    ('name = "x"\n[volumes.v]\nvolume_type = "tmpfs"\nsize = 0\n[services.a]\ncommand = ["a"]',
     "t.toml: volumes.v.size: size '0': an empty tmpfs"),
    ('name = "x"\n[volumes.v]\nvolume_type = "tmpfs"\nowner = "a b"\n[services.a]\ncommand = ["a"]',
     "t.toml: volumes.v.owner: owner 'a b': 'a b' is not a user name or id"),
    ('name = "x"\n[volumes.v]\nvolume_type = "tmpfs"\nmode = "0700"\n[services.a]\ncommand = ["a"]',
     "t.toml: volumes.v.mode: no such key"),
    ('name = "x"\n[volumes.v]\nvolume_type = "tmpfs"\n[services.a]\ncommand = ["a"]\nvolumes = ["v:/v:ro"]',
     "t.toml: services.a.volumes: 'v:/v:ro': the tmpfs volume 'v' is empty at each start"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\nreplicas = 0', "t.toml: services.a.replicas: 0: a service runs as 1 to 64 containers"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\nreplicas = 65', "t.toml: services.a.replicas: 65: a service runs as 1 to 64 containers"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\nreplicas = "2"', "t.toml: services.a.replicas: expected a whole number, got '2' (a string)"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\nreplicas = 2\nport_forwards = ["8080:80"]',
     "t.toml: services.a.replicas: 2, with port_forwards: each replica would publish the same host ports"),
    ('name = "x"\n[services.a]\ncommand = ["a"]\nreplicas = 2\n[services.a-1]\ncommand = ["a"]',
     "t.toml: services.a-1: the instance 'a-1' is also a replica of service 'a'"),
    ('[services.a]\ncommand = ["a"]', "t.toml: name: missing"),
    ('name = "my app"\n[services.a]\ncommand = ["a"]', "t.toml: name: 'my app' is not a valid name"),
    ('name = "x"', "t.toml: services: no service"),
    ('name = "x"\n[services', "t.toml: not TOML"),
], ids=["unknown-key", "unknown-top", "bad-type", "bad-command", "env-value", "cpus", "missing-dependency",
        "cycle", "healthy-without-check", "condition", "missing-network", "subnet-host-bits", "no-subnet", "network-twice",
        "missing-volume", "mount-form", "ephemeral", "persistent-size", "persistent-owner", "tmpfs-size-type",
        "tmpfs-owner-type", "tmpfs-size", "tmpfs-size-zero", "tmpfs-owner", "volume-unknown-key", "tmpfs-ro", "replicas-zero",
        "replicas-too-many", "replicas-type", "replicas-ports",
        "replica-name-taken", "no-name", "bad-name", "no-service", "toml"])
def test_a_malformed_file_gets_one_clear_error(text, message):
    assert refused(text).message.startswith(message)


def test_an_unknown_key_suggests_the_known_one():
    e = refused('name = "x"\n[services.web]\ncommand = ["a"]\nhelth_check = "true"')
    assert e.hint == "did you mean 'health_check'?"


def test_the_start_order_puts_dependencies_first_and_keeps_the_file_order_otherwise():
    t = parse('name = "x"\n[services.web]\ncommand = ["w"]\n[[services.web.depends_on]]\nservice = "api"\n'
              '[services.other]\ncommand = ["o"]\n[services.api]\ncommand = ["a"]\n'
              '[[services.api.depends_on]]\nservice = "db"\n[services.db]\ncommand = ["d"]')
    assert t.order == ("db", "api", "web", "other")
    assert t.dependents("api") == ("web",)


def test_the_hash_changes_with_the_service_alone():
    before = parse(REFERENCE)
    after = parse(REFERENCE.replace('command = ["/bin/web-server"]', 'command = ["/bin/web-server", "-v"]'))
    assert topology.config_hash(before, "web") != topology.config_hash(after, "web")
    assert topology.config_hash(before, "postgres") == topology.config_hash(after, "postgres")
    moved = parse(REFERENCE.replace("10.42.0.0/24", "10.43.0.0/24"))
    assert topology.config_hash(before, "postgres") != topology.config_hash(moved, "postgres")


def test_the_resolved_topology_is_json_in_start_order():
    doc = topology.to_json(parse(REFERENCE))
    assert doc["order"] == ["postgres", "web"] and list(doc["services"]) == ["postgres", "web"]
    assert doc["services"]["web"]["depends_on"] == [{"service": "postgres", "condition": "healthy"}]
    assert doc["services"]["web"]["port_forwards"] == ["8443:8443"]


@pytest.mark.parametrize("body,message", [
    ('memory = "lots"', "t.toml: services.a.memory: --memory 'lots': not a size"),
    ('nat_backend = "pf"', "t.toml: services.a.nat_backend: Invalid value for '--nat-backend'"),
    ('health_interval = 0.01\nhealth_check = "true"', "t.toml: services.a.health_interval: --health-interval"),
    ('environment = { "1BAD" = "x" }', "t.toml: services.a.environment: "),
], ids=["memory", "choice", "health-interval", "env-name"])
def test_each_service_is_checked_as_run_checks_it(body, message):
    t = parse(f'name = "x"\n[services.a]\ncommand = ["a"]\n{body}')
    with pytest.raises(InvalidInput) as e:
        compose.service_config(t, "a")
    assert e.value.message.startswith(message), e.value.message


def test_a_service_run_accepts_becomes_its_container_config():
    t = parse(REFERENCE.replace('rootfs = "/nix/store/x-web"\n', "").replace('rootfs = "/nix/store/x-postgres"\n', ""))
    config = compose.service_config(t, "web", lambda v: f"/vol/{v}", (("postgres", "10.42.0.2"),),
                                    ("nucleus.topology=myapp",))
    assert (config.name, config.hostname, config.detach, config.network) == ("myapp-web", "web", True, "bridge")
    assert config.extra_hosts == (("postgres", "10.42.0.2"),) and config.labels == (("nucleus.topology", "myapp"),)
    assert config.argv == ("/bin/web-server",) and config.bridge.name == t.bridge("internal")
