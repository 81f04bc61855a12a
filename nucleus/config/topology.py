"""A topology file (`nucleus compose`, default nucleus.toml): services, the networks they share
and the volumes they keep, read from TOML and checked completely before anything starts. Pure:
the file's text comes in, a Topology goes out (nucleus.cli.compose reads the file and checks
each service's options with `nucleus run`'s own parsing and validation).

    name = "myapp"
    [networks.internal]
    subnet = "10.42.0.0/24"
    [volumes.pgdata]
    [volumes.scratch]
    volume_type = "tmpfs"
    size = "64M"
    owner = "postgres"
    [services.db]
    rootfs = "/nix/store/...-postgres"
    command = ["postgres", "-D", "/var/lib/postgresql/data"]
    volumes = ["pgdata:/var/lib/postgresql/data", "scratch:/var/cache/db"]
    networks = ["internal"]
    health_check = "pg_isready -U myapp"
    [[services.web.depends_on]]
    service = "db"
    condition = "healthy"

A service's keys become `nucleus run` flags through one table (SERVICE_KEYS): a key is one line
there. Every error names the file, the dotted path of the key, what was expected and the value.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

from nucleus.config import users
from nucleus.config.policy.common import _closest, _kind, _show
from nucleus.config.resources import parse_size
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

DEFAULT_FILE = "nucleus.toml"
CONDITIONS = ("started", "healthy")
PERSISTENT, TMPFS = "persistent", "tmpfs"
VOLUME_TYPES = (PERSISTENT, TMPFS)
# Topology and service names: the container is named <topology>-<service> (a container name,
# nucleus.config.container.NAME_RE, of at most 64 characters); no '.' so that the service's
# name is a host name the others resolve. Two topologies may come to one name ('a-b' and 'c',
# 'a' and 'b-c'): `up` refuses a name another holds (nucleus.app.compose.name_taken).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,30}")
_NET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_HINT = "letters, digits, '_' and '-', starting with a letter or digit, at most 31 characters"


# --- The table of service keys ------------------------------------------------------------------

# What a key's value must be, as an error names it.
STRING, STRINGS, NUMBER, COUNT, SIZE, PORTS = (
    "a string", "an array of strings", "a number", "a whole number", "a size (\"512M\" or a number of bytes)",
    "an array of ports (numbers or \"FIRST-LAST\" strings)")
COMMAND = "a command (an array of strings, or a string split at spaces)"
TABLE = "a table of strings"
DEPENDENCIES = "an array of tables ([[services.S.depends_on]] with service and condition)"


@frozen
class Key:
    """A service key: the kind of value it takes, and the `nucleus run` flag each value becomes
    (None: compose's own)."""

    kind: str
    flag: str | None = None


SERVICE_KEYS: dict[str, Key] = {
    "rootfs": Key(STRING, "--rootfs"),
    "command": Key(COMMAND),
    "memory": Key(SIZE, "--memory"),
    "cpus": Key(NUMBER, "--cpus"),
    "pids": Key(COUNT, "--pids"),
    "cgroup_parent": Key(STRING, "--cgroup-parent"),
    "user": Key(STRING, "--user"),
    "workdir": Key(STRING, "--workdir"),
    "environment": Key(TABLE, "--env"),
    "service_mode": Key(STRING, "--service-mode"),
    "networks": Key(STRINGS),
    "volumes": Key(STRINGS),
    "depends_on": Key(DEPENDENCIES),
    "replicas": Key(COUNT),
    "health_check": Key(STRING, "--health-cmd"),
    "health_interval": Key(NUMBER, "--health-interval"),
    "health_timeout": Key(NUMBER, "--health-timeout"),
    "health_retries": Key(COUNT, "--health-retries"),
    "health_start_period": Key(NUMBER, "--health-start-period"),
    "readiness_exec": Key(STRING, "--readiness-exec"),
    "readiness_tcp": Key(COUNT, "--readiness-tcp"),
    "restart": Key(STRING, "--restart"),
    "secrets": Key(STRINGS, "--secret"),
    "egress_allow": Key(STRINGS, "--egress-allow"),
    "egress_domains": Key(STRINGS, "--egress-domain"),
    "egress_tcp_ports": Key(PORTS, "--egress-tcp-port"),
    "egress_udp_ports": Key(PORTS, "--egress-udp-port"),
    "port_forwards": Key(STRINGS, "--publish"),
    "dns": Key(STRINGS, "--dns"),
    "nat_backend": Key(STRING, "--nat-backend"),
}
TOP_KEYS = ("name", "networks", "volumes", "services")
NETWORK_KEYS = ("subnet",)
VOLUME_KEYS = ("volume_type", "size", "owner")
DEPENDENCY_KEYS = ("service", "condition")
MAX_REPLICAS = 64
MAX_NETWORKS = 9  # the first network's interface, and eight more (run's --attach)


# --- The topology ------------------------------------------------------------------------------


@frozen
class Dependency:
    service: str
    condition: str = "started"


@frozen
class Volume:
    """A `[volumes.V]`: persistent (a directory under the state directory, shared by the
    services that mount it, kept until `down --volumes`, whose owner appears inside as `owner`)
    or tmpfs (each container that mounts it gets its own, empty at each start, of `size`, its
    root owned by `owner`)."""

    volume_type: str = PERSISTENT
    size: str | None = None  # tmpfs only, as written
    owner: str | None = None  # USER[:GROUP] as -u takes it (None: container root)


@frozen
class Mount:
    """A service's `volumes` entry: a volume of the topology (`source` a name) or, written as an
    absolute path, a directory of the host (agent mode's binds)."""

    source: str
    target: str
    mode: str = "rw"

    @property
    def named(self) -> bool:
        return not self.source.startswith("/")


@frozen
class Service:
    name: str
    command: tuple[str, ...] = ()
    # (key, value) of every key that becomes a run flag, in SERVICE_KEYS' order; values as text.
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    networks: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    depends_on: tuple[Dependency, ...] = ()
    replicas: int = 1

    def option(self, key: str) -> tuple[str, ...]:
        return dict(self.options).get(key, ())

    @property
    def health_checked(self) -> bool:
        return bool(self.option("health_check"))


@frozen
class Topology:
    name: str
    path: str
    networks: Mapping[str, str] = field(default_factory=dict)  # name -> subnet
    volumes: Mapping[str, Volume] = field(default_factory=dict)
    services: Mapping[str, Service] = field(default_factory=dict)
    order: tuple[str, ...] = ()  # the services in dependency order (a dependency first)

    def container(self, instance: str) -> str:
        return f"{self.name}-{instance}"

    def instances(self, service: str) -> tuple[str, ...]:
        """The containers a service runs as, by instance name: the service's own name, or with
        `replicas = N` (N > 1) `S-1` .. `S-N`."""
        n = self.services[service].replicas
        return (service,) if n == 1 else tuple(f"{service}-{i}" for i in range(1, n + 1))

    @property
    def instance_order(self) -> tuple[str, ...]:
        """Every instance, services in dependency order, replicas in their own order."""
        return tuple(i for s in self.order for i in self.instances(s))

    def service_of(self, instance: str) -> str | None:
        """The service an instance belongs to (None: not one of this file's)."""
        return next((s for s in self.order if instance in self.instances(s)), None)

    def instance_dependencies(self, instance: str) -> tuple[tuple[str, str], ...]:
        """(instance, condition) an instance waits for: every instance of each dependency."""
        service = self.service_of(instance)
        assert service is not None
        return tuple((i, d.condition) for d in self.services[service].depends_on for i in self.instances(d.service))

    def bridge(self, network: str) -> str:
        """The host bridge of one of its networks: a Linux link name of at most 15 bytes, the
        same for the same topology and network."""
        return "nt" + hashlib.sha256(f"{self.name}/{network}".encode()).hexdigest()[:10]

    def dependents(self, service: str) -> tuple[str, ...]:
        return tuple(s for s in self.order if any(d.service == service for d in self.services[s].depends_on))


# --- Reading -----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, where: str, message: str, hint: str | None = None) -> InvalidInput:
        return InvalidInput(f"{self.path}: {where}: {message}", hint=hint)

    def bad_type(self, where: str, expected: str, value: object) -> InvalidInput:
        return self.error(where, f"expected {expected}, got {_show(value)} ({_kind(value)})")

    def table(self, where: str, value: object, known: tuple[str, ...] | Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.bad_type(where, "a table", value)
        for key in value:
            if key not in known:
                near = _closest(key, tuple(known)) if known else None
                raise self.error(f"{where}.{key}" if where else key, "no such key",
                                 hint=f"did you mean {near!r}?" if near else f"the keys here: {', '.join(known)}")
        return value

    def string(self, where: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.bad_type(where, STRING, value)
        return value

    def strings(self, where: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise self.bad_type(where, STRINGS, value)
        return tuple(value)

    def name(self, where: str, value: str, pattern: re.Pattern[str] = _NAME_RE, hint: str = NAME_HINT) -> str:
        if not pattern.fullmatch(value):
            raise self.error(where, f"{value!r} is not a valid name", hint=hint)
        return value


def parse(text: str, path: str = DEFAULT_FILE) -> Topology:
    """The topology a file holds, every key checked and the graph ordered; InvalidInput naming
    `path`, the key's dotted path and the value otherwise."""
    r = _Reader(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput(f"{path}: not TOML: {e}") from None
    r.table("", data, TOP_KEYS)
    if "name" not in data:
        raise r.error("name", "missing", hint='name the topology: name = "myapp" (its containers are <name>-<service>)')
    name = r.name("name", r.string("name", data["name"]))
    networks: dict[str, str] = {}
    for net, body in r.table("networks", data.get("networks", {}), _AnyKey()).items():
        where = f"networks.{net}"
        r.name(where, net, _NET_NAME_RE)
        body = r.table(where, body, NETWORK_KEYS)
        if "subnet" not in body:
            raise r.error(f"{where}.subnet", "missing",
                          hint="give each network its own subnet, e.g. subnet = \"10.42.0.0/24\"")
        networks[net] = _subnet(r, f"{where}.subnet", r.string(f"{where}.subnet", body["subnet"]))
    volumes = {vol: _volume(r, f"volumes.{vol}", vol, body)
               for vol, body in r.table("volumes", data.get("volumes", {}), _AnyKey()).items()}
    services: dict[str, Service] = {}
    for svc, body in r.table("services", data.get("services", {}), _AnyKey()).items():
        services[svc] = _service(r, name, svc, body)
    if not services:
        raise r.error("services", "no service", hint="add one: [services.web] with a command")
    topology = Topology(name, path, networks, volumes, services)
    _check_references(r, topology)
    return Topology(name, path, networks, volumes, services, start_order(topology))


def _volume(r: _Reader, where: str, name: str, body: object) -> Volume:
    r.name(where, name, _NET_NAME_RE)
    body = r.table(where, body, VOLUME_KEYS)
    kind = r.string(f"{where}.volume_type", body.get("volume_type", PERSISTENT))
    if kind not in VOLUME_TYPES:
        raise r.error(f"{where}.volume_type", f"{kind!r} is neither {PERSISTENT} nor {TMPFS}",
                      hint="persistent: a directory under the state directory, kept until compose down "
                           "--volumes; tmpfs: in memory, each container's own, empty at each start")
    size = None
    if "size" in body:
        size = _values(r, f"{where}.size", SIZE, body["size"])[0]
        _checked(r, f"{where}.size", lambda: _tmpfs_size(size or ""))
        if kind == PERSISTENT:
            raise r.error(f"{where}.size", f"{size}: a persistent volume is a directory of the state "
                          "directory's file system, whose size nucleus cannot limit",
                          hint='leave out size, or make it volume_type = "tmpfs" (in memory, of that size)')
    owner = None
    if "owner" in body:
        owner = r.string(f"{where}.owner", body["owner"])
        _checked(r, f"{where}.owner", lambda: users.parse(owner or "", "owner"))
    return Volume(kind, size, owner)


class _AnyKey(dict[str, Any]):
    """Every key is known (the names of networks, volumes, services)."""

    def __contains__(self, key: object) -> bool:
        return True


def _subnet(r: _Reader, where: str, text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as e:
        raise r.error(where, f"{text!r} is not a network: {e}", hint='for example "10.42.0.0/24"') from None


def _service(r: _Reader, topology: str, name: str, body: object) -> Service:
    where = f"services.{name}"
    r.name(where, name)
    body = r.table(where, body, SERVICE_KEYS)
    options: list[tuple[str, tuple[str, ...]]] = []
    for key, spec in SERVICE_KEYS.items():
        if key in body and spec.flag is not None:
            options.append((key, _values(r, f"{where}.{key}", spec.kind, body[key])))
    command: tuple[str, ...] = ()
    if "command" in body:
        raw = body["command"]
        if isinstance(raw, str):
            command = tuple(raw.split())
        elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            command = tuple(raw)
        else:
            raise r.bad_type(f"{where}.command", COMMAND, raw)
        if not command:
            raise r.error(f"{where}.command", "empty", hint='for example command = ["/bin/web-server"]')
    networks = _networks(r, f"{where}.networks", body.get("networks", []))
    mounts = tuple(_mount(r, f"{where}.volumes", text) for text in r.strings(f"{where}.volumes", body.get("volumes", [])))
    depends = _dependencies(r, f"{where}.depends_on", body.get("depends_on", []))
    replicas = 1
    if "replicas" in body:
        replicas = _count(r, f"{where}.replicas", body["replicas"])
        if not 1 <= replicas <= MAX_REPLICAS:
            raise r.error(f"{where}.replicas", f"{replicas}: a service runs as 1 to {MAX_REPLICAS} containers")
        if replicas > 1 and "port_forwards" in body:
            raise r.error(f"{where}.replicas", f"{replicas}, with port_forwards: each replica would publish "
                          "the same host ports", hint="publish the ports of one replica: a service of its own")
    return Service(name, command, tuple(options), networks, mounts, depends, replicas)


def _networks(r: _Reader, where: str, value: object) -> tuple[str, ...]:
    """A service's networks: at most MAX_NETWORKS, each once (the first its eth0, the others
    eth1, eth2, .. in their order)."""
    networks = r.strings(where, value)
    if len(networks) > MAX_NETWORKS:
        raise r.error(where, f"{json.dumps(list(networks))}: a service joins at most {MAX_NETWORKS} networks",
                      hint=f"a container has an interface on its first network and at most "
                           f"{MAX_NETWORKS - 1} more")
    for i, net in enumerate(networks):
        if net in networks[:i]:
            raise r.error(f"{where}[{i}]", f"{net!r} is also {where}[{networks.index(net)}]",
                          hint="list each network once: a container has one interface on each")
    return networks


def _checked(r: _Reader, where: str, check: Callable[[], object]) -> None:
    """`check()`, its refusal naming the key's dotted path instead of a flag."""
    try:
        check()
    except InvalidInput as e:
        raise r.error(where, e.message, hint=e.hint) from None


def _tmpfs_size(text: str) -> None:
    if parse_size(text, "size") == 0:
        raise InvalidInput(f"size {text!r}: an empty tmpfs", hint='give its limit, e.g. "64M"')


def _count(r: _Reader, where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise r.bad_type(where, COUNT, value)
    return value


def _values(r: _Reader, where: str, kind: str, value: object) -> tuple[str, ...]:
    """A key's value as the text of its flag's arguments (one per repetition)."""
    if kind == STRING:
        return (r.string(where, value),)
    if kind == STRINGS:
        return r.strings(where, value)
    if kind == COUNT:
        return (str(_count(r, where, value)),)
    if kind in (NUMBER, SIZE):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (kind == SIZE and isinstance(value, str))
        if not ok:
            raise r.bad_type(where, kind, value)
        return (str(value),)
    if kind == PORTS:
        if not isinstance(value, list) or not all(
                isinstance(x, str) or (isinstance(x, int) and not isinstance(x, bool)) for x in value):
            raise r.bad_type(where, kind, value)
        return tuple(str(x) for x in value)
    if kind == TABLE:
        if not isinstance(value, dict):
            raise r.bad_type(where, kind, value)
        for k, x in value.items():
            if not isinstance(x, str):
                raise r.bad_type(f"{where}.{k}", STRING, x)
        return tuple(f"{k}={x}" for k, x in value.items())
    raise AssertionError(kind)


def _mount(r: _Reader, where: str, text: str) -> Mount:
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3:
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1].startswith("/") or mode not in ("ro", "rw"):
        raise r.error(where, f"{text!r} is not VOLUME:/PATH[:ro|rw]",
                      hint='a volume of [volumes] or an absolute host path, e.g. "pgdata:/var/lib/data" or "/srv/site:/srv:ro"')
    return Mount(parts[0], parts[1], mode)


def _dependencies(r: _Reader, where: str, value: object) -> tuple[Dependency, ...]:
    if not isinstance(value, list):
        raise r.bad_type(where, DEPENDENCIES, value)
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise r.bad_type(at, "a table with service and condition", item)
        r.table(at, item, DEPENDENCY_KEYS)
        if "service" not in item:
            raise r.error(f"{at}.service", "missing", hint='name the service it waits for: service = "db"')
        condition = r.string(f"{at}.condition", item.get("condition", "started"))
        if condition not in CONDITIONS:
            raise r.error(f"{at}.condition", f"{condition!r} is neither started nor healthy")
        out.append(Dependency(r.string(f"{at}.service", item["service"]), condition))
    return tuple(out)


def _check_references(r: _Reader, t: Topology) -> None:
    for name, svc in t.services.items():
        where = f"services.{name}"
        for net in svc.networks:
            if net not in t.networks:
                raise r.error(f"{where}.networks", f"no network {net!r}",
                              hint=f"declare it: [networks.{net}] with a subnet" if not t.networks
                              else f"the networks: {', '.join(t.networks)}")
        for mount in svc.mounts:
            if mount.named and mount.source not in t.volumes:
                raise r.error(f"{where}.volumes", f"no volume {mount.source!r}",
                              hint=f"declare it: [volumes.{mount.source}], or write an absolute host path")
            if mount.named and t.volumes[mount.source].volume_type == TMPFS and mount.mode == "ro":
                raise r.error(f"{where}.volumes", f"'{mount.source}:{mount.target}:ro': the tmpfs volume "
                              f"{mount.source!r} is empty at each start: read-only, it would stay empty",
                              hint=f"mount it rw: \"{mount.source}:{mount.target}\"")
        for i, dep in enumerate(svc.depends_on):
            at = f"{where}.depends_on[{i}].service"
            if dep.service not in t.services:
                raise r.error(at, f"no service {dep.service!r}", hint=f"the services: {', '.join(t.services)}")
            if dep.service == name:
                raise r.error(at, f"{name!r} depends on itself")
            if dep.condition == "healthy" and not t.services[dep.service].health_checked:
                raise r.error(f"{where}.depends_on[{i}].condition",
                              f"'healthy', but {dep.service!r} has no health_check",
                              hint=f"give services.{dep.service} a health_check, or wait for condition = \"started\"")
    taken: dict[str, str] = {}
    for name in t.services:
        for instance in t.instances(name):
            if instance in taken:
                raise r.error(f"services.{name}.replicas" if instance != name else f"services.{name}",
                              f"the instance {instance!r} is also a {'replica of ' if taken[instance] != instance else ''}"
                              f"service {taken[instance]!r}",
                              hint="rename one of the services: replicas of S are named S-1 .. S-N")
            taken[instance] = name
            if len(t.container(instance)) > 64:
                raise r.error(f"services.{name}",
                              f"the container name {t.container(instance)!r} is longer than 64 characters")


def start_order(t: Topology) -> tuple[str, ...]:
    """The services with every dependency before its dependents (ties in the file's order); a
    cycle is refused, naming it."""
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise InvalidInput(f"{t.path}: services.{name}.depends_on: a cycle: {' -> '.join(cycle)}",
                               hint="a service cannot wait, directly or not, for itself")
        state[name] = "visiting"
        for dep in t.services[name].depends_on:
            visit(dep.service, path + [name])
        state[name] = "done"
        order.append(name)

    for name in t.services:
        visit(name, [])
    return tuple(order)


# --- What a service runs as ---------------------------------------------------------------------


def run_arguments(t: Topology, instance: str, volume_dir: Callable[[str], str],
                  hosts: tuple[tuple[str, str], ...] = (), labels: tuple[str, ...] = ()) -> list[str]:
    """An instance's `nucleus run` arguments (after `run`, the command last): detached, named
    `<topology>-<instance>` with the instance as its host name, on its first network's bridge
    and attached to each other network's (--attach), with the other services it can reach as
    --add-host entries. `volume_dir(name)`: where a
    persistent volume lives on the host (a tmpfs volume is a --tmpfs of the container's own)."""
    service = t.service_of(instance)
    assert service is not None
    svc = t.services[service]
    args = ["--detach", "--name", t.container(instance), "--hostname", instance]
    for key, values in svc.options:
        flag = SERVICE_KEYS[key].flag
        assert flag is not None
        for value in values:
            args += [flag, value]
    for net in svc.networks[:1]:
        args += ["--network", "bridge", "--bridge-name", t.bridge(net), "--subnet", t.networks[net]]
    for net in svc.networks[1:]:
        args += ["--attach", f"{t.bridge(net)}={t.networks[net]}"]
    for mount in svc.mounts:
        volume = t.volumes.get(mount.source) if mount.named else None
        if volume is not None and volume.volume_type == TMPFS:
            options = [f"size={volume.size}"] if volume.size else []
            options += [f"owner={volume.owner}"] if volume.owner else []
            args += ["--tmpfs", ":".join([mount.target, ",".join(options)] if options else [mount.target])]
            continue
        source = volume_dir(mount.source) if mount.named else mount.source
        owner = f",owner={volume.owner}" if volume is not None and volume.owner else ""
        args += ["--volume", f"{source}:{mount.target}:{mount.mode}{owner}"]
    for host, address in hosts:
        args += ["--add-host", f"{host}:{address}"]
    for label in labels:
        args += ["--label", label]
    return args + ["--", *svc.command]


def config_hash(t: Topology, instance: str) -> str:
    """A digest of everything an instance's container is made from (its run arguments, its
    networks' subnets): an `up` recreates a running instance whose digest changed."""
    service = t.service_of(instance)
    assert service is not None
    data = {"args": run_arguments(t, instance, lambda v: v),
            "networks": {n: t.networks[n] for n in t.services[service].networks}}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def to_json(t: Topology) -> dict[str, Any]:
    """The resolved topology (`compose config`): defaults filled in, services in start order."""
    return {
        "name": t.name,
        "networks": {n: {"subnet": s, "bridge": t.bridge(n)} for n, s in t.networks.items()},
        "volumes": {v: {"volume_type": vol.volume_type,
                        **({"size": vol.size} if vol.size else {}), **({"owner": vol.owner} if vol.owner else {})}
                    for v, vol in t.volumes.items()},
        "services": {
            name: {
                "command": list(t.services[name].command),
                **{k: list(v) if SERVICE_KEYS[k].kind in (STRINGS, PORTS, TABLE) else v[0]
                   for k, v in t.services[name].options},
                "networks": list(t.services[name].networks),
                "volumes": [f"{m.source}:{m.target}:{m.mode}" for m in t.services[name].mounts],
                "depends_on": [{"service": d.service, "condition": d.condition}
                               for d in t.services[name].depends_on],
                "replicas": t.services[name].replicas,
                "instances": {i: {"container": t.container(i), "config_hash": config_hash(t, i)}
                              for i in t.instances(name)},
            }
            for name in t.order
        },
        "order": list(t.order),
    }
