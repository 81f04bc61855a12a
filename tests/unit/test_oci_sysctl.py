"""linux.sysctl: only keys of the container's own namespaces, as runc allows them
(nucleus.config.sysctl), mapped onto the run (nucleus.config.oci), written by the mount plan
while the container's /proc/sys is writable (nucleus.plan.mounts), and opened beneath that
/proc without '..', a link or another mount (nucleus.effects.sysctl)."""

from __future__ import annotations

import copy
import errno
import os

import pytest

from nucleus import vocab as v
from nucleus.config import oci, sysctl
from nucleus.config.container import ContainerConfig
from nucleus.effects import handlers, setup
from nucleus.effects.sysctl import write_sysctl
from nucleus.errors import InvalidInput
from nucleus.plan import mounts
from tests.unit.test_oci_config import RUNC_SPEC

WHERE = "config.json: linux.sysctl"


def load(sysctls: dict, namespaces: tuple[str, ...] = ("pid", "network", "ipc", "uts", "mount"),
         runtime: oci.Runtime = oci.STRICT) -> ContainerConfig:
    data = copy.deepcopy(RUNC_SPEC)
    data["linux"].update(sysctl=sysctls, namespaces=[{"type": t} for t in namespaces])
    return oci.load(data, "/srv/bundle", "c1", runtime).config


def test_namespaced_keys_are_kept_in_dotted_form():
    config = load({"net.ipv4.ip_forward": "1", "kernel.shmmax": "65536", "fs.mqueue.msg_max": "20",
                   "kernel.domainname": "example.test", "net/ipv4/conf/eth0.100/forwarding": "1"})
    assert config.sysctls == (("net.ipv4.ip_forward", "1"), ("kernel.shmmax", "65536"),
                              ("fs.mqueue.msg_max", "20"), ("kernel.domainname", "example.test"),
                              ("net.ipv4.conf.eth0/100.forwarding", "1"))


@pytest.mark.parametrize("key, why", [
    ("kernel.core_pattern", "is not in a namespace of the container's own: writing it would change the host"),
    ("vm.overcommit_memory", "is not in a namespace of the container's own"),
    ("kernel.shm_next_id", "is not in a namespace of the container's own"),  # not runc's either
    ("kernel.hostname", "conflicts with the hostname field"),
    ("net.ipv4..ip_forward", "'' is not a name of /proc/sys"),
    ("net.ipv4.conf.lo/../../../kernel.x", "is not a name of /proc/sys"),
    ("net/../kernel/core_pattern", "'..' is not a name of /proc/sys"),
    ("net.ipv4.ip forward", "'ip forward' is not a name of /proc/sys"),
])
def test_other_keys_are_refused_naming_them(key, why):
    with pytest.raises(InvalidInput) as e:
        load({key: "1"})
    assert e.value.message.startswith(f"{WHERE} {key!r}: ") and why in e.value.message


def test_a_net_key_needs_a_network_namespace_of_the_containers_own():
    runtime = oci.Runtime(degraded=True)
    assert load({"kernel.msgmax": "8192"}, ("pid", "ipc", "uts", "mount"), runtime).sysctls == (
        ("kernel.msgmax", "8192"),)
    with pytest.raises(InvalidInput) as e:
        load({"net.core.somaxconn": "64"}, ("pid", "ipc", "uts", "mount"), runtime)
    assert e.value.message == f"{WHERE} 'net.core.somaxconn': is not allowed in the host's network namespace"


@pytest.mark.parametrize("value", [1, None, "x" * 4097, "a\0b"])
def test_a_value_must_be_a_short_string(value):
    with pytest.raises(InvalidInput, match=r"the value .* must be a string of at most 4096 characters"):
        load({"kernel.sem": value})


def test_the_keys_file_never_leaves_proc_sys():
    assert sysctl.path("/r/proc", "net.ipv4.conf.eth0/100.forwarding") == "/r/proc/sys/net/ipv4/conf/eth0.100/forwarding"
    assert sysctl.dotted("net/ipv4/conf/eth0.100/forwarding") == "net.ipv4.conf.eth0/100.forwarding"
    with pytest.raises(ValueError):
        sysctl.names("net.x/..")  # a '/' of a dotted name is a '.': x.. is a name, '..' never


