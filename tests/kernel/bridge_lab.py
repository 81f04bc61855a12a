"""A bridge test's own two network namespaces: a "host" namespace, in which nucleus runs (with
the test's own state directory, through ``nsenter --net``, so the machine's cgroups stay in
view), and an "upstream" one, linked to it by a veth pair, where the test's servers listen. Only
documentation addresses are used (198.51.100.0/24 and 2001:db8:100::/64 on the link); no packet
leaves the two namespaces, which go away with everything in them when the test ends.

``Lab.assert_clean()`` compares the host namespace with what it was before nucleus ran: its
links, its nftables rule set (iptables' rules included, iptables-nft keeps them there) and its
forwarding settings; ``close()`` checks that the namespaces and their processes are gone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time

from tests.helpers import NUCLEUS, SANDBOX_PYTHON, Scope, describe, nucleus_env, wait_for

HOST_ADDRESS = "198.51.100.1"
UPSTREAM_ADDRESS = "198.51.100.2"
HOST_ADDRESS6 = "2001:db8:100::1"
UPSTREAM_ADDRESS6 = "2001:db8:100::2"
UPSTREAM_PORT = 8000
NSENTER = "/usr/bin/nsenter"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Lab:
    def __init__(self, scope: Scope, drop_forward: bool = True) -> None:
        token = secrets.token_hex(3)
        self.scope = scope
        self.host, self.upstream = f"nbh{token}", f"nbu{token}"
        self.servers: list[subprocess.Popen] = []
        ip("netns", "add", self.host)
        ip("netns", "add", self.upstream)
        ip("link", "add", f"h{token}", "netns", self.host, "type", "veth", "peer", "name", f"u{token}",
           "netns", self.upstream)
        for ns, link, v4, v6 in ((self.host, f"h{token}", HOST_ADDRESS, HOST_ADDRESS6),
                                 (self.upstream, f"u{token}", UPSTREAM_ADDRESS, UPSTREAM_ADDRESS6)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{v4}/24", "dev", link)
            ip("-n", ns, "addr", "add", f"{v6}/64", "dev", link, "nodad")
            ip("-n", ns, "link", "set", link, "up")
        if drop_forward:  # a host whose firewall drops what it forwards unless told otherwise
            self.in_host("iptables", "-P", "FORWARD", "DROP")
        self.before = self.host_state()

    # -- running things --------------------------------------------------------------------------
    def argv(self, ns: str, *argv: str) -> list[str]:
        return [NSENTER, f"--net=/run/netns/{ns}", *argv]

    def in_host(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(self.host, *argv), capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, describe(done)
        return done

    def in_upstream(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(self.upstream, *argv), capture_output=True, text=True, timeout=timeout)

    def nucleus(self, *args: str, extra_env: dict[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """``nucleus ARGS...`` in the host namespace, with the scope's state directory."""
        return subprocess.run(self.argv(self.host, NUCLEUS, *args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              env=nucleus_env({**self.scope.env, **(extra_env or {})}))

    def popen(self, *args: str, extra_env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        # nsenter execs nucleus: the Popen's pid is the supervisor's.
        return subprocess.Popen(self.argv(self.host, NUCLEUS, *args), stdin=subprocess.DEVNULL,
                                env=nucleus_env({**self.scope.env, **(extra_env or {})}), **kw)

    def serve_upstream(self, directory: str, address: str = UPSTREAM_ADDRESS, port: int = UPSTREAM_PORT) -> None:
        """An HTTP server of `directory` in the upstream namespace."""
        proc = subprocess.Popen(self.argv(self.upstream, SANDBOX_PYTHON, "-m", "http.server", "--bind",
                                          address, "--directory", directory, str(port)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.servers.append(proc)
        assert wait_for(lambda: self.in_upstream("ss", "-Htln", f"sport = :{port}").stdout.strip(), timeout=10)

    def get(self, where: str, url: str) -> str:
        """GET `url` from `where` ("host" or "upstream"); the body, or "" when nothing answered."""
        code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
        ns = self.host if where == "host" else self.upstream
        done = subprocess.run(self.argv(ns, SANDBOX_PYTHON, "-c", code), capture_output=True, text=True,
                              timeout=30)
        return done.stdout.strip() if done.returncode == 0 else ""

    # -- what is left behind -----------------------------------------------------------------------
    def host_state(self) -> dict[str, object]:
        links = self.in_host("ip", "-o", "link", "show").stdout
        names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
        settings = {path: self.in_host("cat", path).stdout.strip() for path in (
            "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")}
        return {"links": names, "ruleset": self.ruleset(), "settings": settings}

    def ruleset(self) -> list[str]:
        """The host namespace's nftables rules, without iptables-nft's empty built-in chains."""
        text = self.in_host("nft", "list", "ruleset").stdout
        return [line.strip() for line in text.splitlines()
                if line.strip() and not line.strip().startswith(("table ", "chain ", "type ", "}"))]

    def assert_clean(self) -> None:
        """Nothing nucleus made is left in the host namespace, nor in the state directory."""
        after = wait_for(lambda: (s := self.host_state()) == self.before and s, timeout=10) or self.host_state()
        assert after == self.before
        network = os.path.join(self.scope.state_dir, "network")
        assert not os.path.exists(network) or os.listdir(network) == []
        self.scope.assert_clean()

    def close(self) -> None:
        for proc in self.servers:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for ns in (self.host, self.upstream):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        deadline = time.monotonic() + 5
        while (self.host in listed or self.upstream in listed) and time.monotonic() < deadline:
            time.sleep(0.1)
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        assert self.host not in listed and self.upstream not in listed, listed
        assert all(proc.poll() is not None for proc in self.servers)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
