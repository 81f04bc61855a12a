"""`nucleus oci`'s state root (nucleus.effects.ocistate) as an attacker would meet it: ids that
leave the root, a root or state files that are not the runtime's own, links where a file is
expected, forged pids, and the --pid-file's temporary file. Each is refused (or not followed)
and leaves the host as it was."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest

from nucleus.cli import oci as cli
from nucleus.effects import ocistate
from nucleus.effects.process import process_start
from nucleus.errors import InvalidInput, RuntimeFailure

TRAVERSAL = "../outside/trav"


def run(capsys, *args: str) -> tuple[int, str]:
    """The exit status and stderr (stdout is left to read)."""
    code = cli.run_cli(list(args))
    return code, capsys.readouterr().err


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def forge(directory, pid: int, status: str = "created") -> None:
    """A state directory as `create` leaves it, naming `pid` as both supervisor and init."""
    directory.mkdir(mode=0o700, parents=True)
    start = process_start(pid)
    (directory / ocistate.STATE).write_text(json.dumps(
        {"ociVersion": "1.0.2", "id": directory.name, "status": status, "bundle": "/b",
         "pid": pid, "pid_start": start, "init": pid, "init_start": start}))


@pytest.mark.parametrize("verb", [["start"], ["state"], ["kill"], ["kill", "--all"], ["delete"],
                                  ["delete", "--force"], ["ps"], ["exec", "--process", "/dev/null"]])
def test_every_verb_refuses_an_id_that_leaves_the_root(capsys, tmp_path, sleeper, verb):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    outside = tmp_path / "outside" / "trav"
    forge(outside, sleeper.pid)
    code, err = run(capsys, "--root", str(root), verb[0], *verb[1:], TRAVERSAL)
    assert code == 125
    assert err.startswith(f"error: container id {TRAVERSAL!r}: must be 1 to 64 letters")
    assert outside.is_dir() and sleeper.poll() is None


def test_the_state_directory_itself_refuses_such_an_id(tmp_path):
    with pytest.raises(InvalidInput, match=r"container id '\.\./x'"):
        ocistate.Container(str(tmp_path), "../x")


@pytest.mark.parametrize(("prepare", "why"), [
    (lambda root: os.chown(root, 65534, 65534), "owned by uid 65534, not by uid 0 that runs nucleus-oci"),
    (lambda root: os.chmod(root, 0o777), "writable by its group or by others (mode 0777)"),
])
def test_a_root_that_is_not_the_callers_own_is_refused(capsys, tmp_path, sleeper, prepare, why):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the state root away")
    root = tmp_path / "root"
    forge(root / "x", sleeper.pid)
    prepare(root)
    code, err = run(capsys, "--root", str(root), "kill", "x", "KILL")
    assert code == 125 and err.startswith(f"error: --root {str(root)!r}: {why}\nhint: the state root")
    assert sleeper.poll() is None


def test_a_root_or_a_container_directory_that_is_a_link_is_refused(capsys, tmp_path, sleeper):
    real = tmp_path / "real"
    forge(real / "x", sleeper.pid)
    (tmp_path / "root").symlink_to(real)
    code, err = run(capsys, "--root", str(tmp_path / "root"), "kill", "x", "KILL")
    assert code == 125 and "is a symlink or not a directory" in err
    (tmp_path / "other").mkdir(mode=0o700)
    (tmp_path / "other" / "x").symlink_to(real / "x")
    code, err = run(capsys, "--root", str(tmp_path / "other"), "kill", "x", "KILL")
    assert code == 125 and err.startswith("error: container 'x': ") and "is a symlink or not a directory" in err
    assert sleeper.poll() is None


def test_create_makes_the_root_and_the_container_directory_the_runtimes_alone(tmp_path):
    c = ocistate.Container(str(tmp_path / "run" / "root"), "c1")
    c.make()
    assert os.stat(tmp_path / "run" / "root").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "run" / "root" / "c1").st_mode & 0o777 == 0o700
    with pytest.raises(RuntimeFailure, match="container id 'c1' is in use"):
        ocistate.Container(str(tmp_path / "run" / "root"), "c1").make()


def test_a_state_file_that_is_a_link_is_not_followed(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"status": "running"}')
    c = ocistate.Container(str(tmp_path / "root"), "x")
    c.make()
    (tmp_path / "root" / "x" / ocistate.STATE).symlink_to(secret)
    with pytest.raises(RuntimeFailure, match="container 'x': cannot read state.json"):
        c.read()
    (tmp_path / "root" / "x" / f".{ocistate.STATE}.{os.getpid()}").symlink_to(secret)
    c.write({"status": "created"})
    assert secret.read_text() == '{"status": "running"}'
    assert json.loads((tmp_path / "root" / "x" / ocistate.STATE).read_text()) == {"status": "created"}


@pytest.mark.parametrize("kind", ["link", "file"])
def test_start_writes_only_to_a_fifo(capsys, tmp_path, kind):
    victim = tmp_path / "victim"
    victim.write_text("#!/bin/sh\n")
    root = tmp_path / "root"
    forge(root / "x", os.getpid())
    fifo = root / "x" / ocistate.FIFO
    if kind == "link":
        fifo.symlink_to(victim)
    else:
        fifo.write_text("")
    code, err = run(capsys, "--root", str(root), "start", "x")
    assert code == 125 and err.startswith("error: container 'x': ")
    assert ("cannot open exec.fifo" if kind == "link" else "exec.fifo in ") in err
    assert victim.read_text() == "#!/bin/sh\n" and fifo.read_text() == ("#!/bin/sh\n" if kind == "link" else "")


def test_the_word_reaches_the_waiting_side_and_none_is_sent_without_one(tmp_path):
    c = ocistate.Container(str(tmp_path / "root"), "x")
    c.make()
    assert c.send_word(ocistate.START) is False  # no one waits yet
    words: list[bytes] = []
    waiting = threading.Thread(target=lambda: words.append(ocistate.Container(str(tmp_path / "root"), "x")
                                                           .wait_for_word()))
    waiting.start()
    while not c.send_word(ocistate.START):
        waiting.join(0.01)
    waiting.join()
    assert words == [ocistate.START]


def test_kill_signals_no_pid_a_forged_state_names(capsys, tmp_path, sleeper):
    root = tmp_path / "root"
    forge(root / "x", sleeper.pid, status="running")
    code = cli.run_cli(["--root", str(root), "kill", "--all", "x", "KILL"])
    assert code == 0
    assert sleeper.poll() is None  # not in a container's cgroup that nucleus's records name
    capsys.readouterr()
    code = cli.run_cli(["--root", str(root), "ps", "--format", "json", "x"])
    assert code == 0 and json.loads(capsys.readouterr().out) == []


def test_a_pid_reused_is_never_signalled(sleeper):
    ocistate.signal({sleeper.pid: (process_start(sleeper.pid) or 0) + 1}, 9)
    assert sleeper.poll() is None
    ocistate.signal({sleeper.pid: process_start(sleeper.pid)}, 9)
    assert sleeper.wait() == -9


def test_the_pid_files_temporary_file_is_new_and_never_a_link_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("kept")
    (tmp_path / f"pid.{os.getpid()}.tmp").symlink_to(victim)
    (tmp_path / "pid").symlink_to(victim)
    ocistate.write_pid_file(str(tmp_path / "pid"), 4242)
    assert victim.read_text() == "kept"
    assert not (tmp_path / "pid").is_symlink() and (tmp_path / "pid").read_text() == "4242"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pid", f"pid.{os.getpid()}.tmp", "victim"]
