"""The egress proxy and resolver in a network namespace the test makes, with the well-known ports
of a real network: a package index on pkgs.test:80 that pip installs a wheel from through the
proxy, an HTTPS server that curl reaches through CONNECT, an address of the documentation range
on the namespace's loopback with one allowed port, and the upstream DNS server on port 53.
No packet leaves the namespace; it goes with the lab's process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from tests.kernel.egress_support import gone, lab
from tests.kernel.wheels_support import wheel_from_source

pytestmark = pytest.mark.requires("root", "netns", "bin:unshare", "bin:nsenter", "bin:curl", "bin:ip")

PROXY = "http://127.0.0.1:3128"
ZONE = {"pkgs.test": ["127.0.0.10"], "mirror.test": ["127.0.0.10"], "allowed.test": ["127.0.0.11"],
        "other.test": ["127.0.0.12"]}
POLICY = {"allow": ["127.0.0.10/32", "127.0.0.11/32", "192.0.2.10/32"], "tcp_port": ["80", "443", "5432"],
          "domain": ["pkgs.test", "allowed.test"], "proxy": ["127.0.0.1", 3128], "resolver": ["127.0.0.1", 53]}


def package_index(root, name: str = "egress-demo") -> None:
    """A PEP 503 index of one wheel: /simple/NAME/ links to /files/WHEEL with its sha256."""
    files = root / "files"
    files.mkdir(parents=True)
    wheel = wheel_from_source(name, "1.0", {"egress_demo.py": "VALUE = 42\n"}, files)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    project = root / "simple" / name
    project.mkdir(parents=True)
    (project / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="/files/{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>\n')


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    folder = tmp_path_factory.mktemp("egress-netns")
    package_index(folder / "index")
    (folder / "www").mkdir()
    (folder / "www" / "index.html").write_text("hello over TLS\n")
    config = {"dns": ["127.0.0.53", 53], "zone": ZONE, "lo_addresses": ["192.0.2.10/32", "2001:db8::10/128"],
              "http": [["127.0.0.10", 80, str(folder / "index")]],
              "echo": [["192.0.2.10", 5432], ["192.0.2.10", 5433], ["2001:db8::10", 5432]],
              "egress": POLICY}
    if os.path.exists("/usr/bin/openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
                        "-subj", "/CN=allowed.test", "-addext", "subjectAltName=DNS:allowed.test,DNS:other.test"],
                       check=True, capture_output=True)
        config["https"] = [[address, 443, str(folder / "www"), str(folder / "cert.pem"), str(folder / "key.pem")]
                           for address in ("127.0.0.11", "127.0.0.12")]
    with lab(folder, config, netns=True) as running:
        yield running


def inside(net, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the lab's namespace with only PATH, HOME and ``env`` set."""
    clean = {"PATH": os.environ["PATH"], "HOME": str(net.folder), **env}
    return subprocess.run([*net.netns(), *argv], capture_output=True, text=True, env=clean, timeout=120)


def pip_install(net, index: str, target) -> subprocess.CompletedProcess[str]:
    return inside(net, [sys.executable, "-m", "pip", "install", "-vv", "--no-cache-dir", "--disable-pip-version-check",
                        "--retries", "0", "--target", str(target), "--index-url", f"http://{index}/simple",
                        "--trusted-host", index, "egress-demo"],
                  HTTP_PROXY=PROXY, HTTPS_PROXY=PROXY, PIP_CONFIG_FILE=os.devnull)


def test_pip_installs_from_an_allowed_index_through_the_proxy(net, tmp_path):
    result = pip_install(net, "pkgs.test", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "egress_demo.py").read_text() == "VALUE = 42\n"
    assert ["GET /simple/egress-demo/ HTTP/1.1", "pkgs.test"] in net.requests()
    assert "pkgs.test A" in net.queries()


