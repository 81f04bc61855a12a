"""config.json's linux.sysctl, process.user.additionalGids, process.rlimits and
linux.rootfsPropagation through `nucleus oci create/start`, seen from inside the container; and
values nucleus will not apply refused at create, naming the field, with nothing left behind.
`nucleus run --sysctl` writes the same way."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SANDBOX, describe, wait_for
from tests.kernel.outputs_support import scope_fixture  # noqa: F401 - the scope fixture
from tests.kernel.test_oci_runtime import bundles, make_bundle, runtime  # noqa: F401 (fixtures)

pytestmark = SANDBOX

# The container's Groups: line, without a grep in the bundle's root (dash's read does).
GROUPS = 'while read -r key value; do [ "$key" = Groups: ] && echo "groups=$value"; done < /proc/self/status'


def run(runtime, bundle: Path, cid: str, out: Path) -> str:  # noqa: F811
    """Create, start, wait for the end and delete; the container's output."""
    runtime.create(bundle, cid, out)
    runtime("start", cid)
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped", timeout=30), out.read_text()
    runtime("delete", cid)
    return out.read_text()


def refused(runtime, bundle: Path, cid: str, out: Path) -> str:  # noqa: F811
    """A create that must fail: its message; neither the runtime's state nor a run is left."""
    result = runtime.create(bundle, cid, out, check=False)
    assert result.returncode == 125, out.read_text()
    assert not (runtime.root / cid).exists()
    listed = subprocess.run([sys.executable, "-m", "nucleus", "ps", "-a"], env=runtime.env, capture_output=True,
                            text=True, check=True).stdout
    assert f" {cid} " not in listed, listed
    return out.read_text()


def linux(**fields: object) -> dict:
    """make_bundle's linux section with `fields` added."""
    return {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "resources": {"memory": {"limit": 256 << 20}, "pids": {"limit": 64}}, **fields}


def process(args: list[str], **fields: object) -> dict:
    return {"user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin"], "cwd": "/", **fields}


def test_namespaced_sysctls_are_written_inside_and_the_hosts_stay(runtime, bundles, tmp_path):  # noqa: F811
    host = {key: Path(f"/proc/sys/{key}").read_text() for key in ("kernel/shmmax", "kernel/domainname")}
    sysctls = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345678", "fs.mqueue.msg_max": "20",
               "kernel.domainname": "example.test", "net/ipv4/conf/lo/forwarding": "1"}
    files = "net/ipv4/ip_forward kernel/shmmax fs/mqueue/msg_max kernel/domainname net/ipv4/conf/lo/forwarding"
    script = f"cd /proc/sys && for f in {files}; do echo \"$f=$(cat $f)\"; done"
    bundle = make_bundle(bundles / "b", ["sh", "-c", script], linux=linux(sysctl=sysctls))
    out = run(runtime, bundle, "sysctl", tmp_path / "out")
    for line in ("net/ipv4/ip_forward=1", "kernel/shmmax=12345678", "fs/mqueue/msg_max=20",
                 "kernel/domainname=example.test", "net/ipv4/conf/lo/forwarding=1"):
        assert line in out.splitlines(), out
    assert {key: Path(f"/proc/sys/{key}").read_text() for key in host} == host


@pytest.mark.parametrize("sysctls, message", [
    ({"kernel.core_pattern": "|/tmp/x"}, "linux.sysctl 'kernel.core_pattern': is not in a namespace of the "
                                         "container's own"),
    ({"kernel.hostname": "x"}, "linux.sysctl 'kernel.hostname': conflicts with the hostname field"),
    ({"net.ipv4.../../kernel.core_pattern": "x"}, "linux.sysctl 'net.ipv4.../../kernel.core_pattern'"),
])
def test_a_sysctl_outside_the_containers_namespaces_is_refused(runtime, bundles, tmp_path, sysctls, message):  # noqa: F811
    bundle = make_bundle(bundles / "b", ["sh", "-c", "echo ran"], linux=linux(sysctl=sysctls))
    text = refused(runtime, bundle, "bad-sysctl", tmp_path / "out")
    assert f"config.json: {message}" in text and "ran" not in text.splitlines()


