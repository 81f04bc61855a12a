"""An executable workspace, on the real kernel: in agent mode what the workload builds in /context
and home runs there (nosuid, nodev, Landlock-scoped), /tmp stays noexec; strict-agent keeps every
writable place noexec unless --allow-exec names it; a refused exec says why and what would allow
it; the tools an agent reaches for (gcc, a shell script, a venv and pip, awk, sed, find, vi,
java) run."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import SANDBOX, Scope, assert_host_unchanged, describe, run_nucleus, snapshot

pytestmark = SANDBOX

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello from /context"); return 0; }\n'
READY = "echo ready; while :; do sleep 0.05; done"


@pytest.fixture
def project(tmp_path):
    """A project directory: a C file, a shell script and a prebuilt program."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "hello.c").write_text(HELLO_C)
    (root / "run.sh").write_text("#!/bin/sh\necho \"run.sh in $(pwd)\"\n")
    (root / "run.sh").chmod(0o755)
    shutil.copy("/usr/bin/true", root / "prog")
    return root


def ran(result, stdout: str | None = None) -> None:
    assert result.returncode == 0, describe(result)
    if stdout is not None:
        assert result.stdout == stdout, describe(result)


# --- agent mode ---------------------------------------------------------------------------------


@pytest.mark.requires("bin:/usr/bin/gcc")
def test_a_program_compiled_in_the_context_runs_from_the_context(project):
    result = run_nucleus(["run", "--context", project, "--", "sh", "-c", "gcc -o hello hello.c && ./hello"])
    ran(result, "hello from /context\n")


def test_a_script_in_the_context_is_the_workload(project):
    ran(run_nucleus(["run", "--context", project, "--", "./run.sh"]), "run.sh in /context\n")


def test_a_project_bound_read_only_runs_its_own_programs(project):
    ran(run_nucleus(["run", "--context", project, "--context-mode", "bind", "--", "./run.sh"]),
        "run.sh in /context\n")


@pytest.mark.requires("bin:/usr/bin/python3")
def test_a_venv_made_in_the_context_runs_python_and_pip(project):
    script = ("python3 -m venv .venv && .venv/bin/python -c 'import sys; print(sys.prefix)' "
              "&& .venv/bin/pip --version")
    result = run_nucleus(["run", "--context", project, "--", "sh", "-c", script], timeout=120)
    ran(result)
    prefix, pip = result.stdout.splitlines()
    assert prefix == "/context/.venv"
    assert pip.startswith("pip ") and "/context/.venv/lib/python3" in pip, describe(result)


def test_home_is_executable_and_tmp_is_not():
    script = ("cp /usr/bin/true ~/t && ~/t && echo home-ran; cp /usr/bin/true /tmp/t && "
              "{ /tmp/t 2>/dev/null && echo tmp-ran || echo tmp-refused; }")
    ran(run_nucleus(["run", "--", "sh", "-c", script]), "home-ran\ntmp-refused\n")


def test_the_places_mount_flags(project):
    result = run_nucleus(["run", "--context", project, "--", "cat", "/proc/self/mountinfo"])
    ran(result)
    options = {fields[4]: set(fields[5].split(",")) for fields in map(str.split, result.stdout.splitlines())}
    for place in ("/context", "/home/agent"):
        assert {"nosuid", "nodev"} <= options[place] and "noexec" not in options[place], place
    assert {"nosuid", "nodev", "noexec"} <= options["/tmp"]


def test_allow_exec_tmp_makes_tmp_executable():
    result = run_nucleus(["run", "--allow-exec", "/tmp", "--", "sh", "-c", "cp /usr/bin/true /tmp/t && /tmp/t && echo ran"])
    ran(result, "ran\n")


@pytest.mark.parametrize("tool,argv", [
    ("awk", ["awk", "BEGIN { print 6 * 7 }"]),
    ("sed", ["sh", "-c", "echo hello | sed s/hello/42/"]),
    ("find", ["sh", "-c", "find /etc/alternatives -maxdepth 0 -type d -printf 42\\\\n"]),
], ids=["awk", "sed", "find"])
def test_the_common_tools_run(tool, argv):
    ran(run_nucleus(["run", "--", *argv]), "42\n")


@pytest.mark.skipif(not os.path.exists("/usr/bin/vi"), reason="vi is not installed on this host")
def test_vi_runs():
    result = run_nucleus(["run", "--", "vi", "--version"])
    ran(result)
    assert "VIM" in result.stdout or "vi" in result.stdout.lower()


@pytest.mark.requires("bin:/usr/bin/java")
def test_java_finds_itself_and_its_configuration_and_starts():
    # /etc/alternatives/java leads to the JDK, which reads /etc/java-*/jvm-*.cfg through its links.
    result = run_nucleus(["run", "--", "java", "-version"])
    assert result.returncode == 0, describe(result)
    assert "version" in result.stderr and "Error" not in result.stderr, describe(result)


# --- a refused exec says why --------------------------------------------------------------------


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


