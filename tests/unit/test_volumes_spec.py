"""Volumes, as asked for and as planned (nucleus.config.volumes, nucleus.config.hostpaths, the
mount plan and the default Landlock rules): pure decisions, each refusal naming the flag and
the value."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.config import hostpaths, landlock_default
from nucleus.config.container import ContainerConfig, validate
from nucleus.config.context import PathDir
from nucleus.config.hostpaths import HostPath
from nucleus.config.volumes import Volume, VolumeSource, parse
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.plan.run import Artifacts, plan

DIR, FILE = 0o040755, 0o100644
ALICE, BOB = 1000, 1001


def config(*volumes: str, **changes) -> ContainerConfig:
    return ContainerConfig(argv=("true",), volumes=tuple(parse(text) for text in volumes), **changes)


def refused(*volumes: str, **changes) -> str:
    with pytest.raises(InvalidInput) as info:
        validate(config(*volumes, **changes))
    return info.value.message


@pytest.mark.parametrize(("text", "volume"), [
    ("./out:/out", Volume("./out", "/out", True)),
    ("/data:/data:ro", Volume("/data", "/data", False)),
    ("/data:/srv//data/:rw", Volume("/data", "/srv/data", True)),
])
def test_a_volume_is_host_container_and_mode(text, volume):
    assert parse(text) == volume


@pytest.mark.parametrize(("text", "why"), [
    ("/data", "-v/--volume '/data': expected HOST:CONTAINER[:ro|rw]"),
    ("/a:/b:c:d", "-v/--volume '/a:/b:c:d': expected HOST:CONTAINER[:ro|rw]"),
    (":/out", "-v/--volume ':/out': expected HOST:CONTAINER[:ro|rw]"),
    ("/data:/data:rx", "-v/--volume '/data:/data:rx': the mode 'rx' is neither ro nor rw"),
    ("/data:data", "-v/--volume '/data:data': the container path 'data' is not absolute"),
    ("/data:/out/../etc", "-v/--volume '/data:/out/../etc': the container path '/out/../etc' holds '..'"),
])
def test_a_malformed_volume_is_refused_by_flag_and_value(text, why):
    with pytest.raises(InvalidInput) as info:
        parse(text)
    assert info.value.message == why


@pytest.mark.parametrize(("target", "why"), [
    ("/proc/x", "is below /proc, which nucleus mounts itself"),
    ("/dev", "is on /dev, which nucleus mounts itself"),
    ("/usr/local", "is below /usr, which nucleus mounts itself"),
    ("/lib64", "is on /lib64, which nucleus mounts itself"),
    ("/", "would replace what nucleus makes there"),
    ("/tmp", "would replace what nucleus makes there"),
    ("/etc", "would replace what nucleus makes there"),
    ("/etc/passwd", "would replace what nucleus makes there"),
    ("/home/agent", "would replace what nucleus makes there"),
])
def test_a_container_path_on_nucleuss_own_mounts_is_refused(target, why):
    assert refused(f"/data:{target}") == f"-v/--volume '/data:{target}:rw': {target} {why}"


def test_context_and_rootfs_paths_are_refused_only_when_there():
    assert refused("/data:/context/out", context="/src") == (
        "-v/--volume '/data:/context/out:rw': /context/out is below /context, which nucleus mounts itself")
    validate(config("/data:/context/out"))
    assert "below /etc" in refused("/data:/etc/app", rootfs="/closure")
    validate(config("/data:/etc/app", "/x:/tmp/out", "/y:/home/agent/out"))


def test_two_volumes_at_one_path_or_nested_are_refused():
    assert refused("/a:/out", "/b:/out") == (
        "-v/--volume '/b:/out:rw': /out is the path of -v/--volume '/a:/out:rw'")
    assert refused("/a:/out", "/b:/out/sub:ro") == (
        "-v/--volume '/b:/out/sub:ro': /out/sub is inside or above the path of -v/--volume '/a:/out:rw'")


# --- host paths ----------------------------------------------------------------------------------


def host(path: str, uid: int = 0, owners: dict[str, int] | None = None, mode: int = DIR,
         modes: dict[str, int] | None = None) -> HostPath:
    owners, modes = owners or {}, modes or {}
    parts = [p for p in path.split("/") if p]
    above = ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]
    chain = tuple(PathDir(p, owners.get(p, 0), modes.get(p, DIR)) for p in above)
    return HostPath(path, path, chain, uid, uid, mode, mode & 0o170000 == 0o040000)


def why(found: HostPath, caller: int = 0, sudo: int | None = None) -> str | None:
    problem = hostpaths.refusal("-v x", found, caller, sudo, "volume")
    return None if problem is None else problem.message


@pytest.mark.parametrize(("path", "message"), [
    ("/etc", "-v x: /etc holds the host's configuration; system trees are never a volume"),
    ("/var/lib/docker", "-v x: /var/lib holds services' state; system trees are never a volume"),
    ("/tmp", "-v x: /tmp holds every user's temporary files; it is never a volume"),
    ("/srv/.ssh/keys", "-v x: '.ssh' holds credentials; it is never a volume, nor anything inside it"),
    ("/home/root-project", "-v x: /home/root-project is a home directory, which holds credentials "
                           "(.ssh, .gnupg, ...); it is never a volume"),
])
def test_the_context_rules_refuse_a_volume(path, message):
    assert why(host(path)) == message


def test_a_volume_must_be_the_callers():
    assert why(host("/srv/alice", ALICE), caller=ALICE) is None
    assert why(host("/srv/bob", BOB), caller=ALICE) == (
        "-v x: /srv/bob belongs to uid 1001; a volume must be the caller's (uid 1000)")
    assert why(host("/srv/bob", BOB)) == "-v x: /srv/bob belongs to uid 1001; a volume must be the caller's (uid 0)"
    # root may use what belongs to the user sudo runs it for, and root's own
    assert why(host("/srv/bob", BOB), sudo=BOB) is None
    assert why(host("/srv/root", 0), sudo=BOB) is None
    assert why(host("/srv/alice", ALICE), sudo=BOB) == (
        "-v x: /srv/alice belongs to uid 1000; a volume must be root's or those of uid 1001 (SUDO_UID)")


def test_under_sudo_roots_own_paths_are_lent_read_only_and_only_if_everyone_may_read_them():
    def under_sudo(found: HostPath, writable: bool) -> str | None:
        problem = hostpaths.refusal("-v x", found, 0, BOB, "volume", writable)
        return None if problem is None else problem.message

    assert under_sudo(host("/usr/local/bin", 0), writable=False) is None
    assert under_sudo(host("/usr/local/bin", 0), writable=True) == (
        "-v x: /usr/local/bin belongs to root; under sudo a writable volume must be uid 1001's (SUDO_UID)")
    assert under_sudo(host("/opt/keys", 0, mode=0o040700), writable=False) == (
        "-v x: /opt/keys belongs to root and not everyone may read it (mode 0700); under sudo it is "
        "never a volume")
    assert under_sudo(host("/srv/bob", BOB), writable=True) is None  # the sudo user's own
    # root itself, not under sudo, lends its own paths as it likes
    assert hostpaths.refusal("-v x", host("/usr/local/bin", 0), 0, None, "volume", True) is None


def test_a_path_through_a_directory_anyone_may_write_is_refused():
    found = host("/srv/shared/out", modes={"/srv/shared": 0o040777})
    assert why(found) == ("-v x: /srv/shared is writable by anyone (mode 0777, no sticky bit), so "
                          "anyone could swap the volume while it is read")


def test_root_writes_only_into_its_own_or_the_sudo_users_directory_and_as_its_owner():
    def dest(owner: int, caller: int = 0, sudo: int | None = None) -> str | None:
        problem = hostpaths.destination_refusal("--changes x", host("/srv/d", owner), "out", caller, sudo,
                                                "destination")
        return None if problem is None else problem.message

    assert dest(0) is None and dest(BOB, sudo=BOB) is None
    assert dest(BOB) == ("--changes x: /srv/d belongs to uid 1001; root writes a destination only into "
                         "a directory of its own or of the user sudo runs it for (SUDO_UID)")
    assert dest(BOB, caller=ALICE) is None  # an ordinary caller writes as itself; the kernel decides
    assert hostpaths.writer(0, host("/srv/d", BOB)) == BOB
    assert hostpaths.writer(0, host("/srv/d", 0)) == -1
    assert hostpaths.writer(ALICE, host("/srv/d", ALICE)) == -1
    problem = hostpaths.destination_refusal("--changes x", host("/etc", 0), "out", 0, None, "destination")
    assert problem is not None and "system trees are never a destination" in problem.message


# --- the plan ------------------------------------------------------------------------------------


V2 = CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"),
                  None, "/sys/fs/cgroup")


def facts(euid: int = 0) -> HostFacts:
    return HostFacts(arch="x86_64", euid=euid, egid=euid, state_root="/run/nucleus",
                     system=(("/usr", ""),), cgroups=V2)


def test_volumes_are_mounted_last_before_the_root_is_sealed():
    sources = (VolumeSource("/srv/out", "/out", True, 7, 9, ((0, 100000), (0, 100000))),
               VolumeSource("/srv/data", "/data", False, 8))
    p = plan(config("/srv/out:/out", "/srv/data:/data:ro"), facts(), Artifacts(volumes=sources), "c1")
    ops = p.state.fs.plan
    mounts = [op for op in ops if isinstance(op, v.MountVolume)]
    assert mounts == [
        v.MountVolume("/srv/out", "/run/nucleus/rootfs/out", ("nosuid", "nodev"), 7, 9, ((0, 100000), (0, 100000))),
        v.MountVolume("/srv/data", "/run/nucleus/rootfs/data", ("rdonly", "nosuid", "nodev"), 8),
    ]
    assert ops[-1] == v.RemountFs("/run/nucleus/rootfs", ("rdonly", "nosuid", "nodev"))
    assert ops.index(mounts[-1]) == len(ops) - 2
    assert not any(isinstance(op, v.KeepTree) for op in ops)


def test_landlock_reads_a_read_only_volume_and_writes_a_writable_one_never_executing():
    rules = dict(landlock_default.default_rules("/home/agent", volumes=(("/out", True), ("/data", False))))
    assert rules["/out"] == frozenset({"read", "write", "create", "remove"})
    assert rules["/data"] == frozenset({"read"})
    p = plan(config("/srv/out:/out"), facts(), Artifacts(), "c1")
    assert ("/out", ("create", "read", "remove", "write")) in p.state.sec.landlock_rules


@pytest.mark.parametrize(("changes", "expected"), [
    ({"changes": "review"}, True),
    ({"detach": True}, True),
    ({}, False),
    ({"changes": "review", "context_mode": "bind"}, False),
])
def test_the_copied_context_is_handed_over_for_changes_and_detached_runs(changes, expected):
    spec = dataclasses.replace(config(), context="/src", **changes)
    ops = plan(spec, facts(), Artifacts(), "c1").state.fs.plan
    kept = [op for op in ops if isinstance(op, v.KeepTree)]
    assert kept == ([v.KeepTree("/run/nucleus/rootfs/context")] if expected else [])
    if expected:
        copied = next(i for i, op in enumerate(ops) if isinstance(op, v.CopyTree))
        assert ops.index(kept[0]) > copied
