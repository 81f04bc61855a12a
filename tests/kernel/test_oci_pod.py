"""A pod as containerd's CRI plugin makes one, through `nucleus oci`: a sandbox ("pause")
container, then a second whose config.json names the sandbox's network, ipc and uts namespaces by
/proc/<pid>/ns path. The second is in those very namespaces (the same inodes, a loopback server of
the sandbox's network reached from it, the sandbox's hostname), deleting it leaves the sandbox
working, and a path that is not a namespace of the named type, or is the host's own, is refused at
create naming the field, with nothing left behind. The same join through containerd: `ctr run
--with-ns network:<path>`, and `ctr task exec` into the container that joined."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import SANDBOX, describe, wait_for
from tests.kernel.test_oci_containerd import NAMESPACE, containerd  # noqa: F401 (a fixture)
from tests.kernel.test_oci_fields import refused
from tests.kernel.test_oci_runtime import bundles, make_bundle, runtime  # noqa: F401 (fixtures)

pytestmark = SANDBOX

SHARED = {"network": "net", "ipc": "ipc", "uts": "uts"}  # the OCI type: its /proc/<pid>/ns name
BASH = "/bin/bash"  # its /dev/tcp is the client: the bundle's root has no other


def with_bash(bundle: Path) -> Path:
    """`bundle` with bash and its libraries in its root, as /bin/bash."""
    rootfs = bundle / "rootfs"
    ldd = subprocess.run(["ldd", BASH], capture_output=True, text=True, check=True).stdout
    for source in (BASH, *(w for w in ldd.split() if w.startswith("/"))):
        target = rootfs / ("bin/bash" if source == BASH else source.lstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o755)
    return bundle


def joining(bundle: Path, paths: dict[str, str], **fields: object) -> Path:
    """`bundle`'s config.json naming `paths` ({OCI type: path}) for those namespaces."""
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["namespaces"] = [{"type": t, **({"path": paths[t]} if t in paths else {})}
                                     for t in ("pid", "network", "ipc", "uts", "mount")]
    config.update(fields)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


@pytest.fixture
def sandbox(runtime, bundles, tmp_path):  # noqa: F811
    """The pod's sandbox, running: its init's pid."""
    runtime.create(make_bundle(bundles / "pause", ["sleep", "600"]), "pause", tmp_path / "pause.out")
    runtime("start", "pause")
    return runtime.state("pause")["pid"]


@contextlib.contextmanager
def listening(pid: int) -> Iterator[tuple[subprocess.Popen, int]]:
    """A server on 127.0.0.1 in the network namespace of `pid`, that writes one line to whoever
    connects; and its port."""
    with subprocess.Popen(
            ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c",
             "import socket\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
             "print(s.getsockname()[1], flush=True)\nc, _ = s.accept(); c.sendall(b'from the sandbox\\n'); c.close()"],
            stdout=subprocess.PIPE, text=True) as server:
        assert server.stdout is not None
        try:
            yield server, int(server.stdout.readline())
        finally:
            server.kill()


def test_a_container_joins_its_pods_network_ipc_and_uts_namespaces(runtime, bundles, sandbox, tmp_path):  # noqa: F811
    with listening(sandbox) as (server, port):
        script = f"cat /proc/sys/kernel/hostname; exec 3<>/dev/tcp/127.0.0.1/{port} && cat <&3; sleep 600"
        bundle = joining(with_bash(make_bundle(bundles / "app", ["bash", "-c", script])),
                         {t: f"/proc/{sandbox}/ns/{name}" for t, name in SHARED.items()}, hostname="app")
        out = tmp_path / "app.out"
        created = runtime.create(bundle, "app", out, check=False)
        assert created.returncode == 0, out.read_text()
        runtime("start", "app")
        assert wait_for(lambda: "from the sandbox" in out.read_text(), timeout=30), out.read_text()
        assert server.wait(timeout=30) == 0
    app = runtime.state("app")["pid"]
    for name in ("net", "ipc", "uts"):
        assert os.stat(f"/proc/{app}/ns/{name}").st_ino == os.stat(f"/proc/{sandbox}/ns/{name}").st_ino, name
    for name in ("pid", "mnt", "user"):  # its own, as nucleus makes them
        assert os.stat(f"/proc/{app}/ns/{name}").st_ino != os.stat(f"/proc/{sandbox}/ns/{name}").st_ino, name
    # The sandbox's hostname ("oci", its config's), not the second config's, which is not set.
    lines = [line for line in out.read_text().splitlines() if not line.startswith("nucleus-oci: warning:")]
    assert lines[0] == "oci", out.read_text()
    assert "hostname 'app' is not set" in out.read_text()

    runtime("delete", "--force", "app")
    assert runtime.state("pause")["status"] == "running"
    # The sandbox's namespaces outlive the container that joined them: a new server there is
    # reached from the host through them.
    with listening(sandbox) as (server, port):
        probe = subprocess.run(["nsenter", f"--net=/proc/{sandbox}/ns/net", sys.executable, "-c",
                                f"import socket; print(socket.create_connection(('127.0.0.1', {port})).recv(64))"],
                               capture_output=True, text=True, timeout=30)
        assert "from the sandbox" in probe.stdout, describe(probe)


