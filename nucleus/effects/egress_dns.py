"""The DNS resolver a bridged container's resolv.conf names, in the egress process
(``nucleus.effects.egress``): it answers A lookups of the names the egress policy allows (and
AAAA lookups when it allows IPv6) from the upstream resolver it is given, and refuses every
other name itself: the query never leaves, so the upstream resolver (and whoever watches it)
never sees a name the sandbox was not allowed.

- A refused name is answered REFUSED (the policy's answer, RFC 1035's "refuses to perform the
  specified operation for policy reasons"), rather than NXDOMAIN (a claim that the name does
  not exist, cached as such): glibc reports it as a temporary failure. Each refusal is a line of
  the violation stream (layer "egress", operation "lookup").
- An allowed name's AAAA lookup while IPv6 is denied, and any other type of lookup of an allowed
  name (MX, TXT, HTTPS, ...), get an empty answer (NOERROR, no records) and are not forwarded:
  the name is allowed, what was asked of it is not served. No record is written for them (every
  IPv4-only lookup asks for AAAA too).
- The query sent upstream is made anew (the name, the type, recursion desired): nothing else
  of the sandbox's message (EDNS options, flags) goes out. The answer keeps its A, AAAA and
  CNAME records and the upstream's NOERROR or NXDOMAIN; anything else is SERVFAIL.

The wire format is dnspython's; a message it cannot read gets FORMERR (or nothing, when even
its header is short or it is a response). UDP answers fit 512 bytes or the client's EDNS size
(at most 1232), else they are truncated (TC) for a retry over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from nucleus.config.egress import decide_name, parse_address
from nucleus.frozen import frozen

if TYPE_CHECKING:
    import socket

    from nucleus.config.egress import Address
    from nucleus.effects.egress import Guard

UPSTREAM_TIMEOUT = 5.0  # seconds for one upstream query (UDP, then TCP when truncated)
TCP_IDLE = 10.0  # seconds a TCP client may wait between queries
MAX_INFLIGHT = 256  # UDP queries being answered at once; more are dropped (the client retries)
MAX_TCP_CLIENTS = 64
UDP_SIZE = 512
MAX_EDNS_SIZE = 1232  # the DNS flag day 2020 size: no IP fragmentation
FORWARDED = (dns.rdatatype.A, dns.rdatatype.AAAA)
KEPT = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME})


class ResolveFailed(Exception):
    """An allowed name that resolved to nothing: why (NXDOMAIN, no address, a timeout)."""


@frozen
class Upstream:
    """The resolver allowed names are resolved by (never a public one chosen by nucleus)."""

    address: str
    port: int = 53
    timeout: float = UPSTREAM_TIMEOUT

    async def query(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """The upstream's answer to a fresh query for ``name`` (a normal name) and ``rdtype``."""
        message = dns.message.make_query(name, rdtype)
        response, _ = await dns.asyncquery.udp_with_fallback(message, self.address, timeout=self.timeout,
                                                             port=self.port)
        return response

    async def addresses(self, name: str, ipv6: bool) -> list[Address]:
        """The addresses of ``name``: IPv4 first, then IPv6 when ``ipv6``; ResolveFailed when
        there is none."""
        if not self.address:
            raise ResolveFailed(f"cannot resolve {name!r}: no resolver to ask (the host's /etc/resolv.conf "
                                "names no nameserver, and no --dns was given)")
        types = (dns.rdatatype.A, dns.rdatatype.AAAA) if ipv6 else (dns.rdatatype.A,)
        results = await asyncio.gather(*(self.query(name, t) for t in types), return_exceptions=True)
        found: list[Address] = []
        why = "no address"
        for result in results:
            if isinstance(result, BaseException):
                why = f"the resolver did not answer ({type(result).__name__})"
                continue
            if result.rcode() != dns.rcode.NOERROR:
                why = dns.rcode.to_text(result.rcode())
                continue
            chain = result.resolve_chaining()  # type: ignore[attr-defined]
            for rdata in chain.answer or ():
                address = parse_address(rdata.address)
                if address is not None:
                    found.append(address)
        if not found:
            raise ResolveFailed(f"cannot resolve {name!r}: {why}")
        return found


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a message dnspython cannot read: its id, QR set; None for one too short to
    answer or that is itself a response."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    return wire[:2] + bytes((0x80 | (wire[2] & 0x01), dns.rcode.FORMERR)) + bytes(8)


