"""`nucleus run --rootless --network user` with an egress policy refuses a capability policy that
keeps NET_ADMIN or NET_RAW (the rules are in the workload's own network namespace): exit 125,
both flags named, nothing made."""

from __future__ import annotations

from nucleus.errors import EXIT_FAILURE
from tests.helpers import describe, run_nucleus


def test_a_caps_policy_keeping_net_admin_is_refused_with_a_user_mode_egress_policy(tmp_path):
    state, caps = tmp_path / "state", tmp_path / "c.toml"
    caps.write_text('[bounding]\nkeep = ["CHOWN", "NET_ADMIN"]\n')
    result = run_nucleus(["--root", str(state), "run", "--rootless", "--network", "user", "--egress-domain",
                          "pkgs.test", "--caps-policy", str(caps), "--", "true"])
    assert (result.returncode, result.stdout, result.stderr) == (EXIT_FAILURE, "", (
        f"error: --caps-policy '{caps}' keeps CAP_NET_ADMIN, with which the workload could undo --egress-domain "
        "'pkgs.test': with --rootless --network user the egress rules live in the workload's own network namespace\n"
        f"hint: drop CAP_NET_ADMIN from --caps-policy '{caps}', or use --network bridge (as root), whose rules are "
        "the host's\n")), describe(result)
    assert not state.exists()
