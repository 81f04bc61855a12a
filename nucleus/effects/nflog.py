"""The packets a container's egress rules drop, as the kernel logs them to an NFLOG group
(nftables ``log group N``, iptables ``-j NFLOG --nflog-group N``), read over raw netlink
(NETLINK_NETFILTER, the nfnetlink_log subsystem) with no library.

``bind(group)`` opens a socket of the caller's network namespace and binds it to the group,
asking for the first ``COPY_RANGE`` bytes of each packet (enough for an IPv6 header, a few
extension headers and the ports); a group another socket holds is refused by the kernel.
``bind_in(pid, group)`` does the same in the network namespace of another process (a
container's, whose user-mode network's rules log there). ``flows(data)`` parses what one ``recv`` returned into the dropped packets' flows: protocol,
source, destination. Only TCP and UDP are logged by the rules (nucleus.effects.egress_rules);
a fragment past the first, which carries no ports, is passed over.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

from nucleus.frozen import frozen

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_PAYLOAD = 9
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
COPY_RANGE = 128
BUFFER = 1 << 16
# The groups leased to containers' rules: above the small numbers other firewalls use.
FIRST_GROUP = 0x4E00
LAST_GROUP = 0x4FFF

# What the kernel answers a bind of a group another socket holds (EPERM before Linux checks
# for EBUSY, as 6.18 does).
BUSY = (errno.EBUSY, errno.EPERM)

_PROTOCOLS = {6: "tcp", 17: "udp"}
_IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44


@frozen
class Flow:
    """One dropped packet's flow: ``protocol`` "tcp" or "udp", its source and destination."""

    protocol: str
    source: str
    sport: int
    destination: str
    dport: int


def _attribute(kind: int, value: bytes) -> bytes:
    size = 4 + len(value)
    return struct.pack("=HH", size, kind) + value + b"\0" * (-size % 4)


def _message(seq: int, group: int, attributes: bytes) -> bytes:
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, group) + attributes
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def _ask(sock: socket.socket, seq: int, group: int, attributes: bytes) -> None:
    """Send one configuration message and wait for its acknowledgement; OSError on a refusal."""
    sock.send(_message(seq, group, attributes))
    while True:
        data = sock.recv(BUFFER)
        for kind, got, body in _messages(data):
            if kind == NLMSG_ERROR and got == seq:
                code = -struct.unpack_from("=i", body)[0]
                if code:
                    raise OSError(code, f"nflog group {group}: {errno.errorcode.get(code, code)}")
                return