def _response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    """An answer to ``query`` built here (its id, question and recursion flags; EDNS when it
    used EDNS), with ``rcode`` and no records yet."""
    response = dns.message.QueryMessage(id=query.id)
    response.flags = dns.flags.QR | dns.flags.RA | (query.flags & dns.flags.RD)
    response.question = list(query.question)
    if query.edns >= 0:
        response.use_edns(0, payload=MAX_EDNS_SIZE)
    response.set_rcode(rcode)
    return response


class Resolver:
    """The policy's DNS server: ``answer`` decides and answers one message; ``serve_udp`` and
    ``serve_tcp`` carry messages to it."""

    def __init__(self, guard: Guard, upstream: Upstream) -> None:
        self.guard, self.upstream = guard, upstream
        self.inflight = 0
        self.tcp_clients = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def answer(self, wire: bytes, client: str, max_size: int) -> bytes | None:
        """The reply to the message ``wire`` from ``client``, at most ``max_size`` bytes; None
        when nothing is to be sent."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - whatever the sandbox sends, malformed is FORMERR
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        if query.opcode() != dns.opcode.QUERY:
            return _response(query, dns.rcode.NOTIMP).to_wire(max_size=max_size, prefer_truncation=True)
        if len(query.question) != 1:
            return _response(query, dns.rcode.FORMERR).to_wire(max_size=max_size, prefer_truncation=True)
        response = await self._decide(query, client)
        return response.to_wire(max_size=max_size, prefer_truncation=True)

    async def _decide(self, query: dns.message.Message, client: str) -> dns.message.Message:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True)
        verdict = decide_name(self.guard.policy, name)
        if verdict.allowed and question.rdclass != dns.rdataclass.IN:
            verdict = type(verdict)(False, "only Internet-class (IN) lookups are answered",
                                    "ask for the IN class")
        if not verdict.allowed:
            self.guard.refuse(verdict, operation="lookup", client=client, action="REFUSED",
                              obj=f"{name} {dns.rdatatype.to_text(question.rdtype)}")
            return _response(query, dns.rcode.REFUSED)
        rdtype = question.rdtype
        if rdtype not in FORWARDED or (rdtype == dns.rdatatype.AAAA and not self.guard.policy.ipv6):
            return _response(query, dns.rcode.NOERROR)
        try:
            upstream = await self.upstream.query(name.lower(), rdtype)
        except (dns.exception.DNSException, OSError, EOFError, ValueError):
            return _response(query, dns.rcode.SERVFAIL)
        if upstream.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return _response(query, dns.rcode.SERVFAIL)
        response = _response(query, upstream.rcode())
        response.answer = [rrset for rrset in upstream.answer if rrset.rdtype in KEPT]
        return response

    # -- UDP ----------------------------------------------------------------------------------------
    async def serve_udp(self, sock: socket.socket) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=sock)
        return transport

    def _received(self, transport: asyncio.DatagramTransport, data: bytes, addr: tuple[str, int]) -> None:
        if self.inflight >= MAX_INFLIGHT:
            return
        self.inflight += 1
        task = asyncio.ensure_future(self._reply(transport, data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, transport: asyncio.DatagramTransport, data: bytes, addr: tuple[str, int]) -> None:
        try:
            size = UDP_SIZE
            with contextlib.suppress(Exception):  # the size asked for, when the message is readable
                query = dns.message.from_wire(data)
                if query.edns >= 0:
                    size = max(UDP_SIZE, min(query.payload, MAX_EDNS_SIZE))
            reply = await self.answer(data, peer(addr), size)
            if reply is not None and not transport.is_closing():
                transport.sendto(reply, addr)
        finally:
            self.inflight -= 1

    # -- TCP ----------------------------------------------------------------------------------------
    async def serve_tcp(self, sock: socket.socket) -> asyncio.Server:
        return await asyncio.start_server(self._stream, sock=sock)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = peer(writer.get_extra_info("peername"))
        if self.tcp_clients >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self.tcp_clients += 1
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                reply = await self.answer(wire, client, 65535)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.tcp_clients -= 1
            writer.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.resolver._received(self.transport, data, addr)


def peer(addr: object) -> str:
    """A client's address as records show it: ``192.0.2.7:41234``, ``[2001:db8::7]:41234``."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)
