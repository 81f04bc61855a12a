"""A user-mode network's egress rules live in the workload's own network namespace: a capability
policy that keeps NET_ADMIN (which rewrites them) or NET_RAW (packet sockets, which no nftables
hook sees) is refused before the run, naming both flags; the bridge's rules are the host's."""

from __future__ import annotations

import pytest

from nucleus.config import egress
from nucleus.config import mode_validation as mv
from nucleus.config.modes import ModeRequest, PolicyFile

CAPS = (PolicyFile("caps", "agent.caps.toml"),)
POLICY = egress.parse(allow=("192.0.2.0/24",))


def request(**fields: object) -> ModeRequest:
    base: dict[str, object] = {"network": "user", "rootless": True, "egress": POLICY, "policies": CAPS}
    return ModeRequest(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("kept", [("NET_ADMIN",), ("cap_net_raw",), ("CHOWN", "CAP_NET_ADMIN", "NET_RAW")])
def test_a_kept_net_admin_or_net_raw_is_refused_naming_both_flags(kept):
    found = mv.check_mode(request(caps_kept=kept))
    [message] = [m for m in found if "egress" in m]
    bypass = ", ".join(c for c in ("CAP_NET_ADMIN", "CAP_NET_RAW") if c in {"CAP_" + k.upper().removeprefix("CAP_")
                                                                           for k in kept})
    assert message.startswith(f"--caps-policy 'agent.caps.toml' keeps {bypass}, with which the workload could undo "
                              "--egress-allow '192.0.2.0/24': with --rootless --network user the egress rules "
                              "live in the workload's own network namespace")
    with pytest.raises(Exception) as raised:
        mv.validate_mode(request(caps_kept=kept))
    assert "--caps-policy 'agent.caps.toml'" in str(raised.value) and "--egress-allow" in str(raised.value)


def test_production_deny_all_counts_as_a_policy():
    found = mv.check_mode(request(service_mode="production", egress=None, caps_kept=("NET_ADMIN",)))
    assert any("undo production's deny-all egress" in m for m in found), found


@pytest.mark.parametrize("fields", [
    {"caps_kept": ("NET_BIND_SERVICE",)},  # no capability over the rules
    {"caps_kept": ("NET_ADMIN",), "egress": None},  # no egress policy: nothing to undo
    {"caps_kept": ("NET_ADMIN",), "network": "bridge", "rootless": False},  # the host's rules
])
def test_what_leaves_the_rules_out_of_the_workloads_reach_is_not_refused(fields):
    assert not [m for m in mv.check_mode(request(**fields)) if "undo" in m]


def test_the_refusal_has_a_hint():
    problem = egress.caps_problem(POLICY, "user", ("CAP_NET_RAW",), "--caps-policy 'c.toml'")
    assert problem is not None
    assert problem[1] == ("drop CAP_NET_RAW from --caps-policy 'c.toml', or use --network bridge (as root), whose "
                          "rules are the host's")
