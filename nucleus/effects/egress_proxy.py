"""The egress proxy a bridged container's HTTP_PROXY, HTTPS_PROXY and ALL_PROXY name, in the egress
process (``nucleus.effects.egress``). One port speaks three protocols, told apart by the first
byte (5 is SOCKS5's version; an HTTP method is a letter):

- ``CONNECT host:port`` (HTTPS, and any TCP through a tunnel): the host name is checked, never
  the TLS inside (no interception); ``200`` then bytes both ways.
- an absolute-form request (``GET http://host/path``): the URI's host is checked, and the Host
  header must name the same host (else a server behind one address would be asked for another
  name); the head is forwarded in origin form with ``Connection: close``, the body exactly as
  framed, the response passed back. One request a connection: a client's next request comes on
  a connection of its own and is checked again.
- SOCKS5 (no authentication) CONNECT to a name or an address; BIND and UDP ASSOCIATE are not
  offered.

Every request's *name* is checked against the policy (``nucleus.config.egress``), then resolved
here through the upstream resolver the process is given, and each address checked again: an
allowed name that resolves to a loopback, link-local or private address, or to the host's own,
is refused unless an --egress-allow names it (DNS rebinding reaches nothing). The connection
goes to the very address that was checked. A refusal answers ``403`` with a body naming the
rule (SOCKS5: reply 2, "not allowed by ruleset") and writes a violation line.

Bounded: a request head of at most 32 KiB and 100 fields, 30 s to send it, 10 s to connect,
300 s without a byte either way ends a connection, 64 KiB buffers with flow control, at most
256 connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nucleus.config.egress import Verdict, parse_address
from nucleus.effects import egress_http as http
from nucleus.effects.egress_dns import ResolveFailed, peer
from nucleus.frozen import frozen

if TYPE_CHECKING:
    from nucleus.config.egress import Address
    from nucleus.effects.egress import Guard

Resolve = Callable[[str, bool], Awaitable[list["Address"]]]
CHUNK = 65536
SOCKS_VERSION = 5
SOCKS_REFUSED = 2  # "connection not allowed by ruleset"
SOCKS_FAILURE, SOCKS_UNREACHABLE, SOCKS_CONNECTION_REFUSED = 1, 4, 5
SOCKS_COMMAND, SOCKS_ADDRESS_TYPE = 7, 8  # not supported


@frozen
class Limits:
    head_timeout: float = 30.0
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_connections: int = 256


class Refused(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.rule)
        self.verdict = verdict


class Unreachable(Exception):
    """An allowed destination that could not be reached: the HTTP status and SOCKS5 reply."""

    def __init__(self, why: str, status: int = 502, socks: int = SOCKS_UNREACHABLE) -> None:
        super().__init__(why)
        self.why, self.status, self.socks = why, status, socks


class _Idle:
    """The last moment a byte passed either way on a relayed connection."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.last = asyncio.get_running_loop().time()

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            left = self.last + self.timeout - loop.time()
            if left <= 0:
                raise TimeoutError("idle")
            try:
                async with asyncio.timeout(left):
                    data = await reader.read(CHUNK)
            except TimeoutError:
                continue  # the other way may have been busy: look at the time again
            self.last = loop.time()
            return data


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: _Idle) -> None:
    """Copy until end of file, then pass the end on (a half-close: the other way goes on)."""
    while data := await idle.read(reader):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                  b: tuple[asyncio.StreamReader, asyncio.StreamWriter], idle: _Idle) -> None:
    """Both ways until both have ended; a reset or the idle timeout ends both."""
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pipe(a[0], b[1], idle))
            group.create_task(_pipe(b[0], a[1], idle))
    except* (OSError, TimeoutError):
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):  # already reset or gone: closed either way
        await writer.wait_closed()


