"""A user-mode network's stack (--network user): pasta or slirp4netns, started by the supervisor
for the network namespace of the container's setup process, and the egress rules that the
setup process makes inside that namespace (nftables) before the stack is attached.

Both stacks are told the same: the interface `eth0`, left down (the setup process gives it its
address, brings it up and adds the default route, as for a bridge), the container at
10.0.2.100/24 behind the gateway 10.0.2.2 and the DNS forwarder 10.0.2.3, IPv4 only. The
host's loopback is reached at the gateway only when the egress process listens there
(`loopback`); otherwise slirp4netns runs with --disable-host-loopback and pasta with --no-map-gw.
pasta forwards no port but the published ones (its defaults forward every port bound on either
side: `-t/-u/-T/-U none`).

- pasta daemonizes once the namespace is attached and writes its pid to a file; it runs as
  the caller (as root it would switch to "nobody", who may not enter the container's user
  namespace, hence --runas).
- slirp4netns stays the supervisor's child: it says it is ready on --ready-fd, ends when the
  supervisor's end of --exit-fd closes (the supervisor killed too), and takes published ports
  through its API socket (add_hostfwd).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import select
import socket
import subprocess
import tempfile

from nucleus import vocab as v
from nucleus.effects.egress_rules import _nft_log, _set
from nucleus.effects.egress_rules import _nft_ports as _ports
from nucleus.effects.nat import NetError

TIMEOUT = 30.0
MTU = "65520"
TUN = "/dev/net/tun"
# Descriptors kept open for as long as this process lives: slirp4netns's --exit-fd ends.
_EXIT_ENDS: list[int] = []


def _plain(address: str) -> str:
    return str(ipaddress.ip_interface(address).ip)


def _error(name: str, text: str) -> NetError:
    # pasta reports what syslog refused to take too ("Failed to send N bytes to syslog").
    lines = [line for line in text.splitlines() if line.strip() and "to syslog" not in line]
    why = "; ".join(lines[-3:]) or "exited before the network was ready"
    if os.geteuid() != 0 and not os.access(TUN, os.R_OK | os.W_OK):
        why += f" ({TUN} is not open to this user: the stack needs it readable and writable by every user)"
    return NetError(errno.EIO, f"{name}: {why}")


def pasta_argv(op: v.NetUser, pid: int, pidfile: str) -> list[str]:
    iface = ipaddress.ip_interface(op.address)
    ports: dict[str, list[str]] = {"tcp": [], "udp": []}
    for proto, address, host, inside in op.ports:
        ports[proto].append(f"{address}/{host}:{inside}" if address else f"{host}:{inside}")
    return [
        op.program, "--quiet", "--ipv4-only", "--ns-ifname", op.inside, "--address", str(iface.ip),
        "--netmask", str(iface.network.prefixlen), "--gateway", op.gateway, "--dns-forward", op.dns,
        "--mtu", MTU, "--no-dhcp", "--tcp-ns", "none", "--udp-ns", "none",
        "--tcp-ports", ",".join(ports["tcp"]) or "none", "--udp-ports", ",".join(ports["udp"]) or "none",
        *(() if op.loopback else ("--no-map-gw",)),
        "--runas", f"{os.geteuid()}:{os.getegid()}", "--pid", pidfile, str(pid),
    ]


def pasta(op: v.NetUser, pid: int, pidfile: str) -> int:
    """Start pasta for `pid`'s namespaces; its daemon's pid."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    try:
        done = subprocess.run(pasta_argv(op, pid, pidfile), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise NetError(errno.ETIMEDOUT, f"pasta: not ready in {TIMEOUT:.0f}s") from None
    if done.returncode != 0:
        raise _error("pasta", done.stderr + done.stdout)
    try:
        with open(pidfile) as f:
            daemon = int(f.read(32).strip())
        os.unlink(pidfile)
    except (OSError, ValueError) as e:
        raise NetError(errno.EIO, f"pasta: no pid in {pidfile}: {e}") from None
    return daemon


def slirp_argv(op: v.NetUser, pid: int, api: str, ready: int, exit_end: int) -> list[str]:
    return [
        op.program, "--ready-fd", str(ready), "--exit-fd", str(exit_end), "--api-socket", api, "--mtu", MTU,
        "--cidr", str(ipaddress.ip_interface(op.address).network), "--enable-seccomp",
        *(() if op.loopback else ("--disable-host-loopback",)), str(pid), op.inside,
    ]


def slirp(op: v.NetUser, pid: int, api: str) -> int:
    """Start slirp4netns for `pid`'s namespaces, wait until it is ready and forward the published
    ports through its API socket; its pid (this process's child)."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    log = tempfile.TemporaryFile(mode="w+")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(api)
    try:
        proc = subprocess.Popen(slirp_argv(op, pid, api, ready_w, exit_r), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, pass_fds=(ready_w, exit_r))
    except OSError as e:
        for fd in (ready_r, ready_w, exit_r, exit_w):
            os.close(fd)
        log.close()
        raise NetError(e.errno or errno.EIO, f"slirp4netns: {e.strerror or e}") from None
    os.close(ready_w)
    os.close(exit_r)
    try:
        readable, _, _ = select.select([ready_r], [], [], TIMEOUT)
        if not readable or os.read(ready_r, 1) != b"1":
            os.close(exit_w)
            proc.wait()
            log.seek(0)
            raise _error("slirp4netns", log.read(1 << 16))
    finally:
        os.close(ready_r)
        log.close()
    _EXIT_ENDS.append(exit_w)
    for port in op.ports:
        _forward(api, op, port)
    return proc.pid


def _forward(api: str, op: v.NetUser, port: v.Port) -> None:
    proto, address, host, inside = port
    request = {"execute": "add_hostfwd", "arguments": {
        "proto": proto, "host_addr": address or "0.0.0.0", "host_port": host,
        "guest_addr": _plain(op.address), "guest_port": inside}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(api)
            sock.sendall(json.dumps(request).encode())
            sock.shutdown(socket.SHUT_WR)
            answer = json.loads(sock.recv(1 << 16) or b"{}")
        except (OSError, ValueError) as e:
            raise NetError(errno.EIO, f"slirp4netns: forwarding host port {host}/{proto}: {e}") from None
    if "error" in answer or "return" not in answer:
        why = (answer.get("error") or {}).get("desc", "no answer")
        raise NetError(errno.EADDRINUSE, f"slirp4netns: host port {host}/{proto} cannot be forwarded ({why}; "
                                         "is it in use?)")


# --- inside: the egress rules of the container's own network namespace --------------------------

TABLE = "nucleus_egress"


def filter_script(op: v.NetFilter) -> str:
    """The nftables rules (see nucleus.vocab.NetFilter): IPv4 only, as the stack carries; what
    they drop is logged to the intent's NFLOG group (at most LOG_RATE packets a second a rule,
    as on the bridge), which the egress process reads."""
    gw = op.gateway
    networks = [n for n in op.networks if ipaddress.ip_network(n).version == 4]
    allowed: list[str] = []
    if networks:
        to = f"ip daddr {_set(networks)}"
        if op.any_port:
            allowed.append(f"{to} accept")
        allowed += [f"{to} {proto} dport {_ports(ranges)} accept"
                    for proto, ranges in (("tcp", op.tcp_ports), ("udp", op.udp_ports)) if ranges]
    log = _nft_log(op.group or None)
    lines = [
        f"table inet {TABLE} {{",
        "  chain nat_output { type nat hook output priority -100; policy accept;",
        f"    ip daddr {gw} meta l4proto {{ tcp, udp }} th dport 53 dnat ip to {gw}:{op.dns}",
        f"    ip daddr {gw} tcp dport {op.proxy_port} dnat ip to {gw}:{op.proxy}",
        "  }",
        "  chain output { type filter hook output priority filter; policy drop;",
        '    oifname "lo" accept',
        "    ct state established,related accept",
        f"    ip daddr {gw} tcp dport {op.proxy} accept",
        f"    ip daddr {gw} meta l4proto {{ tcp, udp }} th dport {op.dns} accept",
        *(f"    ip daddr {op.local} {statement}" for statement in log),
        f"    ip daddr {op.local} counter drop",
        *(f"    {rule}" for rule in allowed),
        *(f"    {statement}" for statement in log),
        "    counter drop",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def add_filter(op: v.NetFilter) -> None:
    try:
        done = subprocess.run([op.nft, "-f", "-"], input=filter_script(op), capture_output=True, text=True,
                              timeout=TIMEOUT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetError(getattr(e, "errno", None) or errno.EIO, f"{op.nft} -f -: {e}") from None
    if done.returncode != 0:
        raise NetError(errno.EIO, f"{op.nft} -f - failed: {(done.stderr or done.stdout).strip()}")
