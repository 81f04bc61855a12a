"""Egress policies of bridged containers on the real kernel, each test in network namespaces of its
own (tests/kernel/bridge_lab.py) with its own upstream servers (tests/kernel/egress_lab.py: a DNS
server, a package index, HTTPS and echo servers, all on documentation addresses of the upstream
namespace): pip installs through --egress-domain and is refused elsewhere with a 403 and a
violation line, curl reaches an allowed name through CONNECT, a refused name is never looked up
upstream, an --egress-allow network is reached on its allowed port only, another container
cannot use a container's proxy, and a supervisor killed during the egress steps leaves nothing
once `nucleus rm --force` has run."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, kill_paused, wait_for
from tests.kernel.bridge_lab import UPSTREAM_ADDRESS, UPSTREAM_ADDRESS6, Lab
from tests.kernel.egress_support import gone
from tests.kernel.egress_support import lab as egress_lab
from tests.kernel.test_egress_netns import package_index

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:nft", "bin:iptables", "bin:nsenter", "bin:curl",
                                                        "bin:openssl")]

NAMES = ("pkgs.test", "mirror.test", "allowed.test", "other.test")
# The names' policy: the index and the HTTPS name, on the upstream address (a documentation
# address: reached only because an --egress-allow names it), ports 80 and 443.
DOMAINS = ("--egress-domain", "pkgs.test", "--egress-domain", "allowed.test", "--egress-allow",
           f"{UPSTREAM_ADDRESS}/32", "--egress-tcp-port", "80", "--egress-tcp-port", "443",
           "--dns", UPSTREAM_ADDRESS)
PIP = ("/usr/bin/python3 -m pip install -vv --no-cache-dir --disable-pip-version-check --retries 0 "
       "--target /tmp/site-{0} --index-url http://{0}/simple --trusted-host {0} egress-demo")
WORKFLOW = "\n".join([
    "export HOME=/tmp PIP_CONFIG_FILE=/dev/null",
    PIP.format("pkgs.test") + " >/dev/null 2>&1 && echo pip-pkgs: $(cat /tmp/site-pkgs.test/egress_demo.py)",
    PIP.format("mirror.test") + " 2>&1 | grep -o '403 Client Error: Forbidden' | head -1 | sed 's/^/pip-mirror: /'",
    "echo curl-allowed: $(curl -sS -k --max-time 20 https://allowed.test/)",
    "curl -sS -k --max-time 20 https://other.test/ 2>&1 | grep -o 'CONNECT tunnel failed, response 403' "
    "| sed 's/^/curl-other: /'",
    "/usr/bin/python3 -c \"import socket, sys\nfor name in sys.argv[1:]:\n    try: print('lookup', name, "
    "socket.gethostbyname(name))\n    except OSError as e: print('lookup', name, 'no answer')\" pkgs.test other.test",
    "echo resolv: $(cat /etc/resolv.conf)",
    "echo proxy: $HTTP_PROXY $https_proxy $ALL_PROXY $no_proxy $NO_PROXY",
])


@pytest.fixture
def lab():
    with Scope() as scope, Lab(scope) as made:
        yield made


@pytest.fixture
def upstream(lab, tmp_path):
    """The test's servers in the upstream namespace."""
    package_index(tmp_path / "index")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello over TLS\n")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout",
                    str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"), "-subj", "/CN=allowed.test"],
                   check=True, capture_output=True)
    config = {"dns": [UPSTREAM_ADDRESS, 53], "zone": {name: [UPSTREAM_ADDRESS] for name in NAMES},
              "http": [[UPSTREAM_ADDRESS, 80, str(tmp_path / "index")]],
              "https": [[UPSTREAM_ADDRESS, 443, str(tmp_path / "www"), str(tmp_path / "cert.pem"),
                         str(tmp_path / "key.pem")]],
              "echo": [[UPSTREAM_ADDRESS, 5432], [UPSTREAM_ADDRESS, 5433], [UPSTREAM_ADDRESS6, 5432]]}
    with egress_lab(tmp_path, config, within=tuple(lab.argv(lab.upstream))) as running:
        yield running


def leases(lab: Lab) -> dict:
    with open(os.path.join(lab.scope.state_dir, "network", "nucleus0.json")) as f:
        return json.load(f)["leases"]


