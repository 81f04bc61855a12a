"""The default seccomp profile as data: what it allows, what it never allows, and its shape."""

from __future__ import annotations

import copy
import json

import pytest

from nucleus import linux
from nucleus.config import seccomp_default as sd


def allowed_names(profile: dict, *, unconditional_only: bool = False) -> set[str]:
    names: set[str] = set()
    for rule in profile["syscalls"]:
        if rule["action"] != sd.ALLOW:
            continue
        if unconditional_only and rule.get("args"):
            continue
        names.update(rule["names"])
    return names


def rules_for(profile: dict, name: str) -> list[dict]:
    return [r for r in profile["syscalls"] if name in r["names"]]


@pytest.fixture(params=[False, True], ids=["none", "networked"])
def profile(request):
    return sd.default_profile(networked=request.param)


def test_reference_counts():
    assert len(sd.BASE_SYSCALLS) == len(set(sd.BASE_SYSCALLS)) == 173
    assert len(sd.NETWORK_SYSCALLS) == len(set(sd.NETWORK_SYSCALLS)) == 10
    # the reference's 9 + setres[ug]id, mknod[at], pkey_mprotect
    assert len(sd.ARGUMENT_FILTERED_SYSCALLS) == 14


def test_top_level_shape(profile):
    # A refused call fails with EPERM; syscalls newer than libseccomp's table with ENOSYS.
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    assert profile[sd.NEWER_SYSCALLS_ERRNO] == 38
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    for rule in profile["syscalls"]:
        assert set(rule) <= {"names", "action", "args", "errnoRet"}
        assert rule["names"] and all(isinstance(n, str) for n in rule["names"])
        for arg in rule.get("args", ()):
            assert set(arg) == {"index", "value", "valueTwo", "op"}
            assert 0 <= arg["index"] <= 5
            assert 0 <= arg["value"] < 2**64 and 0 <= arg["valueTwo"] < 2**64
            assert arg["op"] in {"SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ"}


def test_nothing_dangerous_is_allowed(profile):
    assert allowed_names(profile) & sd.NEVER_ALLOWED == set()
    for name in (
        "unshare",
        "setns",
        "mount",
        "ptrace",
        "bpf",
        "keyctl",
        "memfd_create",
        "io_uring_setup",
        "userfaultfd",
        "seccomp",
        "personality",
        "clone3",
    ):
        assert all(r["action"] != sd.ALLOW for r in rules_for(profile, name)), name


def test_every_addition_is_justified_and_new():
    assert set(sd.ADDED_SYSCALLS).isdisjoint(sd.BASE_SYSCALLS)
    assert set(sd.ADDED_SYSCALLS).isdisjoint(sd.NEVER_ALLOWED)
    assert set(sd.ADDED_SYSCALLS).isdisjoint(sd.ARGUMENT_FILTERED_SYSCALLS)
    for name, reason in sd.ADDED_SYSCALLS.items():
        assert len(reason) > 20, name


def test_unconditional_list():
    profile = sd.default_profile(networked=False)
    expected = set(sd.BASE_SYSCALLS) | set(sd.ADDED_SYSCALLS)
    assert allowed_names(profile, unconditional_only=True) == expected
    assert len(expected) == 173 + len(sd.ADDED_SYSCALLS)


def test_network_calls_only_when_networked():
    off = allowed_names(sd.default_profile(networked=False), unconditional_only=True)
    on = allowed_names(sd.default_profile(networked=True), unconditional_only=True)
    # AF_UNIX servers need bind/listen/accept without a network too (socket() limits the
    # families), so every one of the reference's network-only calls is now unconditional.
    network_only = set(sd.NETWORK_SYSCALLS) - set(sd.ADDED_SYSCALLS)
    assert network_only == set()
    assert on - off == set()
    assert set(sd.NETWORK_SYSCALLS) <= on and set(sd.NETWORK_SYSCALLS) <= off


def test_arg_filtered_calls_never_unconditional(profile):
    for name in sd.ARGUMENT_FILTERED_SYSCALLS:
        rules = rules_for(profile, name)
        assert rules, name
        assert all(r.get("args") for r in rules if r["action"] == sd.ALLOW), name


def _single_arg_values(profile, name, index, op):
    out = set()
    for rule in rules_for(profile, name):
        if rule["action"] != sd.ALLOW or len(rule["args"]) != 1:
            continue
        (arg,) = rule["args"]
        assert arg["index"] == index and arg["op"] == op, rule
        out.add((arg["value"], arg["valueTwo"]))
    return out


