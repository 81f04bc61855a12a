"""`--allow-exec PATH` on the command line: a value that is not a writable place of the container
(or a directory below one) is refused, exit 125, naming the flag and the value, before anything
is made on the host; so is the flag with --trust-level untrusted in the strict modes. No kernel
feature is needed."""

from __future__ import annotations

import pytest

from tests.helpers import describe, run_nucleus

HINT = "hint: name a writable place or a directory below one: {}\n"


@pytest.mark.parametrize("value,why,places", [
    ("/etc", "not one of the container's writable places nor below one", "/home/agent, /tmp"),
    ("relative/bin", "not an absolute path inside the container", "/home/agent, /tmp"),
    ("/tmp/../usr", "'..' is not allowed in the path", "/home/agent, /tmp"),
    ("/context/bin", "there is no context (add --context DIR to have /context)", "/home/agent, /tmp"),
], ids=["etc", "relative", "dotdot", "no-context"])
def test_a_path_outside_the_writable_places_is_refused(tmp_path, value, why, places):
    state = tmp_path / "state"
    result = run_nucleus(["--root", str(state), "run", "--allow-exec", value, "--", "true"])
    assert (result.returncode, result.stdout, result.stderr) == (
        125, "", f"error: --allow-exec {value!r}: {why}\n{HINT.format(places)}"), describe(result)
    assert not state.exists()


def test_an_untrusted_workload_in_strict_agent_mode_may_not_run_from_a_writable_place(tmp_path):
    state = tmp_path / "state"
    result = run_nucleus(["--root", str(state), "run", "--service-mode", "strict-agent", "--trust-level",
                          "untrusted", "--allow-exec", "/tmp", "--", "true"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (
        "error: --allow-exec '/tmp' is forbidden with --trust-level untrusted in strict-agent mode: an "
        "untrusted workload runs nothing from a place it can write (row \"Executable workspace\")\n"
        "hint: drop --allow-exec, use --service-mode agent (/context and home are executable there), or "
        "pass --trust-level trusted if you vouch for the workload\n")
    assert not state.exists()