def test_pip_curl_and_lookups_through_the_containers_proxy_and_resolver(lab, upstream, tmp_path):
    copy = tmp_path / "violations.jsonl"
    done = lab.nucleus(*lab.scope.run_args("--network", "bridge", *DOMAINS, "--violations", str(copy),
                                           "-e", "no_proxy=internal.test"),
                       "--", *lab.scope.sh(WORKFLOW), timeout=180)
    assert done.returncode == 0, describe(done)
    assert done.stdout.splitlines() == [
        "pip-pkgs: VALUE = 42",
        "pip-mirror: 403 Client Error: Forbidden",
        "curl-allowed: hello over TLS",
        "curl-other: CONNECT tunnel failed, response 403",
        f"lookup pkgs.test {UPSTREAM_ADDRESS}",
        "lookup other.test no answer",
        "resolv: nameserver 10.88.0.1",
        # The user's -e wins over the proxy's variable of the same name.
        "proxy: http://10.88.0.1:3128 http://10.88.0.1:3128 socks5h://10.88.0.1:3128 internal.test "
        "localhost,127.0.0.1,::1",
    ], describe(done)
    refused = {(r["layer"], r["operation"], r["object"], r["action"])
               for r in map(json.loads, copy.read_text().splitlines())}
    assert {("egress", "http", "mirror.test:80", "403"), ("egress", "connect", "other.test:443", "403"),
            ("egress", "lookup", "other.test A", "REFUSED")} <= refused
    # The upstream resolver was asked for the allowed names only; the index never saw mirror.test.
    assert "pkgs.test A" in upstream.queries()
    assert not [q for q in upstream.queries() if q.startswith(("other.test", "mirror.test"))]
    assert not [r for r in upstream.requests() if r[1] == "mirror.test"]
    lab.assert_clean()


CONNECT = ("import socket, sys\n"
           "for host, port in [a.rsplit(':', 1) for a in sys.argv[2:]]:\n"
           "    try:\n"
           "        with socket.create_connection((host.strip('[]'), int(port)), timeout=1) as s:\n"
           "            s.sendall(b'ping'); print(host, port, s.recv(4).decode())\n"
           "    except OSError as e: print(host, port, 'no')\n")


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_an_allowed_network_is_reached_on_its_allowed_port_only(lab, upstream, backend):
    done = lab.nucleus(*lab.scope.run_args("--network", "bridge", "--nat-backend", backend, "--egress-allow",
                                           f"{UPSTREAM_ADDRESS}/32", "--egress-tcp-port", "5432"),
                       "--", *lab.scope.python(CONNECT), f"{UPSTREAM_ADDRESS}:5432", f"{UPSTREAM_ADDRESS}:5433",
                       f"[{UPSTREAM_ADDRESS6}]:5432", "10.88.0.1:22")
    assert done.returncode == 0, describe(done)
    assert done.stdout.splitlines() == [f"{UPSTREAM_ADDRESS} 5432 ping", f"{UPSTREAM_ADDRESS} 5433 no",
                                        f"[{UPSTREAM_ADDRESS6}] 5432 no", "10.88.0.1 22 no"]
    lab.assert_clean()


def test_another_container_cannot_use_a_containers_proxy(lab):
    started = lab.nucleus(*lab.scope.run_args("-d", "--network", "bridge", "--egress-domain", "pkgs.test"),
                          "--", "sleep", "1000")
    assert started.returncode == 0, describe(started)
    cid = started.stdout.strip()
    try:
        inspected = json.loads(lab.nucleus("inspect", cid).stdout)
        network = inspected["network"] if "network" in inspected else inspected[0]["network"]
        assert (network["proxy"], network["egress"]["domain"]) == ("10.88.0.1:3128", ["pkgs.test"])
        egress = leases(lab)[cid]["egress"]
        port, pid = egress["ports"][0], egress["process"][0]
        assert not gone(pid, within=0)
        done = lab.nucleus(*lab.scope.run_args("--network", "bridge"), "--", *lab.scope.python(CONNECT),
                           f"10.88.0.1:{port}", "10.88.0.1:3128")
        assert done.returncode == 0, describe(done)
        assert done.stdout.splitlines() == [f"10.88.0.1 {port} no", "10.88.0.1 3128 no"]
    finally:
        removed = lab.nucleus("rm", "--force", cid)
    assert removed.returncode == 0, describe(removed)
    assert gone(pid)
    lab.assert_clean()


@pytest.mark.parametrize(("step", "backend"), [("NetEgress", "nft"), ("NetProxy", "nft"), ("NetLinkUp", "nft"),
                                                ("NetProxy", "iptables")])
