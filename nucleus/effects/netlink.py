"""Links, addresses and routes, through rtnetlink (pyroute2): the only module that imports it,
and only for a container with a bridge (the default path never loads it). Each function acts in
the network namespace of the calling process: the supervisor's for the host side, the setup
process's for the container side. Errors are OSErrors that name the call and the link.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2.iproute.linux import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nucleus.effects.nat import NetError

IFA_F_NODAD = 0x02  # an address usable at once: no duplicate detection on a link nucleus owns


@contextmanager
def _route(what: str) -> Iterator[IPRoute]:
    """An rtnetlink socket in this process's network namespace; a NetlinkError becomes an
    OSError that says `what` was being done."""
    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as e:
        raise NetError(e.code, f"{what}: {errno.errorcode.get(e.code, e.code)} "
                               f"({os.strerror(e.code)})") from None


def _index(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise NetError(errno.ENODEV, f"no link named {name!r}")
    return int(found[0])


def kind(name: str) -> str | None:
    """The kind of link `name` ("bridge", "veth", "" for a plain device), None when absent."""
    with _route(f"look up link {name}") as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        link = ipr.get_links(found[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        return str(info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""


def make_bridge(name: str, addresses: tuple[str, ...]) -> None:
    """The bridge `name`, up, with each of `addresses` ("10.88.0.1/16")."""
    with _route(f"make bridge {name}") as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        index = _index(ipr, name)
        for address in addresses:
            _add_address(ipr, index, address)
        ipr.link("set", index=index, state="up")


def _lacked(ipr: IPRoute, index: int, addresses: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `addresses` the link at `index` lacks."""
    have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=index)}
    return tuple(a for a in addresses if _normal(a) not in have)


def missing_addresses(name: str, addresses: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `addresses` link `name` lacks."""
    with _route(f"read the addresses of {name}") as ipr:
        return _lacked(ipr, _index(ipr, name), addresses)


def ensure_addresses(name: str, addresses: tuple[str, ...]) -> None:
    """Give link `name` each of `addresses` it lacks, and bring it up."""
    with _route(f"configure bridge {name}") as ipr:
        index = _index(ipr, name)
        for address in _lacked(ipr, index, addresses):
            _add_address(ipr, index, address)
        ipr.link("set", index=index, state="up")


def delete_addresses(name: str, addresses: tuple[str, ...]) -> None:
    """Take `addresses` off link `name` (what is gone already, the link included, is fine)."""
    with _route(f"remove addresses of {name}") as ipr:
        found = ipr.link_lookup(ifname=name)
        for address in addresses if found else ():
            ip = ipaddress.ip_interface(address)
            try:
                ipr.addr("del", index=found[0], address=str(ip.ip), prefixlen=ip.network.prefixlen)
            except NetlinkError as e:
                if e.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                    raise


def _normal(address: str) -> str:
    return str(ipaddress.ip_interface(address))


def _add_address(ipr: IPRoute, index: int, address: str) -> None:
    ip = ipaddress.ip_interface(address)
    ipr.addr("add", index=index, address=str(ip.ip), prefixlen=ip.network.prefixlen, IFA_FLAGS=IFA_F_NODAD)


def make_veth(host: str, peer: str, bridge: str, pid: int, inside: str) -> None:
    """The veth pair `host`/`peer`: `host` attached to `bridge` and up, `peer` moved into the
    network namespace of process `pid` and renamed `inside` there."""
    with _route(f"make veth {host}") as ipr:
        ipr.link("add", ifname=host, kind="veth", peer={"ifname": peer})
        master = _index(ipr, bridge)
        ipr.link("set", index=_index(ipr, host), master=master, state="up")
        ipr.link("set", index=_index(ipr, peer), net_ns_pid=pid, ifname=inside)


def delete_link(name: str) -> bool:
    """Delete link `name` (a veth takes its peer with it); False when it was not there."""
    with _route(f"delete link {name}") as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as e:
            if e.code != errno.ENODEV:  # gone meanwhile (a veth whose peer's namespace ended)
                raise
            return False
        return True


def add_addresses(link: str, addresses: tuple[str, ...]) -> None:
    with _route(f"add addresses to {link}") as ipr:
        index = _index(ipr, link)
        for address in addresses:
            _add_address(ipr, index, address)


def link_up(link: str) -> None:
    with _route(f"bring {link} up") as ipr:
        ipr.link("set", index=_index(ipr, link), state="up")


def default_routes(link: str, gateways: tuple[str, ...]) -> None:
    """The default route of each gateway's family through it, on `link`."""
    with _route(f"add the default routes on {link}") as ipr:
        index = _index(ipr, link)
        for gateway in gateways:
            ip = ipaddress.ip_address(gateway)
            family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            ipr.route("add", dst="0.0.0.0/0" if ip.version == 4 else "::/0", gateway=gateway,
                      oif=index, family=family)


def host_addresses() -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address of this network namespace's links (the host's own, which an egress
    policy refuses unless it names them)."""
    with _route("list the addresses") as ipr:
        found = [msg.get_attr("IFA_ADDRESS") for msg in ipr.get_addr()]
    return frozenset(ipaddress.ip_address(str(a).split("%")[0]) for a in found if a)
