"""A volume's or a --tmpfs's path inside is never below an entry of the host's /etc that
nucleus lends the container (bound read-only from the host), nor on or below one of its links
(made again as the host's): its mount point would be made through that entry, out of the new
root and onto the host's own tree. Refused when the run is planned, naming the flag and the
value; a path beside them, or on a bound directory (replacing it), is fine."""

from __future__ import annotations

import pytest

from nucleus.config.container import ContainerConfig
from nucleus.config.tmpfs import parse as parse_tmpfs
from nucleus.config.volumes import parse as parse_volume
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.plan.run import Artifacts, plan

V2 = CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"),
                  None, "/sys/fs/cgroup")
ETC = (("alternatives", ""), ("localtime", "/usr/share/zoneinfo/Etc/UTC"), ("ssl/certs", ""),
       ("static", "/nix/store/abc-etc/etc"))


def planned(**changes):
    config = ContainerConfig(argv=("true",), **changes)
    facts = HostFacts(arch="x86_64", euid=0, egid=0, state_root="/run/nucleus", system=(("/usr", ""),),
                      cgroups=V2, etc=ETC)
    return plan(config, facts, Artifacts(), "c1")


@pytest.mark.parametrize(("changes", "message"), [
    ({"tmpfs": (parse_tmpfs("/etc/alternatives/jre/x"),)},
     "--tmpfs '/etc/alternatives/jre/x': /etc/alternatives/jre/x is below /etc/alternatives, which nucleus "
     "binds from the host's /etc"),
    ({"tmpfs": (parse_tmpfs("/etc/static/ssl"),)},
     "--tmpfs '/etc/static/ssl': /etc/static/ssl is below /etc/static, a link nucleus makes as the host's"),
    ({"tmpfs": (parse_tmpfs("/etc/localtime"),)},
     "--tmpfs '/etc/localtime': /etc/localtime is on /etc/localtime, a link nucleus makes as the host's"),
    ({"volumes": (parse_volume("/srv:/etc/ssl/certs/mine:ro"),)},
     "-v/--volume '/srv:/etc/ssl/certs/mine:ro': /etc/ssl/certs/mine is below /etc/ssl/certs, which nucleus "
     "binds from the host's /etc"),
], ids=["tmpfs-below-a-bound-directory", "tmpfs-below-a-link", "tmpfs-on-a-link", "volume-below"])
def test_a_path_through_what_the_host_etc_lends_is_refused(changes, message):
    with pytest.raises(InvalidInput) as e:
        planned(**changes)
    assert e.value.message == message


@pytest.mark.parametrize("path", ["/etc/ssl/certs", "/etc/ssl/private", "/etc/myapp", "/var/cache"])
def test_a_path_beside_or_on_a_bound_directory_is_planned(path):
    ops = planned(tmpfs=(parse_tmpfs(path),)).state.fs.plan
    assert any(getattr(op, "target", "") == f"/run/nucleus/rootfs{path}" and op.fstype == "tmpfs" for op in ops
               if type(op).__name__ == "MountFs")

