"""A test's own little internet for the egress proxy and resolver, as a program: an upstream DNS
server that answers from a zone the test gives and logs every query it sees, HTTP servers (a
directory, such as a package index, plus ``/echo``, which answers with the request it read),
TCP echo servers, and the egress process under test (``nucleus.effects.egress.spawn``, forked
before any thread starts). Every address is loopback: of the machine, or of a network namespace
the test made (``--netns``: brings ``lo`` up first; run it under ``unshare --net``).

    python -m tests.kernel.egress_lab CONFIG.json

prints one JSON line of the bound ports (and the egress process's pid) once everything
listens, and serves until its stdin closes; then it stops the egress process and exits. CONFIG::

    {"dns": ["127.0.0.1", 0], "zone": {"pkgs.test": ["127.0.0.1"]}, "log": "queries.txt",
     "http": [["127.0.0.1", 0, "/dir"]], "http_log": "requests.jsonl", "echo": [["127.0.0.1", 0]],
     "https": [["127.0.0.1", 0, "/dir", "cert.pem", "key.pem"]], "lo_addresses": ["192.0.2.10/32"],
     "egress": {"allow": [...], "domain": [...], "tcp_port": [...], "udp_port": [...],
                "host_addresses": [...], "proxy": ["127.0.0.1", 0],
                "resolver": ["127.0.0.1", 0], "stream": "violations.jsonl",
                "upstream": ["127.0.0.1", 9]}}  (upstream: another DNS server than the lab's)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def spawn_egress(spec: dict) -> tuple[int, dict[str, int]]:
    from nucleus.config import egress as rules
    from nucleus.config import violations
    from nucleus.effects import egress

    policy = rules.parse(tuple(spec.get("allow", ())), tuple(spec.get("tcp_port", ())),
                         tuple(spec.get("udp_port", ())), tuple(spec.get("domain", ())))
    policy = rules.in_force(policy, spec.get("production", False))
    assert policy is not None, "the lab runs a policy"
    proxy = egress.listen(*spec["proxy"])
    udp = egress.listen(*spec["resolver"], kind=socket.SOCK_DGRAM)
    tcp = egress.listen(spec["resolver"][0], udp.getsockname()[1])
    ports = {"proxy": proxy.getsockname()[1], "resolver": udp.getsockname()[1]}
    setup = egress.Setup(
        policy, violations.Context("0" * 32, "lab"), upstream=tuple(spec["upstream"]),
        host_addresses=frozenset(rules.parse_address(a) for a in spec.get("host_addresses", ())),
        proxy=[proxy], dns_udp=[udp], dns_tcp=[tcp])
    return egress.spawn(setup, spec["stream"]), ports


class Zone:
    """The upstream DNS server's answers and its log of the questions it was asked."""

    def __init__(self, records: dict[str, list[str]], log: str) -> None:
        self.records = {name.lower().rstrip("."): values for name, values in records.items()}
        self.log = open(log, "a", buffering=1)  # open for the program's life
        self.lock = threading.Lock()

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        with self.lock:
            self.log.write(f"{name} {dns.rdatatype.to_text(question.rdtype)}\n")
        response = dns.message.make_response(query)
        if name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        kind = "AAAA" if question.rdtype == dns.rdatatype.AAAA else "A"
        values = [v for v in self.records[name] if (":" in v) == (kind == "AAAA")]
        if question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and values:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", kind, *values))
        return response.to_wire()


def bind_dns(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """The upstream DNS server's UDP and TCP sockets, on one port."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    udp.bind((address, port))
    tcp = socket.socket(family, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, udp.getsockname()[1]))
    tcp.listen(16)
    return udp, tcp


def serve_dns(zone: Zone, udp: socket.socket, tcp: socket.socket) -> None:
    def udp_loop() -> None:
        while True:
            data, peer = udp.recvfrom(65535)
            udp.sendto(zone.answer(data), peer)

    def tcp_loop() -> None:
        while True:
            conn, _ = tcp.accept()
            with conn:
                size = int.from_bytes(conn.recv(2), "big")
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                reply = zone.answer(data)
                conn.sendall(len(reply).to_bytes(2, "big") + reply)

    for loop in (udp_loop, tcp_loop):
        threading.Thread(target=loop, daemon=True).start()


class Handler(SimpleHTTPRequestHandler):
    """Files of the directory, and ``/echo``: the request line, headers and body it read (a
    chunked body decoded). Every request line and Host is appended to the server's log."""

    protocol_version = "HTTP/1.1"  # keeps the connection unless told otherwise: the proxy tells it
    requests_log: str | None = None

    def log_message(self, *args: object) -> None:
        pass

    def log_request(self, code: object = "-", size: object = "-") -> None:
        if self.requests_log is not None:
            with open(self.requests_log, "a") as f:
                f.write(json.dumps([self.requestline, self.headers.get("Host")]) + "\n")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                while size > 0 and (data := self.rfile.read(min(size, 65536))):
                    body.extend(data)
                    size -= len(data)
                if size:  # the client went before its chunk's end
                    return bytes(body)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            return bytes(body)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _echo(self) -> None:
        body = self._body().decode("latin-1")
        data = json.dumps({"line": self.requestline, "headers": list(self.headers.items()),
                           "body": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/echo"):
            self._echo()
        else:
            super().do_GET()

    def do_POST(self) -> None:
        self._echo()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: str, log: str | None = None,
                 tls: tuple[str, str] | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        handler = type("LabHandler", (Handler,), {"requests_log": log})
        super().__init__(address, lambda *a: handler(*a, directory=root))
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True)


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, Echo)


def main() -> None:
    args = sys.argv[1:]
    with open(args[-1]) as f:
        config = json.load(f)
    if args[0] == "--netns":  # a namespace of the test's own: its loopback, and addresses on it
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        for address in config.get("lo_addresses", ()):
            extra = ["nodad"] if ":" in address else []
            subprocess.run(["ip", "addr", "add", address, "dev", "lo", *extra], check=True)
    ready: dict[str, object] = {}
    zone = Zone(config.get("zone", {}), config["log"])
    udp, tcp = bind_dns(*config["dns"])
    ready["dns"] = udp.getsockname()[1]
    egress_pid = None
    if "egress" in config:
        spec = {"upstream": [config["dns"][0], ready["dns"]], **config["egress"]}
        egress_pid, ports = spawn_egress(spec)  # before any thread: a fork copies only this one
        ready.update(ports, egress_pid=egress_pid)
    serve_dns(zone, udp, tcp)
    log = config.get("http_log")
    servers: dict[str, list[socketserver.BaseServer]] = {
        "http": [Server((a, port), root, log) for a, port, root in config.get("http", ())],
        "https": [Server((a, port), root, log, (cert, key)) for a, port, root, cert, key in config.get("https", ())],
        "echo": [EchoServer((a, port)) for a, port in config.get("echo", ())],
    }
    for kind, started in servers.items():
        for server in started:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        ready[kind] = [s.server_address[1] for s in started]  # type: ignore[attr-defined]
    print(json.dumps(ready), flush=True)
    sys.stdin.read()
    if egress_pid is not None:
        os.kill(egress_pid, signal.SIGTERM)
        os.waitpid(egress_pid, 0)


if __name__ == "__main__":
    main()
