"""`nucleus compose`: a topology's services as managed containers, driven by the Topology
machine (nucleus.machines.topology).

Each service runs as `nucleus run -d` runs a container (nucleus.app.run with detach), named
`<topology>-<service>` and labelled in its record with the topology, the service and the hash
of its resolved configuration. `up` reads the labelled records to know what runs and what
changed, and feeds the machine Up; the machine says which service to stop or start next, and
this module's executor carries that out with the management commands' own functions (run, stop,
remove) and reports back. The machine's processes are instances: a service's container, or
with `replicas = N` each of `S-1` .. `S-N` (a dependent of S waits for all of them). A
service's dependencies start before it, so it learns their addresses from their records: its
/etc/hosts names every running instance that shares one of its networks (--add-host), at its
address on the first network they share, and a replicated service's name once for each
replica. A recreated service may get another address: its dependents keep running with the old
entry until they are recreated too (`compose restart`).

The health gate reads the container's record (`health`): the service supervisor keeps the
health check's verdict there.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nucleus.app import manage, records
from nucleus.config.container import ContainerConfig
from nucleus.config.topology import Topology, config_hash
from nucleus.driver import Driver
from nucleus.effects import probe
from nucleus.effects.store import Store
from nucleus.errors import InvalidInput, NucleusError, RuntimeFailure
from nucleus.machines import topology as machine
from nucleus.vocab import topology as t

TOPOLOGY_LABEL = "nucleus.topology"
SERVICE_LABEL = "nucleus.service"
HASH_LABEL = "nucleus.config-hash"
HEALTH_POLL = 0.25  # seconds between two looks at a service's health
STOP_TIMEOUT = 10.0

# A service's run configuration, given the /etc/hosts entries and the labels it gets.
Configure = Callable[[str, tuple[tuple[str, str], ...], tuple[str, ...]], ContainerConfig]
Say = Callable[[str], None]


def _store() -> Store:
    return Store(probe.identity().state_root, check=records.problem)


def containers(name: str) -> dict[str, dict[str, Any]]:
    """The records of a topology's containers, by service (the labels say which)."""
    found: dict[str, dict[str, Any]] = {}
    for record in _store().all():
        labels = record.get("labels")
        if isinstance(labels, dict) and labels.get(TOPOLOGY_LABEL) == name and isinstance(
                labels.get(SERVICE_LABEL), str):
            found[labels[SERVICE_LABEL]] = record
    return found


def running(record: dict[str, Any]) -> bool:
    return record.get("status") in records.ACTIVE and manage.supervisor_alive(record)


def health(record: dict[str, Any]) -> str | None:
    """The health check's verdict the container's record holds (None without a check): the one
    place the health gate reads it."""
    service = record.get("service")
    value = service.get("health") if isinstance(service, dict) else None
    return value if isinstance(value, str) else None


def _network(record: dict[str, Any]) -> dict[str, Any]:
    net = record.get("network")
    return net if isinstance(net, dict) else {}


def _attachments(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's networks beyond its first (run's --attach), in their order."""
    found = _network(record).get("attachments")
    return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []


def _bare(found: object) -> tuple[str, ...]:
    """A record's list of addresses without their prefix lengths."""
    return tuple(str(a).split("/", 1)[0] for a in found if isinstance(a, str)) if isinstance(found, list) else ()


def addresses(record: dict[str, Any]) -> tuple[str, ...]:
    """Every address of a container: its first network's, then each attached network's."""
    return _bare(_network(record).get("addresses")) + tuple(
        a for attached in _attachments(record) for a in _bare(attached.get("addresses")))


def _reached_at(topology: Topology, service: str, record: dict[str, Any], nets: set[str]) -> str | None:
    """Where an instance of `service` is reached from the networks `nets`: its address on the
    first of its own networks among them (its first network's in the record, else the
    attachment on that network's bridge); None when it shares none of them."""
    shared = next((n for n in topology.services[service].networks if n in nets), None)
    if shared is None:
        return None
    if shared == topology.services[service].networks[0]:
        found = _bare(_network(record).get("addresses"))
    else:
        bridge = topology.bridge(shared)
        found = next((_bare(a.get("addresses")) for a in _attachments(record) if a.get("bridge") == bridge), ())
    return found[0] if found else None


