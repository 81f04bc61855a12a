"""The network's flags refused before anything runs: one clear error naming the flag and the
value, exit 125, and nothing made on the host (no state directory, record, link or rule). No
kernel feature is needed."""

from __future__ import annotations

import pytest

from tests.helpers import describe, run_nucleus

PUBLISH_HINT = "hint: write -p [IP:]HOST:CONTAINER[/tcp|udp], e.g. -p 8080:80 or -p 127.0.0.1:8080:80/tcp\n"
ATTACH_HINT = "hint: write --attach BRIDGE=CIDR[,CIDR], e.g. --attach backend=10.89.0.0/16\n"
REFUSED = [
    (["--network", "bridge", "-p", "8080"], "error: --publish '8080': expected [IP:]HOST:CONTAINER[/tcp|udp]\n"
     + PUBLISH_HINT),
    (["--network", "bridge", "-p", "a:b:c:d"], "error: --publish 'a:b:c:d': expected [IP:]HOST:CONTAINER[/tcp|udp]\n"
     + PUBLISH_HINT),
    (["--network", "bridge", "-p", "0:80"], "error: --publish '0:80': the host port 0 is out of range (1-65535)\n"
     + PUBLISH_HINT),
    (["--network", "bridge", "-p", "8080:70000"],
     "error: --publish '8080:70000': the container port 70000 is out of range (1-65535)\n" + PUBLISH_HINT),
    (["--network", "bridge", "-p", "8080:80/sctp"], "error: --publish '8080:80/sctp': unknown protocol 'sctp' "
     "(tcp or udp)\n" + PUBLISH_HINT),
    (["--network", "bridge", "-p", "example.org:8080:80"],
     "error: --publish 'example.org:8080:80': 'example.org' is not an IP address\n" + PUBLISH_HINT),
    (["--network", "bridge", "-p", "8080:80", "-p", "8080:81"],
     "error: --publish: host port 8080/tcp is published twice\n"
     "hint: each host port forwards to one container port\n"),
    (["-p", "8080:80"], "error: --publish '8080:80/tcp': only with --network bridge (this run has --network "
     "none)\nhint: add --network bridge\n"),
    (["--network", "bridge", "--dns", "resolver.example"], "error: --dns 'resolver.example': not an IP address\n"
     "hint: give a resolver's address, e.g. --dns 192.0.2.53 (names are not resolved for it)\n"),
    (["--dns", "192.0.2.53"], "error: --dns '192.0.2.53': the container has no network (--network none)\n"
     "hint: add --network bridge, or drop --dns\n"),
    (["--network", "bridge", "--subnet", "10.88.0.1/16"], "error: --subnet '10.88.0.1/16': not an IPv4 or IPv6 "
     "network\nhint: the address bits beyond the prefix must be zero: 10.88.0.0/16\n"),
    (["--network", "bridge", "--subnet", "10.0.0.0/31"], "error: --subnet '10.0.0.0/31': the prefix length must "
     "be between 8 and 30\nhint: the bridge takes the first address; each container one more\n"),
    (["--network", "bridge", "--subnet", "10.1.0.0/16", "--subnet", "10.2.0.0/16"],
     "error: --subnet '10.2.0.0/16': one IPv4 subnet only (also '10.1.0.0/16')\n"),
    (["--network", "bridge", "--bridge-name", "br_0"], "error: --bridge-name 'br_0': not a bridge name nucleus "
     "uses\nhint: 1-15 letters, digits and '-', starting with a letter\n"),
    (["--bridge-name", "br0"], "error: --bridge-name 'br0': only with --network bridge (this run has --network "
     "none)\nhint: add --network bridge\n"),
    (["--network", "host"], "error: --network 'host' needs --allow-host-network (row \"Host networking\": agent "
     "allows it only with that flag)\nhint: add --allow-host-network to share the host's network namespace, or "
     "use --network none\n"),
    (["--service-mode", "strict-agent", "--network", "host", "--allow-host-network"],
     "error: --network 'host' is forbidden in strict-agent mode (row \"Host networking\": strict-agent forbids "
     "it)\nhint: use --network none\n"),
    (["--trust-level", "untrusted", "--network", "host", "--allow-host-network"],
     "error: --network 'host' is forbidden with --trust-level untrusted: the workload would share the host's "
     "network namespace\nhint: use --network none, or pass --trust-level trusted if you vouch for the "
     "workload\n"),
    (["--network", "bridge", "--attach", "backend"], "error: --attach 'backend': expected BRIDGE=CIDR[,CIDR]\n"
     + ATTACH_HINT),
    (["--network", "bridge", "--attach", "br_1=10.89.0.0/16"], "error: --attach 'br_1=10.89.0.0/16': 'br_1' is "
     "not a bridge name nucleus uses\nhint: 1-15 letters, digits and '-', starting with a letter\n"),
    (["--network", "bridge", "--attach", "b1=10.89.0.1/16"], "error: --attach 'b1=10.89.0.1/16': subnet "
     "'10.89.0.1/16': not an IPv4 or IPv6 network\nhint: the address bits beyond the prefix must be zero: "
     "10.89.0.0/16\n"),
    (["--network", "bridge", "--attach", "b1=10.89.0.0/16,10.90.0.0/16"], "error: --attach "
     "'b1=10.89.0.0/16,10.90.0.0/16': one IPv4 subnet only ('10.89.0.0/16' and '10.90.0.0/16')\n" + ATTACH_HINT),
    (["--attach", "b1=10.89.0.0/16"], "error: --attach 'b1=10.89.0.0/16': only with --network bridge (this run "
     "has --network none)\nhint: add --network bridge\n"),
    (["--network", "bridge", "--attach", "nucleus0=10.89.0.0/16"], "error: --attach 'nucleus0=10.89.0.0/16': "
     "nucleus0 is already the first bridge (--bridge-name)\nhint: each bridge once: a container has one "
     "interface on a bridge\n"),
    (["--network", "bridge", "--attach", "b1=10.89.0.0/16", "--attach", "b1=10.90.0.0/16"], "error: --attach "
     "'b1=10.90.0.0/16': b1 is already attached by --attach 'b1=10.89.0.0/16'\nhint: each bridge once: a "
     "container has one interface on a bridge\n"),
    (["--network", "bridge", "--attach", "b1=10.88.128.0/24"], "error: --attach 'b1=10.88.128.0/24': "
     "10.88.128.0/24 overlaps the first bridge's 10.88.0.0/16\nhint: each network of a container needs a "
     "subnet of its own\n"),
    (["--network", "bridge", *(a for k in range(9) for a in ("--attach", f"b{k}=10.{100 + k}.0.0/16"))],
     "error: --attach 'b8=10.108.0.0/16': at most 8 more bridges\n"
     "hint: a container has its first bridge's interface and at most 8 more\n"),
    (["--network", "bridge", "--attach", "b1=10.89.0.0/16", "--attach", "b2=10.89.4.0/24"], "error: --attach "
     "'b2=10.89.4.0/24': 10.89.4.0/24 overlaps 10.89.0.0/16 of --attach 'b1=10.89.0.0/16'\nhint: each network "
     "of a container needs a subnet of its own\n"),
    (["--runtime", "gvisor", "--network", "bridge", "--attach", "b1=10.89.0.0/16"], "error: --attach with "
     "--runtime gvisor: runsc's netstack takes the one interface of the namespace nucleus prepares for it\n"
     "hint: drop it, or run with --runtime native\n"),
    (["--service-mode", "strict-agent", "--network", "bridge"],
     "error: --network 'bridge' needs --dns in strict-agent mode (row \"Bridge DNS\": strict-agent needs "
     "resolvers configured explicitly)\nhint: name your resolvers, e.g. --dns 10.0.0.1 (strict-agent mode "
     "never falls back to public resolvers)\n"),
]


