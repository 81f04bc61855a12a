"""containerd drives nucleus as its OCI runtime, for real: a containerd of the test's own (its
own root, state and socket under a temporary directory; no CRI plugin) imports an image from an
OCI tarball the test builds from the host's binaries (no registry), and `ctr run --runtime
io.containerd.runc.v2 --runc-binary <nucleus-oci>` runs it. exec, kill, ps, delete and the
container's log go through ctr; nucleus's hardening holds inside; nothing is left afterwards
(containerd, its shims, mounts, snapshots, the runtime's state)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers import SANDBOX, Scope, describe, wait_for

pytestmark = [SANDBOX, pytest.mark.requires("bin:containerd", "bin:ctr", "bin:containerd-shim-runc-v2")]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "docker.io/library/nucleus-box:latest"
NAMESPACE = "nucleus-test"
BINARIES = {"sh": "/bin/dash", "sleep": "/bin/sleep", "cat": "/bin/cat", "echo": "/bin/echo", "ls": "/bin/ls"}
CTR_TIMEOUT = 60
GREET = "#!/bin/sh\necho greetings from the image\n"  # a program of the image's own, outside bin


def _blob(blobs: dict[str, bytes], data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    blobs[f"blobs/sha256/{digest}"] = data
    return f"sha256:{digest}"


def _directory(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _layer() -> bytes:
    """A busybox-like root: a shell and a few tools of the host's, with what they load."""
    files = {f"bin/{name}": source for name, source in BINARIES.items()}
    for source in BINARIES.values():
        ldd = subprocess.run(["ldd", source], capture_output=True, text=True, check=True).stdout
        files.update({lib.lstrip("/"): lib for lib in ldd.split() if lib.startswith("/")})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        made: set[str] = set()
        for path in sorted(files):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                if (d := "/".join(parts[:i])) not in made:
                    made.add(d)
                    _directory(tar, d)
            real = os.path.realpath(files[path])
            info = tar.gettarinfo(real, arcname=path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(real, "rb") as f:
                tar.addfile(info, f)
        for d in ("proc", "dev", "sys", "etc", "run", "opt"):
            _directory(tar, d)
        _directory(tar, "tmp", 0o1777)
        greet = GREET.encode()
        info = tarfile.TarInfo("opt/greet")
        info.size, info.mode = len(greet), 0o755
        tar.addfile(info, io.BytesIO(greet))
    return out.getvalue()


def build_image(path: Path) -> None:
    """An OCI image layout (runtime-spec's image-spec) as one tar, named for containerd."""
    blobs: dict[str, bytes] = {}
    layer = _layer()
    layer_digest = _blob(blobs, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _blob(blobs, config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                    "size": len(layer)}]}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _blob(blobs, manifest),
        "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "latest"}}]}
    blobs["index.json"] = json.dumps(index).encode()
    blobs["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    with tarfile.open(path, "w") as tar:
        for name, data in blobs.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def _mounts_under(directory: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == str(directory) or p.startswith(f"{directory}/")]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
    return found


class Containerd:
    """A containerd of the test's own and a ctr that talks to it."""

    def __init__(self, top: Path, scope: Scope) -> None:
        self.top = top
        self.runc_root = top / "runc"
        self.address = top / "containerd.sock"
        self.wrapper = top / "nucleus-oci"
        self.log = top / "containerd.log"
        # The runtime as containerd's shim execs it: the checkout's nucleus, its own state dir.
        self.wrapper.write_text(
            "#!/bin/sh\n"
            f"export PYTHONPATH={shlex.quote(str(REPO))} NUCLEUS_STATE_DIR={shlex.quote(scope.state_dir)}\n"
            f"exec {shlex.quote(sys.executable)} -c 'from nucleus.cli.oci import main; main()' \"$@\"\n")
        self.wrapper.chmod(0o755)
        config = top / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{top}/root"\nstate = "{top}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.address}"\n'
            f'[ttrpc]\n  address = "{self.address}.ttrpc"\n'
            '[metrics]\n  address = ""\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{top}/opt"\n')
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(["containerd", "--config", str(config)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log, start_new_session=True)
        wait_for(lambda: self.ctr("version", check=False).returncode == 0, timeout=20)

    def argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.address), "--namespace", NAMESPACE, *args]

    def ctr(self, *args: str, check: bool = True, timeout: float = CTR_TIMEOUT) -> subprocess.CompletedProcess:
        result = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        assert not check or result.returncode == 0, describe(result)
        return result

    def run_argv(self, name: str, *command: str, options: tuple[str, ...] = ()) -> list[str]:
        return self.argv("run", "--runtime", "io.containerd.runc.v2", "--runc-binary", str(self.wrapper),
                         "--runc-root", str(self.runc_root), *options, IMAGE, name, *command)

    def run(self, name: str, *command: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        return subprocess.run(self.run_argv(name, *command, options=options), capture_output=True, text=True,
                              timeout=CTR_TIMEOUT, stdin=subprocess.DEVNULL)

    def close(self) -> None:
        """Every task and container gone, then containerd itself, its mounts and its shims."""
        for line in self.ctr("containers", "list", "--quiet", check=False).stdout.split():
            self.ctr("task", "kill", "--signal", "KILL", line, check=False)
            self.ctr("task", "delete", "--force", line, check=False)
            self.ctr("containers", "delete", line, check=False)
        self.ctr("images", "remove", IMAGE, check=False)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for point in reversed(_mounts_under(self.top)):
            subprocess.run(["umount", "-l", point], check=False)


RUN_DIR = Path("/run/containerd")  # ctr's fifos and the shims' sockets: fixed paths in containerd 1.6


def _remove_empty(directory: Path) -> None:
    """`directory` and the empty folders under it (what ctr and the shims leave)."""
    for root, _dirs, _files in sorted(os.walk(directory), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            os.rmdir(root)


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    top = tmp_path_factory.mktemp("containerd")
    had_run_dir = RUN_DIR.exists()
    build_image(top / "box.tar")
    with Scope() as scope:
        daemon = Containerd(top, scope)
        try:
            daemon.ctr("images", "import", str(top / "box.tar"))
            yield daemon
        finally:
            daemon.close()
        if not had_run_dir:
            _remove_empty(RUN_DIR)
        assert _mounts_under(top) == []
        assert wait_for(lambda: not _processes_mentioning(str(top)), timeout=10), _processes_mentioning(str(top))


def test_containerd_runs_a_container_through_nucleus_with_its_hardening(containerd):
    result = containerd.run("c-run", "sh", "-c", "echo hello from containerd; cat /proc/self/status; exit 3",
                            options=("--rm",))
    assert result.returncode == 3, describe(result)  # the workload's own status, through the shim
    assert result.stdout.startswith("hello from containerd\n"), describe(result)
    status = dict(line.split(":\t", 1) for line in result.stdout.splitlines()[1:] if ":\t" in line)
    assert status["CapEff"].strip() == "0000000000000000"  # nucleus keeps no capabilities
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # nucleus's own filter
    assert containerd.ctr("containers", "list", "--quiet").stdout.split() == []
    assert not (containerd.runc_root / NAMESPACE / "c-run").exists()  # the runtime's state released


def test_the_images_own_programs_outside_the_system_directories_run(containerd):
    result = containerd.run("c-app", "/opt/greet", options=("--rm",))
    assert (result.returncode, result.stdout) == (0, "greetings from the image\n"), describe(result)


def test_exec_ps_kill_logs_and_delete_through_ctr(containerd):
    log = containerd.top / "c-task.log"
    script = 'echo started; trap "echo got TERM; exit 4" TERM; while :; do sleep 0.1; done'
    started = containerd.run("c-task", "sh", "-c", script, options=("-d", "--log-uri", f"file://{log}"))
    assert started.returncode == 0, describe(started)
    assert wait_for(lambda: "started" in (log.read_text() if log.exists() else ""), timeout=20)
    tasks = containerd.ctr("task", "ls").stdout
    assert "c-task" in tasks and "RUNNING" in tasks, tasks

    joined = containerd.ctr("task", "exec", "--exec-id", "e1", "c-task", "sh", "-c", "echo in exec; exit 7",
                            check=False)
    assert (joined.returncode, joined.stdout) == (7, "in exec\n"), describe(joined)
    pids = containerd.ctr("task", "ps", "c-task").stdout.split()[2::2]
    assert pids and all(p.isdigit() for p in pids), pids

    state = json.loads(subprocess.run([str(containerd.wrapper), "--root", str(containerd.runc_root / NAMESPACE),
                                       "state", "c-task"], capture_output=True, text=True, check=True).stdout)
    assert state["status"] == "running" and state["id"] == "c-task" and state["pid"] > 0, state

    containerd.ctr("task", "kill", "--signal", "TERM", "c-task")
    assert wait_for(lambda: "STOPPED" in containerd.ctr("task", "ls").stdout, timeout=20)
    assert "got TERM" in log.read_text()
    containerd.ctr("task", "delete", "c-task")
    containerd.ctr("containers", "delete", "c-task")
    assert containerd.ctr("containers", "list", "--quiet").stdout.split() == []
    assert not (containerd.runc_root / NAMESPACE / "c-task").exists()


def test_a_bundle_nucleus_refuses_fails_the_task_and_says_why(containerd):
    result = containerd.run("c-privileged", "sh", "-c", "echo never", options=("--rm", "--privileged"))
    assert result.returncode != 0 and "never" not in result.stdout, describe(result)
    assert "config.json: " in result.stderr, describe(result)  # the runtime's own sentence, via its log
    assert containerd.ctr("containers", "list", "--quiet", check=False).stdout.split() in ([], ["c-privileged"])
    containerd.ctr("containers", "delete", "c-privileged", check=False)


def in_terminal(argv: list[str]) -> str:
    """What `argv` (a ctr command with -t) prints on a terminal of its own, once it has ended
    with status 0."""
    master, slave = os.openpty()
    ctr = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        while chunk := _read(master):
            out += chunk
        assert ctr.wait(timeout=CTR_TIMEOUT) == 0, out
    finally:
        os.close(master)
        if ctr.poll() is None:
            ctr.kill()
            ctr.wait()
    return out.decode(errors="replace")


def test_a_terminal_reaches_ctr_through_the_console_socket(containerd):
    text = in_terminal(containerd.run_argv("c-tty", "sh", "-c", "ls -l /proc/self/fd/0; echo tty-ok",
                                           options=("--rm", "-t")))
    # A terminal inside (ctr's own copy adds a carriage return, with runc as with nucleus).
    assert "tty-ok\r" in text and "-> /dev/pts/" in text, text


def test_exec_with_a_terminal(containerd):
    started = containerd.run("c-exec-tty", "sh", "-c", "while :; do sleep 0.1; done", options=("-d",))
    assert started.returncode == 0, describe(started)
    try:
        text = in_terminal(containerd.argv("task", "exec", "-t", "--exec-id", "t1", "c-exec-tty", "sh", "-c",
                                           "ls -l /proc/self/fd/1; echo exec-tty-ok"))
        assert "exec-tty-ok\r" in text and "-> /dev/pts/" in text, text
    finally:
        containerd.ctr("task", "kill", "--signal", "KILL", "c-exec-tty", check=False)
        wait_for(lambda: "STOPPED" in containerd.ctr("task", "ls").stdout, timeout=20)
        containerd.ctr("task", "delete", "c-exec-tty", check=False)
        containerd.ctr("containers", "delete", "c-exec-tty", check=False)


def _read(fd: int) -> bytes:
    """What the terminal's master gives (nothing once ctr, its last holder, has closed it)."""
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: no one holds the slave any more
        return b""