@pytest.mark.parametrize("networked", [False, True])
def test_socket_domains(networked):
    # The network namespace is the boundary: AF_INET and AF_INET6 with or without a network.
    profile = sd.default_profile(networked)
    values = _single_arg_values(profile, "socket", 0, "SCMP_CMP_EQ")
    assert {v for v, _ in values} == {sd.AF_UNIX, sd.AF_INET, sd.AF_INET6}
    netlink = [r for r in rules_for(profile, "socket") if len(r.get("args", ())) == 2]
    assert len(netlink) == (1 if networked else 0)
    if networked:
        assert netlink[0]["action"] == sd.ALLOW
        assert netlink[0]["args"][0] == {"index": 0, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_EQ"}
        assert netlink[0]["args"][1] == {"index": 2, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}
    # Every other family Linux knows fails with EAFNOSUPPORT (AF_NETLINK too, without a network).
    (refused,) = [r for r in rules_for(profile, "socket") if r["action"] == sd.ERRNO]
    assert refused["errnoRet"] == sd.EAFNOSUPPORT
    families = {a["value"] for a in refused["args"]}
    assert {sd.AF_UNIX, sd.AF_INET, sd.AF_INET6}.isdisjoint(families)
    assert 17 in families  # AF_PACKET
    assert (16 in families) is not networked  # AF_NETLINK
    assert families | {1, 2, 10} | ({16} if networked else set()) == set(range(sd.AF_MAX))


def test_kill_keeps_the_netlink_route_probe_an_error():
    # glibc's getaddrinfo opens AF_NETLINK/NETLINK_ROUTE: under kill that one still fails
    # softly with EAFNOSUPPORT, every other refused family kills.
    profile = sd.default_profile(False, default_action="kill")
    assert profile["defaultAction"] == sd.KILL_PROCESS and "defaultErrnoRet" not in profile
    errors = [r for r in rules_for(profile, "socket") if r["action"] == sd.ERRNO]
    assert [[(a["index"], a["value"]) for a in r["args"]] for r in errors] == [[(0, 16), (2, 0)]]
    (refused,) = [r for r in rules_for(profile, "socket") if r["action"] == sd.KILL_PROCESS]
    assert 17 in {a["value"] for a in refused["args"]}


def test_ioctl_requests_compared_on_32_bits(profile):
    values = _single_arg_values(profile, "ioctl", 1, "SCMP_CMP_MASKED_EQ")
    assert {mask for mask, _ in values} == {0xFFFFFFFF}
    requests = {req for _, req in values}
    assert requests == set(sd.IOCTL_REQUESTS.values())
    for needed in (0x5401, 0x5413, 0x802C542A, 0x80045430, 0x40045431, 0x5441, 0x5451):
        assert needed in requests
    assert sd.TIOCSTI not in requests


def test_prctl_options(profile):
    single = {v for v, _ in _single_arg_values_any(profile, "prctl")}
    assert single == set(sd.PRCTL_OPTIONS.values())
    assert linux.PR_SET_MM not in single
    assert 22 not in single  # PR_SET_SECCOMP
    assert linux.PR_SET_DUMPABLE not in single
    pairs = {
        (r["args"][0]["value"], r["args"][1]["value"])
        for r in rules_for(profile, "prctl")
        if len(r["args"]) == 2 and r["action"] == sd.ALLOW
    }
    assert pairs == {(47, 1), (4, 0)}


def _single_arg_values_any(profile, name):
    return {
        (r["args"][0]["value"], r["args"][0]["valueTwo"])
        for r in rules_for(profile, name)
        if len(r["args"]) == 1 and r["action"] == sd.ALLOW
    }


def test_mprotect_never_write_and_exec(profile):
    values = _single_arg_values(profile, "mprotect", 2, "SCMP_CMP_MASKED_EQ")
    assert values == {(6, 0), (6, 2), (6, 4)}


def test_other_argument_rules(profile):
    prlimit = {(r["args"][0]["index"], r["args"][0]["value"]) for r in rules_for(profile, "prlimit64")}
    assert prlimit == {(2, 0), (0, 0)}  # reading any limit, or setting the caller's own
    assert _single_arg_values(profile, "preadv2", 5, "SCMP_CMP_EQ") == {(0, 0)}
    assert _single_arg_values(profile, "pwritev2", 5, "SCMP_CMP_EQ") == {(0, 0)}
    assert _single_arg_values(profile, "execveat", 4, "SCMP_CMP_MASKED_EQ") == {(0x1000, 0)}
    (clone,) = _single_arg_values(profile, "clone", 0, "SCMP_CMP_MASKED_EQ")
    assert clone == (0x7E020080, 0)
    assert clone[0] == linux.CLONE_NEW_ALL


def test_clone3_returns_enosys(profile):
    (rule,) = rules_for(profile, "clone3")
    assert rule == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}