@pytest.mark.requires("bin:/usr/bin/gcc")
def test_a_binary_in_tmp_is_refused_naming_the_noexec_mount_and_the_flag(scope):
    build = ("cd && printf 'int main(void) { return 7; }' > a.c && gcc -o a.out a.c && cp a.out /tmp/ && "
             + READY)
    cid = scope.detach(scope.sh(build), "--name", "builder")
    scope.wait_log(cid, lambda text: "ready\n" in text)
    refused = scope.nucleus("attach", "builder", "--", "/tmp/a.out")
    assert (refused.returncode, refused.stdout) == (126, ""), describe(refused)
    assert refused.stderr == ("nucleus: blocked: /tmp/a.out cannot be executed: /tmp is mounted noexec; "
                              "run it from /home/agent, or pass --allow-exec /tmp\n")
    assert scope.nucleus("attach", "builder", "--", "/home/agent/a.out").returncode == 7


def test_a_script_whose_interpreter_is_missing_says_which(project):
    (project / "tool.sh").write_text("#!/usr/bin/nucleus-no-such-interpreter\n")
    (project / "tool.sh").chmod(0o755)
    result = run_nucleus(["run", "--context", project, "--", "./tool.sh"])
    assert (result.returncode, result.stdout) == (127, ""), describe(result)
    assert result.stderr == ("nucleus: cannot run './tool.sh': its interpreter "
                             "/usr/bin/nucleus-no-such-interpreter is not in the container\n")


def test_a_file_without_an_execute_bit_says_so(project):
    (project / "run.sh").chmod(0o644)
    result = run_nucleus(["run", "--context", project, "--", "./run.sh"])
    assert result.returncode == 126, describe(result)
    assert result.stderr == ("nucleus: cannot run './run.sh': /context/run.sh is not executable (mode 0644, "
                             "owner 0); make it executable (chmod +x) or run it through its interpreter\n")


# --- strict-agent -------------------------------------------------------------------------------


def test_strict_agent_keeps_the_context_noexec_unless_allow_exec_names_it(project):
    refused = run_nucleus(["run", "--service-mode", "strict-agent", "--context", project, "--", "./prog"])
    assert (refused.returncode, refused.stdout) == (126, ""), describe(refused)
    assert refused.stderr == ("nucleus: blocked: /context/prog cannot be executed: /context is mounted "
                              "noexec; pass --allow-exec /context\n")
    ran(run_nucleus(["run", "--service-mode", "strict-agent", "--allow-exec", "/context", "--context",
                     project, "--", "./prog"]), "")


def test_strict_agent_keeps_home_noexec_and_opens_only_the_directory_allowed():
    script = ("cp /usr/bin/true ~/t; ~/t 2>/dev/null || echo home-refused; cp /usr/bin/true /tmp/bin/t && "
              "/tmp/bin/t && echo bin-ran; cp /usr/bin/true /tmp/t; /tmp/t 2>/dev/null || echo tmp-refused")
    result = run_nucleus(["run", "--service-mode", "strict-agent", "--allow-exec", "/tmp/bin", "--",
                          "sh", "-c", script])
    ran(result, "home-refused\nbin-ran\ntmp-refused\n")


def test_strict_agent_with_a_bound_context_runs_it_only_when_allowed(project):
    base = ["run", "--service-mode", "strict-agent", "--context", project, "--context-mode", "bind"]
    refused = run_nucleus([*base, "--", "./prog"])
    assert refused.returncode == 126, describe(refused)
    assert refused.stderr.startswith("nucleus: blocked: /context/prog cannot be executed: Landlock's rules "
                                     "allow no execute in /context; pass --allow-exec /context")
    ran(run_nucleus([*base, "--allow-exec", "/context", "--", "./prog"]), "")


def test_allow_exec_outside_the_writable_places_is_refused_before_anything_runs():
    result = run_nucleus(["run", "--allow-exec", "/etc", "--", "true"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr.startswith("error: --allow-exec '/etc': not one of the container's writable "
                                    "places nor below one\nhint: name a writable place")


@pytest.mark.parametrize(("below", "why"), [
    ("missing", "'missing' cannot be opened (No such file or directory)"),
    ("run.sh", "'run.sh' is not a directory"),
    ("link", "'link' is a symlink"),
], ids=["missing", "file", "symlink"])
def test_allow_exec_of_what_the_context_lacks_is_refused_before_anything_runs(project, below, why):
    (project / "link").symlink_to("/tmp")
    before = snapshot()
    result = run_nucleus(["run", "--service-mode", "strict-agent", "--context", str(project),
                          "--allow-exec", f"/context/{below}", "--", "true"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (f"error: --allow-exec '/context/{below}': in the context {str(project)!r}, "
                             f"{why}\nhint: name a directory the context has, or /context itself\n")
    assert_host_unchanged(before)


def test_a_read_write_volume_runs_programs_only_when_allowed(tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    shutil.copy("/usr/bin/true", volume / "prog")
    refused = run_nucleus(["run", "-v", f"{volume}:/work", "--", "/work/prog"])
    assert refused.returncode == 126, describe(refused)
    assert refused.stderr == ("nucleus: blocked: /work/prog cannot be executed: Landlock's rules allow no "
                              "execute in /work; run it from /home/agent, or pass --allow-exec /work\n")
    ran(run_nucleus(["run", "-v", f"{volume}:/work", "--allow-exec", "/work", "--", "/work/prog"]), "")