class Proxy:
    def __init__(self, guard: Guard, resolve: Resolve, limits: Limits | None = None) -> None:
        self.guard, self.resolve, self.limits = guard, resolve, limits or Limits()
        self.connections = 0

    async def serve(self, sock: socket.socket) -> asyncio.Server:
        return await asyncio.start_server(self.handle, sock=sock, limit=http.MAX_HEAD)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = peer(writer.get_extra_info("peername"))
        if self.connections >= self.limits.max_connections:
            await _close(writer)
            return
        self.connections += 1
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                first = await reader.readexactly(1)
            if first[0] == SOCKS_VERSION:
                await self.handle_socks(reader, writer, client)
            else:
                await self.handle_http(first, reader, writer, client)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass  # the connection ends; a refusal was answered and recorded before
        finally:
            self.connections -= 1
            await _close(writer)

    # -- reaching a destination -------------------------------------------------------------------
    async def connect(self, host: str, port: int, client: str, refusal: Callable[[Verdict], None]
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to ``host`` (a normal name or an address) on ``port``, if the policy
        allows it; Refused (recorded through ``refusal``) or Unreachable otherwise."""
        verdict = self.guard.check(host, port)
        if not verdict.allowed:
            refusal(verdict)
            raise Refused(verdict)
        literal = parse_address(host)
        if literal is not None:
            allowed = [literal]
        else:
            try:
                async with asyncio.timeout(self.limits.connect_timeout):
                    found = await self.resolve(host, self.guard.policy.ipv6)
            except ResolveFailed as e:
                raise Unreachable(str(e), 502, SOCKS_UNREACHABLE) from None
            except TimeoutError:
                raise Unreachable(f"cannot resolve {host!r}: the resolver did not answer", 504) from None
            verdicts = [(a, self.guard.check_resolved(host, a, port)) for a in found]
            allowed = [a for a, v in verdicts if v.allowed]
            if not allowed:
                refusal(verdicts[0][1])
                raise Refused(verdicts[0][1])
        failure = Unreachable("no address")
        for address in allowed:
            try:
                async with asyncio.timeout(self.limits.connect_timeout):
                    return await asyncio.open_connection(str(address), port, limit=CHUNK)
            except TimeoutError:
                failure = Unreachable(f"connecting to {address} port {port} timed out", 504, SOCKS_UNREACHABLE)
            except OSError as e:
                failure = Unreachable(f"connecting to {address} port {port}: {e.strerror or e}", 502,
                                      SOCKS_CONNECTION_REFUSED)
        raise failure

    def _recorder(self, operation: str, obj: str, action: str, client: str) -> Callable[[Verdict], None]:
        def record(verdict: Verdict) -> None:
            self.guard.refuse(verdict, operation=operation, obj=obj, action=action, client=client)
        return record

    # -- HTTP -------------------------------------------------------------------------------------
    async def handle_http(self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          client: str) -> None:
        try:
            try:
                async with asyncio.timeout(self.limits.head_timeout):
                    data = first + await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise http.BadMessage(431, f"the head is larger than {http.MAX_HEAD} bytes") from None
            head = http.parse_request(data)
            if head.start[0] == b"CONNECT":
                await self.tunnel(head, reader, writer, client)
            else:
                await self.forward(head, reader, writer, client)
        except http.BadMessage as e:
            await self._say(writer, e.status, f"nucleus egress proxy: {e.why}\n")
        except Refused as e:
            await self._say(writer, 403, _refusal_text(e.verdict))
        except Unreachable as e:
            await self._say(writer, e.status, f"nucleus egress proxy: {e.why}\n")

    async def _say(self, writer: asyncio.StreamWriter, status: int, body: str) -> None:
        if not writer.is_closing():
            writer.write(http.answer(status, body))
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def tunnel(self, head: http.Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     client: str) -> None:
        host, port = http.connect_target(head)
        target = _shown(host, port)
        upstream = await self.connect(host, port, client, self._recorder("connect", target, "403", client))
        writer.write(http.answer(200))
        try:
            await writer.drain()
            await _splice((reader, writer), upstream, _Idle(self.limits.idle_timeout))
        finally:
            await _close(upstream[1])

    async def forward(self, head: http.Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      client: str) -> None:
        host, port, path = http.absolute_target(head)
        target = _shown(host, port)
        named = http.host_header(head)
        record = self._recorder("http", target, "403", client)
        if named is not None and named != (host, port):
            verdict = Verdict(False, f"the Host header names {_shown(*named)!r}, the request's URI "
                                     f"{target!r}: they must name the same host",
                              "send the request with its own Host header (HTTP clients do)")
            record(verdict)
            raise Refused(verdict)
        length = http.body_length(head)
        upstream = await self.connect(host, port, client, record)
        try:
            upstream[1].write(http.forward_request(head, host, port, path))
            idle, started = _Idle(self.limits.idle_timeout), asyncio.Event()
            body = asyncio.create_task(self._body(reader, upstream[1], length, idle))
            answer = asyncio.create_task(self._response(upstream[0], writer, idle, started))
            done, _ = await asyncio.wait((body, answer), return_when=asyncio.FIRST_EXCEPTION)
            if body in done and answer not in done and body.exception() is None:
                await asyncio.wait((answer,))  # the body is sent: the response comes in its time
            for task in (body, answer):
                task.cancel()
            outcomes = await asyncio.gather(body, answer, return_exceptions=True)
        finally:
            await _close(upstream[1])
        bad = next((e for e in outcomes if isinstance(e, http.BadMessage)), None)
        if bad is not None and not started.is_set():
            raise bad  # answered with its status: nothing of a response was passed back yet

    async def _body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int | None,
                    idle: _Idle) -> None:
        """Pass the request body on exactly as its head frames it, and nothing after it."""
        if length is not None:
            await self._copy(reader, writer, length, idle)
            return
        while True:
            async with asyncio.timeout(self.limits.idle_timeout):
                line = await reader.readuntil(b"\r\n")
            if len(line) > http.MAX_CHUNK_LINE:
                raise http.BadMessage(400, "a chunk-size line is too long")
            size = http.chunk_size(line)
            writer.write(line)
            if size == 0:
                break
            await self._copy(reader, writer, size, idle)  # a chunk of any size, a buffer at a time
            async with asyncio.timeout(self.limits.idle_timeout):
                end = await reader.readexactly(2)
            if end != b"\r\n":
                raise http.BadMessage(400, "a chunk does not end with CRLF")
            writer.write(end)
        trailers = 0
        while True:  # the trailer section, up to its empty line
            async with asyncio.timeout(self.limits.idle_timeout):
                line = await reader.readuntil(b"\r\n")
            trailers += len(line)
            if trailers > http.MAX_HEAD:
                raise http.BadMessage(431, "the trailer section is too large")
            writer.write(line)
            if line == b"\r\n":
                break
        await writer.drain()

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int,
                    idle: _Idle) -> None:
        """Pass exactly ``length`` bytes on, at most a buffer at a time."""
        while length > 0:
            async with asyncio.timeout(self.limits.idle_timeout):
                data = await reader.read(min(CHUNK, length))
            if not data:
                raise ConnectionResetError("the client ended the body early")
            length -= len(data)
            idle.last = asyncio.get_running_loop().time()
            writer.write(data)
            await writer.drain()

    async def _response(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: _Idle,
                        started: asyncio.Event) -> None:
        """Pass the response back: its head rewritten (interim 1xx heads as they come), the
        rest as it is, until the server closes. ``started`` is set once a byte went back."""
        while True:
            try:
                async with asyncio.timeout(self.limits.idle_timeout):
                    data = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise http.BadMessage(502, "the upstream server's response head is too large") from None
            except asyncio.IncompleteReadError:
                raise http.BadMessage(502, "the upstream server closed without a response") from None
            head = http.parse_response(data)
            started.set()
            writer.write(http.forward_response(head))
            await writer.drain()
            if not (head.start[1].startswith(b"1") and head.start[1] != b"101"):
                break
        while data := await idle.read(reader):
            writer.write(data)
            await writer.drain()

    # -- SOCKS5 -----------------------------------------------------------------------------------
    async def handle_socks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str) -> None:
        async with asyncio.timeout(self.limits.head_timeout):
            methods = await reader.readexactly((await reader.readexactly(1))[0])
            if 0 not in methods:
                writer.write(bytes((SOCKS_VERSION, 0xFF)))  # only "no authentication" is offered
                await writer.drain()
                return
            writer.write(bytes((SOCKS_VERSION, 0)))
            version, command, _, kind = await reader.readexactly(4)
            if version != SOCKS_VERSION:
                return
            if kind == 1:
                host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
            elif kind == 4:
                host = str(parse_address(str(ipaddress.IPv6Address(await reader.readexactly(16)))))
            elif kind == 3:
                raw = await reader.readexactly((await reader.readexactly(1))[0])
                host = raw.decode("ascii", "replace").lower().removesuffix(".")
            else:
                await self._reply(writer, SOCKS_ADDRESS_TYPE)
                return
            port = int.from_bytes(await reader.readexactly(2), "big")
        if command != 1:
            await self._reply(writer, SOCKS_COMMAND)
            return
        target = _shown(host, port)
        try:
            upstream = await self.connect(host, port, client, self._recorder(
                "connect", target, f"SOCKS5 reply {SOCKS_REFUSED}", client))
        except Refused:
            await self._reply(writer, SOCKS_REFUSED)
            return
        except Unreachable as e:
            await self._reply(writer, e.socks)
            return
        try:
            await self._reply(writer, 0)
            await _splice((reader, writer), upstream, _Idle(self.limits.idle_timeout))
        finally:
            await _close(upstream[1])

    async def _reply(self, writer: asyncio.StreamWriter, code: int) -> None:
        """A SOCKS5 reply; the bound address is not told (0.0.0.0:0): it is the host's."""
        writer.write(bytes((SOCKS_VERSION, code, 0, 1)) + bytes(6))
        await writer.drain()


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refusal_text(verdict: Verdict) -> str:
    """The body of a 403: the rule that refused, and how to allow it."""
    text = f"nucleus egress policy: refused: {verdict.rule}\n"
    return text + (f"hint: {verdict.hint}\n" if verdict.hint else "")
