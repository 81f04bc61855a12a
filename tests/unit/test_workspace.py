"""Where the workload may run what it writes (nucleus.config.workspace), --allow-exec's checks,
the rows the service modes add for it, and how the plan turns them into mount flags, mounts of
their own and Landlock's execute right."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.config import landlock_default, mode_validation, modes, workspace
from nucleus.config.container import ContainerConfig
from nucleus.config.volumes import Volume
from nucleus.errors import InvalidInput
from nucleus.plan import mounts


def spec(**kw) -> ContainerConfig:
    return ContainerConfig(argv=("true",), **kw)


# --- --allow-exec -------------------------------------------------------------------------------


@pytest.mark.parametrize("given,kept", [
    (("/tmp",), ("/tmp",)),
    (("/tmp/bin/", "/tmp//bin", "/tmp/bin"), ("/tmp/bin",)),
    (("/home/agent", "/context/tools/./x"), ("/home/agent", "/context/tools/x")),
    (("/work/out",), ("/work/out",)),  # below a read-write volume
], ids=["tmp", "repeats", "home-and-context", "volume"])
def test_allow_exec_takes_writable_places_and_directories_below_them(given, kept):
    config = spec(context="/src", volumes=(Volume("/srv/w", "/work", True),))
    assert workspace.parse_allow_exec(given, config) == kept


@pytest.mark.parametrize("value,message", [
    ("tmp", "--allow-exec 'tmp': not an absolute path inside the container"),
    ("/tmp/../etc", "--allow-exec '/tmp/../etc': '..' is not allowed in the path"),
    ("/etc", "--allow-exec '/etc': not one of the container's writable places nor below one"),
    ("/usr/bin", "--allow-exec '/usr/bin': not one of the container's writable places nor below one"),
    ("/", "--allow-exec '/': not one of the container's writable places nor below one"),
    ("/tmpx", "--allow-exec '/tmpx': not one of the container's writable places nor below one"),
    ("/ro", "--allow-exec '/ro': not one of the container's writable places nor below one"),
    ("/context", "--allow-exec '/context': there is no context (add --context DIR to have /context)"),
], ids=["relative", "dotdot", "etc", "system", "root", "prefix", "ro-volume", "no-context"])
def test_allow_exec_refuses_anything_else_naming_flag_and_value(value, message):
    config = spec(volumes=(Volume("/srv/r", "/ro", False),))
    with pytest.raises(InvalidInput) as info:
        workspace.parse_allow_exec((value,), config)
    assert str(info.value) == message
    assert info.value.hint is not None and "/home/agent, /tmp" in info.value.hint


@pytest.mark.parametrize("mode,context,executable", [
    ("agent", "/src", ("/context", "/home/agent")),
    ("agent", None, ("/home/agent",)),
    ("strict-agent", "/src", ()),
    ("production", "/src", ()),
])
def test_agent_mode_runs_from_context_and_home_strict_modes_from_nowhere(mode, context, executable):
    config = spec(service_mode=mode, context=context)
    assert workspace.executable(config) == executable
    writable = (("/context",) if context else ()) + ("/home/agent", "/tmp")
    assert workspace.noexec(config) == tuple(p for p in writable if p not in executable)


def test_allow_exec_adds_to_the_modes_places_and_a_bound_context_is_never_mounted_noexec():
    config = spec(service_mode="strict-agent", context="/src", allow_exec=("/tmp/bin", "/context"))
    assert workspace.executable(config) == ("/tmp/bin", "/context")
    assert workspace.noexec(config) == ("/home/agent", "/tmp")
    bound = spec(service_mode="strict-agent", context="/src", context_mode="bind")
    assert workspace.noexec(bound) == ("/home/agent", "/tmp")


def test_only_the_outermost_directories_below_a_place_get_mounts_of_their_own():
    config = spec(allow_exec=("/tmp/a/b", "/tmp/a", "/tmp/c", "/home/agent/x"))
    assert workspace.opened_below(config, "/tmp") == ("/tmp/a", "/tmp/c")
    assert workspace.opened_below(config, "/home/agent") == ("/home/agent/x",)


# --- the modes' rules ---------------------------------------------------------------------------


def test_untrusted_refuses_allow_exec_in_the_strict_modes_only():
    for mode in ("strict-agent", "production"):
        req = modes.ModeRequest(service_mode=mode, trust_level="untrusted", allow_exec=("/tmp",),
                                rootfs="/nix/store/" + "a" * 32 + "-r", memory_set=True, cpus_set=True,
                                verify_rootfs_attestation=True)
        assert mode_validation.check_mode(req) == [
            f"--allow-exec '/tmp' is forbidden with --trust-level untrusted in {mode} mode: an "
            "untrusted workload runs nothing from a place it can write (row \"Executable workspace\")"]
    agent = modes.ModeRequest(trust_level="untrusted", allow_exec=("/tmp",))
    assert mode_validation.check_mode(agent) == []
    trusted = modes.ModeRequest(service_mode="strict-agent", allow_exec=("/tmp",))
    assert mode_validation.check_mode(trusted) == []


def test_the_request_carries_allow_exec_and_the_table_names_the_row():
    req = modes.from_container_spec(spec(allow_exec=("/tmp",)))
    assert req.allow_exec == ("/tmp",)
    row = modes.ROWS["Executable workspace"]
    assert row.agent.startswith("/context and home") and "noexec unless --allow-exec" in row.strict_agent
    assert [modes.workspace_executable(m) for m in modes.SERVICE_MODES] == [True, False, False]


def test_the_production_audit_requires_noexec_on_the_places_it_lists():
    audit = {r.path: r for r in modes.mount_audit("production", ("/home/agent", "/tmp"))}
    assert audit["/tmp"].flags == audit["/home/agent"].flags == ("nosuid", "nodev", "noexec")
    assert audit["/tmp"].required
    assert modes.mount_audit("strict-agent", ("/tmp",)) == ()


# --- Landlock -----------------------------------------------------------------------------------


def test_execute_is_granted_on_exactly_the_executable_trees():
    rules = dict(landlock_default.default_rules("/home/agent", writable_context=True,
                                                executable=("/context", "/home/agent", "/tmp/bin")))
    assert rules["/context"] == rules["/home/agent"] == frozenset(
        {"read", "write", "create", "remove", "execute"})
    assert rules["/tmp"] == frozenset({"read", "write", "create", "remove"})
    assert rules["/tmp/bin"] == frozenset({"execute"})  # beneath /tmp's rights
    assert "execute" not in rules["/dev/shm"] and "execute" not in rules["/etc"]
    assert dict(landlock_default.default_rules("/home/agent"))["/home/agent"] == frozenset(
        {"read", "write", "create", "remove"})


def test_a_policys_rules_gain_execute_only_for_allow_exec():
    policy = [("/usr", frozenset({"read", "execute"})), ("/tmp", frozenset({"read", "write"}))]
    assert landlock_default.with_execute(policy, ("/tmp", "/data")) == [
        ("/usr", frozenset({"read", "execute"})), ("/tmp", frozenset({"read", "write", "execute"})),
        ("/data", frozenset({"execute"}))]


# --- the mount plan -----------------------------------------------------------------------------

LAYOUT = mounts.HostLayout(system=(("/usr", ""),), rootfs_dir="/r", owner=(100000, 100000))


def scratch_mounts(config: ContainerConfig) -> dict[str, tuple[str, ...]]:
    return {op.target: op.flags for op in mounts.plan(config, LAYOUT, "h")
            if isinstance(op, v.MountFs) and op.fstype == "tmpfs" and op.target != "/r"}


def test_agent_mode_mounts_context_and_home_executable_and_tmp_noexec():
    flags = scratch_mounts(spec(context="/src"))
    assert flags["/r/context"] == flags["/r/home/agent"] == ("nosuid", "nodev")
    assert flags["/r/tmp"] == ("nosuid", "nodev", "noexec")


def test_strict_modes_mount_every_writable_place_noexec_unless_allowed():
    flags = scratch_mounts(spec(service_mode="strict-agent", context="/src"))
    assert flags["/r/context"] == flags["/r/home/agent"] == flags["/r/tmp"] == ("nosuid", "nodev", "noexec")
    flags = scratch_mounts(spec(service_mode="strict-agent", context="/src", allow_exec=("/context",)))
    assert flags["/r/context"] == ("nosuid", "nodev")


def test_a_directory_below_a_noexec_place_keeps_exec_on_a_mount_of_its_own():
    ops = mounts.plan(spec(allow_exec=("/tmp/a/b",)), LAYOUT, "h")
    at = next(i for i, op in enumerate(ops) if isinstance(op, v.MountFs) and op.target == "/r/tmp")
    assert ops[at:at + 4] == (
        v.MountFs("tmpfs", "/r/tmp", ("nosuid", "nodev"), "size=536870912,mode=1777"),
        v.MakeDirs("/r/tmp", ("a", "a/b"), 0o755, (100000, 100000)),
        v.BindMount("/r/tmp/a/b", "/r/tmp/a/b", ("nosuid", "nodev"), beneath="/r/tmp"),
        v.RemountFs("/r/tmp", ("nosuid", "nodev", "noexec"), bind=True),
    )


def test_a_directory_below_the_copied_context_is_bound_as_copied_never_made():
    ops = mounts.plan(spec(service_mode="strict-agent", context="/src", allow_exec=("/context/bin",)),
                      LAYOUT, "h")
    at = next(i for i, op in enumerate(ops) if isinstance(op, v.CopyTree))
    assert ops[at + 1:at + 3] == (
        v.BindMount("/r/context/bin", "/r/context/bin", ("nosuid", "nodev"), beneath="/r/context"),
        v.RemountFs("/r/context", ("nosuid", "nodev", "noexec"), bind=True),
    )
    assert not any(isinstance(op, v.MakeDirs) and op.root == "/r/context" for op in ops)