def test_deterministic_and_fresh():
    a = sd.default_profile(networked=True)
    b = sd.default_profile(networked=True)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    before = copy.deepcopy(a)
    a["syscalls"][0]["names"].append("ptrace")
    assert sd.default_profile(networked=True) == before
    assert sd.default_profile(networked=False) != before


def test_names_unique_within_allow_groups(profile):
    unconditional = [
        n
        for r in profile["syscalls"]
        if r["action"] == sd.ALLOW and not r.get("args")
        for n in r["names"]
    ]
    assert len(unconditional) == len(set(unconditional))


def test_narrow_forms_of_id_and_node_calls(profile):
    for name in ("setresuid", "setresgid"):
        (rule,) = rules_for(profile, name)
        assert [(a["index"], a["op"], a["value"], a["valueTwo"]) for a in rule["args"]] == [
            (0, "SCMP_CMP_MASKED_EQ", 0xFFFFFFFF, 0xFFFFFFFF),
            (2, "SCMP_CMP_MASKED_EQ", 0xFFFFFFFF, 0xFFFFFFFF),
        ]
    assert _single_arg_values(profile, "mknod", 1, "SCMP_CMP_MASKED_EQ") == {(0o170000, 0o010000)}
    assert _single_arg_values(profile, "mknodat", 2, "SCMP_CMP_MASKED_EQ") == {(0o170000, 0o010000)}


@pytest.mark.parametrize("name, action", [("errno", "SCMP_ACT_ERRNO"), ("kill", "SCMP_ACT_KILL_PROCESS"),
                                          ("log", "SCMP_ACT_LOG")])
def test_the_default_action_is_chosen(name, action):
    assert sd.default_profile(False, default_action=name)["defaultAction"] == action


def test_log_still_refuses_the_dangerous_classes():
    # Under log the default allows, so every dangerous form is refused by a rule of its own.
    profile = sd.default_profile(False, default_action="log")
    (never,) = [r for r in profile["syscalls"] if "unshare" in r["names"]]
    assert set(never["names"]) == sd.NEVER_ALLOWED - {"clone3"}
    assert (never["action"], never["errnoRet"]) == (sd.ERRNO, sd.EPERM)

    def refused(name):
        return [[(a["index"], a["value"], a["valueTwo"]) for a in r["args"]]
                for r in rules_for(profile, name) if r["action"] == sd.ERRNO]

    assert refused("clone") == [[(0, bit, bit) for bit in sd.NAMESPACE_FLAGS.values()]]
    assert refused("mprotect") == [[(2, 6, 6)]] and refused("pkey_mprotect") == [[(2, 6, 6)]]
    (ioctl,) = refused("ioctl")
    assert (1, sd.IOCTL_REQUEST_MASK, sd.TIOCSTI) in ioctl
    assert any((0, linux.PR_SET_MM, 0) in rule for rule in refused("prctl"))
    assert refused("execveat") == [[(4, 0x1000, 0x1000)]]


def test_the_deny_rules_repeat_the_default_under_errno_and_kill():
    # They compile to nothing there (nucleus.effects.seccomp skips a rule with the default
    # action): a refusal under kill still kills.
    for name, action in (("errno", sd.ERRNO), ("kill", sd.KILL_PROCESS)):
        profile = sd.default_profile(False, default_action=name)
        (never,) = [r for r in profile["syscalls"] if "unshare" in r["names"]]
        assert never["action"] == action


def test_jit_lets_mprotect_make_memory_writable_and_executable():
    # Agent mode (nucleus.config.modes.seccomp_jit): V8 and HotSpot flip code pages to W+X.
    jit = sd.default_profile(False, jit=True)
    for name in ("mprotect", "pkey_mprotect"):
        assert rules_for(jit, name) == [{"names": [name], "action": sd.ALLOW}]
    strict = sd.default_profile(False)
    assert _single_arg_values(strict, "pkey_mprotect", 2, "SCMP_CMP_MASKED_EQ") == {(6, 0), (6, 2), (6, 4)}


def test_what_node_and_v8_probe_at_start_is_allowed(profile):
    assert {"capget", "pkey_alloc", "pkey_free"} <= allowed_names(profile, unconditional_only=True)
    assert "capset" in sd.NEVER_ALLOWED
