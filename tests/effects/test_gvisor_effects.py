"""The gVisor executor against a fake runsc and a scratch directory: the bundle is written as
its intent says (and nothing of it is left when a step fails), runsc run is started once its
pid file exists and failed with its first error when it exits before, and a cleanup step that
fails reports nothing, so the machine keeps what is left; a copied context is the filtered copy,
reached only by the container's root; the network namespace's holder is ended only while it is
the process its file names."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from nucleus import vocab as v
from nucleus.config.context import exclusion_list
from nucleus.effects import gvisor as effects
from nucleus.effects import gvisor_net
from nucleus.vocab import gvisor as gv


def write(tmp_path, **fields) -> gv.WriteBundle:
    base = str(tmp_path / "gv" / "c1")
    defaults = {"directory": base, "config": '{"ociVersion": "1.0.2"}', "root": f"{base}/rootfs",
                "dirs": ("proc", "usr", "etc"), "links": (("bin", "usr/bin"),),
                "files": (("etc/hostname", "box\n"),), "owner": (os.getuid(), os.getgid())}
    return gv.WriteBundle(**{**defaults, **fields})


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_the_bundle_is_written_as_its_intent_says(tmp_path):
    intent = write(tmp_path)
    assert effects.write_bundle(intent) == gv.Written()
    assert stat.S_IMODE(os.stat(intent.directory).st_mode) == 0o711
    config = os.path.join(intent.directory, "config.json")
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600 and json.loads(read(config)) == {"ociVersion": "1.0.2"}
    assert sorted(os.listdir(intent.root)) == ["bin", "etc", "proc", "usr"]
    assert os.readlink(f"{intent.root}/bin") == "usr/bin"
    assert read(f"{intent.root}/etc/hostname") == "box\n"


@pytest.mark.parametrize("fields", [{"files": (("../escape", "x"),)}, {"links": (("etc/../../up", "/"),)},
                                    {"dirs": ("/../../outside",)}])
def test_a_path_outside_the_root_fails_the_step_and_leaves_nothing(tmp_path, fields):
    intent = write(tmp_path, **fields)
    event = effects.write_bundle(intent)
    assert isinstance(event, gv.Fail) and event.step == "bundle" and "outside the bundle's root" in event.message
    assert not os.path.exists(intent.directory) and os.listdir(tmp_path / "gv") == []


def test_a_directory_in_use_fails_the_step_and_is_left_alone(tmp_path):
    intent = write(tmp_path)
    os.makedirs(intent.directory)
    open(os.path.join(intent.directory, "theirs"), "w").close()
    event = effects.write_bundle(intent)
    assert isinstance(event, gv.Fail) and event.step == "bundle" and "File exists" in event.message
    assert os.listdir(intent.directory) == ["theirs"]


def fake_runsc(tmp_path, script: str) -> str:
    path = tmp_path / "runsc"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_run_is_started_once_the_pid_file_exists_and_its_status_is_the_workload_s(tmp_path):
    pid_file = str(tmp_path / "pid")
    runsc = fake_runsc(tmp_path, f'echo $$ > {pid_file}; exit 7\n')
    executor = effects.GvisorExecutor()
    [event] = executor.perform((gv.RunSandbox(argv=(runsc, "run"), pid_file=pid_file, log=""),))
    assert isinstance(event, gv.Started) and event.pid == executor.runsc_pid
    _, status = os.waitpid(event.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7


def test_run_that_exits_before_its_pid_file_fails_with_its_first_error(tmp_path):
    log = tmp_path / "runsc.log"
    log.write_text('{"msg":"Error setting up root FS: denied","level":"error","time":"t"}'
                   '{"msg":"running container: EOF","level":"error","time":"t"}\n')
    runsc = fake_runsc(tmp_path, "exit 128\n")
    executor = effects.GvisorExecutor()
    [event] = executor.perform((gv.RunSandbox(argv=(runsc, "run"), pid_file=str(tmp_path / "pid"), log=str(log)),
                                gv.SignalSandbox(argv=(runsc,))))
    assert event == gv.Fail(step="run", message="runsc run exited with status 128: Error setting up root FS: denied")
    assert executor.runsc_pid is None


def test_delete_of_a_sandbox_runsc_does_not_know_is_done_and_a_failed_one_reports_nothing(tmp_path):
    warnings: list[str] = []
    executor = effects.GvisorExecutor(warn=warnings.append)
    gone = fake_runsc(tmp_path, 'echo "container does not exist" >&2; exit 1\n')
    assert executor.perform((gv.DeleteSandbox(argv=(gone,), kill=(gone,)),)) == [gv.Deleted()]
    stuck = tmp_path / "stuck"
    stuck.write_text("#!/bin/sh\necho 'destroying container: busy' >&2; exit 1\n")
    stuck.chmod(0o755)
    directory = tmp_path / "bundle"
    directory.mkdir()
    assert executor.perform((gv.DeleteSandbox(argv=(str(stuck),)), gv.RemoveBundle(str(directory)))) == []
    assert warnings == ["runsc delete: destroying container: busy"] and directory.exists()
    assert executor.perform((gv.RemoveBundle(str(directory)),)) == [gv.Unbundled()] and not directory.exists()


def test_the_context_s_copy_is_filtered_and_only_the_container_s_root_reaches_it(tmp_path):
    source = tmp_path / "project"
    (source / "src").mkdir(parents=True)
    (source / "src" / "main.py").write_text("print('hi')\n")
    (source / ".env").write_text("TOKEN=x\n")
    opened = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    base = str(tmp_path / "gv" / "c1")
    owner = (os.getuid(), os.getgid())
    copy = v.CopyTree(str(source), f"{base}/private/context", exclusion_list(), owner, opened=opened)
    assert effects.write_bundle(write(tmp_path, context=copy)) == gv.Written()
    assert sorted(os.listdir(copy.target)) == ["src"] and read(f"{copy.target}/src/main.py") == "print('hi')\n"
    assert stat.S_IMODE(os.stat(f"{base}/private").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(copy.target).st_mode) == 0o755
    with pytest.raises(OSError):
        os.fstat(opened)  # the descriptor the context was read from is closed


def test_ending_the_namespace_s_holder_signals_only_that_process(tmp_path):
    """A holder's file that names a pid with another start time (a later process that took it)
    signals nothing; the symlink and the file go."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        link, holder = str(tmp_path / "netns"), str(tmp_path / "netns.holder")
        os.symlink(f"/proc/{sleeper.pid}/ns/net", link)
        with open(holder, "w") as f:
            f.write(f"{sleeper.pid} 1\n")
        assert gvisor_net.end_netns(gv.EndNetns(link=link, holder=holder)) == gv.Unshared()
        assert sleeper.poll() is None and os.listdir(tmp_path) == []
        assert gvisor_net.end_netns(gv.EndNetns(link=link, holder=holder)) == gv.Unshared()  # nothing left: fine
    finally:
        sleeper.kill()
        sleeper.wait()