def hosts_for(topology: Topology, instance: str, found: dict[str, dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """The /etc/hosts entries of an instance: every other running instance that shares a
    network with it, at its address on the first network they share, by its instance name and
    its container name, and a replica also by its service's name (a line for each replica: the
    name resolves to all of them)."""
    own = topology.service_of(instance)
    assert own is not None
    nets = set(topology.services[own].networks)
    out: list[tuple[str, str]] = []
    for other in topology.instance_order:
        record = found.get(other)
        service = topology.service_of(other)
        assert service is not None
        if other == instance or record is None or not running(record):
            continue
        address = _reached_at(topology, service, record, nets)
        if address is None:
            continue
        out += [(other, address), (topology.container(other), address)]
        if service != other:
            out.append((service, address))
    return tuple(out)


def labels(topology: Topology, instance: str) -> tuple[str, ...]:
    return (f"{TOPOLOGY_LABEL}={topology.name}", f"{SERVICE_LABEL}={instance}",
            f"{HASH_LABEL}={config_hash(topology, instance)}")


@dataclass
class Services:
    """The effects of the Topology machine: each intent carried out with the management
    commands' functions, its outcome reported as the machine's event."""

    topology: Topology
    configure: Configure
    say: Say
    health_timeout: float
    failures: dict[str, str] = field(default_factory=dict)

    def perform(self, intents: tuple[Any, ...]) -> list[Any]:
        return [self._one(intent) for intent in intents]

    def _one(self, intent: Any) -> Any:
        match intent:
            case t.StartService(service=s):
                return self._start(s)
            case t.AwaitHealthy(service=s):
                return self._await(s)
            case t.StopService(service=s):
                return self._stop(s)
        raise AssertionError(intent)

    def _name(self, service: str) -> str:
        return self.topology.container(service)

    def _start(self, service: str) -> t.Event:
        from nucleus.app.run import run

        self.say(f"{service}: starting {self._name(service)}")
        found = containers(self.topology.name)
        try:
            leftover = found.get(service)
            if leftover is not None:  # an earlier run of it that ended: its name is taken
                manage.remove(leftover["id"], force=True)
            config = self.configure(service, hosts_for(self.topology, service, found), labels(self.topology, service))
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                run(config, environ={})
        except NucleusError as e:
            self.failures[service] = e.render()
            self.say(f"{service}: failed: {e.message}")
            return t.Failed(service, e.message)
        self.say(f"{service}: started ({printed.getvalue().strip()[:12]})")
        return t.Started(service)

    def _await(self, service: str) -> t.Event:
        self.say(f"{service}: waiting for its health check (at most {self.health_timeout:g}s)")
        deadline = time.monotonic() + self.health_timeout
        while True:
            record = containers(self.topology.name).get(service)
            if record is None or not running(record):
                message = "its container ended before its health check passed"
                break
            verdict = health(record)
            if verdict == "healthy":
                self.say(f"{service}: healthy")
                return t.Healthy(service)
            if verdict == "unhealthy":
                message = "its health check failed"
                break
            if time.monotonic() >= deadline:
                message = f"its health check did not pass within {self.health_timeout:g}s"
                break
            time.sleep(HEALTH_POLL)
        self.failures[service] = message
        self.say(f"{service}: failed: {message}")
        return t.Failed(service, message)

    def _stop(self, service: str) -> t.Event:
        record = containers(self.topology.name).get(service)
        if record is not None:
            self.say(f"{service}: stopping {record['name']}")
            if running(record):
                with contextlib.suppress(RuntimeFailure):  # it ended meanwhile
                    manage.stop(record["id"], STOP_TIMEOUT)
            manage.remove(record["id"], force=True)
        self.say(f"{service}: removed")
        return t.Stopped(service)


def initial(topology: Topology, found: dict[str, dict[str, Any]], keep_going: bool = False,
            recreate: frozenset[str] = frozenset()) -> machine.TopologyState:
    """The machine before a command, its processes the instances (a service's replicas each
    one): the file's in dependency order, then the running ones the file no longer has (stopped
    first); what runs, and what changed (`recreate`: also these)."""
    mine = topology.instance_order
    removed = tuple(sorted(s for s, r in found.items() if s not in mine and running(r)))
    order = mine + removed
    deps = tuple((s, d, condition) for s in mine for d, condition in topology.instance_dependencies(s))
    live = {s: "healthy" if health(r) == "healthy" else "started" for s, r in found.items()
            if running(r) and s in order}
    checked = frozenset(s for s in mine if topology.services[topology.service_of(s) or ""].health_checked)
    for s in [s for s, status in live.items() if status == "healthy" and s not in checked]:
        live[s] = "started"
    stale = frozenset(s for s in mine if s in live and (
        s in recreate or (found[s].get("labels") or {}).get(HASH_LABEL) != config_hash(topology, s)))
    return machine.initial(order, deps, checked, frozenset(mine), live, stale, keep_going)


def name_taken(topology: Topology, records_: list[dict[str, Any]]) -> InvalidInput | None:
    """Why `up` cannot name a service's container `<topology>-<service>`: a container of another
    topology (topology `a-b`'s service `c` and topology `a`'s service `b-c` are both `a-b-c`),
    or one `nucleus run --name` made, has that name."""
    for record in records_:
        labels = record.get("labels")
        labels = labels if isinstance(labels, dict) else {}
        owner, service = labels.get(TOPOLOGY_LABEL), labels.get(SERVICE_LABEL)
        if owner == topology.name or not isinstance(record.get("name"), str):
            continue
        for mine in topology.instance_order:
            if record["name"] != topology.container(mine):
                continue
            held = (f"service {service!r} of topology {owner!r}" if isinstance(owner, str)
                    else "a container not started by compose")
            return InvalidInput(f"compose up {topology.name!r}: service {mine!r} would be the container "
                                f"{record['name']!r}, which is {held} ({record.get('id', '?')[:12]})",
                                hint="rename the topology or the service, or remove that container first")
    return None


def up(topology: Topology, configure: Configure, say: Say, *, keep_going: bool = False,
       health_timeout: float = 60.0, recreate: frozenset[str] = frozenset()) -> machine.TopologyState:
    """Bring the topology up (or in line with its file); a failure raises after the machine
    has rolled back what this up started (with `keep_going`, after the rest is up)."""
    _store().ensure()
    problem = name_taken(topology, _store().all())
    if problem is not None:
        raise problem
    effects = Services(topology, configure, say, health_timeout)
    driver = Driver(machine, initial(topology, containers(topology.name), keep_going, recreate), effects)
    driver.require(t.Up())
    state: machine.TopologyState = driver.state
    if state.phase != "running":
        failed = ", ".join(sorted(state.failed))
        done = ("the services it started were stopped again" if state.phase == "failed"
                else "the others run; their dependents were not started")
        details = "\n".join(f"  {s}: {effects.failures.get(s, 'failed')}" for s in sorted(state.failed))
        raise RuntimeFailure(f"compose up {topology.name!r}: {failed} failed; {done}\n{details}",
                             hint=None if keep_going else "--keep-going leaves the services that did start running")
    return state


def down(topology: Topology, say: Say, *, volumes: bool = False) -> machine.TopologyState:
    """Stop and remove every container of the topology, dependents first; with `volumes`, its
    persistent volumes too."""
    found = containers(topology.name)
    effects = Services(topology, lambda *_: ContainerConfig(argv=()), say, 0.0)
    driver = Driver(machine, initial(topology, found), effects)
    driver.require(t.Down())
    for service, record in containers(topology.name).items():  # ended ones: their records go too
        manage.remove(record["id"], force=True)
        say(f"{service}: removed")
    if volumes:
        for name in _store().remove_volumes(topology.name):
            say(f"volume {name}: removed")
    state: machine.TopologyState = driver.state
    return state


def volume_dir(topology: Topology) -> Callable[[str], str]:
    store = _store()
    return lambda name: store.volume(topology.name, name)


def status(topology: Topology) -> list[dict[str, Any]]:
    """One row per instance of the file (a service's own, or each of its replicas; and one per
    container of the topology it no longer has)."""
    found = containers(topology.name)
    rows = []
    mine = topology.instance_order
    for service in mine + tuple(sorted(set(found) - set(mine))):
        record = found.get(service)
        view = manage.view(record) if record is not None else {}
        current = service in mine and record is not None and (
            (record.get("labels") or {}).get(HASH_LABEL) == config_hash(topology, service))
        rows.append({"service": service, "name": topology.container(service), "id": view.get("id"),
                     "status": view.get("status", "absent"), "health": health(record) if record else None,
                     "addresses": list(addresses(record)) if record else [],
                     "changed": record is not None and not current})
    return rows


def instances_of(topology: Topology, name: str) -> tuple[str, ...]:
    """The instances a verb's SERVICE names: a service's (each of its replicas), or one replica."""
    if name in topology.services:
        return topology.instances(name)
    if topology.service_of(name) is None:
        raise RuntimeFailure(f"{topology.path}: no service {name!r}",
                             hint=f"the services: {', '.join(topology.instance_order)}")
    return (name,)


def container_of(topology: Topology, name: str) -> dict[str, Any]:
    """The record of the instance `name` names (a replicated service: its first replica)."""
    instance = instances_of(topology, name)[0]
    record = containers(topology.name).get(instance)
    if record is None:
        raise RuntimeFailure(f"service {instance!r} of {topology.name!r} has no container",
                             hint=f"bring it up first: nucleus compose up -f {topology.path}")
    return record
