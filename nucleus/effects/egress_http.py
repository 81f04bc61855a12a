"""HTTP/1.x as the egress proxy reads and writes it: a request head from the sandbox, the target
of a CONNECT or an absolute-form request, the head forwarded upstream, the response head passed
back, and the proxy's own answers. Pure functions over bytes, so that the parser can be fuzzed
apart from the sockets (``nucleus.effects.egress_proxy`` does the I/O).

Strict on purpose: the proxy re-serialises every head it forwards, so what the upstream server
reads is the proxy's reading. A head with a bare CR, a NUL, a folded line, a header name that is
not a token, two Content-Length values, Transfer-Encoding other than ``chunked`` or both framings
at once is refused (request smuggling lives in those ambiguities).
"""

from __future__ import annotations

import re

from nucleus.config.egress import normal_name, parse_address
from nucleus.frozen import frozen

MAX_HEAD = 32 * 1024  # bytes of a request or response head, CRLF CRLF included
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions

_TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION_RE = re.compile(rb"HTTP/1\.[01]")
_STATUS_RE = re.compile(rb"(HTTP/1\.[01]) ([0-9]{3})(?: ([^\r\n]*))?")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_CHUNK_RE = re.compile(rb"([0-9A-Fa-f]{1,16})(;[^\r\n]*)?\r\n")
# Headers that concern one connection (RFC 9110 7.6.1), and those a proxy consumes.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                         "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})


