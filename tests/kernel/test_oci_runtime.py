"""`nucleus oci` as runc's callers use it, on the real kernel: create (the init waits), state (the
runtime-spec's state, checked against its schema), start, kill, delete and delete --force, the
--pid-file, the --log in JSON, and the bundle's own seccomp profile when its annotation asks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import SANDBOX, Scope, describe, wait_for
from tests.kernel.manage_support import gone

pytestmark = SANDBOX

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"sh": "/bin/dash", "sleep": "/bin/sleep", "cat": "/bin/cat", "mkdir": "/bin/mkdir"}

# The runtime-spec's state schema (schema/state-schema.json, with defs.json's ociVersion and
# annotations), as the check below reads it.
STATE_SCHEMA = {
    "type": "object",
    "properties": {
        "ociVersion": {"type": "string"},
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["creating", "created", "running", "stopped"]},
        "pid": {"type": "integer", "minimum": 0},
        "bundle": {"type": "string"},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["ociVersion", "id", "status", "bundle"],
}
TYPES = {"object": dict, "string": str, "integer": int}


def schema_errors(value: object, schema: dict, where: str = "state") -> list[str]:
    """What of `value` the schema (its type, enum, minimum, required, properties and
    additionalProperties keywords) refuses."""
    kind = TYPES[schema["type"]]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return [f"{where}: {value!r} is not of type {schema['type']}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: {value!r} is below {schema['minimum']}")
    if isinstance(value, dict):
        errors += [f"{where}: {key!r} is required" for key in schema.get("required", ()) if key not in value]
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
            if sub is not None:
                errors += schema_errors(item, sub, f"{where}.{key}")
    return errors


def make_bundle(path: Path, args: list[str], **extra: object) -> Path:
    """A bundle: config.json as `runc spec` writes it (process, root, mounts, namespaces, masked
    and read-only paths) and a root of the host's tools."""
    rootfs = path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for name, source in TOOLS.items():
        (rootfs / "bin" / name).write_bytes(Path(source).read_bytes())
        (rootfs / "bin" / name).chmod(0o755)
        ldd = subprocess.run(["ldd", source], capture_output=True, text=True, check=True).stdout
        for lib in (w for w in ldd.split() if w.startswith("/")):
            target = rootfs / lib.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(lib).read_bytes())
            target.chmod(0o755)  # the loader is executed
    (rootfs / "tmp").mkdir()
    config = {
        "ociVersion": "1.0.2-dev",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/",
                    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "oci",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                  "resources": {"memory": {"limit": 256 << 20}, "pids": {"limit": 64}},
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
        **extra,
    }
    (path / "config.json").write_text(json.dumps(config))
    return path


