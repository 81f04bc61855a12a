"""--network user on the real kernel: pasta and slirp4netns, each test in network namespaces of
its own (tests/kernel/bridge_lab.py: nucleus runs in the lab's "host" namespace, whose only
link leads to the lab's "upstream" namespace; the stack's sockets are that namespace's, so no
packet leaves the two). Outbound TCP through the stack, -p from the host namespace and its
loopback, the egress policy with its rules inside the container's namespace (403 and a
violation line from the proxy, no answer for a port the policy does not open and a violation
line for what the rules dropped), and a supervisor killed with SIGKILL whose stack `rm --force`
ends. An ordinary user's run: test_user_network_unprivileged.py."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from tests.helpers import (
    SANDBOX_PYTHON,
    SANDBOX_WITH_PYTHON,
    Scope,
    describe,
    wait_for,
)
from tests.kernel.bridge_lab import UPSTREAM_ADDRESS, UPSTREAM_PORT, Lab
from tests.kernel.egress_support import gone
from tests.kernel.egress_support import lab as egress_lab

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("root", "netns", "bin:nft", "bin:nsenter")]

STACKS = ("pasta", "slirp4netns")
GET = ("/usr/bin/python3 -c \"import sys, urllib.request\ntry: print(sys.argv[2], urllib.request.urlopen("
       "sys.argv[1], timeout=5).status)\nexcept Exception as e: print(sys.argv[2], 'refused', "
       "getattr(e, 'code', type(e).__name__))\"")


def _installed(stack: str) -> None:
    if shutil.which(stack, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.skip(f"requires {stack} (Debian: apt-get install {'passt' if stack == 'pasta' else stack})")


@pytest.fixture
def lab(tmp_path):
    with Scope() as scope, Lab(scope) as made:
        # The stacks go out by the host namespace's default route: the upstream namespace.
        made.in_host("ip", "route", "add", "default", "via", UPSTREAM_ADDRESS)
        made.before = made.host_state()
        (tmp_path / "www").mkdir()
        (tmp_path / "www" / "index.html").write_text("hello from upstream\n")
        made.serve_upstream(str(tmp_path / "www"))
        made.serve_upstream(str(tmp_path / "www"), port=UPSTREAM_PORT + 1)
        yield made


def stack_processes(lab: Lab) -> list[int]:
    folder = os.path.join(lab.scope.state_dir, "network")
    pids = []
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if not name.endswith(".json"):
            continue  # slirp4netns's API socket
        with open(os.path.join(folder, name)) as f:
            doc = json.load(f)
        for lease in doc["leases"].values():
            pids += [lease[k]["process"][0] for k in ("stack", "egress") if "process" in lease.get(k, {})]
    return pids


@pytest.mark.parametrize("stack", STACKS)
def test_outbound_and_published_ports_through_the_user_mode_stack(lab, stack):
    _installed(stack)
    url = f"http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT}/"
    serve = (f"{GET} {url} outbound; ip -4 -o addr show eth0 | cut -d' ' -f2,7; cat /etc/resolv.conf; "
             f"cd /etc && exec {SANDBOX_PYTHON} -m http.server --bind 0.0.0.0 80")
    done = lab.nucleus(*lab.scope.run_args("-d", "--name", f"un-{stack}", "--rootless", "--network", "user",
                                           "--user-net", stack, "-p", "8080:80"), "--", "/bin/sh", "-c", serve)
    assert done.returncode == 0, describe(done)
    cid = done.stdout.strip()
    try:
        # -p: from the host namespace's own address and from its loopback.
        assert wait_for(lambda: "hostname" in lab.get("host", "http://198.51.100.1:8080/"), timeout=20), \
            describe(lab.nucleus("logs", cid))
        logs = lab.nucleus("logs", cid).stdout
        assert "outbound 200" in logs and "eth0 10.0.2.100/24" in logs and "nameserver 10.0.2.3" in logs, logs
        assert "hostname" in lab.get("host", "http://127.0.0.1:8080/")
        shown = json.loads(lab.nucleus("inspect", cid).stdout)
        assert "user" in json.dumps(shown)
        pids = stack_processes(lab)
        assert pids
    finally:
        removed = lab.nucleus("rm", "--force", cid)
    assert removed.returncode == 0, describe(removed)
    assert all(gone(pid) for pid in pids)
    lab.assert_clean()


@pytest.mark.parametrize("stack", STACKS)
def test_egress_policy_inside_the_containers_namespace(lab, stack, tmp_path):
    _installed(stack)
    copy = tmp_path / "violations.jsonl"
    script = "; ".join([
        f"{GET} http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT}/ allowed-port",
        # the proxy variables name the gateway; the proxy refuses what the policy does not allow
        f"{GET} http://other.test/ proxied-other",
        f"{GET} http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT + 1}/ proxied-port",
        # not through the proxy: the rules inside drop it (no answer)
        f"NO_PROXY='*' no_proxy='*' {GET} http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT + 1}/ direct-port",
        "echo proxy: $HTTP_PROXY; cat /etc/resolv.conf",
    ])
    done = lab.nucleus(*lab.scope.run_args("--rootless", "--network", "user", "--user-net", stack,
                                           "--egress-allow", f"{UPSTREAM_ADDRESS}/32", "--egress-tcp-port",
                                           str(UPSTREAM_PORT), "--violations", str(copy)),
                       "--", "/bin/sh", "-c", script, timeout=120)
    assert done.returncode == 0, describe(done)
    out = done.stdout
    assert "allowed-port 200" in out, out
    assert "proxied-other refused 403" in out and "proxied-port refused 403" in out, out
    assert "direct-port refused" in out and "direct-port 200" not in out, out
    assert "proxy: http://10.0.2.2:3128" in out and "nameserver 10.0.2.2" in out, out
    records = [json.loads(line) for line in copy.read_text().splitlines()]
    assert any(r.get("layer") == "egress" and "other.test" in json.dumps(r) for r in records), records
    # What the rules inside dropped, read from the NFLOG group of the container's namespace.
    dropped = [r for r in records if r.get("action") == "dropped"]
    assert any(f"{UPSTREAM_ADDRESS}:{UPSTREAM_PORT + 1}/tcp" in json.dumps(r) for r in dropped), records
    assert not stack_processes(lab)
    lab.assert_clean()


LOOKUP = ("/usr/bin/python3 -c \"import socket, sys\nfor name in sys.argv[1:]:\n    try: print('lookup', name, "
          "socket.gethostbyname(name))\n    except OSError: print('lookup', name, 'no answer')\" pkgs.test other.test")


@pytest.mark.parametrize("stack", STACKS)
def test_only_allowed_names_resolve_and_upstream_never_sees_the_others(lab, stack, tmp_path):
    _installed(stack)
    copy = tmp_path / "violations.jsonl"
    config = {"dns": [UPSTREAM_ADDRESS, 53], "zone": {name: [UPSTREAM_ADDRESS] for name in ("pkgs.test", "other.test")}}
    with egress_lab(tmp_path, config, within=tuple(lab.argv(lab.upstream))) as upstream:
        done = lab.nucleus(*lab.scope.run_args("--rootless", "--network", "user", "--user-net", stack,
                                               "--egress-domain", "pkgs.test", "--dns", UPSTREAM_ADDRESS,
                                               "--violations", str(copy)),
                           "--", "/bin/sh", "-c", f"{LOOKUP}; cat /etc/resolv.conf", timeout=120)
        queries = upstream.queries()
    assert done.returncode == 0, describe(done)
    assert done.stdout.splitlines() == [f"lookup pkgs.test {UPSTREAM_ADDRESS}", "lookup other.test no answer",
                                        "nameserver 10.0.2.2"], describe(done)
    assert "pkgs.test A" in queries
    assert not [q for q in queries if q.startswith("other.test")], queries
    refused = {(r["layer"], r["operation"], r["object"], r["action"])
               for r in map(json.loads, copy.read_text().splitlines())}
    assert ("egress", "lookup", "other.test A", "REFUSED") in refused, refused
    assert not stack_processes(lab)
    lab.assert_clean()


@pytest.mark.parametrize("stack", STACKS)
def test_supervisor_killed_then_rm_force_ends_the_stack(lab, stack):
    _installed(stack)
    proc = lab.popen(*lab.scope.run_args("--name", f"uk-{stack}", "--rootless", "--network", "user",
                                         "--user-net", stack, "--egress-allow", f"{UPSTREAM_ADDRESS}/32"),
                     "--", "/bin/sh", "-c", "echo up; exec sleep 300")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "up"
        pids = stack_processes(lab)
        assert len(pids) == 2  # the stack and the egress process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    removed = lab.nucleus("rm", "--force", f"uk-{stack}")
    assert removed.returncode == 0, describe(removed)
    assert all(gone(pid) for pid in pids)
    lab.assert_clean()
