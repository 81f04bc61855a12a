"""nucleus check's probe on this host: each fact is compared with the same fact read another way
(files, util-linux, the tools' own output), and the report names every mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace

import pytest

from nucleus.config import mode_host, modes
from nucleus.effects import hostcheck, probe
from nucleus.effects import landlock as ll
from nucleus.facts import CgroupLayout, HostFacts

KEYS = {"kernel", "euid", "namespaces", "cgroups", "seccomp", "landlock", "lockdown", "runsc",
        "criu", "network", "pid_max"}


@pytest.fixture(scope="module")
def facts():
    return hostcheck.probe()


def _mountinfo():
    with open("/proc/self/mountinfo") as f:
        return f.read()


def _lockdown_by_other_means() -> str | None:
    """The lockdown file's text: read directly, or (as root) through util-linux's unshare with a
    private securityfs mount, independent of the code under test."""
    try:
        with open(modes.LOCKDOWN_PATH) as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount -t securityfs none /sys/kernel/security && cat /sys/kernel/security/lockdown"],
        capture_output=True, text=True, timeout=30)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def test_probe_has_every_key_and_is_json(facts):
    assert set(facts) == KEYS
    assert json.loads(json.dumps(facts)) == facts


def test_kernel_and_pid_max(facts):
    assert facts["kernel"]["release"] == os.uname().release
    with open("/proc/sys/kernel/pid_max") as f:
        assert facts["pid_max"] == int(f.read())
    assert facts["euid"] == os.geteuid()


def test_namespaces(facts):
    ns = facts["namespaces"]
    expected = sorted(n for n in os.listdir("/proc/self/ns") if not n.endswith("_for_children"))
    assert ns["available"] == expected
    assert {"mnt", "pid", "net", "user", "uts", "ipc"} <= set(ns["available"])
    with open("/proc/sys/user/max_user_namespaces") as f:
        assert ns["max_user_namespaces"] == ns["max"]["user"] == int(f.read())


def test_cgroups_match_mountinfo(facts):
    cg = facts["cgroups"]
    v1 = set()
    v2 = False
    for line in _mountinfo().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup":
            v1 |= set(fields[sep + 3].split(","))
        elif fields[sep + 1] == "cgroup2":
            v2 = True
    if cg["backend"] == "v1":
        assert {"memory", "cpu", "pids"} <= v1
        assert set(cg["controllers"]) <= v1
        assert cg["hybrid"] is v2
    else:
        assert cg["backend"] in ("v2", "none")
        assert cg["hybrid"] is False
    assert cg["reason"]


def test_cgroups_on_this_machine_are_v1_hybrid(facts):
    if "cgroup2" not in _mountinfo() or " - cgroup " not in _mountinfo():
        pytest.skip("this host is not a cgroup v1 hybrid")
    cg = facts["cgroups"]
    assert (cg["backend"], cg["hybrid"]) == ("v1", True)
    assert {"memory", "cpu", "pids"} <= set(cg["controllers"])


def test_seccomp_actions_agree_with_the_sysctl(facts):
    sc = facts["seccomp"]
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            avail = f.read().split()
    except FileNotFoundError:
        pytest.skip("no /proc/sys/kernel/seccomp/actions_avail")
    asked = {name for name, ok in sc["actions"].items() if ok}
    assert asked == set(avail)  # the syscall and the sysctl tell the same story
    assert sc["actions_avail"] == avail
    assert sc["filter_flag_log"] is ("log" in avail)
    assert sc["filter"] is True


def test_landlock_abi(facts):
    abi = facts["landlock"]["abi"]
    assert abi == ll.abi_version()
    assert isinstance(abi, int) and 0 <= abi < 100


@pytest.mark.requires("landlock")
def test_landlock_abi_is_enough_for_production_here(facts):
    # ABI 7 on this machine (kernel 6.18); production needs 3.
    assert facts["landlock"]["abi"] >= modes.PRODUCTION_MIN_LANDLOCK_ABI


def test_lockdown_matches_the_file(facts):
    expected = _lockdown_by_other_means()
    lock = facts["lockdown"]
    if expected is None:
        assert lock["line"] is None and lock["error"]
        return
    assert lock["line"] == expected
    assert lock["mode"] == modes.parse_lockdown(expected)
    assert lock["error"] is None


def test_lockdown_private_read_leaves_no_mount_behind():
    before = _mountinfo()
    hostcheck.read_lockdown()
    assert _mountinfo() == before


def test_read_lockdown_from_a_given_file(tmp_path):
    path = tmp_path / "lockdown"
    path.write_text("none integrity [confidentiality]\n")
    assert hostcheck.read_lockdown(str(path)) == {
        "line": "none integrity [confidentiality]", "mode": "confidentiality",
        "source": str(path), "error": None}
    path.write_text("bogus\n")
    got = hostcheck.read_lockdown(str(path))
    assert got["line"] == "bogus" and got["mode"] is None
    assert "expected one mode in brackets" in got["error"]
    got = hostcheck.read_lockdown(str(tmp_path / "absent"))
    assert got["line"] is None and "ENOENT" in got["error"]


def test_runsc(facts):
    rs = facts["runsc"]
    path = shutil.which("runsc")
    if path is None:
        assert rs["present"] is False and rs["platforms"] == []
        return
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert rs["present"] is True and rs["path"] == path
    assert rs["version"] and f"runsc version {rs['version']}" in out
    assert "ptrace" in rs["platforms"] or "systrap" in rs["platforms"]


def test_criu(facts):
    cr = facts["criu"]
    path = shutil.which("criu")
    if path is None:
        assert cr["present"] is False
        return
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert cr["version"] and f"Version: {cr['version']}" in out
    check = cr["check"]
    assert isinstance(check["ok"], bool)
    if not check["ok"]:  # on this machine's kernel criu check fails in its vDSO probe
        assert check["first_error"]


def test_cgroups_agree_with_the_probes_layout(facts):
    layout = probe.cgroup_layout()
    cg = facts["cgroups"]
    assert (cg["backend"], cg["reason"], cg["unified"]) == (
        layout.backend, layout.reason, layout.unified)
    assert cg["mounts"] == dict(layout.mounts)
    assert cg["controllers"] == list(layout.controllers)


def test_host_facts_of_a_probe(facts):
    host = hostcheck.host_facts(facts)
    assert isinstance(host, HostFacts) and isinstance(host.cgroups, CgroupLayout)
    assert host.euid == facts["euid"]
    assert host.landlock_abi == facts["landlock"]["abi"]
    assert (host.cgroup_backend, host.cgroup_reason) == (
        facts["cgroups"]["backend"], facts["cgroups"]["reason"])
    assert host.lockdown == facts["lockdown"]["line"]
    assert host.lockdown_probed is True
    assert host.seccomp_filter == facts["seccomp"]["filter"]
    assert host.max_user_namespaces == facts["namespaces"]["max_user_namespaces"]


def test_host_facts_of_a_partial_probe_leave_the_rest_unprobed():
    host = hostcheck.host_facts({"euid": 0, "lockdown": {"line": None, "error": "ENOENT"}})
    assert host.cgroups is None and host.cgroup_backend is None and host.cgroup_reason == ""
    assert host.landlock_abi is None and host.seccomp_filter is None
    assert (host.lockdown, host.lockdown_error, host.lockdown_probed) == (None, "ENOENT", True)
    poor = hostcheck.host_facts({"cgroups": {"backend": "none", "reason": "no cgroup2 mount"}})
    assert poor.cgroups == CgroupLayout(backend="none", reason="no cgroup2 mount")


def test_mode_facts_agree_with_the_probe(facts):
    base = replace(probe.identity(), cgroups=probe.cgroup_layout())
    host = hostcheck.mode_facts(base, lockdown=True)
    assert host.landlock_abi == facts["landlock"]["abi"]
    assert host.lockdown == facts["lockdown"]["line"]
    assert host.seccomp_filter == facts["seccomp"]["filter"]
    assert host.max_user_namespaces == facts["namespaces"]["max_user_namespaces"]
    # What the caller gathered is kept as it was.
    assert (host.arch, host.euid, host.egid, host.state_root, host.cgroups) == (
        base.arch, base.euid, base.egid, base.state_root, base.cgroups)
    assert host.cgroup_backend == facts["cgroups"]["backend"]
    unasked = hostcheck.mode_facts(base, lockdown=False)
    assert unasked.lockdown_probed is False
    assert unasked.landlock_abi == host.landlock_abi
    req = modes.ModeRequest(require_kernel_lockdown="integrity")
    if facts["lockdown"]["mode"] == "integrity":  # this machine
        assert mode_host.check_host(req, host) == []
        strict = modes.ModeRequest(require_kernel_lockdown="confidentiality")
        assert mode_host.check_host(strict, host) == [
            "--require-kernel-lockdown 'confidentiality': the kernel's lockdown mode is "
            "'integrity'"]


def test_report_names_each_mode_and_the_pending_rows(facts):
    text = hostcheck.report(facts)
    for mode in modes.SERVICE_MODES:
        assert f"\n{mode} mode: " in text
    assert f"landlock ABI:       {facts['landlock']['abi']}\n" in text
    for pending in modes.NOT_ENFORCED_YET:
        assert f"  {pending.row}: {pending.rule}\n" in text
    data = hostcheck.report_data(facts)
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"host", "modes", "not_enforced_yet"}
    assert list(data["modes"]) == list(modes.SERVICE_MODES)
    only = hostcheck.report(facts, ("production",))
    assert "\nproduction mode: " in only
    assert "\nagent mode: " not in only and "\nstrict-agent mode: " not in only


def test_report_shows_refusals_of_a_poor_host(facts):
    poor = json.loads(json.dumps(facts))
    poor["landlock"]["abi"] = 2
    poor["cgroups"]["backend"] = "none"
    text = hostcheck.report(poor)
    assert "production mode: refused on this host (Landlock ABI, Cgroup limits)" in text
    assert "agent mode: runs on this host" in text
    data = hostcheck.report_data(poor)
    assert data["modes"]["production"]["refuses"] == ["Landlock ABI", "Cgroup limits"]
    assert data["modes"]["strict-agent"]["refuses"] == ["Cgroup limits"]


def test_subordinate_ids_are_read_from_both_files(tmp_path):
    from nucleus.effects.probe import subordinate_ids
    from nucleus.facts import SubordinateRange

    (tmp_path / "subuid").write_text("alice:100000:65536\n# a comment\nbad line\nbob:x:1\n")
    (tmp_path / "subgid").write_text("alice:100000:65536\ncarol:300000:1000\n")
    found = subordinate_ids((str(tmp_path / "subuid"), str(tmp_path / "subgid"), str(tmp_path / "missing")))
    assert found == (
        SubordinateRange(str(tmp_path / "subuid"), "alice", 100000, 65536),
        SubordinateRange(str(tmp_path / "subgid"), "alice", 100000, 65536),
        SubordinateRange(str(tmp_path / "subgid"), "carol", 300000, 1000),
    )