class Runtime:
    def __init__(self, root: Path, scope: Scope) -> None:
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "NUCLEUS_STATE_DIR": scope.state_dir}
        self.env.pop("NUCLEUS_TESTS_STRICT", None)
        self.flags: tuple[str, ...] = ()  # the runtime's operator's global flags

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-c", "from nucleus.cli.oci import main; main()", "--root", str(self.root),
                *self.flags, *args]

    def __call__(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("capture_output", True)
        result = subprocess.run(self.argv(*args), env=self.env, text=True, timeout=60, **kw)
        assert not check or result.returncode == 0, describe(result)
        return result

    def create(self, bundle: Path, cid: str, out: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess:
        """`create`, its container's stdout and stderr to `out` (the supervisor keeps them)."""
        with open(out, "w") as f:
            return self("create", "--bundle", str(bundle), *options, cid, stdout=f, stderr=subprocess.STDOUT,
                        capture_output=False, check=check)

    def state(self, cid: str) -> dict:
        state = json.loads(self("state", cid).stdout)
        assert schema_errors(state, STATE_SCHEMA) == [], state
        return state


@pytest.fixture
def bundles():
    """A folder for bundles that the container's users may enter (pytest's own is private)."""
    top = Path(tempfile.mkdtemp(prefix="nucleus-oci-test-"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def runtime(tmp_path):
    with Scope() as scope:
        rt = Runtime(tmp_path / "root", scope)
        yield rt
        for cid in os.listdir(rt.root) if rt.root.exists() else ():
            rt("delete", "--force", cid, check=False)


def test_create_start_kill_delete_as_runc_does(runtime, bundles, tmp_path):
    script = 'echo started; trap "echo stopping; exit 5" TERM; while :; do sleep 0.1; done'
    bundle = make_bundle(bundles / "b", ["sh", "-c", script], annotations={"team": "web"})
    out, pid_file = tmp_path / "out", tmp_path / "pid"
    runtime.create(bundle, "c1", out, "--pid-file", str(pid_file))
    state = runtime.state("c1")
    supervisor, init = int(pid_file.read_text()), state.pop("pid")
    assert state == {"ociVersion": "1.0.2-dev", "id": "c1", "status": "created", "bundle": str(bundle),
                     "annotations": {"team": "web"}}
    # The state's pid is the container's process, in its namespaces; the --pid-file's is the
    # supervisor, its parent, whose exit status is the workload's.
    assert os.readlink(f"/proc/{init}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert f"PPid:\t{supervisor}\n" in Path(f"/proc/{init}/status").read_text()
    assert out.read_text().count("started") == 0  # the program waits for start

    runtime("start", "c1")
    assert wait_for(lambda: "started" in out.read_text(), timeout=20), out.read_text()
    assert runtime.state("c1")["status"] == "running"
    again = runtime("start", "c1", check=False)
    assert again.returncode == 125 and "cannot start container 'c1': it is running" in again.stderr, describe(again)

    runtime("kill", "c1", "TERM")
    assert wait_for(lambda: runtime.state("c1")["status"] == "stopped", timeout=20)
    assert runtime.state("c1")["pid"] == 0 and "stopping" in out.read_text()
    runtime("delete", "c1")
    gone = runtime("state", "c1", check=False)
    assert gone.returncode == 125 and "container 'c1' does not exist" in gone.stderr, describe(gone)


def test_a_created_container_killed_or_deleted_never_runs_its_program(runtime, bundles, tmp_path):
    bundle = make_bundle(bundles / "b", ["sh", "-c", "echo ran"])
    out = tmp_path / "out"
    runtime.create(bundle, "c2", out)
    runtime("kill", "c2", "KILL")
    assert wait_for(lambda: runtime.state("c2")["status"] == "stopped", timeout=20)
    runtime("delete", "c2")
    runtime.create(bundle, "c2", out)
    runtime("delete", "c2")  # created: the waiting init is told it will never start
    assert not (runtime.root / "c2").exists()
    assert "ran" not in out.read_text()


def test_delete_force_ends_a_running_container_and_a_missing_one_is_no_error(runtime, bundles, tmp_path):
    bundle = make_bundle(bundles / "b", ["sh", "-c", "echo up; while :; do sleep 0.1; done"])
    out = tmp_path / "out"
    runtime.create(bundle, "c3", out)
    runtime("start", "c3")
    assert wait_for(lambda: "up" in out.read_text(), timeout=20)
    plain = runtime("delete", "c3", check=False)
    assert plain.returncode == 125 and "with --force while running" in plain.stderr, describe(plain)
    runtime("delete", "--force", "c3")
    assert not (runtime.root / "c3").exists()
    runtime("delete", "--force", "c3")  # as runc: containerd's shim deletes twice


def test_errors_go_to_the_log_as_json_lines(runtime, tmp_path):
    log = tmp_path / "log.json"
    result = runtime("--log", str(log), "--log-format", "json", "start", "nope", check=False)
    assert result.returncode == 125
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["level"] == "error" and line["msg"] == f"container 'nope' does not exist (in '{runtime.root}')"


def test_the_bundles_own_seccomp_profile_only_when_the_runtime_says(runtime, bundles, tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    script = "mkdir /tmp/d && echo made || echo refused"
    for flags, expected in (((), "made"), (("--seccomp", "bundle", "--allow-degraded-security"), "refused")):
        name = flags[1] if flags else "nucleus"
        bundle = make_bundle(bundles / name, ["sh", "-c", script],
                             annotations={"org.nucleus.oci.seccomp": "bundle"})  # the bundle's ask: no effect
        config = json.loads((bundle / "config.json").read_text())
        config["linux"]["seccomp"] = profile
        (bundle / "config.json").write_text(json.dumps(config))
        out = tmp_path / f"{name}.out"
        runtime.flags = flags
        runtime.create(bundle, f"s-{name}", out)
        runtime("start", f"s-{name}")
        assert wait_for(lambda id=f"s-{name}": runtime.state(id)["status"] == "stopped", timeout=20)
        runtime("delete", f"s-{name}")
        assert expected in out.read_text(), (name, out.read_text())
    runtime.flags = ("--seccomp", "bundle")
    result = runtime.create(bundles / "bundle", "s-allow", tmp_path / "allow.out", check=False)
    assert result.returncode == 125
    assert ("error: config.json: linux.seccomp.defaultAction 'SCMP_ACT_ALLOW': lets through every system call "
            "the profile does not name") in (tmp_path / "allow.out").read_text()
    assert not (runtime.root / "s-allow").exists()


def test_the_hosts_network_only_when_the_runtime_allows_it(runtime, bundles, tmp_path):
    bundle = make_bundle(bundles / "host", ["cat", "/proc/net/dev"])
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    (bundle / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert runtime.create(bundle, "h1", out, check=False).returncode == 125
    assert "has no network namespace: the container would share the host's network" in out.read_text()
    assert not (runtime.root / "h1").exists()
    runtime.flags = ("--allow-degraded-security",)
    runtime.create(bundle, "h1", out)
    runtime("start", "h1")
    assert wait_for(lambda: runtime.state("h1")["status"] == "stopped", timeout=20)
    runtime("delete", "h1")
    host = {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
    inside = {line.split(":")[0].strip() for line in out.read_text().splitlines() if ":" in line}
    assert host - {"lo"} and host - {"lo"} <= inside, out.read_text()


def test_delete_reclaims_what_a_killed_supervisor_left(runtime, bundles, tmp_path):
    bundle = make_bundle(bundles / "b", ["sh", "-c", "echo up; while :; do sleep 0.1; done"])
    out, pid_file = tmp_path / "out", tmp_path / "pid"
    runtime.create(bundle, "c4", out, "--pid-file", str(pid_file))
    runtime("start", "c4")
    assert wait_for(lambda: "up" in out.read_text(), timeout=20)
    init = runtime.state("c4")["pid"]
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the supervisor, not the container
    assert wait_for(lambda: runtime.state("c4")["status"] == "stopped", timeout=20)
    runtime("delete", "c4")
    # its processes ended (a zombie counts: the host's PID 1 reaps the orphan when it will)
    assert wait_for(lambda: gone(init), timeout=20)
    listed = subprocess.run([sys.executable, "-m", "nucleus", "ps", "-a"], env=runtime.env, capture_output=True,
                            text=True, check=True).stdout
    assert " c4 " not in listed, listed  # nor is its record left


def test_a_create_that_fails_after_the_fork_leaves_nothing(runtime, bundles, tmp_path):
    bundle = make_bundle(bundles / "b", ["sh", "-c", "echo ran"])
    out = tmp_path / "out"
    result = runtime.create(bundle, "c5", out, "--pid-file", str(tmp_path / "no" / "such" / "pid"), check=False)
    assert result.returncode == 125
    assert "--pid-file" in out.read_text() and "cannot write it" in out.read_text()
    assert not (runtime.root / "c5").exists() and "ran" not in out.read_text()
    listed = subprocess.run([sys.executable, "-m", "nucleus", "ps", "-a"], env=runtime.env, capture_output=True,
                            text=True, check=True).stdout
    assert " c5 " not in listed, listed
