"""`nucleus attach` on the real kernel: the joined command gets the container's own restrictions
(its seccomp program, by hash; its capability sets; its Landlock rules), not the defaults, and
the join's recorded trace replays through the Join machine.
"""

from __future__ import annotations

import json

import pytest

from nucleus.config.seccomp_default import default_profile
from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, run_nucleus

pytestmark = SANDBOX_WITH_PYTHON

READY = 'echo ready; while :; do sleep 0.05; done'
EACCES_EXIT = 13
CAP_CHOWN = 0  # linux/capability.h


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


@pytest.fixture
def policies(tmp_path):
    """A seccomp profile that refuses mkdir with EACCES (the default allows it) and a caps
    policy that keeps CAP_CHOWN (the default drops everything)."""
    profile = default_profile(networked=False)
    for rule in profile["syscalls"]:  # type: ignore[union-attr]
        rule["names"] = [n for n in rule["names"] if n not in ("mkdir", "mkdirat")]
    profile["syscalls"].append(  # type: ignore[union-attr]
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES_EXIT})
    seccomp = tmp_path / "no-mkdir.seccomp.json"
    seccomp.write_text(json.dumps(profile))
    caps = tmp_path / "chown.caps.toml"
    caps.write_text('[bounding]\nkeep = ["CHOWN"]\n')
    return ["--seccomp-profile", str(seccomp), "--caps-policy", str(caps)]


PROBE = ("grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
         "mkdir /tmp/probe 2>/dev/null && echo mkdir-allowed || echo mkdir-refused; "
         "touch /usr/probe 2>/dev/null && echo usr-writable || echo usr-refused")


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t") for line in text.splitlines() if ":\t" in line)


def test_attach_applies_the_containers_own_seccomp_profile_and_caps_policy(scope, policies):
    cid = scope.detach(scope.sh(f"{PROBE}; {READY}"), "--name", "web", *policies)
    scope.wait_log(cid, lambda text: "ready\n" in text)
    workload = scope.log(cid)
    joined = scope.nucleus("attach", "web", "--", "/bin/sh", "-c", PROBE)
    assert joined.returncode == 0 and joined.stderr == "", describe(joined)
    mine, theirs = _status(joined.stdout), _status(workload)
    # Exactly the container's restrictions: CAP_CHOWN kept and nothing else, the profile's
    # refusal of mkdir, the read-only system directories of its Landlock rules.
    assert int(mine["CapEff"], 16) == 1 << CAP_CHOWN == int(theirs["CapEff"], 16), (mine, theirs)
    assert int(mine["CapBnd"], 16) == 1 << CAP_CHOWN == int(theirs["CapBnd"], 16), (mine, theirs)
    assert mine["NoNewPrivs"] == theirs["NoNewPrivs"] == "1"
    assert mine["Seccomp"] == theirs["Seccomp"] == "2"
    assert joined.stdout.splitlines()[-2:] == ["mkdir-refused", "usr-refused"], describe(joined)
    assert workload.splitlines()[-3:-1] == ["mkdir-refused", "usr-refused"], workload
    removed = scope.nucleus("rm", "--force", "web")
    assert removed.returncode == 0, describe(removed)
    scope.assert_clean()


def test_attach_without_policies_has_the_default_restrictions(scope):
    cid = scope.detach(scope.sh(READY), "--name", "web")
    scope.wait_log(cid, lambda text: text.startswith("ready\n"))
    joined = scope.nucleus("attach", "web", "--", "/bin/sh", "-c", PROBE)
    assert joined.returncode == 0, describe(joined)
    mine = _status(joined.stdout)
    assert int(mine["CapEff"], 16) == 0 and int(mine["CapBnd"], 16) == 0
    assert joined.stdout.splitlines()[-2:] == ["mkdir-allowed", "usr-refused"], describe(joined)
    assert scope.nucleus("rm", "--force", "web").returncode == 0
    scope.assert_clean()


def test_a_recorded_join_replays_through_the_join_machine(scope, tmp_path):
    cid = scope.detach(scope.sh(READY), "--name", "web")
    scope.wait_log(cid, lambda text: text.startswith("ready\n"))
    trace = tmp_path / "join.itf.json"
    joined = scope.nucleus("attach", "--trace", str(trace), "web", "--", "/bin/sh", "-c", "exit 3")
    assert joined.returncode == 3, describe(joined)
    data = json.loads(trace.read_text())
    assert data["#meta"]["module"] == "Join"
    assert [s["join_phase"] for s in data["states"]][-1] == "exited"
    steps = [s["#meta"]["intents"][0]["t"] for s in data["states"][1:] if s["#meta"].get("intents")]
    assert steps[:8] == ["JoinSpawn", "JoinCgroup", "EnterNamespaces", "JoinIdentity", "JoinFork",
                         "JoinDropCapabilities", "JoinLoadSeccomp", "JoinApplyLandlock"], steps
    replay = run_nucleus(["trace", "replay", str(trace)])
    assert replay.returncode == 0, describe(replay)
    assert scope.nucleus("rm", "--force", "web").returncode == 0
    scope.assert_clean()


def test_attach_to_a_stopped_container_is_refused_by_its_lifecycle(scope):
    cid = scope.detach(scope.sh("echo ready"), "--name", "web")
    scope.wait_finished(cid)
    refused = scope.nucleus("attach", "web", "--", "true")
    assert (refused.returncode, refused.stdout) == (125, ""), describe(refused)
    assert refused.stderr == "error: cannot attach to container 'web': it is stopped\n", describe(refused)
    assert scope.nucleus("rm", "web").returncode == 0
    scope.assert_clean()
