"""The network machine's intents (nucleus.machines.network): the host side in the supervisor,
in the host's network namespace; the container side in the setup process, inside the
container's network namespace (before it enters its user namespace, so it still holds the
capabilities the host's user namespace grants over that network namespace).

A bridge is shared by the containers on it: what they hold of it is written in the state
directory, one file per bridge (`network/<bridge>.json`), read and written only under the state
directory's lock: each container's lease (its addresses and published ports; with an egress
policy its proxy's and resolver's ports and the egress process's pid and start time), and what was made
for the bridge (the bridge itself when nucleus made it, its NAT rules and their backend, the
forwarding settings it changed and their values before). Each step writes what it is about to
make before it makes it, so that a supervisor killed in the middle leaves a file that names it;
the teardown of the last container on a bridge takes the bridge, its rules and those settings
with it (the settings only once no file of the state directory has a lease left: until then
their values before go to one that has, whose last container restores them). A container with
more attachments holds a lease in each of their bridges' files, made and released as its first
bridge's is. A user-mode network (nucleus.effects.usernet) has a file of the same shape of its own,
`network/user-<id[:12]>.json`, whose one lease names the stack's process and the egress
process.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import signal
import socket
import stat
from typing import Any

from nucleus import vocab as v
from nucleus.config import egress as rules_of_egress
from nucleus.config.network import allocate
from nucleus.effects import egress_host, egress_rules, nat, netlink, nflog
from nucleus.effects.nat import NetError
from nucleus.effects.process import kill, process_start
from nucleus.effects.store import Store, write_document

MAX_FILE = 4 << 20
FORWARDING = {4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding"}


def _path(state: str, bridge: str) -> str:
    return os.path.join(state, "network", f"{bridge}.json")


def _read(path: str) -> dict[str, Any]:
    """The bridge's file (a new one when there is none); a file that is not a regular file of
    the caller's, or not a document, is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {"leases": {}, "made": {}}
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise NetError(errno.EPERM, f"{path} is not a file of the caller's that only it may write")
        try:
            doc = json.loads(f.read(MAX_FILE))
        except ValueError as e:
            raise NetError(errno.EINVAL, f"{path} is damaged: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("leases"), dict) or not isinstance(doc.get("made"), dict):
        raise NetError(errno.EINVAL, f"{path} is not a bridge's leases")
    return doc


def _write(path: str, doc: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_document(path, doc)


def _sysctl(path: str, value: str | None = None) -> str:
    """The setting's value; with `value`, written first."""
    if value is not None:
        with open(path, "w") as f:
            f.write(value)
    with open(path) as f:
        return f.read().strip()


def _gateways(subnets: tuple[str, ...]) -> tuple[str, ...]:
    """The bridge's own addresses: the first host address of each subnet, with its prefix."""
    nets = [ipaddress.ip_network(s) for s in subnets]
    return tuple(f"{n.network_address + 1}/{n.prefixlen}" for n in nets)


# --- host side ---------------------------------------------------------------------------------

def bridge(op: v.NetBridge) -> str:
    """The bridge where it is missing, forwarding on, and the container's lease; the addresses
    leased, as Done's detail."""
    return " ".join(_lease(op.state, op.bridge, op.subnets, op.owner, localnet=True))


def _lease(state: str, name: str, subnets: tuple[str, ...], owner: str, localnet: bool) -> tuple[str, ...]:
    """Under the state directory's lock: container `owner`'s lease of the lowest free address of
    each of `subnets` on bridge `name`, the bridge where it is missing and forwarding on (what
    is about to be made written first); the addresses leased. With `localnet` (a first bridge,
    whose published ports the host's loopback reaches) the bridge's route_localnet is set. On a
    bridge nucleus did not make, what it changes there (the gateway addresses it lacked, the
    route_localnet value before) is recorded, for the last lease's release to put back."""
    path = _path(state, name)
    with Store(state).locked():
        doc = _read(path)
        leases: dict[str, Any] = doc["leases"]
        if leases and doc.get("subnets") != list(subnets):
            raise NetError(errno.EEXIST, f"the bridge {name} carries {', '.join(doc.get('subnets') or [])} "
                                        f"for its containers, not {', '.join(subnets)}")
        taken = {str(a).split("/")[0] for lease in leases.values() for a in lease.get("addresses", [])}
        taken |= {g.split("/")[0] for g in _gateways(subnets)}
        try:
            addresses = allocate(subnets, taken)
        except ValueError as e:
            raise NetError(errno.ENOSPC, str(e)) from None
        first = not leases
        kind = netlink.kind(name)
        if kind not in (None, "bridge"):
            raise NetError(errno.EEXIST, f"{name} exists and is not a bridge (it is a {kind or 'device'})")
        doc["subnets"] = list(subnets)
        leases[owner] = {"addresses": list(addresses), "ports": []}
        made = doc["made"]
        route_localnet = f"/proc/sys/net/ipv4/conf/{name}/route_localnet"
        if kind is None:
            made["bridge"] = True
        elif not made.get("bridge"):  # the host's own bridge: what nucleus changes on it
            lacked = netlink.missing_addresses(name, _gateways(subnets))
            made["addresses"] = sorted({*made.get("addresses", []), *lacked})
            if localnet:
                made.setdefault("route_localnet", _sysctl(route_localnet))
        if first:
            for version in sorted({_family(s) for s in subnets}):
                made.setdefault("forwarding", {}).setdefault(FORWARDING[version], _sysctl(FORWARDING[version]))
        _write(path, doc)  # what is about to be made, first
        if kind is None:
            netlink.make_bridge(name, _gateways(subnets))
        else:
            netlink.ensure_addresses(name, _gateways(subnets))
        if localnet:  # published ports are reached from the host's loopback too (nucleus.effects.nat)
            _sysctl(route_localnet, "1")
        for setting in made.get("forwarding", {}):
            _sysctl(setting, "1")
    return tuple(addresses)


def _family(subnet: str) -> int:
    return ipaddress.ip_network(subnet).version


def veth(op: v.NetVeth, pid: int) -> None:
    netlink.make_veth(op.host, op.peer, op.bridge, pid, op.inside)


def attach(op: v.NetAttach, pid: int) -> str:
    """One more attachment: its bridge and the container's lease there, as the first bridge's
    (`bridge`); with a backend, the bridge's own rules where they are missing, as `rules` makes
    them (its traffic forwarded whatever the host's forward policy: containers that only attach
    to it reach each other), with no port of the container's; then the veth pair into the network
    namespace of `pid`. The addresses leased, as Done's detail."""
    try:
        addresses = _lease(op.state, op.bridge, op.subnets, op.owner, localnet=False)
        if op.backend:
            rules(v.NetNat(op.backend, op.bridge, op.subnets, addresses, (), op.owner, op.state))
    except NetError as e:  # named as the user gave it
        raise NetError(e.errno or errno.EIO, f"--attach {op.bridge}={','.join(op.subnets)}: {e.message}") from None
    netlink.make_veth(op.host, op.peer, op.bridge, pid, op.inside)
    return " ".join(addresses)


def rules(op: v.NetNat) -> None:
    """The bridge's NAT rules where they are missing, then the container's published ports (a
    host port another container of this state directory publishes is refused)."""
    path = _path(op.state, op.bridge)
    with Store(op.state).locked():
        doc = _read(path)
        made = doc["made"]
        if made.get("nat") not in (None, op.backend):
            raise NetError(errno.EEXIST, f"the bridge {op.bridge}'s rules are {made['nat']}'s, not {op.backend}'s: "
                                        f"--nat-backend {made['nat']} is what runs on it")
        for other, lease in doc["leases"].items():
            if other == op.owner:
                continue
            for port in lease.get("ports", []):
                for mine in op.ports:
                    if _clash(tuple(port), mine):
                        raise NetError(errno.EADDRINUSE, f"host port {mine[2]}/{mine[0]} is published by "
                                                        f"container {other[:12]}")
        doc["leases"].setdefault(op.owner, {"addresses": list(op.addresses)})["ports"] = [list(p) for p in op.ports]
        made["nat"] = op.backend
        _write(path, doc)
        nat.add(op.backend, op.bridge, op.subnets, op.owner, op.ports, op.addresses)


def _clash(theirs: tuple[Any, ...], mine: tuple[str, str, int, int]) -> bool:
    return theirs[0] == mine[0] and theirs[2] == mine[2] and (not theirs[1] or not mine[1] or theirs[1] == mine[1])


def egress(op: v.NetEgress) -> str:
    """Lease the container's proxy and resolver ports and its NFLOG group (written first), then
    its egress rules (nucleus.effects.egress_rules); the ports leased, as Done's detail ("PROXY
    DNS"). A kernel without NFLOG leases no group: drops are then counted only."""
    path = _path(op.state, op.bridge)
    gateway = sorted(op.gateways, key=lambda g: ":" in g)[0]  # the IPv4 one where there is one
    with Store(op.state).locked():
        doc = _read(path)
        held = [lease.get("egress") or {} for lease in doc["leases"].values()]
        ports = egress_host.free_pair(gateway, {port for egress in held for port in egress.get("ports", [])})
        group = nflog.free_group({egress["group"] for egress in held if isinstance(egress.get("group"), int)})
        doc["leases"].setdefault(op.owner, {"addresses": list(op.addresses), "ports": []})["egress"] = {
            "ports": list(ports), **({"group": group} if group is not None else {})}
        _write(path, doc)
    egress_rules.add(op, *ports, group)
    return f"{ports[0]} {ports[1]}"


def _drops(path: str, owner: str, state: str, container: str) -> socket.socket | None:
    """A socket bound to the NFLOG group the container's lease names (None: no group)."""
    with Store(state).locked():
        group = ((_read(path)["leases"].get(owner) or {}).get("egress") or {}).get("group")
    if not isinstance(group, int):
        return None
    try:
        return nflog.bind(group)
    except OSError as e:
        raise NetError(e.errno or errno.EIO, f"the egress process of {container}: {e.strerror or e}") from None


def _drops_inside(pid: int, group: int, container: str) -> socket.socket:
    try:
        return nflog.bind_in(pid, group)
    except OSError as e:
        raise NetError(e.errno or errno.EIO, f"the egress process of {container}: {e.strerror or e}") from None


def proxy(op: v.NetProxy, copy_fd: int | None = None, pid: int = 0) -> str | None:
    """Bind the proxy's and the resolver's sockets on the gateway, fork the egress process
    (nucleus.effects.egress; it takes `copy_fd`, the --violations FILE) and record its pid and
    start time in the container's lease. Ports 0: two the kernel has free, recorded there too
    and given as Done's detail ("PROXY DNS"). With the intent's `inside_group`, the drops are
    read from that group of the network namespace of `pid`, the container's setup process."""
    from nucleus.config import violations
    from nucleus.effects import egress as process

    upstream = op.upstream if op.upstream[0] else (egress_host.host_resolver(), op.upstream[1])
    sockets: list[Any] = []
    chosen = (op.port, op.dns_port) if op.port else egress_host.free_pair(op.gateway, set())
    path = _path(op.state, op.bridge)
    try:
        sockets.append(process.listen(op.gateway, chosen[0]))
        sockets.append(process.listen(op.gateway, chosen[1], kind=socket.SOCK_DGRAM))
        sockets.append(process.listen(op.gateway, chosen[1]))
        drops = (_drops_inside(pid, op.inside_group, op.container) if op.inside_group
                 else _drops(path, op.owner, op.state, op.container))
    except (OSError, NetError) as e:
        for sock in sockets:
            sock.close()
        if copy_fd is not None:
            os.close(copy_fd)
        if isinstance(e, NetError):
            raise
        raise NetError(e.errno or errno.EIO, f"the egress proxy of {op.container}: {e.strerror or e}") from None
    setup = process.Setup(_policy(op), violations.Context(op.owner, op.container), upstream,
                          netlink.host_addresses(), proxy=sockets[:1], dns_udp=sockets[1:2], dns_tcp=sockets[2:],
                          drops=drops, copy_fd=copy_fd)
    pid = process.spawn(setup, op.stream or None)
    with Store(op.state).locked():
        doc = _read(path)
        lease = doc["leases"].setdefault(op.owner, {"addresses": [], "ports": []})
        lease.setdefault("egress", {})["process"] = [pid, process_start(pid)]
        if not op.port:
            lease["egress"]["ports"] = list(chosen)
        _write(path, doc)
    return None if op.port else f"{chosen[0]} {chosen[1]}"


def _policy(op: v.NetProxy) -> rules_of_egress.EgressPolicy:
    """The policy the proxy's intent carries, as the egress process consults it."""
    return rules_of_egress.EgressPolicy(
        op.networks, tuple(rules_of_egress.parse_domain(d) for d in op.domains),
        tuple(rules_of_egress.Ports(*p) for p in op.tcp_ports),
        tuple(rules_of_egress.Ports(*p) for p in op.udp_ports), op.any_port)


def _end(lease: dict[str, Any], what: str) -> None:
    """End the container's egress process or user-mode stack (`what`: "egress", "stack"), if
    its lease names one still alive (and reap it when it is this process's child)."""
    found = (lease.get(what) or {}).get("process")
    if not (isinstance(found, list) and len(found) == 2 and all(isinstance(x, int) for x in found)):
        return
    pid, start = found
    kill(pid, signal.SIGKILL, start)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def teardown(op: v.NetTeardown) -> None:
    """Remove what `op.held` says was made; the bridge's last container takes the bridge, its
    rules and the forwarding settings nucleus changed with it. What is gone already is fine.
    Each more attachment is removed even when another's removal fails (the first failure is
    raised once all were tried)."""
    failed: OSError | None = None
    with Store(op.state).locked():
        for name, host in op.attached if "attach" in op.held else ():
            try:
                _detach(op.state, name, host, op.owner)
            except OSError as e:  # NetError included
                failed = failed or e
        _teardown_first(op)
    if failed is not None:
        raise failed


def _detach(state: str, name: str, host: str, owner: str) -> None:
    """One more attachment's veth `host` and container `owner`'s lease of bridge `name` (under
    the state directory's lock)."""
    netlink.delete_link(host)
    path = _path(state, name)
    doc = _read(path)
    doc["leases"].pop(owner, None)
    _release(state, name, path, doc)


def _teardown_first(op: v.NetTeardown) -> None:
    """The first bridge's part of the teardown (under the state directory's lock)."""
    path = _path(op.state, op.bridge)
    doc = _read(path)
    lease = doc["leases"].get(op.owner) or {}
    if "veth" in op.held:
        netlink.delete_link(op.host)
    if "nat" in op.held and doc["made"].get("nat"):
        ports = tuple(tuple(p) for p in lease.get("ports", [])) or op.ports
        nat.remove_ports(doc["made"]["nat"], op.bridge, op.owner, ports, tuple(lease.get("addresses", [])))
    if "proxy" in op.held:
        _end(lease, "egress")
    if "usernet" in op.held:
        _end(lease, "stack")
        for leftover in (path[:-len(".json")] + ".sock", path[:-len(".json")] + ".pid"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    if "egress" in op.held:
        egress_rules.remove(op.backend, op.owner)
    doc["leases"].pop(op.owner, None)
    _release(op.state, op.bridge, path, doc)


def _release(state: str, name: str, path: str, doc: dict[str, Any]) -> None:
    """Bridge `name`'s file `doc` after a lease left it: written back while leases remain;
    otherwise the bridge, its rules and the forwarding settings go (their values before handed
    to another bridge of the state directory that still has leases), and the file with them."""
    if doc["leases"]:
        _write(path, doc)
        return
    made = doc["made"]
    if made.get("nat"):
        nat.remove_bridge(made["nat"], name)
    if made.get("bridge"):
        netlink.delete_link(name)
    else:  # the host's own bridge: what nucleus changed on it put back
        netlink.delete_addresses(name, tuple(made.get("addresses", [])))
        if made.get("route_localnet") in ("0", "1") and netlink.kind(name) == "bridge":
            _sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", made["route_localnet"])
    before = made.get("forwarding", {})
    heir = _heir(state, path)
    if heir is None:
        for setting, value in before.items():
            if value != "1":
                _sysctl(setting, value)
    elif before:
        _hand_over(heir, before)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    with contextlib.suppress(OSError):  # the directory too, once no bridge has a file there
        os.rmdir(os.path.dirname(path))


def _heir(state: str, path: str) -> str | None:
    """Another file of the state directory's network/ that still has leases (the first in name
    order), None when there is none: while one has, forwarding stays on. A file that cannot be
    read is passed over."""
    folder = os.path.join(state, "network")
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return None
    for name in names:
        other = os.path.join(folder, name)
        if not name.endswith(".json") or other == path:
            continue
        try:
            if _read(other)["leases"]:
                return other
        except OSError:  # NetError included
            continue
    return None


def _hand_over(heir: str, before: dict[str, str]) -> None:
    """Give the file `heir` the forwarding settings' values before nucleus turned them on, for
    its last lease to restore. A value other than "1" is the host's own: where the heir
    recorded "1" for a setting, that was nucleus's doing (another bridge had turned it on)."""
    doc = _read(heir)
    kept = doc["made"].setdefault("forwarding", {})
    for setting, value in before.items():
        if value != "1" or setting not in kept:
            kept[setting] = value
    _write(heir, doc)


def usernet(op: v.NetUser, pid: int) -> None:
    """Start the user-mode stack (nucleus.effects.usernet) for `pid`'s namespaces, and record its
    pid and start time in the container's lease (the lease first: what is about to be made)."""
    from nucleus.effects import usernet as stacks

    path = _path(op.state, op.record)
    with Store(op.state).locked():
        doc = _read(path)
        doc["leases"].setdefault(op.owner, {"addresses": [op.address], "ports": []})["stack"] = {"name": op.stack}
        _write(path, doc)
    base = path[:-len(".json")]
    if op.stack == "pasta":
        stack = stacks.pasta(op, pid, base + ".pid")
    else:
        stack = stacks.slirp(op, pid, base + ".sock")
    with Store(op.state).locked():
        doc = _read(path)
        lease = doc["leases"].setdefault(op.owner, {"addresses": [op.address], "ports": []})
        lease["stack"] = {"name": op.stack, "process": [stack, process_start(stack)]}
        lease["ports"] = [list(p) for p in op.ports]
        _write(path, doc)


# --- container side: the setup process, inside the container's network namespace ---------------

def filter_rules(op: v.NetFilter) -> None:
    from nucleus.effects import usernet as stacks

    stacks.add_filter(op)


def addresses(op: v.NetAddress) -> None:
    netlink.add_addresses(op.link, op.addresses)


def _settings(sysctls: tuple[tuple[str, str], ...]) -> None:
    """This process's network namespace's own settings. An IPv6 setting is skipped where the
    kernel has no IPv6 (its file is missing)."""
    for setting, value in sysctls:
        if setting.startswith("/proc/sys/net/ipv6/") and not os.path.exists(setting):
            continue
        _sysctl(setting, value)


def link_up(op: v.NetLinkUp) -> None:
    """The settings, then the link up."""
    _settings(op.sysctls)
    netlink.link_up(op.link)


def join(op: v.NetJoin) -> None:
    """One more attachment's interface: its settings and addresses, then the link up."""
    _settings(op.sysctls)
    netlink.add_addresses(op.link, op.addresses)
    netlink.link_up(op.link)


def routes(op: v.NetRoute) -> None:
    netlink.default_routes(op.link, op.gateways)
