"""The egress proxy for real, on the machine's loopback (127.0.0.1 and ::1 only), against the lab's
own servers (``tests.kernel.egress_lab``): curl and raw clients through plain HTTP, CONNECT and
SOCKS5; refusals answered 403 (SOCKS5: reply 2) with the rule, each a violation line; names
checked before any lookup; DNS rebinding to loopback or link-local refused; request smuggling
and Host mismatches refused; the process ends with its parent."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from tests.kernel.egress_support import gone, kill_hard, lab

pytestmark = pytest.mark.requires("bin:curl")

ZONE = {"allowed.test": ["127.0.0.1"], "other.test": ["127.0.0.1"], "rebind.test": ["127.0.0.2"],
        "metadata.test": ["169.254.169.254"], "a.wild.test": ["127.0.0.1"], "wild.test": ["127.0.0.1"],
        "nowhere.test": []}
POLICY = {"allow": ["127.0.0.1/32"], "domain": ["allowed.test", "rebind.test", "metadata.test", "*.wild.test",
                                                "nowhere.test"],
          "proxy": ["127.0.0.1", 0], "resolver": ["127.0.0.1", 0]}
CLEAN_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    folder = tmp_path_factory.mktemp("egress-proxy")
    (folder / "www").mkdir()
    (folder / "www" / "index.html").write_text("hello from upstream\n")
    config = {"dns": ["127.0.0.1", 0], "zone": ZONE, "http": [["127.0.0.1", 0, str(folder / "www")]],
              "echo": [["127.0.0.1", 0]], "egress": POLICY}
    with lab(folder, config) as running:
        yield running


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True,
                          env=CLEAN_ENV, timeout=30)


def exchange(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Send ``data`` to the proxy, then read until it closes."""
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def new_violations(net, before: int) -> list[dict]:
    return net.violations()[before:]


def test_plain_http_to_an_allowed_name(net):
    http = net.ports["http"][0]
    result = curl("-x", f"http://127.0.0.1:{net.ports['proxy']}", f"http://allowed.test:{http}/index.html")
    assert (result.returncode, result.stdout) == (0, "hello from upstream\n"), result.stderr
    echo = json.loads(curl("-x", f"http://127.0.0.1:{net.ports['proxy']}", "-H", "Proxy-Authorization: Basic eA==",
                           f"http://Allowed.Test:{http}/echo?x=1").stdout)
    headers = dict(echo["headers"])
    assert echo["line"] == "GET /echo?x=1 HTTP/1.1"
    assert headers["Host"] == f"allowed.test:{http}" and headers["Connection"] == "close"
    assert "Proxy-Authorization" not in headers and "Proxy-Connection" not in headers


def test_plain_http_to_another_name_gets_403_with_the_rule_and_a_violation(net):
    before = len(net.violations())
    http = net.ports["http"][0]
    result = curl("-x", f"http://127.0.0.1:{net.ports['proxy']}", "-w", "%{http_code}", f"http://other.test:{http}/")
    assert result.stdout == (
        "nucleus egress policy: refused: 'other.test' matches no --egress-domain rule ('allowed.test', "
        "'rebind.test', 'metadata.test', '*.wild.test' and 1 more)\nhint: add --egress-domain other.test\n403")
    [record] = new_violations(net, before)
    assert {k: record[k] for k in ("layer", "operation", "object", "action", "pid")} == {
        "layer": "egress", "operation": "http", "object": f"other.test:{http}", "action": "403", "pid": 0}
    assert record["rule"].startswith("'other.test' matches no --egress-domain rule")
    assert record["client"].startswith("127.0.0.1:") and record["container"]["name"] == "lab"
    assert "other.test A" not in net.queries()  # refused by name: never looked up


