"""Runs that cannot go ahead, on the real kernel: each is told what happened, with the right exit
status, and leaves nothing on the host.

- A detached run whose command does not exist (or cannot be run) reports the exec failure
  instead of an id (127, 126): PID 1 learns it through a close-on-exec pipe from the workload
  and answers ExecWorkload with the lifecycle's Exit, so the container ends and is removed.
- A seccomp profile that denies a call nucleus makes after loading it (write, the Landlock calls)
  kills the setup process with SIGSYS: the error says so, not that it "went away".
- A context copy the OOM killer ends says that the OOM killer acted.
"""

from __future__ import annotations

import json

import pytest

from nucleus.config.seccomp_default import default_profile
from tests.helpers import SANDBOX, Scope, describe
from tests.kernel.manage_support import ok

pytestmark = SANDBOX


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


@pytest.mark.parametrize("argv,code,reason", [
    (["nucleus-no-such-command"], 127, "cannot run 'nucleus-no-such-command': No such file or directory"),
    (["/usr/bin/nucleus-no-such-command", "x"], 127,
     "cannot run '/usr/bin/nucleus-no-such-command': No such file or directory"),
    (["/etc/passwd"], 126, "cannot run '/etc/passwd': /etc/passwd is not executable (mode 0644, owner "
                           "65534); make it executable (chmod +x) or run it through its interpreter"),
    (["/tmp"], 126, "cannot run '/tmp': /tmp is a directory"),
], ids=["on-path", "absolute", "not-executable", "directory"])
def test_a_detached_run_reports_the_exec_failure_instead_of_an_id(scope, argv, code, reason):
    result = scope.nucleus(*scope.run_args("-d", "--name", "bad"), "--", *argv)
    hint = "hint: the command is looked up on the container's PATH, inside the container\n" if code == 127 else ""
    assert (result.returncode, result.stdout, result.stderr) == (code, "", f"error: {reason}\n{hint}"), \
        describe(result)
    ok(scope.nucleus("ps", "--all", "--format", "json"), "[]\n")
    scope.assert_clean()


def test_a_detached_run_in_a_missing_working_directory(scope):
    result = scope.nucleus(*scope.run_args("-d", "--workdir", "/nonexistent"), "--", "true")
    assert (result.returncode, result.stdout, result.stderr) == (
        126, "", "error: cannot enter working directory '/nonexistent': No such file or directory\n"), \
        describe(result)
    scope.assert_clean()


def test_a_foreground_run_still_says_it_in_its_own_words(scope):
    result = scope.nucleus(*scope.run_args(), "--", "nucleus-no-such-command")
    assert (result.returncode, result.stdout, result.stderr) == (
        127, "", "nucleus: cannot run 'nucleus-no-such-command': No such file or directory\n"), describe(result)
    scope.assert_clean()


def test_the_name_of_a_failed_detached_run_is_free_again(scope):
    bad = scope.nucleus(*scope.run_args("-d", "--name", "again"), "--", "nucleus-no-such-command")
    assert bad.returncode == 127, describe(bad)
    cid = scope.detach(scope.sh("echo ready; sleep 1000"), "--name", "again")
    scope.wait_log(cid, lambda text: text == "ready\n")
    ok(scope.nucleus("rm", "--force", "again"), "again\n")
    scope.assert_clean()


REFUSED = ": the seccomp profile refused it {}, which nucleus calls after loading the profile"


@pytest.mark.parametrize("denied,at,step", [
    (("write",), "sec.seccomp", "LoadSeccomp"),
    (("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"), "sec.landlock", "ApplyLandlock"),
], ids=["write", "landlock"])
@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
@pytest.mark.parametrize("action", ["errno", "kill"])
def test_a_profile_that_denies_what_setup_needs_is_named(scope, tmp_path, denied, at, step, detach, action):
    profile = default_profile(networked=False, default_action=action)
    for rule in profile["syscalls"]:  # type: ignore[union-attr]
        rule["names"] = [n for n in rule["names"] if n not in denied]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    options = ["-d"] if detach else []
    result = scope.nucleus(*scope.run_args(*options, "--seccomp-profile", str(path)), "--", "true")
    # The violation stream names the call the setup process was refused. Under kill the monitor
    # kills it with SIGKILL: nucleus's own process blocks SIGSYS with the rest.
    if action == "kill":
        expected = f"the setup process was killed by SIGKILL during {step}" + REFUSED.format(f"{denied[0]}()")
    elif step == "LoadSeccomp":  # its answer cannot be written: it exits
        expected = f"the setup process exited with status 125 during {step}" + REFUSED.format("write()")
    else:  # the Landlock call fails, and the setup process says so
        expected = "landlock_create_ruleset(NULL, 0, 1) failed: EPERM (Operation not permitted)"
    assert (result.returncode, result.stdout, result.stderr) == (
        125, "", f"error: setup failed at {at}: {expected}\n"), describe(result)
    scope.assert_clean()


def test_a_context_copy_ended_by_the_oom_killer_says_so(scope, tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    with open(context / "large", "wb") as f:
        for _ in range(64):
            f.write(b"\xa5" * (1 << 20))
    result = scope.nucleus(*scope.run_args("--memory", "16M", "--context", str(context)), "--", "true")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    error, = result.stderr.splitlines()
    assert error.startswith("error: setup failed at fs.mount: the setup process was killed by SIGKILL "
                            "during "), describe(result)
    assert error.endswith("; the OOM killer acted in the container's cgroup: setting up needs more memory "
                          "than its limit allows (a copied context is held in memory)"), describe(result)
    assert "went away" not in error
    scope.assert_clean()
