"""A bundle's config.json read into nucleus's container configuration (nucleus.config.oci): what
is mapped, what nucleus replaces with its own stricter defaults (said as warnings), and what it
refuses, each error naming config.json, the field and the value."""

from __future__ import annotations

import copy
import re
from dataclasses import replace

import pytest

from nucleus.config import oci
from nucleus.config.container import validate
from nucleus.config.resources import Limits
from nucleus.config.tmpfs import Tmpfs
from nucleus.config.volumes import Volume
from nucleus.errors import InvalidInput

# What `runc spec` writes (runtime-spec 1.0.2), with a few of containerd's additions.
RUNC_SPEC = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "echo hi"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": ["/proc/acpi", "/proc/kcore"],
        "readonlyPaths": ["/proc/bus", "/proc/sys"],
        "cgroupsPath": "/default/c1",
    },
}


def load(change=None, cid: str = "c1", runtime: oci.Runtime = oci.STRICT) -> oci.Bundle:
    data = copy.deepcopy(RUNC_SPEC)
    if change is not None:
        change(data)
    return oci.load(data, "/srv/bundle", cid, runtime)


def refused(change, runtime: oci.Runtime = oci.STRICT) -> str:
    with pytest.raises(InvalidInput) as e:
        load(change, runtime=runtime)
    return e.value.message


def test_runc_spec_maps_onto_a_run_with_nucleus_hardening_said():
    bundle = load()
    c = bundle.config
    assert (c.argv, c.name, c.hostname, c.workdir, c.rootfs) == (("sh", "-c", "echo hi"), "c1", "runc", "/",
                                                                   "/srv/bundle/rootfs")
    assert dict(c.env)["TERM"] == "xterm" and c.network == "none" and not c.allow_host_network
    assert c.limits == Limits(nofile=1024) and c.volumes == () and c.tmpfs == ()  # /proc, /dev, /sys: nucleus's own
    assert bundle.warnings == ("process.capabilities: nucleus keeps no capabilities in the container",
                               "linux.namespaces: nucleus makes user namespaces all the same")
    assert (bundle.terminal, bundle.version, bundle.seccomp) == (False, "1.0.2-dev", None)


def test_resources_mounts_and_user_are_mapped():
    def change(d):
        d["process"]["user"] = {"uid": 1000, "gid": 100}
        d["linux"]["resources"].update(memory={"limit": 64 << 20}, cpu={"quota": 50_000, "period": 100_000},
                                       pids={"limit": 32})
        d["mounts"] += [{"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"]},
                        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}]
        d["annotations"] = {"team": "web"}

    bundle = load(change)
    c = bundle.config
    assert (c.user, c.limits.memory, c.limits.cpus, c.limits.pids) == ("1000:100", 64 << 20, 0.5, 32)
    assert c.volumes == (Volume("/srv/data", "/data", False),)
    assert [t.target for t in c.tmpfs] == ["/scratch"] and isinstance(c.tmpfs[0], Tmpfs)
    assert bundle.annotations == (("team", "web"),)


def test_weaker_process_settings_are_said_to_give_way():
    def change(d):
        d["process"].update(noNewPrivileges=False, rlimits=[{"type": "RLIMIT_CORE", "soft": 1, "hard": 1}])

    bundle = load(change)
    assert "process.noNewPrivileges false: nucleus sets no_new_privs all the same" in bundle.warnings
    assert bundle.config.rlimits == (("RLIMIT_CORE", 1, 1),)  # set as given (test_oci_rlimits.py)