def test_connect_tunnels_to_an_allowed_name(net):
    """CONNECT, 200, then a plain TCP echo through the tunnel; a half-close passes through."""
    with socket.create_connection(("127.0.0.1", net.ports["proxy"]), timeout=20) as sock:
        sock.sendall(f"CONNECT allowed.test:{net.ports['echo'][0]} HTTP/1.1\r\nHost: allowed.test\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(1)
        assert head == b"HTTP/1.1 200 Connection established\r\n\r\n"
        sock.sendall(b"ping through the tunnel\n")
        sock.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := sock.recv(65536):
            echoed += chunk
    assert echoed == b"ping through the tunnel\n"


def test_curl_through_connect_and_its_refusal(net):
    proxy = f"http://127.0.0.1:{net.ports['proxy']}"
    http = net.ports["http"][0]
    result = curl("-p", "-x", proxy, f"http://allowed.test:{http}/index.html")  # -p: through CONNECT
    assert (result.returncode, result.stdout) == (0, "hello from upstream\n"), result.stderr
    before = len(net.violations())
    result = curl("-p", "-x", proxy, f"http://other.test:{http}/index.html")
    assert result.returncode == 56 and "403" in result.stderr
    [record] = new_violations(net, before)
    assert (record["operation"], record["object"], record["action"]) == ("connect", f"other.test:{http}", "403")


def test_socks5_with_names_and_addresses(net):
    proxy, http = f"127.0.0.1:{net.ports['proxy']}", net.ports["http"][0]
    for flag, host in (("--socks5-hostname", "allowed.test"), ("--socks5-hostname", "A.Wild.test"),
                       ("--socks5", "127.0.0.1")):  # --socks5: curl sends the address itself
        result = curl(flag, proxy, f"http://{host}:{http}/index.html")
        assert (result.returncode, result.stdout) == (0, "hello from upstream\n"), (host, result.stderr)
    before = len(net.violations())
    result = curl("--socks5-hostname", proxy, f"http://other.test:{http}/")
    assert result.returncode == 97, result.stderr  # curl: the SOCKS5 server refused (reply 2)
    [record] = new_violations(net, before)
    assert (record["operation"], record["object"], record["action"]) == ("connect", f"other.test:{http}",
                                                                         "SOCKS5 reply 2")


def socks5(port: int, request: bytes, methods: bytes = b"\x00") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"\x05" + bytes((len(methods),)) + methods)
        greeting = sock.recv(2)
        if greeting != b"\x05\x00":
            return greeting
        sock.sendall(request)
        return sock.recv(10)


def test_socks5_refuses_what_it_does_not_offer(net):
    port = net.ports["proxy"]
    assert socks5(port, b"", methods=b"\x02") == b"\x05\xff"  # username/password only: no method
    target = bytes((3, 12)) + b"allowed.test" + (80).to_bytes(2, "big")
    assert socks5(port, b"\x05\x02\x00" + target)[:2] == b"\x05\x07"  # BIND: command not supported
    assert socks5(port, b"\x05\x01\x00\x09" + bytes(6))[:2] == b"\x05\x08"  # address type not supported
    before = len(net.violations())
    v6 = b"\x05\x01\x00\x04" + socket.inet_pton(socket.AF_INET6, "::1") + net.ports["http"][0].to_bytes(2, "big")
    assert socks5(port, v6)[:2] == b"\x05\x02"
    [record] = new_violations(net, before)
    assert record["rule"] == "::1, the loopback address: only an --egress-allow network inside ::1/128 reaches it"


@pytest.mark.parametrize(("name", "address", "label", "block"), [
    ("rebind.test", "127.0.0.2", "a loopback address", "127.0.0.0/8"),
    ("metadata.test", "169.254.169.254", "a link-local address (cloud metadata services live there)", "169.254.0.0/16"),
])
def test_an_allowed_name_that_resolves_to_the_hosts_side_is_refused(net, name, address, label, block):
    """DNS rebinding: the name is allowed, what it resolves to is not; nothing is connected to."""
    before = len(net.violations())
    result = curl("-x", f"http://127.0.0.1:{net.ports['proxy']}", "-w", "%{http_code}", f"http://{name}/latest/")
    rule = f"'{name}' resolved to {address}, {label}: only an --egress-allow network inside {block} reaches it"
    assert result.stdout == (f"nucleus egress policy: refused: {rule}\nhint: add --egress-allow {address}/32 "
                             "if the sandbox may reach it\n403")
    [record] = new_violations(net, before)
    assert record["rule"] == rule and f"{name} A" in net.queries()


def test_a_wildcard_allows_the_names_below_it_only(net):
    http = net.ports["http"][0]
    proxy = f"http://127.0.0.1:{net.ports['proxy']}"
    assert curl("-x", proxy, f"http://a.wild.test:{http}/index.html").stdout == "hello from upstream\n"
    refused = curl("-x", proxy, "-w", "%{http_code}", f"http://wild.test:{http}/index.html").stdout
    assert refused.endswith("403") and "'wild.test' matches no --egress-domain rule" in refused


def test_an_allowed_name_that_does_not_resolve_is_a_bad_gateway(net):
    result = curl("-x", f"http://127.0.0.1:{net.ports['proxy']}", "-w", "%{http_code}", "http://nowhere.test/")
    assert result.stdout == "nucleus egress proxy: cannot resolve 'nowhere.test': no address\n502"


