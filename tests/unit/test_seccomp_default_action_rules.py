"""--seccomp-default-action and --violations before anything runs: which mode uses which default
action, what each mode and trust level refuses, and what the flags may be combined with (rows
"Seccomp default action" and "Writable and executable memory" of nucleus.config.modes)."""

from __future__ import annotations

import pytest

from nucleus.config import mode_validation as mv
from nucleus.config import modes as m
from nucleus.config.container import ContainerConfig, validate
from nucleus.config.modes import ModeRequest, PolicyFile
from nucleus.errors import InvalidInput

STORE_ROOTFS = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-my-service-rootfs"


def request(mode: str, **fields) -> ModeRequest:
    base: dict = dict(service_mode=mode)
    if mode == "production":
        base.update(memory_set=True, cpus_set=True, rootfs=STORE_ROOTFS, verify_rootfs_attestation=True)
    base.update(fields)
    return ModeRequest(**base)


@pytest.mark.parametrize("mode", m.SERVICE_MODES)
def test_every_mode_refuses_with_an_error_by_default(mode):
    assert m.seccomp_default_action(mode) == "errno"
    assert m.seccomp_default_action(mode, "kill") == "kill"
    assert mv.check_mode(request(mode, seccomp_default_action="kill")) == []


def test_only_agent_mode_lets_jit_compilers_make_memory_writable_and_executable():
    assert [mode for mode in m.SERVICE_MODES if m.seccomp_jit(mode)] == ["agent"]


@pytest.mark.parametrize("mode", m.STRICT_MODES)
def test_log_is_forbidden_in_the_strict_modes(mode):
    with pytest.raises(InvalidInput) as e:
        mv.validate_mode(request(mode, seccomp_default_action="log"))
    assert e.value.message == (
        f"--seccomp-default-action 'log' is forbidden in {mode} mode (row \"Seccomp default action\": "
        f"{mode} forbids log: it allows what the profile refuses)")
    assert e.value.hint == "use --seccomp-default-action errno (or kill); try a workload under log in agent mode"


def test_log_is_allowed_in_agent_mode_but_not_for_an_untrusted_workload():
    assert mv.check_mode(request("agent", seccomp_default_action="log")) == []
    assert mv.check_mode(request("agent", seccomp_default_action="log", trust_level="untrusted")) == [
        "--seccomp-default-action 'log' is forbidden with --trust-level untrusted: it allows every call "
        "the profile does not name"]


def test_a_profile_file_keeps_its_own_default_action():
    req = request("agent", seccomp_default_action="kill", policies=(PolicyFile("seccomp", "ls.json"),))
    assert mv.check_mode(req) == [
        "--seccomp-default-action 'kill' applies to the default profile: --seccomp-profile 'ls.json' "
        "keeps its own defaultAction"]


def config(**fields) -> ContainerConfig:
    return ContainerConfig(argv=("true",), **fields)


@pytest.mark.parametrize("fields, message", [
    (dict(seccomp_default_action="trap"), "--seccomp-default-action 'trap': expected one of errno, kill, log"),
    (dict(seccomp_default_action="kill", seccomp_mode="trace", seccomp_log="t.ndjson"),
     "--seccomp-default-action 'kill': not with --seccomp-mode trace, which allows every call"),
    (dict(violations=""), "--violations '': not a usable path"),
    (dict(violations="v.ndjson", seccomp_mode="trace", seccomp_log="t.ndjson"),
     "--violations 'v.ndjson': not with --seccomp-mode trace, which refuses no call"),
])
def test_bad_combinations_are_refused_naming_the_flag(fields, message):
    with pytest.raises(InvalidInput) as e:
        validate(config(**fields))
    assert e.value.message == message


def test_the_flags_are_accepted_alone():
    assert validate(config(seccomp_default_action="kill", violations="v.ndjson")).violations == "v.ndjson"


def test_the_rows_are_in_the_table():
    assert m.ROWS["Seccomp default action"].column("production") == "errno; kill allowed, log forbidden"
    assert m.ROWS["Writable and executable memory"].column("agent") == "allowed (JIT compilers: node, java)"


def test_a_profile_written_from_the_default_one_keeps_its_enosys_for_newer_calls():
    import json

    from nucleus.config import seccomp_default as sd
    from nucleus.config.policy.seccomp_profile import parse_seccomp_profile

    profile = sd.default_profile(False)
    out = parse_seccomp_profile(json.dumps(profile).encode(), "p.json")
    assert out["newerSyscallsErrno"] == 38
    profile["newerSyscallsErrno"] = 0
    with pytest.raises(InvalidInput) as e:
        parse_seccomp_profile(json.dumps(profile).encode(), "p.json")
    assert e.value.message == "p.json: newerSyscallsErrno: 0 is not an errno 1..4095"
