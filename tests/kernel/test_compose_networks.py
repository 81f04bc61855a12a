"""`nucleus compose` with a service on two networks, on the real kernel, in a bridge test's own
"host" network namespace (tests/kernel/bridge_lab.py). Three networks a, b and c: an HTTP
backend on a, another on c; a proxy on a and b that relays what the backend on a answers,
calling it by name; a client on b that calls the proxy by name. The proxy has an address on
each of its networks, and the client knows it by its address on b; the client can reach neither
the backend's name nor its address (they share no network, and no route leads there), nor can
the proxy name the backend on c; `down` leaves no container, bridge, veth, rule or record."""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile

import pytest

from tests.helpers import SANDBOX_PYTHON, SANDBOX_WITH_PYTHON, Scope, describe
from tests.kernel.bridge_lab import Lab
from tests.kernel.test_compose_run import CHECK, REACH, SERVE, compose, services

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:nft", "bin:nsenter")]

SUBNETS = {"a": "203.0.113.0/26", "b": "203.0.113.64/26", "c": "203.0.113.128/26"}
# The proxy: what `backend` answers, relayed with a prefix.
PROXY = ("import http.server, urllib.request\n"
         "class H(http.server.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        body = urllib.request.urlopen('http://backend:8080/', timeout=5).read()\n"
         "        self.send_response(200); self.end_headers(); self.wfile.write(b'proxy relays: ' + body)\n"
         "    def log_message(self, *a): pass\n"
         "http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n")
FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def topology(name: str, cgroup_parent: str) -> str:
    def command(code: str) -> str:
        return json.dumps([SANDBOX_PYTHON, "-c", code])

    networks = "".join(f'[networks.{n}]\nsubnet = "{s}"\n' for n, s in SUBNETS.items())
    return f"""
name = "{name}"
{networks}
[services.backend]
command = {command(SERVE)}
networks = ["a"]
cgroup_parent = "{cgroup_parent}"
health_check = {json.dumps(CHECK)}
health_interval = 0.3
health_start_period = 0

[services.archive]
command = {command(SERVE)}
networks = ["c"]
cgroup_parent = "{cgroup_parent}"

[services.proxy]
command = {command(PROXY)}
networks = ["a", "b"]
cgroup_parent = "{cgroup_parent}"
health_check = {json.dumps(CHECK)}
health_interval = 0.3
health_start_period = 0

[[services.proxy.depends_on]]
service = "backend"
condition = "healthy"

[services.client]
command = {command("import time; time.sleep(3600)")}
networks = ["b"]
cgroup_parent = "{cgroup_parent}"

[[services.client.depends_on]]
service = "proxy"
condition = "healthy"
"""


@pytest.fixture
def networks_lab():
    with Scope() as scope, Lab(scope) as made:
        yield made


def on(network: str, address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(SUBNETS[network])


def test_a_proxy_on_two_networks_relays_between_services_that_share_none(networks_lab: Lab):
    lab = networks_lab
    with tempfile.TemporaryDirectory(prefix="nucleus-test-compose-") as d:
        path = os.path.join(d, "nucleus.toml")
        with open(path, "w") as f:
            f.write(topology(f"net{lab.scope.marker[-8:]}", lab.scope.cgroup_parent))
        try:
            done = compose(lab, path, "up")
            assert done.returncode == 0, describe(done)
            rows = services(lab, path)
            assert {s: r["status"] for s, r in rows.items()} == {
                "backend": "running", "archive": "running", "proxy": "running", "client": "running"}
            backend, proxy = rows["backend"]["addresses"], rows["proxy"]["addresses"]
            assert len(proxy) == 2 and on("a", proxy[0]) and on("b", proxy[1]), proxy
            assert on("a", backend[0]) and on("b", rows["client"]["addresses"][0]), rows

            relayed = compose(lab, path, "exec", "client", "--", SANDBOX_PYTHON, "-c", FETCH, "http://proxy:8080/")
            assert relayed.stdout == "proxy relays: backend says hello\n", describe(relayed)

            hosts = compose(lab, path, "exec", "client", "--", "cat", "/etc/hosts")
            assert hosts.returncode == 0, describe(hosts)
            assert f"{proxy[1]}\tproxy" in hosts.stdout and "backend" not in hosts.stdout, describe(hosts)
            reach = compose(lab, path, "exec", "client", "--", SANDBOX_PYTHON, "-c", REACH, backend[0])
            assert reach.stdout.startswith("unreachable:"), describe(reach)

            seen = compose(lab, path, "exec", "proxy", "--", "cat", "/etc/hosts")
            assert f"{backend[0]}\tbackend" in seen.stdout and "archive" not in seen.stdout, describe(seen)
        finally:
            down = compose(lab, path, "down")
        assert down.returncode == 0, describe(down)
    lab.assert_clean()