def test_the_mount_plan_writes_them_into_the_fresh_proc_before_it_is_masked():
    config = ContainerConfig(argv=("true",), sysctls=(("net.ipv4.ip_forward", "1"), ("kernel.sem", "1 2 3 4")))
    ops = mounts.plan(config, mounts.HostLayout(system=(), rootfs_dir="/r", owner=(0, 0)), "h")
    names = [type(op).__name__ for op in ops]
    at = names.index("WriteSysctl")
    assert ops[at - 1] == v.MountFs("proc", "/r/proc", ("nosuid", "nodev", "noexec"), "")
    assert ops[at:at + 3] == (v.WriteSysctl("/r/proc", "net.ipv4.ip_forward", "1"),
                              v.WriteSysctl("/r/proc", "kernel.sem", "1 2 3 4"),
                              v.MaskPaths("/r/proc", mounts.PROC_MASKED, mounts.PROC_READONLY))
    assert "WriteSysctl" not in [type(op).__name__ for op in mounts.plan(
        ContainerConfig(argv=("true",)), mounts.HostLayout(system=(), rootfs_dir="/r", owner=(0, 0)), "h")]


def _proc(tmp_path):
    (tmp_path / "proc" / "sys" / "net" / "ipv4" / "conf" / "eth0.100").mkdir(parents=True)
    target = tmp_path / "proc" / "sys" / "net" / "ipv4" / "conf" / "eth0.100" / "forwarding"
    target.write_text("0")  # a /proc/sys file takes the whole value in one write
    return tmp_path / "proc", target


def test_the_effect_writes_the_keys_file_through_the_handler_table(tmp_path):
    proc, target = _proc(tmp_path)
    intent = v.WriteSysctl(str(proc), "net.ipv4.conf.eth0/100.forwarding", "1")
    handlers.child_handler(intent)(setup.SetupProcess(), intent)
    assert target.read_text() == "1"


def test_the_effect_follows_no_link_and_names_the_key(tmp_path):
    proc, target = _proc(tmp_path)
    os.rename(proc / "sys" / "net", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", proc / "sys" / "net")
    with pytest.raises(OSError) as e:
        write_sysctl(v.WriteSysctl(str(proc), "net.ipv4.conf.eth0/100.forwarding", "1"))
    assert e.value.errno == errno.ELOOP
    assert "sysctl 'net.ipv4.conf.eth0/100.forwarding': cannot open /proc/sys/net/ipv4/conf/eth0.100/forwarding" \
        in str(e.value)
    assert (tmp_path / "elsewhere" / "ipv4" / "conf" / "eth0.100" / "forwarding").read_text() == "0"
    os.unlink(proc / "sys" / "net")
    (proc / "sys" / "net").mkdir()
    with pytest.raises(OSError, match="sysctl 'net.nope': cannot open /proc/sys/net/nope"):
        write_sysctl(v.WriteSysctl(str(proc), "net.nope", "1"))


def test_run_takes_them_as_key_equals_value_checked_the_same_way():
    assert sysctl.parse(("net.ipv4.ip_forward=0", "kernel.sem=1 2 3 4", "net/ipv4/ip_forward=1"), True) == (
        ("net.ipv4.ip_forward", "1"), ("kernel.sem", "1 2 3 4"))
    with pytest.raises(InvalidInput, match=r"^--sysctl 'kernel.sem': expected KEY=VALUE$"):
        sysctl.parse(("kernel.sem",), True)
    with pytest.raises(InvalidInput, match=r"^--sysctl 'net.ipv4.ip_forward': is not allowed in the host's network"):
        sysctl.parse(("net.ipv4.ip_forward=1",), False)
    with pytest.raises(InvalidInput, match=r"^--sysctl 'kernel.core_pattern': is not in a namespace"):
        sysctl.parse(("kernel.core_pattern=x",), True)