def test_the_pid_files_namespaces_are_the_sandboxes_as_the_cri_plugin_uses_them(runtime, bundles, tmp_path):  # noqa: F811
    # containerd's CRI plugin names /proc/<the --pid-file's pid>/ns/{ipc,uts} to a pod's other
    # containers: the supervisor's, which joins its container's network, IPC and UTS namespaces.
    pid_file = tmp_path / "pause.pid"
    runtime.create(make_bundle(bundles / "pause", ["sleep", "600"]), "pause", tmp_path / "pause.out",
                   "--pid-file", str(pid_file))
    supervisor, init = int(pid_file.read_text()), runtime.state("pause")["pid"]
    assert supervisor != init
    for name in SHARED.values():
        assert os.stat(f"/proc/{supervisor}/ns/{name}").st_ino == os.stat(f"/proc/{init}/ns/{name}").st_ino, name
        assert os.stat(f"/proc/{supervisor}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino, name
    runtime("start", "pause")
    bundle = joining(make_bundle(bundles / "app", ["cat", "/proc/sys/kernel/hostname"]),
                     {t: f"/proc/{supervisor}/ns/{name}" for t, name in SHARED.items()})
    out = tmp_path / "app.out"
    created = runtime.create(bundle, "app", out, check=False)
    assert created.returncode == 0, out.read_text()
    runtime("start", "app")
    assert wait_for(lambda: runtime.state("app")["status"] == "stopped", timeout=30)
    assert out.read_text().splitlines()[-1] == "oci", out.read_text()
    runtime("delete", "app")
    assert runtime.state("pause")["status"] == "running"


@pytest.mark.parametrize("kind, path, said", [
    ("network", "{bundle}/config.json", "is not a namespace file"),
    ("network", "/proc/{pid}/ns/ipc", "is a CLONE_NEWIPC namespace, not a net namespace"),
    ("ipc", "/nonexistent/ns/ipc", "cannot be opened"),
    ("uts", "/dev/null", "is not a namespace file"),
    ("network", "/proc/self/ns/net", "is the host's own net namespace"),
])
def test_a_path_that_is_not_a_namespace_of_its_type_is_refused(runtime, bundles, sandbox, tmp_path,  # noqa: F811
                                                               kind, path, said):
    bundle = make_bundle(bundles / "bad", ["sh", "-c", "echo ran"])
    given = path.format(bundle=bundle, pid=sandbox)
    index = ("pid", "network", "ipc", "uts", "mount").index(kind)
    message = refused(runtime, joining(bundle, {kind: given}), "bad", tmp_path / "bad.out")
    assert f"config.json: linux.namespaces[{index}].path {given!r}: {said}" in message, message
    assert "ran" not in message
    assert runtime.state("pause")["status"] == "running"


def test_a_mount_namespace_path_is_refused_before_anything_runs(runtime, bundles, tmp_path):  # noqa: F811
    bundle = joining(make_bundle(bundles / "mnt", ["sh", "-c", "echo ran"]), {"mount": "/proc/self/ns/mnt"})
    message = refused(runtime, bundle, "mnt", tmp_path / "mnt.out")
    assert "config.json: linux.namespaces[4].path '/proc/self/ns/mnt': a mount namespace is not joined" in message


def test_the_hosts_uts_namespace_only_when_the_runtime_allows_it(runtime, bundles, tmp_path):  # noqa: F811
    bundle = joining(make_bundle(bundles / "host", ["cat", "/proc/sys/kernel/hostname"]), {"uts": "/proc/self/ns/uts"})
    out = tmp_path / "host.out"
    runtime.flags = ("--allow-degraded-security",)
    runtime.create(bundle, "host", out)
    runtime("start", "host")
    assert wait_for(lambda: runtime.state("host")["status"] == "stopped", timeout=20)
    runtime("delete", "host")
    assert socket.gethostname() in out.read_text().splitlines(), out.read_text()


def test_a_container_joins_its_pods_pid_namespace_for_its_processes(runtime, bundles, sandbox, tmp_path):  # noqa: F811
    script = "echo pid=$$; sleep 600"
    bundle = joining(make_bundle(bundles / "pid", ["sh", "-c", script]), {"pid": f"/proc/{sandbox}/ns/pid"})
    out = tmp_path / "pid.out"
    runtime.create(bundle, "pid", out)
    runtime("start", "pid")
    assert wait_for(lambda: "pid=" in out.read_text(), timeout=30), out.read_text()
    app = runtime.state("pid")["pid"]
    assert os.stat(f"/proc/{app}/ns/pid").st_ino == os.stat(f"/proc/{sandbox}/ns/pid").st_ino
    # the sandbox's init is PID 1 there; the container's processes are its peers
    assert "pid=1\n" not in out.read_text(), out.read_text()
    runtime("delete", "--force", "pid")
    assert runtime.state("pause")["status"] == "running"


@pytest.mark.requires("bin:containerd", "bin:ctr", "bin:containerd-shim-runc-v2")
def test_containerd_runs_a_container_in_another_ones_network_namespace(containerd):  # noqa: F811
    started = containerd.run("c-pause", "sleep", "600", options=("-d",))
    assert started.returncode == 0, describe(started)
    try:
        # The runtime's state names the container's init; ctr's task pid is its supervisor,
        # which is in the host's namespaces.
        state = subprocess.run([str(containerd.wrapper), "--root", str(containerd.runc_root / NAMESPACE),
                                "state", "c-pause"], capture_output=True, text=True, check=True).stdout
        pause = json.loads(state)["pid"]
        result = containerd.run("c-joined", "ls", "-l", "/proc/self/ns/net",
                                options=("--rm", "--with-ns", f"network:/proc/{pause}/ns/net"))
        assert result.returncode == 0, describe(result)
        assert result.stdout.split()[-1] == os.readlink(f"/proc/{pause}/ns/net"), describe(result)
        # exec into a container that joined: the command is in the namespaces its init joined
        started = containerd.run("c-joined", "sleep", "600",
                                 options=("-d", "--with-ns", f"network:/proc/{pause}/ns/net"))
        assert started.returncode == 0, describe(started)
        joined = containerd.ctr("task", "exec", "--exec-id", "e1", "c-joined", "ls", "-l", "/proc/self/ns/net")
        assert joined.stdout.split()[-1] == os.readlink(f"/proc/{pause}/ns/net"), describe(joined)
        containerd.ctr("task", "kill", "--signal", "KILL", "c-joined")
        assert wait_for(lambda: "STOPPED" in containerd.ctr("task", "ls").stdout, timeout=20)
        containerd.ctr("task", "delete", "c-joined")
        containerd.ctr("containers", "delete", "c-joined")
        tasks = containerd.ctr("task", "ls").stdout
        assert "c-pause" in tasks and "RUNNING" in tasks, tasks  # the joined container's end is not the pause's
    finally:
        containerd.ctr("task", "kill", "--signal", "KILL", "c-pause", check=False)
        wait_for(lambda: "RUNNING" not in containerd.ctr("task", "ls").stdout, timeout=20)
        containerd.ctr("task", "delete", "c-pause", check=False)
        containerd.ctr("containers", "delete", "c-pause", check=False)