@pytest.mark.parametrize("args,stderr", REFUSED, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_a_bad_network_flag_is_refused_and_nothing_is_made(tmp_path, args, stderr):
    state = tmp_path / "state"
    result = run_nucleus(["--root", str(state), "run", *args, "--", "true"])
    assert (result.returncode, result.stdout, result.stderr) == (125, "", stderr), describe(result)
    assert not state.exists()



def test_check_names_only_options_that_exist():
    """Every flag `nucleus check` names in what the host offers and the modes' rules is one
    `nucleus run` takes (the rows not enforced yet say which options do not exist), and no
    resolver is named as a default: none is ever chosen for the user."""
    import re

    from nucleus.cli.run_options import RUN_FLAGS

    report = run_nucleus(["check"], timeout=120)
    assert report.returncode == 0, describe(report)
    known = {name for flag in RUN_FLAGS for name in flag.names} | {"--help"}
    offered = report.stdout.split("\nnot enforced yet\n")[0]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", offered))
    # `--egress-*` names a family of flags: one must start with it
    unknown = {n for n in named - known if not (n.endswith("-") and any(k.startswith(n) for k in known))}
    assert unknown == set(), f"check names flags run does not take: {sorted(unknown)}"
    assert {"--network", "--allow-host-network", "--dns"} <= named
    assert "8.8.8.8" not in report.stdout and "8.8.4.4" not in report.stdout
    assert re.search(r"^  bridge: +--network bridge makes its NAT rules with (nft|iptables)", report.stdout, re.M) or \
        "no nft or iptables: --network bridge is refused" in report.stdout