def test_apparmor_is_ignored_with_a_warning_and_seccomp_replaced_unless_the_runtime_says():
    def change(d):
        d["process"]["apparmorProfile"] = "docker-default"
        d["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO",
                                 "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}

    bundle = load(change)
    assert "process.apparmorProfile 'docker-default' is ignored (nucleus confines with Landlock and seccomp)" \
        in bundle.warnings
    assert any(w.startswith("linux.seccomp: nucleus's own seccomp profile is loaded instead") for w in bundle.warnings)
    assert bundle.seccomp is None

    def asked(d):
        change(d)
        d["annotations"] = {"org.nucleus.oci.seccomp": "bundle"}  # the bundle cannot choose

    assert load(asked).seccomp is None
    own = load(change, runtime=oci.Runtime(seccomp="bundle"))
    assert own.seccomp is not None and own.seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert not any(w.startswith("linux.seccomp") for w in own.warnings)


@pytest.mark.parametrize("action", ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG"])
def test_a_profile_that_allows_what_it_does_not_name_needs_the_runtimes_consent(action):
    def change(d):
        d["linux"]["seccomp"] = {"defaultAction": action,
                                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}

    assert refused(change, oci.Runtime(seccomp="bundle")) == (
        f"config.json: linux.seccomp.defaultAction {action!r}: lets through every system call the profile does "
        "not name")
    bundle = load(change, runtime=oci.Runtime(seccomp="bundle", degraded=True))
    assert bundle.seccomp is not None and bundle.seccomp["defaultAction"] == action
    assert any(w.startswith(f"linux.seccomp.defaultAction {action}: every system call") for w in bundle.warnings)
    assert load(change).seccomp is None  # nucleus's own profile: nothing is weakened


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(ociVersion="2.0.0"), "config.json: ociVersion '2.0.0': nucleus reads runtime-spec 1.0 to 1.2"),
    (lambda d: d["process"].update(args=[]), "config.json: process.args []: must name the command to run"),
    (lambda d: d["process"].update(cwd="relative"), "config.json: process.cwd 'relative': must be an absolute path"),
    (lambda d: d["process"].update(env=["LD_PRELOAD=/x.so"]),
     "config.json: process.env[0] 'LD_PRELOAD=/x.so': is not NAME=value with a name nucleus passes"),
    (lambda d: d["process"]["capabilities"].update(bounding=["CAP_NOPE"]),
     "config.json: process.capabilities.bounding[0] 'CAP_NOPE': "),
    (lambda d: d["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
     "config.json: process.rlimits[0].type 'RLIMIT_BOGUS': is not a resource limit"),
    (lambda d: d.update(hooks={"prestart": [{"path": "/bin/true"}]}),
     "config.json: hooks.prestart ['/bin/true']: hooks are not run by nucleus"),
    (lambda d: d["linux"].update(devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]),
     "config.json: linux.devices[0].path '/dev/fuse': extra device nodes are not created by nucleus"),
    (lambda d: d["linux"]["namespaces"].append({"type": "cgroup", "path": "/proc/1/ns/cgroup"}),
     "config.json: linux.namespaces[5].path '/proc/1/ns/cgroup': a cgroup namespace is not joined by nucleus"),
    (lambda d: d["linux"]["namespaces"].append({"type": "bogus"}),
     "config.json: linux.namespaces[5].type 'bogus': is not a namespace"),
    (lambda d: d["mounts"].append({"destination": "/mnt", "type": "nfs", "source": "server:/x"}),
     "config.json: mounts[7].type 'nfs': a nfs mount at '/mnt' is not made by nucleus"),
    (lambda d: d["linux"].update(resources={"memory": {"limit": "1g"}}),
     "config.json: linux.resources.memory.limit '1g': must be an integer"),
    (lambda d: d["linux"].update(seccomp={"defaultAction": "SCMP_ACT_MAYBE"}),
     "config.json: linux.seccomp.defaultAction 'SCMP_ACT_MAYBE': is not a seccomp action"),
    (lambda d: d["root"].pop("path"), "config.json: root.path None: is required"),
    (lambda d: d["root"].update(path="../../etc"),
     "config.json: root.path '../../etc': leads out of the bundle '/srv/bundle' (to '/etc')"),
    (lambda d: d["root"].update(path="rootfs/../.."),
     "config.json: root.path 'rootfs/../..': leads out of the bundle '/srv/bundle' (to '/srv')"),
    (lambda d: d["root"].update(path="/"), "config.json: root.path '/': is on /, the host's own"),
    (lambda d: d["root"].update(path="/usr/lib/x"), "config.json: root.path '/usr/lib/x': is below /usr, the host's own"),
    (lambda d: d["root"].update(path="//proc/."), "config.json: root.path '//proc/.': is on /proc, the host's own"),
    (lambda d: d["mounts"].append({"destination": "/t", "type": "tmpfs", "options": ["nr_inodes=5"]}),
     "config.json: mounts[7].options[0] 'nr_inodes=5': is not a tmpfs option nucleus honours"),
    (lambda d: d["mounts"].append({"destination": "/t", "type": "tmpfs", "options": ["ro"]}),
     "config.json: mounts[7].options[0] 'ro': is not a tmpfs option nucleus honours"),
    (lambda d: d["mounts"].append({"destination": "/t", "type": "tmpfs", "options": ["mode=99"]}),
     "config.json: mounts[7].options mode '99': is not an octal mode"),
    (lambda d: d["mounts"].append({"destination": "/t", "type": "tmpfs", "options": ["uid=root"]}),
     "config.json: mounts[7].options uid 'root': must be a number"),
])
def test_bad_or_unsupported_fields_are_named_with_their_value(change, message):
    assert refused(change).startswith(message)