def bind(group: int) -> socket.socket:
    """A socket bound to NFLOG ``group`` in this process's network namespace, copying packets
    (close-on-exec, blocking until the binding is acknowledged, then non-blocking); OSError
    naming the group when the kernel refuses (one of BUSY: another socket holds it)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        _ask(sock, 1, group, _attribute(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])))
        _ask(sock, 2, group, _attribute(NFULA_CFG_MODE, struct.pack("!IBx", COPY_RANGE, NFULNL_COPY_PACKET))
             + _attribute(NFULA_CFG_QTHRESH, struct.pack("!I", 1)))  # each packet as it comes
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_in(pid: int, group: int) -> socket.socket:
    """A socket bound to NFLOG ``group`` in the network namespace of process ``pid``. A child
    of this process joins that process's user namespace (where it differs from this one's: the
    namespace's owner holds every capability there, CAP_NET_ADMIN over the network namespace
    included) and network namespace, binds the socket, hands it back over a socket pair and
    ends, so this process stays where it is. OSError naming the group when that fails."""
    from nucleus import linux
    from nucleus.effects import libc

    # A sequenced pair: the child's end closing unanswered (it was killed) reads as an empty
    # message, never as a wait without end.
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            here.close()
            for kind, flag in (("user", linux.CLONE_NEWUSER), ("net", linux.CLONE_NEWNET)):
                theirs, mine = os.stat(f"/proc/{pid}/ns/{kind}"), os.stat(f"/proc/self/ns/{kind}")
                if (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino):
                    if kind == "net":  # never the host's own group in the container's stead
                        raise OSError(errno.EINVAL, f"process {pid} is in this network namespace")
                    continue
                fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
                libc.setns(fd, flag)
                os.close(fd)
            sock = bind(group)
            socket.send_fds(there, [b"0 "], [sock.fileno()])
        except OSError as e:
            there.send(f"{e.errno or errno.EIO} {e}".encode())
        except BaseException as e:  # noqa: BLE001 - the child answers, whatever went wrong
            there.send(f"{errno.EIO} {type(e).__name__}: {e}".encode())
        finally:
            os._exit(0)
    there.close()
    try:
        message, fds, _, _ = socket.recv_fds(here, 4096, 1)
    finally:
        here.close()
        os.waitpid(child, 0)
    if fds:
        os.set_inheritable(fds[0], False)
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        return sock
    code, _, text = message.decode(errors="replace").partition(" ")
    raise OSError(int(code) if code.isdigit() else errno.EIO,
                  f"nflog group {group} in the network namespace of process {pid}: {text or 'no answer'}")


def free_group(taken: set[int]) -> int | None:
    """The lowest group of the leased range that no lease holds and no socket of this network
    namespace is bound to (each tried by binding it a moment); None when the kernel logs to no
    NFLOG group here (no nfnetlink_log), or every group is held."""
    for group in range(FIRST_GROUP, LAST_GROUP + 1):
        if group in taken:
            continue
        try:
            bind(group).close()
        except OSError as e:
            if e.errno in BUSY:
                continue
            return None
        return group
    return None


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence number, body) of each netlink message of ``data``."""
    offset = 0
    while offset + 16 <= len(data):
        size, kind, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
        if size < 16 or offset + size > len(data):
            return
        yield kind, seq, data[offset + 16:offset + size]
        offset += (size + 3) & ~3


def _payload(body: bytes) -> bytes | None:
    """The NFULA_PAYLOAD attribute of a packet message's body (after its nfgenmsg)."""
    offset = 4
    while offset + 4 <= len(body):
        size, kind = struct.unpack_from("=HH", body, offset)
        if size < 4:
            return None
        if kind & 0x3FFF == NFULA_PAYLOAD:
            return body[offset + 4:offset + size]
        offset += (size + 3) & ~3
    return None


def packet_flow(packet: bytes) -> Flow | None:
    """The flow of an IPv4 or IPv6 packet carrying TCP or UDP; None for anything else."""
    if not packet:
        return None
    version = packet[0] >> 4
    source: ipaddress.IPv4Address | ipaddress.IPv6Address
    destination: ipaddress.IPv4Address | ipaddress.IPv6Address
    if version == 4 and len(packet) >= 20:
        header = (packet[0] & 0x0F) * 4
        if struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:  # not the first fragment
            return None
        protocol = packet[9]
        source, destination = ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
    elif version == 6 and len(packet) >= 40:
        protocol, header = packet[6], 40
        source, destination = ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
        while protocol in _IPV6_EXTENSIONS + (_IPV6_FRAGMENT,) and header + 8 <= len(packet):
            if protocol == _IPV6_FRAGMENT:
                if struct.unpack_from("!H", packet, header + 2)[0] & 0xFFF8:
                    return None
                protocol, header = packet[header], header + 8
            else:
                protocol, header = packet[header], header + (packet[header + 1] + 1) * 8
    else:
        return None
    if protocol not in _PROTOCOLS or header + 4 > len(packet):
        return None
    sport, dport = struct.unpack_from("!HH", packet, header)
    return Flow(_PROTOCOLS[protocol], str(source), sport, str(destination), dport)


def flows(data: bytes) -> list[Flow]:
    """The flows of the packet messages of what one ``recv`` returned."""
    out = []
    for kind, _, body in _messages(data):
        if kind != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            continue
        payload = _payload(body)
        flow = packet_flow(payload) if payload is not None else None
        if flow is not None:
            out.append(flow)
    return out
