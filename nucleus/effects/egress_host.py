"""What the host gives a container's egress process (nucleus.effects.egress): two free ports of
the bridge's gateway, and the resolver allowed names are resolved by when no --dns names one."""

from __future__ import annotations

import errno
import socket

from nucleus.effects.nat import NetError

RESOLV_CONF = "/etc/resolv.conf"
ATTEMPTS = 64


def _bound(address: str, port: int, kind: socket.SocketKind) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
    try:
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def free_pair(address: str, taken: set[int]) -> tuple[int, int]:
    """Two ports of `address` that the kernel has free and no other lease holds: the first for
    TCP (the proxy), the second for both UDP and TCP (the resolver)."""
    for _ in range(ATTEMPTS):
        held: list[socket.socket] = []
        try:
            held.append(_bound(address, 0, socket.SOCK_STREAM))
            held.append(_bound(address, 0, socket.SOCK_DGRAM))
            ports = held[0].getsockname()[1], held[1].getsockname()[1]
            held.append(_bound(address, ports[1], socket.SOCK_STREAM))
            if ports[0] != ports[1] and not taken & set(ports):
                return ports
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise NetError(e.errno or errno.EIO, f"bind {address}: {e.strerror or e}") from None
        finally:
            for sock in held:
                sock.close()
    raise NetError(errno.EADDRINUSE, f"no two free ports on {address} for the egress proxy")


def host_resolver(path: str = RESOLV_CONF) -> str:
    """The first nameserver `path` names ("" when it names none, or cannot be read: then names
    cannot be resolved, and the proxy and resolver say so)."""
    try:
        with open(path) as f:
            lines = f.read(1 << 16).splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return fields[1].split("%")[0]
    return ""
