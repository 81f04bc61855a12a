"""The kernel's audit records, read from the audit netlink socket's multicast group.

Landlock (kernel 6.15 and later) reports a denied access as an audit record,
``AUDIT_LANDLOCK_ACCESS`` (1423), and describes the domain that denied it once, with the first
denial, as ``AUDIT_LANDLOCK_DOMAIN`` (1424, "status=allocated" with the pid and executable of the
process that made the domain); records of one event share its serial, and with a syscall context
an ``AUDIT_SYSCALL`` record (1300: the denied process's pid, executable and syscall) and an
``AUDIT_EOE`` (1320) end it. nucleus reads them from the netlink socket's read-only multicast
group (``AUDIT_NLGRP_READLOG``, which needs CAP_AUDIT_READ), not from ``/dev/kmsg``: the kernel log
rate-limits and drops audit lines under load, and its ring buffer is shared with everything else.

What a host needs, as seen on kernel 6.18: the multicast group receives records without any
audit daemon, but only while audit is enabled (``audit_enabled``, ``auditctl -e 1`` or
``audit=1`` on the kernel command line): with it disabled Landlock logs nothing at all. nucleus
never changes that setting; :func:`status` says which it is (``nucleus check`` shows it).

Only the supervisor's side uses this module, and only when a run collects violations: it stays
off the hot path.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import socket
import struct

NETLINK_AUDIT = 9
AUDIT_GET = 1000
AUDIT_NLGRP_READLOG = 1
AUDIT_SYSCALL = 1300
AUDIT_EOE = 1320
AUDIT_LANDLOCK_ACCESS = 1423
AUDIT_LANDLOCK_DOMAIN = 1424
NLMSG_ERROR = 2
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_STATUS = struct.Struct("=IIIIIII")  # struct audit_status: mask, enabled, failure, pid, rate, backlog limit, lost
NLM_F_REQUEST = 1
RECV_BUFFER = 1 << 20  # bytes the socket may queue while the monitor is busy

# Fields the kernel writes with audit_log_untrustedstring: quoted, or in hex when the value holds
# a space, a quote or a control character.
_UNTRUSTED = frozenset({"path", "exe", "comm", "ocomm", "name", "proctitle", "cwd"})
_HEADER = r"audit\((\d+)\.(\d+):(\d+)\): ?"
_FIELD = r'([a-z_0-9-]+)=("[^"]*"|\S*)'


# Plain classes: this module is imported on a run's path (the audit status), where each
# dataclass would cost more than the whole query.
class Status:
    """The kernel's audit settings: enabled (0 off, 1 on, 2 on and locked), the audit daemon's
    pid (0: none)."""

    __slots__ = ("enabled", "daemon")

    def __init__(self, enabled: int, daemon: int) -> None:
        self.enabled, self.daemon = enabled, daemon


class Record:
    """One audit record: its type, the event's time (seconds) and serial, and its fields (an
    untrusted string decoded)."""

    __slots__ = ("type", "time", "serial", "fields")

    def __init__(self, type: int, time: float, serial: int, fields: dict[str, str]) -> None:
        self.type, self.time, self.serial, self.fields = type, time, serial, fields

    def __repr__(self) -> str:
        return f"Record({self.type}, {self.time}, {self.serial}, {self.fields!r})"


def status() -> Status:
    """AUDIT_GET over a netlink socket: raises OSError when the kernel has no audit or the
    caller may not ask (CAP_AUDIT_CONTROL in the initial user namespace)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_AUDIT) as s:
        s.settimeout(2.0)
        s.send(_NLMSGHDR.pack(_NLMSGHDR.size, AUDIT_GET, NLM_F_REQUEST, 1, 0))
        while True:
            data = s.recv(65536)
            kind = _NLMSGHDR.unpack_from(data)[1]
            if kind == NLMSG_ERROR:
                code = struct.unpack_from("=i", data, _NLMSGHDR.size)[0]
                if code:
                    raise OSError(-code, f"AUDIT_GET: {os.strerror(-code)}")
                continue
            if kind == AUDIT_GET:
                _, enabled, _, pid, *_ = _STATUS.unpack_from(data, _NLMSGHDR.size)
                return Status(enabled, pid)


def open_reader() -> socket.socket:
    """A non-blocking, close-on-exec socket subscribed to the audit records (the read-only
    multicast group). Raises OSError: EPERM without CAP_AUDIT_READ, EPROTONOSUPPORT without
    audit in the kernel."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                      NETLINK_AUDIT)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        s.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
    except BaseException:
        s.close()
        raise
    return s


def read(sock: socket.socket) -> tuple[list[Record], int]:
    """Every record queued on a reader socket, and how many overflows were seen (ENOBUFS: the
    kernel dropped records the socket had no room for)."""
    records: list[Record] = []
    overflows = 0
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return records, overflows
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno == _errno.ENOBUFS:
                overflows += 1
                continue
            raise
        records.extend(parse_messages(data))


def parse_messages(data: bytes) -> list[Record]:
    """The records of one netlink datagram (several messages may share it)."""
    out: list[Record] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
        if length < _NLMSGHDR.size:
            break
        body = data[offset + _NLMSGHDR.size: offset + length]
        record = parse_record(kind, body.rstrip(b"\0").decode("utf-8", "replace"))
        if record is not None:
            out.append(record)
        offset += (length + 3) & ~3
    return out


def parse_record(kind: int, text: str) -> Record | None:
    """``audit(SECONDS.MILLIS:SERIAL): key=value ...`` as a Record; None for a text in no such
    form."""
    header = re.match(_HEADER, text)  # re caches the compiled patterns
    if header is None:
        return None
    seconds, millis, serial = header.groups()
    fields: dict[str, str] = {}
    for key, raw in re.compile(_FIELD).findall(text, header.end()):
        fields[key] = _value(key, raw)
    return Record(kind, int(seconds) + int(millis) / 1000, int(serial), fields)


def _value(key: str, raw: str) -> str:
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1]
    if key in _UNTRUSTED and raw and len(raw) % 2 == 0 and all(c in "0123456789ABCDEFabcdef" for c in raw):
        return bytes.fromhex(raw).decode("utf-8", "backslashreplace")
    return raw
