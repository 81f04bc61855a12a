"""What the process whose exec failed finds by looking (nucleus.effects.setup.refused_exec): the
file it named or found on PATH, its #! interpreter, the places it could run from, the Landlock
rules applied; and the report PID 1 answers with (its last line). Real files in a temporary
directory, no privilege; the noexec mounts are the kernel tests' (tests/kernel)."""

from __future__ import annotations

import errno
import os
import signal

from nucleus import vocab as v
from nucleus.effects import process, setup
from tests.fakes.serving import serve_batch

ENV = (("PATH", "/usr/bin:/bin"),)


def denied(path: str) -> OSError:
    return OSError(errno.EACCES, "Permission denied", path)


def command(argv0: str, cwd: str = "/", places: tuple[str, ...] = (), path: str = "/usr/bin:/bin") -> v.ExecCommand:
    return v.ExecCommand((argv0,), (("PATH", path),), cwd, places=places)


def test_a_script_without_its_interpreter_names_it_through_the_serving_loop(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/nonexistent/interpreter -x\necho hi\n")
    script.chmod(0o755)
    with process.blocked():
        events, status = serve_batch((v.ExecWorkload((str(script),), ENV, "/", (1024, 512, 65536)),))
    reason = f"cannot run {str(script)!r}: its interpreter /nonexistent/interpreter is not in the container"
    assert (events, status) == ([v.Exit(127, reason)], 127)


def test_a_command_found_on_path_is_the_one_looked_at(tmp_path):
    (tmp_path / "tool").write_text("#!/nonexistent/sh\n")
    (tmp_path / "tool").chmod(0o755)
    e = OSError(errno.ENOENT, "No such file or directory", "/bin/tool")  # execvpe names the last tried
    got = setup.refused_exec(command("tool", path=f"/nonexistent:{tmp_path}"), e, None)
    assert got == "cannot run 'tool': its interpreter /nonexistent/sh is not in the container"


def test_a_file_without_an_execute_bit_says_so(tmp_path, monkeypatch):
    target = tmp_path / "a.out"
    target.write_bytes(b"\x7fELF")
    target.chmod(0o640)
    monkeypatch.chdir(tmp_path)  # where exec_command has gone before the exec
    got = setup.refused_exec(command("./a.out", cwd=str(tmp_path)), denied("./a.out"), None)
    owner = os.stat(target).st_uid
    assert got == (f"cannot run './a.out': {target} is not executable (mode 0640, owner {owner}); make "
                   "it executable (chmod +x) or run it through its interpreter")


def test_landlocks_rules_are_held_against_the_resolved_path(tmp_path):
    place, other = tmp_path / "place", tmp_path / "other"
    place.mkdir()
    other.mkdir()
    (place / "tool").write_bytes(b"\x7fELF")
    (place / "tool").chmod(0o755)
    os.symlink(place / "tool", other / "link")
    rules = (("/usr", ("execute", "read")), (str(place), ("create", "read", "write")),
             (str(other), ("create", "execute", "read", "write")))
    got = setup.refused_exec(command(str(other / "link"), places=(str(place), str(other))),
                             denied(str(other / "link")), rules)
    assert got == (f"blocked: {place}/tool cannot be executed: Landlock's rules allow no execute in "
                   f"{place}; run it from {other}, or pass --allow-exec {place}")


def test_other_errors_are_not_looked_into(tmp_path):
    e = OSError(errno.ENOEXEC, "Exec format error", str(tmp_path))
    assert setup.refused_exec(command(str(tmp_path)), e, None) == f"cannot run {str(tmp_path)!r}: Exec format error"


def test_a_workload_that_dies_looking_still_gets_its_reason_told(monkeypatch, capfd):
    # As when a seccomp profile kills a call the look makes (statfs, say): PID 1 holds the
    # reason written before looking, answers with it and prints it itself.
    def killed(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(setup, "refused_exec", killed)
    with process.blocked():
        events, status = serve_batch((v.ExecWorkload(("/nonexistent/x",), ENV, "/", (1024, 512, 65536)),))
    reason = "cannot run '/nonexistent/x': No such file or directory"
    assert (events, status) == ([v.Exit(127, reason)], 127)
    assert capfd.readouterr().err == f"nucleus: {reason}\n"
