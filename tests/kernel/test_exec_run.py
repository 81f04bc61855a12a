"""`nucleus exec` on the real kernel, into a running detached container: by default as the
container's own user, in its working directory, with its environment and no stdin; -u, -w, -e,
--env-file, -i and -t as asked; the container's restrictions in every case; the command's exit
status passed through and nucleus's own failures exiting 125. `attach` still keeps stdin."""

from __future__ import annotations

import os

import pytest

from tests.helpers import SANDBOX, Scope, describe
from tests.kernel.terminal_support import Caller

pytestmark = SANDBOX

READY = "echo ready; while :; do sleep 0.05; done"
CONFINED = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr '\\t' ' '"


@pytest.fixture
def box():
    """A detached container run as uid 1000 with MODE=run; the scope it lives in."""
    with Scope() as scope:
        cid = scope.detach(scope.sh(READY), "--name", "box", "-u", "1000", "-e", "MODE=run")
        scope.wait_log(cid, lambda text: "ready" in text)
        yield scope
        assert scope.nucleus("rm", "--force", "box").returncode == 0
        scope.assert_clean()


def test_exec_runs_as_the_container_does(box):
    result = box.nucleus("exec", "box", "--", "sh", "-c",
                         f"id; pwd; echo $HOME $MODE; readlink /proc/self/fd/0; {CONFINED}")
    assert result.returncode == 0 and result.stderr == "", describe(result)
    assert result.stdout.splitlines() == [
        "uid=1000(user) gid=1000(user) groups=1000(user)", "/home/user", "/home/user run", "/dev/null",
        "CapEff: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2"], describe(result)


def test_exec_with_a_user_a_directory_and_environment(box, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nMODE=file\nFROM_FILE=yes\nCALLER_SET\n")
    result = box.nucleus("exec", "-u", "nobody", "-w", "/tmp", "--env-file", str(env_file), "-e", "MODE=flag",
                         "box", "--", "sh", "-c", f"id; pwd; echo $HOME $MODE $FROM_FILE $CALLER_SET; {CONFINED}",
                         extra_env={"CALLER_SET": "from-caller"})
    assert result.returncode == 0 and result.stderr == "", describe(result)
    # -e wins over --env-file; a bare name takes the caller's value; nobody has no home here.
    assert result.stdout.splitlines() == [
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)", "/tmp", "/ flag yes from-caller",
        "CapEff: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2"], describe(result)


def test_exec_as_root_of_the_container(box):
    result = box.nucleus("exec", "-u", "0", "box", "--", "sh", "-c", f"id -u; {CONFINED}")
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines() == ["0", "CapEff: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2"]


def test_exec_i_passes_stdin_and_attach_still_does(box):
    without = box.nucleus("exec", "box", "--", "cat", input="hello\n", stdin=None)
    assert (without.returncode, without.stdout) == (0, ""), describe(without)
    with_i = box.nucleus("exec", "-i", "box", "--", "cat", input="hello\n", stdin=None)
    assert (with_i.returncode, with_i.stdout) == (0, "hello\n"), describe(with_i)
    attached = box.nucleus("attach", "box", "--", "cat", input="hello\n", stdin=None)
    assert (attached.returncode, attached.stdout) == (0, "hello\n"), describe(attached)


def test_exec_t_gives_a_terminal_of_the_containers_devpts(box):
    result = box.nucleus("exec", "-t", "box", "--", "sh", "-c", "tty; id -u")
    assert result.returncode == 0, describe(result)
    assert result.stdout == "/dev/pts/0\n1000\n", describe(result)


def test_exec_t_i_on_a_callers_terminal(box):
    c = Caller(["exec", "-t", "-i", "box", "--", "sh", "-c", "stty size; read l; echo got:$l"],
               rows=25, cols=90, extra_env=box.env)
    try:
        c.expect(b"25 90\r\n")
        assert c.raw()
        c.send(b"abc\r")
        c.expect(b"got:abc\r\n")
        assert c.finish() == 0, c.output
        assert c.after == c.before
    finally:
        c.kill()