def test_supervisor_killed_during_the_egress_steps_then_rm_force_leaves_nothing(lab, step, backend):
    proc = lab.popen(*lab.scope.run_args("--network", "bridge", "--nat-backend", backend, "--egress-domain",
                                         "pkgs.test"), "--", "sleep", "1000",
                     extra_env={"NUCLEUS_PAUSE_AT": step}, text=False, bufsize=0)
    kill_paused(proc, step)
    [lost] = lab.scope.records()
    egress = leases(lab).get(lost, {}).get("egress", {})
    removed = lab.nucleus("rm", "--force", lost)
    assert removed.returncode == 0, describe(removed)
    if "process" in egress:
        assert gone(egress["process"][0])
    lab.assert_clean()


@pytest.mark.parametrize("step", ["NetEgress", "NetProxy"])
def test_a_failed_egress_step_removes_what_came_before(lab, step):
    done = lab.nucleus(*lab.scope.run_args("--network", "bridge", "--egress-domain", "pkgs.test"), "--", "true",
                       extra_env={"NUCLEUS_FAIL_AT": step})
    assert done.returncode == 125, describe(done)
    assert f"error: setup failed at net.{step[3:].lower()}: injected failure of {step} #1" in done.stderr
    assert lab.scope.records() == {}
    lab.assert_clean()


# A UDP datagram to a closed port, then TCP connections; then it waits to be removed.
DROPPED = ("import socket, sys, time\n"
           "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', (sys.argv[2], 5353))\n"
           + CONNECT.replace("sys.argv[2:]", "sys.argv[3:]") + "print('done', flush=True)\ntime.sleep(1000)\n")


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_packets_the_firewall_drops_are_in_the_violation_stream_with_the_rule(lab, upstream, backend):
    started = lab.nucleus(*lab.scope.run_args("-d", "--network", "bridge", "--nat-backend", backend,
                                              "--egress-allow", f"{UPSTREAM_ADDRESS}/32", "--egress-tcp-port", "5432"),
                          "--", *lab.scope.python(DROPPED), UPSTREAM_ADDRESS, f"{UPSTREAM_ADDRESS}:5432",
                          f"{UPSTREAM_ADDRESS}:5433", f"[{UPSTREAM_ADDRESS6}]:5432")
    assert started.returncode == 0, describe(started)
    cid = started.stdout.strip()
    dropped = {f"{UPSTREAM_ADDRESS}:5353/udp", f"{UPSTREAM_ADDRESS}:5433/tcp", f"[{UPSTREAM_ADDRESS6}]:5432/tcp"}
    try:
        logged = wait_for(lambda: "done" in lab.nucleus("logs", cid).stdout.split(), timeout=60)
        assert logged, describe(lab.nucleus("logs", cid))
        assert lab.nucleus("logs", cid).stdout.splitlines() == [
            f"{UPSTREAM_ADDRESS} 5432 ping", f"{UPSTREAM_ADDRESS} 5433 no", f"[{UPSTREAM_ADDRESS6}] 5432 no", "done"]

        def shown() -> dict:
            out = lab.nucleus("violations", "--format", "json", cid).stdout
            return {r["object"]: r for r in map(json.loads, out.splitlines())}

        found = wait_for(lambda: dropped <= set(shown()) and shown(), timeout=10)
    finally:
        removed = lab.nucleus("rm", "--force", cid)
    assert removed.returncode == 0, describe(removed)
    assert set(found) == dropped, found
    assert {(r["layer"], r["operation"], r["action"]) for r in found.values()} == {("egress", "connect", "dropped"),
                                                                                 ("egress", "send", "dropped")}
    assert found[f"{UPSTREAM_ADDRESS}:5433/tcp"]["rule"] == "TCP port 5433 is not among --egress-tcp-port (5432)"
    assert found[f"{UPSTREAM_ADDRESS}:5353/udp"]["rule"] == "UDP port 5353 is not among --egress-udp-port (none)"
    assert found[f"[{UPSTREAM_ADDRESS6}]:5432/tcp"]["rule"] == (
        f"{UPSTREAM_ADDRESS6}, a documentation address: only an --egress-allow network inside 2001:db8::/32 "
        "reaches it")
    assert all(r["client"].startswith(("10.88.0.", "[fd")) and "at most 10" in r["note"] for r in found.values())
    lab.assert_clean()
