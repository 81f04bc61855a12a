"""NAT and forwarding for a bridge, with nftables (`nft`) or iptables (`iptables`, `ip6tables`).

Everything nucleus adds carries its own names, so that removing it removes exactly that: with
nft a table `inet nucleus_<bridge>` of its own (maps of the published ports, whose elements are
added and deleted by key), and a rule marked `nucleus_<bridge>` inserted at the top of every
other table's forward chain whose policy is drop (the host's own firewall, iptables-nft's
FORWARD among them), so that its policy does not stop the bridge's traffic; with iptables chains
`NUCLEUS-<bridge>-FWD|PRE|OUT|POST` jumped to from the top of the built-in chains (a jump that
accepts ends the built-in chain's walk, whatever its policy), each published port a rule
marked with the container's id, and a rule of the bridge's in the chain NUCLEUS-ISOLATION that
all the bridges share (made with the first, removed with the last).

The bridge's own rules: what leaves its subnets for another link is masqueraded; what comes
from the bridge is forwarded; what goes to it only when it answers a connection of the
container's or is a published port (DNAT), else it is dropped. Bridges do not reach each other:
with nft each bridge's forward chain drops what enters it from elsewhere, and a drop in any base
chain is final; with iptables the first bridge chain a packet meets would accept it (`-i <bridge>`)
before the other bridge's chain could drop it, so each bridge chain begins with a jump to
NUCLEUS-ISOLATION, which holds every bridge's drop of new traffic into it from elsewhere (traffic
within one bridge, answers and published ports pass). A published port is forwarded
for traffic to any local address from outside (prerouting) and from the host itself (output);
traffic from the host's loopback is masqueraded to the bridge's address (the bridge has
route_localnet on, nucleus.effects.network), and so is a container's traffic to a published
port of its own bridge (hairpin).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterator

from nucleus.config.network import nft_name

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # where the tools are looked for: never the caller's PATH
TIMEOUT = 30.0
LOOPBACK4 = "127.0.0.0/8"


class NetError(OSError):
    """A network step failed: errno set as for OSError, the message as a user reads it."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[NetError], tuple[int, str]]:
        return (type(self), (self.errno or 0, self.message))


