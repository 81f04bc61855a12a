"""`nucleus violations` and the run flags of the violation stream: every error a user can meet,
with its exact message and exit status, and what a running foreground container shows."""

from __future__ import annotations

import json

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, wait_for
from tests.kernel.manage_support import fails

NOT_FOUND_HINT = "hint: nucleus ps --all lists the containers\n"


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def test_an_unknown_container_has_no_violations(scope):
    for args in (["violations", "nope"], ["violations", "--follow", "nope"], ["violations", "--format", "json", "nope"]):
        fails(scope.nucleus(*args), 125, f"error: no container 'nope'\n{NOT_FOUND_HINT}")


def test_a_bad_format_or_default_action_is_a_usage_error(scope):
    bad = scope.nucleus("violations", "--format", "yaml", "x")
    assert bad.returncode == 125 and "Invalid value for '--format'" in bad.stderr, describe(bad)
    bad = scope.nucleus("run", "--seccomp-default-action", "trap", "--", "true")
    assert bad.returncode == 125 and "Invalid value for '--seccomp-default-action'" in bad.stderr, describe(bad)


def test_the_flags_refuse_seccomp_trace_mode_and_a_profile_file(scope, tmp_path):
    fails(scope.nucleus("run", "--seccomp-mode", "trace", "--seccomp-log", str(tmp_path / "t"),
                        "--violations", str(tmp_path / "v"), "--", "true"), 125,
          f"error: --violations {str(tmp_path / 'v')!r}: not with --seccomp-mode trace, which refuses no call\n"
          "hint: record the trace first, then run with the profile it makes and --violations\n")
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    fails(scope.nucleus("run", "--seccomp-profile", str(profile), "--seccomp-default-action", "kill",
                        "--", "true"), 125,
          f"error: --seccomp-default-action 'kill' applies to the default profile: --seccomp-profile "
          f"{str(profile)!r} keeps its own defaultAction\n"
          "hint: drop --seccomp-default-action, or set defaultAction in the profile\n")
    fails(scope.nucleus("run", "--service-mode", "strict-agent", "--seccomp-default-action", "log", "--", "true"),
          125, "error: --seccomp-default-action 'log' is forbidden in strict-agent mode (row \"Seccomp default "
          "action\": strict-agent forbids log: it allows what the profile refuses)\n"
          "hint: use --seccomp-default-action errno (or kill); try a workload under log in agent mode\n")
    assert not (tmp_path / "v").exists()


@SANDBOX_WITH_PYTHON
def test_a_running_foreground_container_shows_its_refusals(scope):
    script = "unshare -U true 2>/dev/null; echo ready; while :; do sleep 0.05; done"
    proc = scope.popen(*scope.run_args("--name", "fg"), "--", *scope.sh(script))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        shown = scope.nucleus("violations", "--format", "json", "fg")
        assert shown.returncode == 0 and shown.stderr == "", describe(shown)
        (record,) = [json.loads(line) for line in shown.stdout.splitlines()]
        assert (record["operation"], record["container"]["name"]) == ("unshare", "fg")
        assert scope.nucleus("stop", "fg").returncode == 0
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    # A foreground container goes with its stream when it ends.
    assert wait_for(lambda: scope.records() == {}, timeout=10)
    fails(scope.nucleus("violations", "fg"), 125, f"error: no container 'fg'\n{NOT_FOUND_HINT}")