@pytest.mark.parametrize("args,status,stderr", [
    (["box", "--", "sh", "-c", "exit 7"], 7, ""),
    (["box", "--", "nucleus-no-such-command"], 127,
     "nucleus: cannot run 'nucleus-no-such-command': No such file or directory\n"),
    (["-w", "/nowhere", "box", "--", "true"], 126,
     "nucleus: cannot enter working directory '/nowhere': No such file or directory\n"),
    (["-u", "carol", "box", "--", "true"], 125,
     "error: --user 'carol': no user 'carol' in the container's /etc/passwd and /etc/group\n"
     "hint: name a user of the container's /etc/passwd, or give a number\n"),
    (["-w", "tmp", "box", "--", "true"], 125,
     "error: --workdir 'tmp': must be an absolute path inside the container\nhint: for example -w /tmp\n"),
    (["-e", "LD_PRELOAD=x", "box", "--", "true"], 125,
     "error: --env 'LD_PRELOAD=x': LD_PRELOAD is refused: it changes how the dynamic loader loads code\n"
     "hint: bake libraries into the context or rootfs instead\n"),
    (["nothere", "--", "true"], 125, None),
    (["box", "--"], 125, "error: no command given\nhint: put the command after --, e.g. nucleus exec web -- sh\n"),
], ids=["status", "not-found", "no-workdir", "no-user", "relative-workdir", "refused-env", "no-container",
        "no-command"])
def test_exit_statuses(box, args, status, stderr):
    result = box.nucleus("exec", *args)
    assert result.returncode == status, describe(result)
    if stderr is not None:
        assert result.stderr == stderr, describe(result)


SECRET = "hunter2-secret"


@pytest.mark.parametrize("text,message", [
    (f"OK=1\nLD_AUDIT={SECRET}\n", "line 2: LD_AUDIT is refused: it changes how the dynamic loader loads code"),
    (f"OK=1\n\nnot a variable {SECRET}\n", "line 3: not KEY=VALUE or KEY: no valid variable name"),
])
def test_env_file_errors_name_the_file_and_line_never_the_value(box, tmp_path, text, message):
    env_file = tmp_path / "bad.env"
    env_file.write_text(text)
    for command in (["exec", "--env-file", str(env_file), "box", "--", "true"],
                    [*box.run_args("--env-file", str(env_file)), "--", "true"]):
        result = box.nucleus(*command)
        assert result.returncode == 125, describe(result)
        assert result.stderr.startswith(f"error: --env-file {str(env_file)!r}, {message}"), describe(result)
        assert SECRET not in result.stderr


def test_env_file_must_be_a_small_regular_file(box, tmp_path):
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    result = box.nucleus(*box.run_args("--env-file", str(fifo)), "--", "true")
    assert result.returncode == 125, describe(result)
    assert result.stderr == (f"error: --env-file {str(fifo)!r}: not a regular file (a pipe, device or "
                             "directory is refused)\n")
    big = tmp_path / "big.env"
    big.write_text("A=" + "x" * (1 << 20) + "\n")
    result = box.nucleus(*box.run_args("--env-file", str(big)), "--", "true")
    assert (result.returncode, result.stderr) == (125, f"error: --env-file {str(big)!r}: larger than 1024 KiB\n")
    missing = box.nucleus(*box.run_args("--env-file", str(tmp_path / "none.env")), "--", "true")
    assert missing.stderr == f"error: --env-file {str(tmp_path / 'none.env')!r}: No such file or directory\n"


def test_run_env_file_then_e(box, tmp_path):
    env_file = tmp_path / "run.env"
    env_file.write_text("A=file\nB=file\n")
    result = box.nucleus(*box.run_args("--env-file", str(env_file), "-e", "B=flag"), "--", "sh", "-c", "echo $A $B")
    assert (result.returncode, result.stdout) == (0, "file flag\n"), describe(result)