def test_a_host_header_naming_another_host_is_refused(net):
    http = net.ports["http"][0]
    before = len(net.violations())
    answer = exchange(net.ports["proxy"], f"GET http://allowed.test:{http}/echo HTTP/1.1\r\n"
                                          "Host: other.test\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert (f"refused: the Host header names 'other.test:80', the request's URI 'allowed.test:{http}': they "
            "must name the same host").encode() in answer
    assert new_violations(net, before)[0]["operation"] == "http"


def test_one_request_a_connection_so_a_smuggled_second_one_never_arrives(net):
    http = net.ports["http"][0]
    seen = len(net.requests())
    first = f"POST http://allowed.test:{http}/echo HTTP/1.1\r\nHost: allowed.test:{http}\r\nContent-Length: 5\r\n\r\nhello"
    second = f"GET http://allowed.test:{http}/secret HTTP/1.1\r\nHost: other.test\r\n\r\n"
    answer = exchange(net.ports["proxy"], (first + second).encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK") or head.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in head.split(b"\r\n") and json.loads(body)["body"] == "hello"
    assert net.requests()[seen:] == [["POST /echo HTTP/1.1", f"allowed.test:{http}"]]


def test_a_chunked_body_is_passed_on_as_framed(net):
    http = net.ports["http"][0]
    result = curl("-x", f"http://127.0.0.1:{net.ports['proxy']}", "-H", "Transfer-Encoding: chunked",
                  "--data-binary", "chunked body", f"http://allowed.test:{http}/echo")
    assert json.loads(result.stdout)["body"] == "chunked body"


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /index.html HTTP/1.1\r\nHost: allowed.test\r\n\r\n", b"400"),
    (b"GET https://allowed.test/ HTTP/1.1\r\n\r\n", b"400"),
    (b"GET http://allowed.test/ HTTP/1.1\r\nX: " + b"y" * 40000 + b"\r\n\r\n", b"431"),
    (b"POST http://allowed.test/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
    (b"GET http://allowed.test/ HTTP/3\r\n\r\n", b"505"),
])
def test_requests_the_proxy_does_not_pass_on(net, request_bytes, status):
    seen = len(net.requests())
    assert exchange(net.ports["proxy"], request_bytes).startswith(b"HTTP/1.1 " + status)
    assert net.requests()[seen:] == []


def test_the_egress_process_ends_with_its_parent(tmp_path):
    config = {"dns": ["127.0.0.1", 0], "zone": {}, "egress": POLICY}
    with lab(tmp_path, config) as running:
        egress_pid = running.ports["egress_pid"]
        assert not gone(egress_pid, within=0)
        kill_hard(running.proc)  # the supervisor dies without a word
        assert gone(egress_pid)


@pytest.mark.skipif(not socket.has_ipv6, reason="requires IPv6")
def test_ipv6_on_loopback_when_allowed(tmp_path):
    folder = tmp_path
    (folder / "www").mkdir()
    (folder / "www" / "index.html").write_text("hello over IPv6\n")
    config = {"dns": ["::1", 0], "zone": {"six.test": ["::1"], "four.test": ["127.0.0.1"]},
              "http": [["::1", 0, str(folder / "www")]],
              "egress": {"allow": ["::1/128"], "domain": ["six.test"], "proxy": ["::1", 0], "resolver": ["::1", 0]}}
    with lab(folder, config) as running:
        proxy = f"http://[::1]:{running.ports['proxy']}"
        result = curl("-x", proxy, f"http://six.test:{running.ports['http'][0]}/index.html")
        assert (result.returncode, result.stdout) == (0, "hello over IPv6\n"), result.stderr
        assert "six.test AAAA" in running.queries()
        refused = curl("-x", proxy, "-w", "%{http_code}", f"http://[::2]:{running.ports['http'][0]}/")
        assert refused.stdout.endswith("403")



def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_a_huge_chunk_is_streamed_not_buffered(net):
    """A chunk that announces 16 EiB and brings 16 MiB: the proxy passes it a buffer at a time,
    so its peak memory does not grow by the chunk's size."""
    pid, http = net.ports["egress_pid"], net.ports["http"][0]
    with socket.create_connection(("127.0.0.1", net.ports["proxy"]), timeout=20) as sock:
        sock.sendall(f"POST http://allowed.test:{http}/echo HTTP/1.1\r\nHost: allowed.test:{http}\r\n"
                     "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n".encode())
        before = _peak_kib(pid)
        block = b"x" * 65536
        for _ in range(256):
            sock.sendall(block)
    assert _peak_kib(pid) - before < 8 * 1024