def test_the_host_network_only_when_the_runtime_allows_it():
    def change(d):
        d["linux"]["namespaces"] = [n for n in d["linux"]["namespaces"] if n["type"] != "network"]

    assert refused(change) == ("config.json: linux.namespaces ['ipc', 'mount', 'pid', 'uts']: has no network "
                               "namespace: the container would share the host's network")
    bundle = load(change, runtime=oci.Runtime(degraded=True))
    assert (bundle.config.network, bundle.config.allow_host_network) == ("host", True)
    assert "linux.namespaces: the container shares the host's network (--allow-degraded-security)" in bundle.warnings


def test_tmpfs_options_are_honoured_and_rro_is_read_only():
    def change(d):
        d["mounts"] += [{"destination": "/t", "type": "tmpfs", "options": ["nosuid", "size=1m", "mode=1777",
                                                                          "uid=1000", "gid=100"]},
                        {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "rro"]}]

    c = load(change).config
    assert (c.tmpfs[0].target, c.tmpfs[0].size, c.tmpfs[0].mode, c.tmpfs[0].owner) == ("/t", 1 << 20, 0o1777,
                                                                                       "1000:100")
    assert c.volumes == (Volume("/srv/data", "/data", False),)


def test_an_absolute_root_of_its_own_is_taken():
    assert load(lambda d: d["root"].update(path="/var/lib/images/web/rootfs")).config.rootfs == \
        "/var/lib/images/web/rootfs"


@pytest.mark.parametrize("home", ["/proc", "/", "/etc/x", "/home/../etc", "relative", "/usr"])
def test_a_home_nucleus_does_not_give_is_replaced(home):
    bundle = load(lambda d: d["process"]["env"].append(f"HOME={home}"))
    assert bundle.config.home == "/root" and dict(bundle.config.env)["HOME"] == "/root"
    assert any(w.startswith(f"process.env HOME {home!r} ") and w.endswith("the container's home is /root instead")
               for w in bundle.warnings)
    assert load(lambda d: d["process"]["env"].append("HOME=/home/web")).config.home == "/home/web"


@pytest.mark.parametrize("cid", ["", "-x", "a/b", "x" * 65, "a b"])
def test_container_ids_nucleus_cannot_name_are_refused(cid):
    with pytest.raises(InvalidInput, match="container id"):
        oci.container_id(cid)


def test_the_roots_other_entries_are_bound_read_only_and_executable():
    config = oci.with_root_entries(load().config, ("app", "bin", "etc", "proc", "root", "runtimetest", "usr"))
    assert config.volumes == (Volume("/srv/bundle/rootfs/app", "/app", False),
                              Volume("/srv/bundle/rootfs/runtimetest", "/runtimetest", False))
    assert config.allow_exec == ("/app", "/runtimetest")  # /root is the home nucleus makes


@pytest.mark.parametrize("home", ["/proc", "/", "/etc", "/usr/share/x", "/home/../etc", "home", "//root"])
def test_a_container_configuration_refuses_a_home_that_is_not_one(home):
    config = replace(load().config, home=home)
    with pytest.raises(InvalidInput, match=f"HOME {re.escape(repr(home))}: "):
        validate(config)
    assert validate(replace(config, home="/home/web")).home == "/home/web"