class BadMessage(Exception):
    """A message the proxy will not pass on: the status it answers with, and why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


@frozen
class Head:
    """A request head: ``start`` holds the method, target and version; a response head: the
    version, status and reason. Header names keep their case; values are stripped."""

    start: tuple[bytes, bytes, bytes]
    headers: tuple[tuple[bytes, bytes], ...]

    def values(self, name: str) -> list[bytes]:
        key = name.encode().lower()
        return [value for header, value in self.headers if header.lower() == key]


def _headers(lines: list[bytes]) -> tuple[tuple[bytes, bytes], ...]:
    if len(lines) > MAX_HEADERS:
        raise BadMessage(431, f"more than {MAX_HEADERS} header fields")
    out = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN_RE.fullmatch(name):
            raise BadMessage(400, "a header line is not 'name: value'" if not line[:1].isspace()
                             else "a folded header line")
        out.append((name, value.strip(b" \t")))
    return tuple(out)


def _lines(data: bytes, too_large: int = 431) -> list[bytes]:
    if len(data) > MAX_HEAD:
        raise BadMessage(too_large, f"the head is larger than {MAX_HEAD} bytes")
    if not data.endswith(b"\r\n\r\n"):
        raise BadMessage(400, "the head does not end with an empty line")
    lines = data[:-4].split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line or b"\0" in line:
            raise BadMessage(400, "a bare CR, LF or NUL in the head")
    return lines


def parse_request(data: bytes) -> Head:
    """The request head ``data`` (up to and including its CRLF CRLF)."""
    lines = _lines(data)
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or not parts[1]:
        raise BadMessage(400, "the request line is not 'METHOD TARGET HTTP/1.x'")
    if not _VERSION_RE.fullmatch(parts[2]):
        raise BadMessage(505, "only HTTP/1.0 and HTTP/1.1 are spoken here")
    if not parts[1].isascii() or any(c <= 0x20 or c == 0x7F for c in parts[1]):
        raise BadMessage(400, "the request target holds a character a URI may not")
    return Head((parts[0], parts[1], parts[2]), _headers(lines[1:]))


def parse_response(data: bytes) -> Head:
    """The response head ``data`` an upstream server sent (a bad one is the proxy's 502)."""
    lines = _lines(data, 502)
    match = _STATUS_RE.fullmatch(lines[0])
    if match is None:
        raise BadMessage(502, "the upstream server's status line is not 'HTTP/1.x NNN reason'")
    return Head((match.group(1), match.group(2), match.group(3) or b""), _headers(lines[1:]))


def authority(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as (host, port): the host a normal name or an address
    (IPv6 without brackets), the port ``default_port`` where none is written."""
    if "@" in text:
        raise BadMessage(400, "credentials in the request target")
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1:] if end > 0 else ""
        if end < 0 or parse_address(host) is None or parse_address(host).version != 6:  # type: ignore[union-attr]
            raise BadMessage(400, f"{text!r} is not a bracketed IPv6 address")
    else:
        host, colon, port_text = text.partition(":")
        rest = colon + port_text
    if rest:
        if not rest.startswith(":") or not _PORT_RE.fullmatch(rest[1:]) or not 0 < int(rest[1:]) < 65536:
            raise BadMessage(400, f"{text!r}: not a port")
        port = int(rest[1:])
    elif default_port is None:
        raise BadMessage(400, f"{text!r}: the port is missing")
    else:
        port = default_port
    address = parse_address(host)
    if address is not None:
        return str(address), port
    name = normal_name(host)
    if name is None:
        raise BadMessage(400, f"{host!r} is not a host name or an address")
    return name, port


def connect_target(head: Head) -> tuple[str, int]:
    """A CONNECT's ``host:port``."""
    return authority(head.start[1].decode("ascii"))


def absolute_target(head: Head) -> tuple[str, int, bytes]:
    """An absolute-form request's host, port and the target as the origin server reads it
    (path and query, ``/`` at least). Only ``http:``: HTTPS goes through CONNECT."""
    target = head.start[1].decode("ascii")
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise BadMessage(400, "a proxy request names an http:// URI (https goes through CONNECT)"
                         if sep else "this is a proxy: the request target must be an absolute http:// URI")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    host, port = authority(rest[:end], 80)
    path = rest[end:].partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    return host, port, path.encode("ascii")


def host_header(head: Head) -> tuple[str, int] | None:
    """The one Host header as (host, port), None when there is none; two are refused."""
    values = head.values("host")
    if len(values) > 1:
        raise BadMessage(400, "more than one Host header")
    return authority(values[0].decode("ascii", "replace"), 80) if values else None


def body_length(head: Head) -> int | None:
    """How the request body is framed: its Content-Length (0: none), or None for chunked."""
    encodings = head.values("transfer-encoding")
    lengths = head.values("content-length")
    if encodings:
        if lengths:
            raise BadMessage(400, "both Transfer-Encoding and Content-Length")
        if [e.strip().lower() for e in b",".join(encodings).split(b",")] != [b"chunked"]:
            raise BadMessage(501, "a Transfer-Encoding other than chunked")
        return None
    values = {v.strip() for value in lengths for v in value.split(b",")}
    if len(values) > 1 or not all(v.isdigit() and len(v) <= 18 for v in values):
        raise BadMessage(400, "a Content-Length that is not one number")
    return int(values.pop()) if values else 0


def chunk_size(line: bytes) -> int:
    """The size a chunk-size line (``1a;ext\\r\\n``) announces."""
    match = _CHUNK_RE.fullmatch(line)
    if match is None:
        raise BadMessage(400, "a malformed chunk-size line")
    return int(match.group(1), 16)


def _connection_listed(head: Head) -> set[bytes]:
    return {token.strip().lower() for value in head.values("connection") for token in value.split(b",")}


def _without_hop_by_hop(head: Head) -> list[tuple[bytes, bytes]]:
    listed = _connection_listed(head)
    return [(n, v) for n, v in head.headers if n.lower().decode() not in _HOP_BY_HOP and n.lower() not in listed]


def forward_request(head: Head, host: str, port: int, path: bytes) -> bytes:
    """The head sent upstream: origin-form target, Host the request's authority, the
    connection's own headers dropped, the body's framing kept, ``Connection: close`` (one request
    a connection: the next one is read, and checked, on a connection of its own)."""
    shown = f"[{host}]" if ":" in host else host
    authority_text = shown if port == 80 else f"{shown}:{port}"
    headers = [(n, v) for n, v in _without_hop_by_hop(head) if n.lower() != b"host"]
    if head.values("transfer-encoding"):
        headers.append((b"Transfer-Encoding", b"chunked"))
    lines = [b" ".join((head.start[0], path, head.start[2])), b"Host: " + authority_text.encode()]
    lines += [n + b": " + v for n, v in headers] + [b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def forward_response(head: Head) -> bytes:
    """The response head passed back to the sandbox: the connection's own headers dropped (the
    body's framing kept: the body passes through unchanged), ``Connection: close``."""
    listed = _connection_listed(head)
    keep = {b"transfer-encoding"}
    headers = [(n, v) for n, v in head.headers
               if n.lower() in keep or (n.lower().decode() not in _HOP_BY_HOP and n.lower() not in listed)]
    status = b" ".join(head.start).rstrip(b" ")
    lines = [status] + [n + b": " + v for n, v in headers]
    if not head.start[1].startswith(b"1"):
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


REASONS = {200: "Connection established", 400: "Bad Request", 403: "Forbidden",
           405: "Method Not Allowed", 431: "Request Header Fields Too Large", 501: "Not Implemented",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
           505: "HTTP Version Not Supported"}


def answer(status: int, body: str = "") -> bytes:
    """The proxy's own response: a status, a plain-text body (the rule, for a 403)."""
    data = body.encode("utf-8", "replace")
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    if status != 200:
        head += ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(data)}",
                 "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (data if status != 200 else b"")
