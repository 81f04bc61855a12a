"""`nucleus compose` on the real kernel, in a bridge test's own "host" network namespace (see
tests/kernel/bridge_lab.py): three services, agent mode without a rootfs (the host's Python
serves and fetches; production would need closures). A tiny HTTP backend with a health check;
a client that waits for it to be healthy and calls it by name; a third service on another
network, which can reach neither the name nor the address. The start order, the call, the
isolation; then only the client changed, and `up` again recreates it alone (the others' init
processes are the same); then `down` leaves no container, cgroup, mount, link, rule or record."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from tests.helpers import SANDBOX_PYTHON, SANDBOX_WITH_PYTHON, Scope, describe
from tests.kernel.bridge_lab import Lab

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:nft", "bin:nsenter")]

SERVE = ("import http.server\n"
         "class H(http.server.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        self.send_response(200); self.end_headers(); self.wfile.write(b'backend says hello')\n"
         "    def log_message(self, *a): pass\n"
         "http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n")
CHECK = f"{SANDBOX_PYTHON} -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/', timeout=2)\""
CALL = ("import sys, time, urllib.request\n"
        "print('client got:', urllib.request.urlopen('http://backend:8080/', timeout=5).read().decode(), flush=True)\n"
        "time.sleep(3600)\n")
REACH = ("import socket, sys\n"
         "try:\n"
         "    socket.create_connection((sys.argv[1], 8080), timeout=2); print('reached')\n"
         "except OSError as e:\n"
         "    print('unreachable:', e)\n")


def topology(scope: Scope, client_flavour: str) -> str:
    def command(code: str) -> str:
        return json.dumps([SANDBOX_PYTHON, "-c", code])

    return f"""
name = "cmp{scope.marker[-8:]}"

[networks.backend]
subnet = "203.0.113.0/25"

[networks.front]
subnet = "203.0.113.128/25"

[services.backend]
command = {command(SERVE)}
networks = ["backend"]
cgroup_parent = "{scope.cgroup_parent}"
health_check = {json.dumps(CHECK)}
health_interval = 0.3
health_start_period = 0

[services.client]
command = {command(CALL)}
networks = ["backend"]
cgroup_parent = "{scope.cgroup_parent}"
environment = {{ FLAVOUR = "{client_flavour}" }}

[[services.client.depends_on]]
service = "backend"
condition = "healthy"

[services.other]
command = {command("import time; time.sleep(3600)")}
networks = ["front"]
cgroup_parent = "{scope.cgroup_parent}"
"""


@pytest.fixture
def lab():
    with Scope() as scope, Lab(scope) as made:
        yield made


def compose(lab: Lab, path: str, *args: str, timeout: float = 120):
    return lab.nucleus("compose", "-f", path, *args, timeout=timeout)


def services(lab: Lab, path: str) -> dict[str, dict]:
    done = compose(lab, path, "ps", "--format", "json")
    assert done.returncode == 0, describe(done)
    return {row["service"]: row for row in json.loads(done.stdout)}


def init_pid(lab: Lab, cid: str) -> int:
    done = lab.nucleus("inspect", cid)
    assert done.returncode == 0, describe(done)
    return int(json.loads(done.stdout)["init_pid"])


def test_a_three_service_topology_comes_up_in_order_reconciles_and_goes_down_clean(lab):
    with tempfile.TemporaryDirectory(prefix="nucleus-test-compose-") as d:
        path = os.path.join(d, "nucleus.toml")
        with open(path, "w") as f:
            f.write(topology(lab.scope, "one"))
        try:
            done = compose(lab, path, "up")
            assert done.returncode == 0, describe(done)
            progress = done.stderr.splitlines()
            assert progress.index("backend: healthy") < next(
                i for i, line in enumerate(progress) if line.startswith("client: starting")), describe(done)
            rows = services(lab, path)
            assert {s: (r["status"], r["health"]) for s, r in rows.items()} == {
                "backend": ("running", "healthy"), "client": ("running", None), "other": ("running", None)}

            logs = compose(lab, path, "logs", "client")
            assert "client | client got: backend says hello" in logs.stdout, describe(logs)

            backend = rows["backend"]["addresses"][0]
            hosts = compose(lab, path, "exec", "other", "--", "cat", "/etc/hosts")
            assert hosts.returncode == 0 and "backend" not in hosts.stdout, describe(hosts)
            reach = compose(lab, path, "exec", "other", "--", SANDBOX_PYTHON, "-c", REACH, backend)
            assert reach.stdout.startswith("unreachable:"), describe(reach)
            near = compose(lab, path, "exec", "client", "--", SANDBOX_PYTHON, "-c", REACH, "backend")
            assert near.stdout == "reached\n", describe(near)

            before = {s: (r["id"], init_pid(lab, r["id"])) for s, r in rows.items()}
            with open(path, "w") as f:
                f.write(topology(lab.scope, "two"))
            assert services(lab, path)["client"]["changed"] is True
            again = compose(lab, path, "up")
            assert again.returncode == 0, describe(again)
            after = {s: (r["id"], init_pid(lab, r["id"])) for s, r in services(lab, path).items()}
            assert after["backend"] == before["backend"] and after["other"] == before["other"]
            assert after["client"][0] != before["client"][0]
            assert not any(line.startswith(("backend:", "other:")) for line in again.stderr.splitlines()), again.stderr

            down = compose(lab, path, "down")
            assert down.returncode == 0, describe(down)
            stops = [line.split(":")[0] for line in down.stderr.splitlines() if ": stopping" in line]
            assert stops.index("client") < stops.index("backend") and set(stops) == {"client", "backend", "other"}
        finally:
            compose(lab, path, "down")
    lab.assert_clean()


def test_a_service_run_would_refuse_fails_validation_and_up_starts_nothing(lab):
    with tempfile.TemporaryDirectory(prefix="nucleus-test-compose-") as d:
        path = os.path.join(d, "nucleus.toml")
        with open(path, "w") as f:
            f.write(topology(lab.scope, "one").replace('networks = ["front"]', 'networks = ["front"]\nmemory = "lots"'))
        done = compose(lab, path, "up")
        assert (done.returncode, done.stdout) == (125, ""), describe(done)
        assert done.stderr == f"error: {path}: services.other.memory: --memory 'lots': not a size\n" \
                              "hint: use a number with an optional K, M, G or T suffix, e.g. 512M\n"
    lab.assert_clean()


def test_a_failed_start_rolls_back_what_up_started_unless_keep_going(lab):
    with tempfile.TemporaryDirectory(prefix="nucleus-test-compose-") as d:
        path = os.path.join(d, "nucleus.toml")
        text = topology(lab.scope, "one").replace(json.dumps([SANDBOX_PYTHON, "-c", CALL]), '["/no/such/program"]')
        with open(path, "w") as f:
            f.write(text)
        try:
            done = compose(lab, path, "up")
            assert done.returncode == 125, describe(done)
            assert "client failed; the services it started were stopped again" in done.stderr, describe(done)
            assert {r["status"] for r in services(lab, path).values()} == {"absent"}
            lab.scope.assert_clean()

            kept = compose(lab, path, "up", "--keep-going")
            assert kept.returncode == 125, describe(kept)
            assert {s: r["status"] for s, r in services(lab, path).items()} == {
                "backend": "running", "client": "absent", "other": "running"}
        finally:
            compose(lab, path, "down")
    lab.assert_clean()