def test_pip_from_another_domain_is_refused_with_403_and_a_violation(net, tmp_path):
    before = len(net.violations())
    result = pip_install(net, "mirror.test", tmp_path / "site")
    assert result.returncode != 0 and not (tmp_path / "site" / "egress_demo.py").exists()
    assert "403 Client Error: Forbidden for url: http://mirror.test/simple/egress-demo/" in result.stdout
    records = net.violations()[before:]
    assert records and {(r["operation"], r["object"], r["action"]) for r in records} == {("http", "mirror.test:80", "403")}
    assert records[0]["rule"] == "'mirror.test' matches no --egress-domain rule ('pkgs.test', 'allowed.test')"
    assert not [r for r in net.requests() if r[1] == "mirror.test"]  # the index never saw it
    assert "mirror.test A" not in net.queries()


@pytest.mark.requires("bin:openssl")
def test_curl_https_through_connect_and_its_refusal(net):
    cert = str(net.folder / "cert.pem")
    result = inside(net, ["curl", "-sS", "--max-time", "20", "--cacert", cert, "https://allowed.test/"],
                    HTTPS_PROXY=PROXY)
    assert (result.returncode, result.stdout) == (0, "hello over TLS\n"), result.stderr
    before = len(net.violations())
    result = inside(net, ["curl", "-sS", "--max-time", "20", "--cacert", cert, "https://other.test/"],
                    HTTPS_PROXY=PROXY)
    assert result.returncode == 56 and "403" in result.stderr, result.stderr
    [record] = net.violations()[before:]
    assert (record["operation"], record["object"], record["action"]) == ("connect", "other.test:443", "403")


LOOKUP = """
import dns.message, dns.query, dns.rcode, sys
r = dns.query.udp(dns.message.make_query(sys.argv[1], "A"), "127.0.0.1", port=53, timeout=10)
print(dns.rcode.to_text(r.rcode()), *sorted(a.address for rrset in r.answer for a in rrset))
"""


def test_a_lookup_of_another_name_gets_no_answer_and_never_reaches_upstream(net):
    assert inside(net, [sys.executable, "-c", LOOKUP, "allowed.test"]).stdout == "NOERROR 127.0.0.11\n"
    before = len(net.violations())
    assert inside(net, [sys.executable, "-c", LOOKUP, "other.test"]).stdout == "REFUSED\n"
    [record] = net.violations()[before:]
    assert (record["operation"], record["object"], record["action"]) == ("lookup", "other.test A", "REFUSED")
    assert not [q for q in net.queries() if q.startswith("other.test")]


TUNNEL = """
import socket, sys
host, port = sys.argv[1], sys.argv[2]
with socket.create_connection(("127.0.0.1", 3128), timeout=20) as s:
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\\r\\n\\r\\n".encode())
    head = b""
    while not head.endswith(b"\\r\\n\\r\\n"):
        head += s.recv(1)
    print(head.split(b"\\r\\n")[0].decode())
    if b" 200 " in head:
        s.sendall(b"ping")
        print(s.recv(4).decode())
"""


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("192.0.2.10", "5432", "HTTP/1.1 200 Connection established\nping\n"),
    ("192.0.2.10", "5433", "HTTP/1.1 403 Forbidden\n"),
    ("[2001:db8::10]", "5432", "HTTP/1.1 403 Forbidden\n"),
])
def test_an_allowed_address_reaches_its_allowed_port_only(net, host, port, expected):
    before = len(net.violations())
    assert inside(net, [sys.executable, "-c", TUNNEL, host, port]).stdout == expected
    if "403" in expected:
        [record] = net.violations()[before:]
        assert record["rule"] == {
            "5433": "TCP port 5433 is not among --egress-tcp-port (80, 443, 5432)",
            "5432": "2001:db8::10, a documentation address: only an --egress-allow network inside "
                    "2001:db8::/32 reaches it"}[port]


def test_the_lab_and_its_egress_process_end_together_leaving_nothing(tmp_path):
    """The namespace lives only as long as its processes: once the lab ends, both are gone."""
    with lab(tmp_path, {"dns": ["127.0.0.53", 53], "zone": {}, "egress": POLICY}, netns=True) as running:
        egress_pid = running.ports["egress_pid"]
        assert os.readlink(f"/proc/{egress_pid}/ns/net") == os.readlink(f"/proc/{running.pid}/ns/net")
        assert os.readlink(f"/proc/{running.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert gone(running.pid, within=0) and gone(egress_pid, within=0)