def test_a_net_sysctl_with_the_hosts_network_is_refused(runtime, bundles, tmp_path):  # noqa: F811
    runtime.flags = ("--allow-degraded-security",)
    spec = linux(sysctl={"net.ipv4.ip_forward": "1"})
    spec["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    bundle = make_bundle(bundles / "b", ["sh", "-c", "echo ran"], linux=spec)
    text = refused(runtime, bundle, "host-sysctl", tmp_path / "out")
    assert "config.json: linux.sysctl 'net.ipv4.ip_forward': is not allowed in the host's network namespace" in text
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() in ("0", "1")


def test_additional_gids_are_the_processs_supplementary_groups(runtime, bundles, tmp_path):  # noqa: F811
    args = ["sh", "-c", GROUPS]
    bundle = make_bundle(bundles / "b", args, process=process(args, user={"uid": 1000, "gid": 1000,
                                                                          "additionalGids": [5, 27, 1000]}))
    out = run(runtime, bundle, "groups", tmp_path / "out")
    assert "groups=5 27 1000" in out.splitlines(), out


def test_an_unmapped_additional_gid_is_refused_naming_it(runtime, bundles, tmp_path):  # noqa: F811
    args = ["sh", "-c", "echo ran"]
    bundle = make_bundle(bundles / "b", args, process=process(args, user={"uid": 0, "gid": 0,
                                                                          "additionalGids": [5, 70000]}))
    text = refused(runtime, bundle, "bad-gid", tmp_path / "out")
    assert "config.json: process.user.additionalGids 70000: gid 70000 is not mapped" in text and "ran" not in text.splitlines()


def _limits(out: str) -> dict[str, tuple[str, str]]:
    """/proc/self/limits' lines: name -> (soft, hard)."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("Max "):
            name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
            rows[name] = (soft, hard)
    return rows


def test_every_rlimit_is_set_as_given(runtime, bundles, tmp_path):  # noqa: F811
    args = ["cat", "/proc/self/limits"]
    rlimits = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
               {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
               {"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192},
               {"type": "RLIMIT_NPROC", "soft": 40, "hard": 50},
               {"type": "RLIMIT_LOCKS", "soft": 7, "hard": 9},
               {"type": "RLIMIT_FSIZE", "soft": 1 << 20, "hard": (1 << 64) - 1}]
    bundle = make_bundle(bundles / "b", args, process=process(args, rlimits=rlimits))
    limits = _limits(run(runtime, bundle, "rlimits", tmp_path / "out"))
    assert limits["Max open files"] == ("512", "1000"), limits
    assert limits["Max core file size"] == ("0", "4096"), limits
    assert limits["Max msgqueue size"] == ("4096", "8192"), limits
    assert limits["Max processes"] == ("40", "50"), limits
    assert limits["Max file locks"] == ("7", "9"), limits
    assert limits["Max file size"] == (str(1 << 20), "unlimited"), limits


def test_a_hard_rlimit_above_the_hosts_is_refused_naming_it(runtime, bundles, tmp_path):  # noqa: F811
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard != resource.RLIM_INFINITY  # the kernel caps NOFILE (fs.nr_open)
    args = ["sh", "-c", "echo ran"]
    rlimits = [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
               {"type": "RLIMIT_NOFILE", "soft": 64, "hard": hard + 1}]
    bundle = make_bundle(bundles / "b", args, process=process(args, rlimits=rlimits))
    text = refused(runtime, bundle, "big-nofile", tmp_path / "out")
    assert (f"config.json: process.rlimits[1].hard {hard + 1}: RLIMIT_NOFILE is above the runtime's own hard "
            f"limit {hard}") in text and "ran" not in text.splitlines()


def _root_propagation(out: str) -> str:
    """The optional fields of the container root's line of /proc/self/mountinfo."""
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[4] == "/":
            return " ".join(fields[6:fields.index("-")])
    raise AssertionError(f"no root in {out!r}")


@pytest.mark.parametrize("propagation, expected", [
    ("shared", "shared:"), ("rshared", "shared:"), ("private", ""), ("unbindable", "unbindable"),
])
def test_root_propagation_is_applied_to_the_containers_root(runtime, bundles, tmp_path, propagation, expected):  # noqa: F811
    args = ["cat", "/proc/self/mountinfo"]
    bundle = make_bundle(bundles / "b", args, linux=linux(rootfsPropagation=propagation))
    fields = _root_propagation(run(runtime, bundle, f"prop-{propagation}", tmp_path / "out"))
    assert fields.startswith(expected) if expected else fields == "", fields
    assert "master:" not in fields  # never a slave of the host's mounts


def test_an_unknown_root_propagation_is_refused(runtime, bundles, tmp_path):  # noqa: F811
    bundle = make_bundle(bundles / "b", ["sh", "-c", "echo ran"], linux=linux(rootfsPropagation="rshare"))
    text = refused(runtime, bundle, "bad-prop", tmp_path / "out")
    assert "config.json: linux.rootfsPropagation 'rshare': is not a propagation" in text


def test_run_sysctl_writes_inside_and_refuses_a_hosts_key(scope):
    host = Path("/proc/sys/kernel/msgmax").read_text()
    args = scope.run_args("--sysctl", "kernel.msgmax=4321", "--sysctl", "net.ipv4.ip_forward=1")
    done = scope.nucleus(*args, "--", *scope.sh("cat /proc/sys/kernel/msgmax /proc/sys/net/ipv4/ip_forward"))
    assert (done.returncode, done.stdout) == (0, "4321\n1\n"), describe(done)
    assert Path("/proc/sys/kernel/msgmax").read_text() == host
    refused = scope.nucleus(*scope.run_args("--sysctl", "vm.swappiness=1"), "--", "true")
    assert refused.returncode == 125 and "--sysctl 'vm.swappiness': is not in a namespace of the container's own" \
        in refused.stderr, describe(refused)
    scope.assert_clean()
