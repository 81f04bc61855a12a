"""`--runtime gvisor` planned without a host: the OCI bundle is the run's configuration (no
capability, no_new_privs, the rlimits, every namespace with the container's id range, the
cgroup limits, the mounts, the masks, a --seccomp-profile for runsc --oci-seccomp), runsc's
command lines carry nucleus's own --root, a bridge's namespace is named in the bundle and
prepared by the Network machine before runsc run, a copied context is the filtered copy made in
the bundle, and what runsc cannot honour is refused by name."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nucleus import vocab as v
from nucleus.cli import run_args, run_options
from nucleus.config import gvisor as rules
from nucleus.config.context import ContextSource
from nucleus.errors import InvalidInput
from nucleus.machines import gvisor
from nucleus.machines.base import Refused
from nucleus.plan import gvisor as plan
from nucleus.plan import network as network_plan
from nucleus.plan.mounts import PROC_MASKED
from nucleus.vocab import gvisor as gv

HOST = plan.Host(runsc="/usr/bin/runsc",
                 system=(("/usr", ""), ("/bin", "usr/bin"), ("/lib", "usr/lib")),
                 etc=(("ssl/certs", ""), ("localtime", "/usr/share/zoneinfo/UTC"), ("mime.types", "")),
                 id_start=200000, volumes=(("/srv/data", "/data", False), ("/srv/out", "/out", True)),
                 files=("/etc/mime.types",))


def config(*args: str):
    command, opts = run_args.parse([*args, "--", "/bin/sh", "-c", "true"])
    return run_options.to_config(command, opts, "xterm", environ={})


def bundle(*args: str, seccomp=None) -> tuple[dict, gvisor.GvisorPlan]:
    p = plan.plan(config(*args), HOST, "c0ffee", seccomp)
    return json.loads(p.bundle.config), p


def test_the_process_keeps_nothing_and_has_the_run_s_limits():
    doc, _ = bundle("--memlock", "128K", "--pids", "64", "-e", "A=b", "-u", "1000:1001", "--workdir", "/tmp")
    process = doc["process"]
    assert process["capabilities"] == {name: [] for name in plan.CAP_SETS}
    assert process["noNewPrivileges"] is True and process["terminal"] is False
    assert process["args"] == ["/bin/sh", "-c", "true"] and process["cwd"] == "/tmp"
    assert process["user"] == {"uid": 1000, "gid": 1001}
    assert "A=b" in process["env"] and any(e.startswith("PATH=") for e in process["env"])
    assert {r["type"]: (r["soft"], r["hard"]) for r in process["rlimits"]} == {
        "RLIMIT_NOFILE": (1024, 1024), "RLIMIT_NPROC": (64, 64), "RLIMIT_MEMLOCK": (128 << 10, 128 << 10)}


def test_every_namespace_with_the_container_s_id_range_and_its_cgroup_limits():
    doc, _ = bundle("--memory", "256M", "--cpus", "0.5", "--cpu-weight", "10000", "--pids", "99")
    linux = doc["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "mount", "ipc", "uts", "user", "network", "cgroup"]
    assert linux["uidMappings"] == linux["gidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    assert linux["resources"] == {"pids": {"limit": 99}, "memory": {"limit": 256 << 20, "swap": 256 << 20},
                                  "cpu": {"quota": 50_000, "period": 100_000, "shares": 262144}}
    assert linux["cgroupsPath"] == "/nucleus/c0ffee"
    assert linux["maskedPaths"] == [f"/proc/{name}" for name in PROC_MASKED]
    assert "seccomp" not in linux


def test_the_mounts_are_a_native_run_s():
    doc, p = bundle("--tmpfs", "/scratch:size=1M", "--disable-cgroup-namespace")
    mounts = {m["destination"]: m for m in doc["mounts"]}
    assert mounts["/usr"]["options"] == ["rbind", "ro", "nosuid", "nodev"] and mounts["/usr"]["source"] == "/usr"
    assert "/bin" not in mounts  # a symlink into /usr, made again in the root
    assert mounts["/etc/ssl/certs"]["source"] == "/etc/ssl/certs" and "ro" in mounts["/etc/ssl/certs"]["options"]
    assert mounts["/data"]["options"][:2] == ["rbind", "ro"] and mounts["/out"]["options"][:2] == ["rbind", "rw"]
    assert mounts["/scratch"]["type"] == "tmpfs" and "size=1048576" in mounts["/scratch"]["options"]
    assert mounts["/sys"]["options"][-1] == "ro"
    assert doc["root"] == {"path": "rootfs", "readonly": False}
    assert "cgroup" not in [n["type"] for n in doc["linux"]["namespaces"]]
    write = p.bundle
    assert ("bin", "usr/bin") in write.links and ("etc/localtime", "/usr/share/zoneinfo/UTC") in write.links
    assert {"usr", "data", "out", "scratch", "etc/ssl/certs", "proc"} <= set(write.dirs)
    files = dict(write.files)
    assert files["etc/mime.types"] == "" and "root:x:0:0:" in files["etc/passwd"]
    assert write.owner == (200000, 200000)


def test_runsc_has_nucleus_s_root_the_ptrace_platform_and_the_profile_when_given():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    doc, p = bundle("--network", "host", "--allow-host-network", seccomp=profile)
    base = "/run/nucleus-gvisor/c0ffee"
    assert p.runsc == ("/usr/bin/runsc", "--root", f"{base}/runsc", "--log", f"{base}/runsc.log",
                       "--platform", "ptrace", "--network", "host", "--overlay2", "root:memory", "--oci-seccomp")
    assert p.run.argv[len(p.runsc):] == ("run", "--pid-file", f"{base}/pid", "--bundle", base, "c0ffee")
    assert p.delete().argv[-3:] == ("delete", "--force", "c0ffee") and p.remove().directory == base
    assert doc["linux"]["seccomp"] == profile
    # runsc's host network needs the host's user namespace: no mapping, the root is root's.
    assert [n["type"] for n in doc["linux"]["namespaces"]] == ["pid", "mount", "ipc", "uts", "cgroup"]
    assert "uidMappings" not in doc["linux"] and p.bundle.owner == (0, 0)
    _, plain = bundle()
    assert "--oci-seccomp" not in plain.runsc and plain.runsc[plain.runsc.index("--network") + 1] == "none"


@pytest.mark.parametrize(("args", "named"), [
    (("--seccomp-mode", "trace", "--seccomp-log", "t.ndjson"), "--seccomp-mode trace"),
    (("--context", ".", "--changes", "c.json"), "--changes"),
    (("-t",), "-t/--tty"),
    (("--rootless",), "--rootless"),
    (("--network", "user"), "--network user"),
    (("--readiness-tcp", "8080"), "--readiness-tcp"),
    (("--service-mode", "strict-agent"), "--service-mode"),
    (("--io-limit", "8:0 riops=10"), "--io-limit"),
])
def test_what_runsc_cannot_honour_is_refused_by_name(args, named):
    problem = rules.refusal(config(*args))
    assert isinstance(problem, InvalidInput)
    assert problem.message.startswith(f"{named}") and "with --runtime gvisor: " in problem.message
    assert problem.hint == rules.HINT


def test_a_plain_run_a_context_a_bridge_and_the_host_s_network_are_accepted():
    assert rules.refusal(config()) is None
    assert rules.refusal(config("--context", ".", "--context-mode", "bind")) is None
    assert rules.refusal(config("--context", ".")) is None  # copied, as a native run copies it
    assert rules.refusal(config("--network", "bridge", "--egress-allow", "192.0.2.0/24")) is None
    assert rules.refusal(config("--network", "host", "--allow-host-network")) is None
    assert rules.refusal(config("--health-cmd", "true", "--readiness-exec", "true", "--restart", "always")) is None


def test_the_platform_flag_is_for_gvisor_only():
    with pytest.raises(InvalidInput, match="--gvisor-platform 'kvm': only with --runtime gvisor"):
        run_options.start(("true",), run_args.parse(["--gvisor-platform", "kvm", "--", "true"])[1])
    host = plan.Host(**{**HOST.__dict__, "platform": "kvm"})
    p = plan.plan(config(), host, "c0ffee")
    assert p.runsc[p.runsc.index("--platform") + 1] == "kvm"


def test_the_runtime_flag_takes_native_or_gvisor():
    assert run_args.parse(["--runtime", "gvisor", "--", "true"])[1]["runtime"] == "gvisor"
    assert run_args.parse(["--", "true"])[1]["runtime"] == "native"
    with pytest.raises(run_args.Unparsed):
        run_args.parse(["--runtime", "kata", "--", "true"])


BRIDGE = network_plan.NetworkPlan("bridge", "nucleus0", ("10.88.0.0/16",), ("10.88.0.1",), "nft")


def test_a_bridge_s_namespace_is_named_in_the_bundle_and_prepared_before_runsc_run():
    host = dataclasses.replace(HOST, network=BRIDGE, state_root="/run/nucleus")
    cfg = config("--network", "bridge")
    p = plan.plan(cfg, host, "c0ffee")
    doc = json.loads(p.bundle.config)
    base = "/run/nucleus-gvisor/c0ffee"
    # runsc's netstack in the namespace nucleus made, with the host's user namespace (see the plan).
    assert doc["linux"]["namespaces"][4:] == [{"type": "network", "path": f"{base}/netns"}, {"type": "cgroup"}]
    assert "uidMappings" not in doc["linux"] and p.bundle.owner == (0, 0)
    assert p.runsc[p.runsc.index("--network") + 1] == "sandbox" and p.run.masked == ("/proc/sys/net",)
    assert p.netns == gv.MakeNetns(link=f"{base}/netns", holder=f"{base}/netns.holder")
    s = gvisor.initial(p, plan.network_machine(cfg, host, "c0ffee"))
    asked = []
    for event in (gv.Create(), gv.Written(), gv.Netns(pid=7), v.NetBegin(), v.NetDone("bridge", detail="10.88.0.2/16"),
                  v.NetDone("veth"), v.NetDone("nat"), v.NetDone("address"), v.NetDone("up"), v.NetDone("route")):
        r = gvisor.step(s, event)
        assert not isinstance(r, Refused), (event, r)
        s = r.state
        asked.extend(type(i).__name__ for i in r.intents)
    assert asked == ["WriteBundle", "MakeNetns", "NetBridge", "NetVeth", "NetNat", "NetAddress", "NetLinkUp",
                     "NetRoute", "RunSandbox"]
    assert s.net.addresses == ("10.88.0.2/16",)


def test_a_copied_context_is_made_in_the_bundle_and_bound_from_there():
    copied = ContextSource("/home/me/project", 9, -1, (), (), ())
    p = plan.plan(config("--context", "/home/me/project", "-u", "1000"),
                  dataclasses.replace(HOST, copied=copied), "c0ffee")
    base = "/run/nucleus-gvisor/c0ffee"
    copy = p.bundle.context
    assert copy is not None and copy.target == f"{base}/private/context" and copy.opened == 9
    assert copy.owner == (201000, 201000) and ".env" in " ".join(copy.exclude)
    mounts = {m["destination"]: m for m in json.loads(p.bundle.config)["mounts"]}
    assert mounts["/context"]["source"] == f"{base}/private/context" and mounts["/context"]["options"][:2] == ["rbind", "rw"]
    assert "context" in p.bundle.dirs
