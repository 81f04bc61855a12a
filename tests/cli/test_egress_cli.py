"""The egress flags of `nucleus run`: each bad value is refused before anything runs, naming the
flag and the value (exit 125, nothing made on the host), and the flags need the bridge network."""

from __future__ import annotations

import re

import pytest

from nucleus.errors import EXIT_FAILURE
from tests.helpers import describe, run_nucleus

BRIDGE = ("error: --egress-domain 'pkgs.test': egress rules take effect only with --network bridge or user (this run "
          "has --network none)\nhint: add --network bridge (--network user without root), or drop the --egress-* flags\n")


@pytest.mark.parametrize(("args", "stderr"), [
    (["--egress-domain", "pkgs.test"], BRIDGE),
    (["--egress-domain", "pkgs.test", "--egress-domain", "*.example.org", "--egress-tcp-port", "443"], BRIDGE),
    (["--egress-allow", "192.0.2.1/24"], "error: --egress-allow '192.0.2.1/24': not an IPv4 or IPv6 network\n"
     "hint: the address bits beyond the prefix must be zero: 192.0.2.0/24\n"),
    (["--egress-domain", "pkgs.*"], "error: --egress-domain 'pkgs.*': '*' is allowed only as the whole first "
     "label\nhint: write --egress-domain '*.example.org' for every name below example.org, and --egress-domain "
     "example.org for the name itself\n"),
    (["--egress-udp-port", "53"], "error: --egress-udp-port '53': opens a port to nowhere\n"
     "hint: name what may be reached with --egress-allow CIDR or --egress-domain NAME\n"),
    (["--egress-allow", "::/0", "--egress-tcp-port", "1-99999"], "error: --egress-tcp-port '1-99999': ports are "
     "1-65535, the first of a range not above the last\n"),
], ids=["needs-bridge", "needs-bridge-many", "host-bits", "wildcard", "port-to-nowhere", "port-range"])
def test_egress_flags_are_refused_before_anything_runs(tmp_path, args, stderr):
    state = tmp_path / "state"
    result = run_nucleus(["--root", str(state), "run", *args, "--", "true"])
    assert (result.returncode, result.stdout, result.stderr) == (EXIT_FAILURE, "", stderr), describe(result)
    assert not state.exists()


def test_the_help_says_the_flags_need_the_bridge():
    result = run_nucleus(["run", "--help"])
    options = [" ".join(block.split()) for block in re.split(r"\n  (?=-)", result.stdout)]
    egress = [text for text in options if text.startswith("--egress-")]
    assert [text.split()[0] for text in egress] == ["--egress-allow", "--egress-tcp-port", "--egress-udp-port",
                                                    "--egress-domain"], result.stdout
    assert all("needs --network bridge" in text for text in egress), egress