def tool(name: str) -> str | None:
    return shutil.which(name, path=PATH)


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    path = tool(argv[0])
    if path is None:
        raise NetError(errno.ENOENT, f"{argv[0]}: not installed (looked in {PATH})")
    try:
        done = subprocess.run([path, *argv[1:]], input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT, env={"PATH": PATH, "LC_ALL": "C"}, check=False)
    except subprocess.TimeoutExpired:
        raise NetError(errno.ETIMEDOUT, f"{' '.join(argv)}: no answer in {TIMEOUT:.0f}s") from None
    if check and done.returncode != 0:
        raise NetError(errno.EIO, f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")
    return done


def _family(address: str) -> int:
    return ipaddress.ip_interface(address).version


# --- nftables ---------------------------------------------------------------------------------

def _table(bridge: str) -> str:
    return f"nucleus_{nft_name(bridge)}"


def _nft_bridge_script(bridge: str, subnets: tuple[str, ...]) -> str:
    t = _table(bridge)
    post = []
    for subnet in subnets:
        ip = "ip" if _family(subnet) == 4 else "ip6"
        post += [f'{ip} saddr {subnet} oifname != "{bridge}" masquerade',
                 f'oifname "{bridge}" ct status dnat {ip} saddr {subnet} masquerade']
    post.append(f'oifname "{bridge}" ip saddr {LOOPBACK4} masquerade')
    lines = [
        f"table inet {t} {{",
        "  map pub4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }",
        "  map pub4any { type inet_proto . inet_service : ipv4_addr . inet_service; }",
        "  map pub6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }",
        "  map pub6any { type inet_proto . inet_service : ipv6_addr . inet_service; }",
        "  chain publish {",
        "    meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @pub4",
        "    meta nfproto ipv4 dnat ip to meta l4proto . th dport map @pub4any",
        "    meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6",
        "    meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @pub6any",
        "  }",
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; "
        "fib daddr type local jump publish; }",
        "  chain output { type nat hook output priority -100; policy accept; "
        "fib daddr type local jump publish; }",
        "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;",
        *(f"    {rule}" for rule in post),
        "  }",
        "  chain forward { type filter hook forward priority filter; policy accept;",
        *(f"    {rule}" for rule in _forward_rules(bridge)),
        f'    oifname "{bridge}" drop',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _forward_rules(bridge: str) -> list[str]:
    return [f'iifname "{bridge}" accept', f'oifname "{bridge}" ct state established,related accept',
            f'oifname "{bridge}" ct status dnat accept']


Ports = tuple[tuple[str, str, int, int], ...]


def _forwards(ports: Ports, addresses: tuple[str, ...]) -> Iterator[tuple[str, str, int, int, int, str]]:
    """(protocol, host address or "", host port, container port, family, container address)
    for each published port and each family the container has an address of (a port published
    on one host address, of that address's family only)."""
    for proto, host_ip, host_port, container_port in ports:
        for address in addresses:
            version = _family(address)
            if not host_ip or ipaddress.ip_address(host_ip).version == version:
                yield proto, host_ip, host_port, container_port, version, str(ipaddress.ip_interface(address).ip)


def _nft_elements(ports: Ports, addresses: tuple[str, ...], with_values: bool) -> list[tuple[str, str]]:
    """(map, element) of each forward (its key alone without `with_values`)."""
    out = []
    for proto, host_ip, host_port, container_port, version, ip in _forwards(ports, addresses):
        key = f"{host_ip} . {proto} . {host_port}" if host_ip else f"{proto} . {host_port}"
        name = f"pub{version}" + ("" if host_ip else "any")
        out.append((name, f"{key} : {ip} . {container_port}" if with_values else key))
    return out


def _nft_has_table(bridge: str) -> bool:
    return _run(["nft", "list", "table", "inet", _table(bridge)], check=False).returncode == 0


def _nft_drop_chains() -> list[tuple[str, str, str]]:
    """(family, table, chain) of every base chain hooked at forward whose policy is drop."""
    listed = json.loads(_run(["nft", "-j", "list", "chains"]).stdout or "{}")
    found = []
    for item in listed.get("nftables", []):
        chain = item.get("chain")
        if chain and chain.get("hook") == "forward" and chain.get("policy") == "drop":
            found.append((chain["family"], chain["table"], chain["name"]))
    return found


def _nft_marked(family: str, table: str, chain: str, mark: str) -> list[int]:
    """The handles of the rules marked `mark` in a chain."""
    listed = json.loads(_run(["nft", "-j", "-a", "list", "chain", family, table, chain]).stdout or "{}")
    return [item["rule"]["handle"] for item in listed.get("nftables", [])
            if "rule" in item and item["rule"].get("comment") == mark]


def _nft_open_forward(bridge: str) -> None:
    """Let the bridge's traffic through every other forward chain whose policy is drop."""
    mark = _table(bridge)
    for family, table, chain in _nft_drop_chains():
        if table == mark or _nft_marked(family, table, chain, mark):
            continue
        script = "".join(f'insert rule {family} {table} {chain} {rule} comment "{mark}"\n'
                         for rule in reversed(_forward_rules(bridge)))
        _run(["nft", "-f", "-"], stdin=script)


def _nft_close_forward(bridge: str) -> None:
    mark = _table(bridge)
    for family, table, chain in _nft_drop_chains():
        for handle in _nft_marked(family, table, chain, mark):
            _run(["nft", "delete", "rule", family, table, chain, "handle", str(handle)])


# --- iptables ---------------------------------------------------------------------------------

def _chain(bridge: str, part: str) -> str:
    return f"NUCLEUS-{bridge}-{part}"


def _tables(subnets: tuple[str, ...]) -> list[tuple[str, str]]:
    """(command, subnet) for each family the bridge has a subnet of."""
    return [("iptables" if _family(s) == 4 else "ip6tables", s) for s in subnets]


def _jumps() -> list[tuple[str, str, list[str]]]:
    """(table, built-in chain, match) of each jump to the bridge's chains."""
    local = ["-m", "addrtype", "--dst-type", "LOCAL"]
    return [("filter", "FORWARD", []), ("nat", "PREROUTING", local), ("nat", "OUTPUT", local),
            ("nat", "POSTROUTING", [])]


_PARTS = {"FORWARD": "FWD", "PREROUTING": "PRE", "OUTPUT": "OUT", "POSTROUTING": "POST"}
ISOLATION = "NUCLEUS-ISOLATION"


def _isolation_rule(bridge: str) -> list[str]:
    """The bridge's rule in ISOLATION: new traffic into it from any other link is dropped."""
    return ["!", "-i", bridge, "-o", bridge, "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT",
            "-j", "DROP"]


def _ipt_isolate(cmd: str, bridge: str) -> None:
    """ISOLATION where it is missing (another bridge may have just made it), with the bridge's rule
    where that is missing."""
    _run([cmd, "-w", "-t", "filter", "-N", ISOLATION], check=False)
    rule = _isolation_rule(bridge)
    if _run([cmd, "-w", "-t", "filter", "-C", ISOLATION, *rule], check=False).returncode != 0:
        _run([cmd, "-w", "-t", "filter", "-A", ISOLATION, *rule])


def _ipt_unisolate(cmd: str, bridge: str) -> None:
    """The bridge's rule in ISOLATION, then ISOLATION itself unless other bridges still use it."""
    _run([cmd, "-w", "-t", "filter", "-D", ISOLATION, *_isolation_rule(bridge)], check=False)
    _run([cmd, "-w", "-t", "filter", "-X", ISOLATION], check=False)


def _ipt_bridge(bridge: str, subnets: tuple[str, ...]) -> None:
    for cmd, subnet in _tables(subnets):
        if _run([cmd, "-w", "-t", "nat", "-S", _chain(bridge, "POST")], check=False).returncode == 0:
            continue
        fwd, post = _chain(bridge, "FWD"), _chain(bridge, "POST")
        for table, builtin, _ in _jumps():
            _run([cmd, "-w", "-t", table, "-N", _chain(bridge, _PARTS[builtin])])
        _ipt_isolate(cmd, bridge)
        rules = [
            ["-A", fwd, "-j", ISOLATION],
            ["-A", fwd, "-i", bridge, "-j", "ACCEPT"],
            ["-A", fwd, "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ["-A", fwd, "-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],
            ["-A", fwd, "-o", bridge, "-j", "DROP"],
        ]
        for rule in rules:
            _run([cmd, "-w", "-t", "filter", *rule])
        nat = [["-A", post, "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"],
               ["-A", post, "-o", bridge, "-s", subnet, "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE"]]
        if cmd == "iptables":
            nat.append(["-A", post, "-o", bridge, "-s", LOOPBACK4, "-j", "MASQUERADE"])
        for rule in nat:
            _run([cmd, "-w", "-t", "nat", *rule])
        for table, builtin, match in _jumps():
            _run([cmd, "-w", "-t", table, "-I", builtin, "1", *match, "-j", _chain(bridge, _PARTS[builtin])])


def _ipt_unbridge(bridge: str) -> None:
    for cmd in ("iptables", "ip6tables"):
        if tool(cmd) is None:
            continue
        for table, builtin, match in _jumps():
            chain = _chain(bridge, _PARTS[builtin])
            _run([cmd, "-w", "-t", table, "-D", builtin, *match, "-j", chain], check=False)
            _run([cmd, "-w", "-t", table, "-F", chain], check=False)
            _run([cmd, "-w", "-t", table, "-X", chain], check=False)
        _ipt_unisolate(cmd, bridge)


def _ipt_port_rules(owner: str, ports: Ports, addresses: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(command, rule without its -A/-D and chain) of each forward's DNAT."""
    out = []
    for proto, host_ip, host_port, container_port, version, ip in _forwards(ports, addresses):
        to = f"{ip}:{container_port}" if version == 4 else f"[{ip}]:{container_port}"
        rule = ["-p", proto, *(["-d", host_ip] if host_ip else []), "--dport", str(host_port),
                "-m", "comment", "--comment", f"nucleus:{owner}", "-j", "DNAT", "--to-destination", to]
        out.append(("iptables" if version == 4 else "ip6tables", rule))
    return out


# --- the steps ----------------------------------------------------------------------------------

def add(backend: str, bridge: str, subnets: tuple[str, ...], owner: str,
        ports: Ports, addresses: tuple[str, ...]) -> None:
    """The bridge's rules where they are missing, then the container's published ports."""
    if backend == "nft":
        if not _nft_has_table(bridge):
            _run(["nft", "-f", "-"], stdin=_nft_bridge_script(bridge, subnets))
        _nft_open_forward(bridge)
        elements = _nft_elements(ports, addresses, with_values=True)
        if elements:
            script = "".join(f"add element inet {_table(bridge)} {name} {{ {e} }}\n" for name, e in elements)
            _run(["nft", "-f", "-"], stdin=script)
        return
    _ipt_bridge(bridge, subnets)
    for cmd, rule in _ipt_port_rules(owner, ports, addresses):
        for part in ("PRE", "OUT"):
            _run([cmd, "-w", "-t", "nat", "-A", _chain(bridge, part), *rule])


def remove_ports(backend: str, bridge: str, owner: str, ports: Ports,
                 addresses: tuple[str, ...]) -> None:
    """The container's published ports; one that is not there is fine."""
    if backend == "nft":
        if not _nft_has_table(bridge):
            return
        for name, key in _nft_elements(ports, addresses, with_values=False):
            _run(["nft", "delete", "element", "inet", _table(bridge), name, f"{{ {key} }}"], check=False)
        return
    for cmd, rule in _ipt_port_rules(owner, ports, addresses):
        for part in ("PRE", "OUT"):
            _run([cmd, "-w", "-t", "nat", "-D", _chain(bridge, part), *rule], check=False)


def remove_bridge(backend: str, bridge: str) -> None:
    """The bridge's own rules (with the last container on it)."""
    if backend == "nft":
        _nft_close_forward(bridge)
        if _nft_has_table(bridge):
            _run(["nft", "delete", "table", "inet", _table(bridge)])
        return
    _ipt_unbridge(bridge)


def chosen(asked: str | None) -> str:
    """The backend --nat-backend asks for, "auto": nft where it is installed, else iptables;
    "" when the one asked for (or either) is missing."""
    if asked in (None, "auto"):
        return "nft" if tool("nft") else "iptables" if tool("iptables") else ""
    return asked if tool(asked) else ""

