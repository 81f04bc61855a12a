"""The egress process: the proxy (``nucleus.effects.egress_proxy``) and the DNS resolver
(``nucleus.effects.egress_dns``) of a bridged container with an egress policy
(``nucleus.config.egress``), serving on one asyncio loop in a process the supervisor forks.

One process and one loop, not a thread per connection: a connection costs a few kilobytes (two
stream buffers of at most 64 KiB, flow-controlled) rather than a thread's stack, timeouts and
cancellation are explicit, and nothing is shared between threads. asyncio and dnspython are
imported only here, after the fork: never on the path of a run without an egress policy.

The listening sockets are made by the caller before the fork (``listen``), so that an address
in use fails the run before the container starts, and handed over. The process dies with the
supervisor (PR_SET_PDEATHSIG), ignores the terminal's signals (a ^C goes to the workload, which
may still need the network as it ends), and stops on SIGTERM. Every refused connection or
lookup is a line of the container's violation stream, written as the violation monitor writes
(a shared, rotated writer) and to the --violations copy; so is every flow whose packets the
container's egress rules dropped, as the kernel logs them to the container's NFLOG group
(nucleus.effects.nflog): one line per flow (its repeats, such as a connect's SYNs sent again,
are folded for FLOW_MEMORY seconds), with the rule ``decide_dropped`` names and a note that the
firewall logs a limited rate.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nucleus.config import egress as rules
from nucleus.config import violations
from nucleus.effects.seccomp_tracer import TRACER_IGNORES, helper_child

if TYPE_CHECKING:
    import asyncio

    from nucleus.config.egress import Address, EgressPolicy, Verdict
    from nucleus.effects.nflog import Flow

# The signals a terminal or a process group sends, which must not end the egress process before
# the workload: the tracer's, but SIGTERM, which stops it.
IGNORED = tuple(sig for sig in TRACER_IGNORES if sig != signal.SIGTERM)
FLOW_MEMORY = 60.0  # seconds a dropped flow's repeats are folded into its one line
FLOWS_KEPT = 1024


@dataclass
class Guard:
    """The policy as the servers consult it, with the host's own addresses (refused unless an
    --egress-allow names them), and where each refusal is written."""

    policy: EgressPolicy
    context: violations.Context
    write: Callable[[dict[str, object]], None]
    host_addresses: frozenset[Address] = frozenset()

    def check(self, host: str, port: int) -> Verdict:
        """A TCP connection to ``host`` (a normal name or an address), before resolution."""
        return rules.decide(self.policy, host, port, "tcp", self.host_addresses)

    def check_resolved(self, name: str, address: Address, port: int) -> Verdict:
        return rules.decide_address(self.policy, address, port, "tcp", self.host_addresses, name=name)

    def refuse(self, verdict: Verdict, *, operation: str, obj: str, action: str, client: str,
               note: str = "") -> None:
        from nucleus.effects.refusals import timestamp

        self.write(violations.egress_violation(
            self.context, when=timestamp(time.time()), operation=operation, obj=obj, action=action,
            rule=verdict.rule, hint=verdict.hint, client=client, note=note))


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass
class Drops:
    """The flows the firewall dropped, as the egress process writes them: once each, while its
    packets keep coming (``seen``: a flow and when it was last written)."""

    guard: Guard
    seen: dict[Flow, float] = field(default_factory=dict)

    def note(self, flow: Flow, now: float) -> None:
        import ipaddress

        from nucleus.effects.egress_rules import LOG_BURST, LOG_RATE

        last = self.seen.get(flow)
        if last is not None and now - last < FLOW_MEMORY:
            return
        if len(self.seen) >= FLOWS_KEPT:
            self.seen = {f: t for f, t in self.seen.items() if now - t < FLOW_MEMORY}
            while len(self.seen) >= FLOWS_KEPT:
                del self.seen[next(iter(self.seen))]
        self.seen[flow] = now
        verdict = rules.decide_dropped(self.guard.policy, ipaddress.ip_address(flow.destination), flow.dport,
                                       flow.protocol, self.guard.host_addresses)
        self.guard.refuse(verdict, operation="connect" if flow.protocol == "tcp" else "send",
                          obj=f"{_endpoint(flow.destination, flow.dport)}/{flow.protocol}", action="dropped",
                          client=_endpoint(flow.source, flow.sport),
                          note=f"the firewall records at most {LOG_RATE} dropped packets a second a rule (a burst "
                               f"of {LOG_BURST}); beyond, they are dropped and counted only")

    def read(self, sock: socket.socket) -> None:
        """Every message waiting on the NFLOG socket (an overrun, ENOBUFS, loses those packets'
        lines, not the socket)."""
        from nucleus.effects import nflog

        while True:
            try:
                data = sock.recv(nflog.BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    continue
                raise
            now = time.monotonic()
            for flow in nflog.flows(data):
                self.note(flow, now)


@dataclass
class Setup:
    """What the egress process serves: the policy, the records' context, the upstream DNS
    server (address, port) that allowed names are resolved by, the host's own addresses, and
    the listening sockets (the proxy's TCP, the resolver's UDP and TCP)."""

    policy: EgressPolicy
    context: violations.Context
    upstream: tuple[str, int]
    host_addresses: frozenset[Address] = frozenset()
    proxy: list[socket.socket] = field(default_factory=list)
    dns_udp: list[socket.socket] = field(default_factory=list)
    dns_tcp: list[socket.socket] = field(default_factory=list)
    drops: socket.socket | None = None
    copy_fd: int | None = None  # the --violations FILE, appended to

    def sockets(self) -> list[socket.socket]:
        return self.proxy + self.dns_udp + self.dns_tcp + ([self.drops] if self.drops is not None else [])


def listen(address: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound to ``address``:``port`` (TCP listening, or UDP), non-blocking and
    close-on-exec; an OSError names the call and the address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"bind {address}:{port}: {e.strerror}") from None
    return sock


async def serve(setup: Setup, write: Callable[[dict[str, object]], None], stop: asyncio.Event) -> None:
    """Serve every socket of ``setup`` until ``stop`` is set."""
    import asyncio

    from nucleus.effects.egress_dns import Resolver, Upstream
    from nucleus.effects.egress_proxy import Proxy

    guard = Guard(setup.policy, setup.context, write, setup.host_addresses)
    upstream = Upstream(*setup.upstream)
    proxy, resolver = Proxy(guard, upstream.addresses), Resolver(guard, upstream)
    servers = [await proxy.serve(s) for s in setup.proxy] + [await resolver.serve_tcp(s) for s in setup.dns_tcp]
    endpoints = [await resolver.serve_udp(s) for s in setup.dns_udp]
    drops = setup.drops
    if drops is not None:
        asyncio.get_running_loop().add_reader(drops.fileno(), Drops(guard).read, drops)
    try:
        await stop.wait()
    finally:  # the connections still open are cancelled as the loop ends
        if drops is not None:
            asyncio.get_running_loop().remove_reader(drops.fileno())
        for server in servers:
            server.close()
        for endpoint in endpoints:
            endpoint.close()


def run(setup: Setup, stream: str | None) -> None:
    """The process's life once forked: the stream's writer, then the loop until SIGTERM."""
    import asyncio

    from nucleus.effects import logs
    from nucleus.effects.refusals import Sinks

    writer = None
    if stream is not None:  # rotated only while the stream is there: `nucleus rm` removes it
        writer = logs.Writer(logs.Sink(stream, violations.MAX_STREAM_SIZE, violations.STREAM_FILES, stream),
                             shared=True)
    sinks = Sinks(writer, setup.copy_fd)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve(setup, sinks.write, stop)

    asyncio.run(main())


def spawn(setup: Setup, stream: str | None) -> int:
    """Fork the egress process serving ``setup`` and writing refusals to the container's
    ``stream`` (its path; None for none); return its pid. The caller's copies of the sockets
    and the copy descriptor are closed: the process holds them."""
    parent = os.getpid()
    pid = os.fork()
    if pid != 0:
        for sock in setup.sockets():
            sock.close()
        if setup.copy_fd is not None:
            os.close(setup.copy_fd)
        return pid
    code = 1
    try:
        keep = {0, 1, 2} | {s.fileno() for s in setup.sockets()}
        helper_child(parent, IGNORED, keep | ({setup.copy_fd} if setup.copy_fd is not None else set()))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the supervisor's handler: SIGTERM stops it
        run(setup, stream)
        code = 0
    except BaseException as e:  # noqa: BLE001 - a forked process never unwinds into its parent
        with contextlib.suppress(OSError):
            os.write(2, f"nucleus: egress proxy: {type(e).__name__}: {e}\n".encode())
    finally:
        os._exit(code)
