"""--tmpfs PATH[:size=SIZE,mode=OCTAL,owner=USER[:GROUP]] and -v's owner= parsed and refused
before anything runs (each refusal names the flag, the value and the option), the tmpfs's path
held to a volume's rules, and planned: a tmpfs of that size and mode mounted last with the
volumes, owned by the account its owner names in the container's /etc/passwd, writable under
Landlock."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.cli import main, run_options
from nucleus.config.container import ContainerConfig, validate
from nucleus.config.secrets import Secret
from nucleus.config.tmpfs import Tmpfs, parse
from nucleus.config.volumes import parse as parse_volume
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.plan.run import Artifacts, plan

V2 = CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"),
                  None, "/sys/fs/cgroup")
ACCOUNTS = ("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            "root:x:0:\napp:x:1000:\nstaff:x:50:\n", "")


@pytest.mark.parametrize(("text", "expected"), [
    ("/cache", Tmpfs("/cache", 64 << 20, 0o755, None, "/cache")),
    ("/cache/:size=1M", Tmpfs("/cache", 1 << 20, 0o755, None, "/cache/:size=1M")),
    ("/var/x:mode=1777,owner=app:staff,size=2k", Tmpfs("/var/x", 2048, 0o1777, "app:staff",
                                                       "/var/x:mode=1777,owner=app:staff,size=2k")),
])
def test_a_tmpfs_is_a_path_and_its_options(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("cache", "--tmpfs 'cache': the container path 'cache' is not absolute"),
    ("/a/../b", "--tmpfs '/a/../b': the container path '/a/../b' holds '..'"),
    ("/a:colour=red", "--tmpfs '/a:colour=red': 'colour=red' is not an option"),
    ("/a:size", "--tmpfs '/a:size': 'size' is not an option"),
    ("/a:size=1M,size=2M", "--tmpfs '/a:size=1M,size=2M': size given twice"),
    ("/a:size=lots", "--tmpfs /a size 'lots': not a size"),
    ("/a:size=0", "--tmpfs '/a:size=0': size 0"),
    ("/a:mode=rwx", "--tmpfs '/a:mode=rwx': mode 'rwx' is not an octal mode"),
    ("/a:mode=17777", "--tmpfs '/a:mode=17777': mode '17777' is not an octal mode"),
    ("/a:owner=", "--tmpfs /a owner '': the user is empty"),
    ("/a:owner=no body", "--tmpfs /a owner 'no body': 'no body' is not a user name or id"),
], ids=["relative", "dotdot", "unknown-option", "no-value", "twice", "size", "size-zero", "mode", "mode-range",
        "owner-empty", "owner-form"])
def test_a_malformed_tmpfs_is_refused_naming_the_flag_and_value(text, message):
    with pytest.raises(InvalidInput) as e:
        parse(text)
    assert e.value.message == message


@pytest.mark.parametrize(("tmpfs", "changes", "message"), [
    (("/tmp",), {}, "--tmpfs '/tmp': /tmp would replace what nucleus makes there"),
    (("/proc/x",), {}, "--tmpfs '/proc/x': /proc/x is below /proc, which nucleus mounts itself"),
    (("/a", "/a/b"), {}, "--tmpfs '/a/b': /a/b is inside or above the path of --tmpfs '/a'"),
    (("/data",), {"volumes": (parse_volume("/srv:/data"),)},
     "--tmpfs '/data': /data is the path of -v/--volume '/srv:/data:rw'"),
    (("/run/secrets/x",), {"secrets": (Secret("/k", "/run/secrets/k"),)},
     "--tmpfs '/run/secrets/x': /run/secrets/x is where --secret puts its files"),
], ids=["own-mount", "own-tree", "nested", "on-a-volume", "secrets"])
def test_a_tmpfs_path_follows_the_volume_rules(tmpfs, changes, message):
    with pytest.raises(InvalidInput) as e:
        validate(ContainerConfig(argv=("true",), tmpfs=tuple(parse(t) for t in tmpfs), **changes))
    assert e.value.message == message


def test_the_run_flag_reaches_the_configuration():
    ctx = main.run.make_context("nucleus run", ["--tmpfs", "/cache:size=1M", "--tmpfs", "/b", "--", "true"])
    opts = dict(ctx.params)
    config = run_options.to_config(tuple(opts.pop("command")), opts, "xterm", environ={})
    assert [t.target for t in config.tmpfs] == ["/cache", "/b"] and config.tmpfs[0].size == 1 << 20


def facts(euid: int = 0, **changes) -> HostFacts:
    base = HostFacts(arch="x86_64", euid=euid, egid=euid, state_root="/run/nucleus", system=(("/usr", ""),),
                     cgroups=V2)
    return dataclasses.replace(base, **changes)


def tmpfs_plan(*texts: str, euid: int = 0, **changes):
    config = ContainerConfig(argv=("true",), tmpfs=tuple(parse(t) for t in texts), **changes)
    return plan(config, facts(euid, rootfs_accounts=ACCOUNTS), Artifacts(), "c1")


def test_a_tmpfs_is_mounted_with_the_volumes_owned_by_its_owner_as_the_host_names_it():
    p = tmpfs_plan("/cache:size=1M,mode=0700,owner=app:staff", "/scratch", rootfs="/nix/store/x")
    ops = p.state.fs.plan
    mounts = [op for op in ops if isinstance(op, v.MountFs) and op.target.endswith(("/cache", "/scratch"))]
    first = p.state.iso.uid_map[0][1]
    assert mounts == [
        v.MountFs("tmpfs", "/run/nucleus/rootfs/cache", ("nosuid", "nodev", "noexec"),
                  f"size=1048576,mode=0700,uid={first + 1000},gid={first + 50}"),
        v.MountFs("tmpfs", "/run/nucleus/rootfs/scratch", ("nosuid", "nodev", "noexec"),
                  f"size=67108864,mode=0755,uid={first},gid={first}"),
    ]
    assert ops.index(mounts[0]) - 1 == ops.index(v.MakeDirs("/run/nucleus/rootfs", ("cache",), 0o755))
    assert ops[-1] == v.RemountFs("/run/nucleus/rootfs", ("rdonly", "nosuid", "nodev"))
    assert ("/cache", ("create", "read", "remove", "write")) in p.state.sec.landlock_rules


def test_an_owner_the_containers_passwd_lacks_or_its_namespace_does_not_map_is_refused():
    with pytest.raises(InvalidInput) as e:
        tmpfs_plan("/cache:owner=nobody", rootfs="/nix/store/x")
    assert e.value.message.startswith("--tmpfs /cache owner 'nobody': no user 'nobody' in --rootfs")
    with pytest.raises(InvalidInput) as e:
        tmpfs_plan("/cache:owner=1000", euid=1000)
    assert e.value.message.startswith("--tmpfs /cache owner '1000': uid 1000 is not mapped")


# -v's owner= shares --tmpfs's form and its resolution.


@pytest.mark.parametrize(("text", "expected"), [
    ("/srv:/data:rw,owner=1000", ("/data", True, "1000")),
    ("/srv:/data:ro,owner=app:staff", ("/data", False, "app:staff")),
    ("/srv:/data:owner=app", ("/data", True, "app")),
    ("/srv:/data", ("/data", True, None)),
])
def test_a_volume_may_name_whom_its_files_belong_to_inside(text, expected):
    volume = parse_volume(text)
    assert (volume.target, volume.writable, volume.owner) == expected
    assert parse_volume(volume.given) == volume


@pytest.mark.parametrize(("text", "message"), [
    ("/srv:/data:rw,owner=", "-v/--volume '/srv:/data:rw,owner=': owner '': the user is empty"),
    ("/srv:/data:rw,owner=1,owner=2", "-v/--volume '/srv:/data:rw,owner=1,owner=2': owner= given twice"),
    ("/srv:/data:rw,colour=red", "-v/--volume '/srv:/data:rw,colour=red': 'colour=red' is not owner=USER[:GROUP]"),
    ("/srv:/data:rx,owner=1", "-v/--volume '/srv:/data:rx,owner=1': the mode 'rx' is neither ro nor rw"),
    ("/srv:/data:ro:x", "-v/--volume '/srv:/data:ro:x': expected HOST:CONTAINER[:ro|rw]"),
], ids=["empty", "twice", "unknown", "mode", "colon"])
def test_a_malformed_volume_owner_is_refused_naming_the_flag_and_value(text, message):
    with pytest.raises(InvalidInput) as e:
        parse_volume(text)
    assert e.value.message.startswith(message), e.value.message
