"""A topology file (`nucleus compose`, default nucleus.toml): services, the networks they share
and the volumes they keep, read from TOML and checked completely before anything starts. Pure:
the file's text comes in, a Topology goes out (nucleus.cli.compose reads the file and checks
each service's options with `nucleus run`'s own parsing and validation).

    name = "myapp"
    [networks.internal]
    subnet = "10.42.0.0/24"
    [volumes.pgdata]
    [services.db]
    rootfs = "/nix/store/...-postgres"
    command = ["postgres", "-D", "/var/lib/postgresql/data"]
    volumes = ["pgdata:/var/lib/postgresql/data"]
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
from dataclasses import dataclass, field
from typing import Any

from nucleus.config.policy.common import _closest, _kind, _show
from nucleus.errors import InvalidInput

DEFAULT_FILE = "nucleus.toml"
CONDITIONS = ("started", "healthy")
VOLUME_TYPES = ("persistent",)
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


@dataclass(frozen=True)
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
VOLUME_KEYS = ("volume_type",)
DEPENDENCY_KEYS = ("service", "condition")


# --- The topology ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dependency:
    service: str
    condition: str = "started"


@dataclass(frozen=True)
class Mount:
    """A service's `volumes` entry: a volume of the topology (`source` a name) or, written as an
    absolute path, a directory of the host (agent mode's binds)."""

    source: str
    target: str
    mode: str = "rw"

    @property
    def named(self) -> bool:
        return not self.source.startswith("/")


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Topology:
    name: str
    path: str
    networks: Mapping[str, str] = field(default_factory=dict)  # name -> subnet
    volumes: tuple[str, ...] = ()
    services: Mapping[str, Service] = field(default_factory=dict)
    order: tuple[str, ...] = ()  # the services in dependency order (a dependency first)

    def container(self, service: str) -> str:
        return f"{self.name}-{service}"

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
    volumes: list[str] = []
    for vol, body in r.table("volumes", data.get("volumes", {}), _AnyKey()).items():
        where = f"volumes.{vol}"
        r.name(where, vol, _NET_NAME_RE)
        body = r.table(where, body, VOLUME_KEYS)
        kind = r.string(f"{where}.volume_type", body.get("volume_type", "persistent"))
        if kind not in VOLUME_TYPES:
            raise r.error(f"{where}.volume_type", f"{kind!r} is not supported",
                          hint="persistent: a directory under the state directory, kept until "
                               "compose down --volumes")
        volumes.append(vol)
    services: dict[str, Service] = {}
    for svc, body in r.table("services", data.get("services", {}), _AnyKey()).items():
        services[svc] = _service(r, name, svc, body)
    if not services:
        raise r.error("services", "no service", hint="add one: [services.web] with a command")
    topology = Topology(name, path, networks, tuple(volumes), services)
    _check_references(r, topology)
    return Topology(name, path, networks, tuple(volumes), services, start_order(topology))


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
    networks = r.strings(f"{where}.networks", body.get("networks", []))
    if len(networks) > 1:
        raise r.error(f"{where}.networks", f"{json.dumps(list(networks))}: a service joins one network",
                      hint="put the services that talk to each other on the same network")
    mounts = tuple(_mount(r, f"{where}.volumes", text) for text in r.strings(f"{where}.volumes", body.get("volumes", [])))
    depends = _dependencies(r, f"{where}.depends_on", body.get("depends_on", []))
    replicas = 1
    if "replicas" in body:
        replicas = _count(r, f"{where}.replicas", body["replicas"])
        if replicas != 1:
            raise r.error(f"{where}.replicas", f"{replicas}: a service runs as one container",
                          hint="declare another service for a second instance")
    return Service(name, command, tuple(options), networks, mounts, depends, replicas)


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
        if len(t.container(name)) > 64:
            raise r.error(where, f"the container name {t.container(name)!r} is longer than 64 characters")


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


def run_arguments(t: Topology, name: str, volume_dir: Callable[[str], str],
                  hosts: tuple[tuple[str, str], ...] = (), labels: tuple[str, ...] = ()) -> list[str]:
    """The service's `nucleus run` arguments (after `run`, the command last): detached, named
    `<topology>-<service>`, on its network's bridge, with the other services it can reach as
    --add-host entries. `volume_dir(name)`: where a persistent volume lives on the host."""
    svc = t.services[name]
    args = ["--detach", "--name", t.container(name), "--hostname", name]
    for key, values in svc.options:
        flag = SERVICE_KEYS[key].flag
        assert flag is not None
        for value in values:
            args += [flag, value]
    for net in svc.networks:
        args += ["--network", "bridge", "--bridge-name", t.bridge(net), "--subnet", t.networks[net]]
    for mount in svc.mounts:
        source = volume_dir(mount.source) if mount.named else mount.source
        args += ["--volume", f"{source}:{mount.target}:{mount.mode}"]
    for host, address in hosts:
        args += ["--add-host", f"{host}:{address}"]
    for label in labels:
        args += ["--label", label]
    return args + ["--", *svc.command]


def config_hash(t: Topology, name: str) -> str:
    """A digest of everything the service's container is made from (its run arguments, its
    network's subnet): an `up` recreates a running service whose digest changed."""
    svc = t.services[name]
    data = {"args": run_arguments(t, name, lambda v: v),
            "networks": {n: t.networks[n] for n in svc.networks}}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def to_json(t: Topology) -> dict[str, Any]:
    """The resolved topology (`compose config`): defaults filled in, services in start order."""
    return {
        "name": t.name,
        "networks": {n: {"subnet": s, "bridge": t.bridge(n)} for n, s in t.networks.items()},
        "volumes": {v: {"volume_type": "persistent"} for v in t.volumes},
        "services": {
            name: {
                "container": t.container(name),
                "command": list(t.services[name].command),
                **{k: list(v) if SERVICE_KEYS[k].kind in (STRINGS, PORTS, TABLE) else v[0]
                   for k, v in t.services[name].options},
                "networks": list(t.services[name].networks),
                "volumes": [f"{m.source}:{m.target}:{m.mode}" for m in t.services[name].mounts],
                "depends_on": [{"service": d.service, "condition": d.condition}
                               for d in t.services[name].depends_on],
                "replicas": t.services[name].replicas,
                "config_hash": config_hash(t, name),
            }
            for name in t.order
        },
        "order": list(t.order),
    }
