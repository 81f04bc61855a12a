"""--secret in real containers: the workload's user reads its secret at /run/secrets (a read-only
tmpfs, 0500, files 0400, owned by that user) and at a DEST bound elsewhere; the secret's bytes
are in no environment, record, trace, log or state file, and nothing of it stays once the
container has ended. A symlink, a FIFO or a kernel file as a source is refused before anything
runs; production refuses -e names that look like secrets.
"""

from __future__ import annotations

import os

from tests.helpers import SANDBOX, describe
from tests.kernel.manage_support import ok, started
from tests.kernel.outputs_support import scope_fixture, secret_fixture  # noqa: F401 - fixtures
from tests.kernel.test_modes_run import closure, production  # noqa: F401 - the closure fixture

pytestmark = SANDBOX


SHOW = """
ls /run/secrets
stat -c '%A %u %g' /run/secrets /run/secrets/api_key /etc/tls/cert.pem
cat /run/secrets/api_key; echo; cat /etc/tls/cert.pem; echo
grep -E ' /run/secrets | /etc/tls/cert.pem ' /proc/self/mountinfo | cut -d' ' -f5,6,9
{ echo x > /run/secrets/new; } 2>/dev/null || echo "read-only"
cat /proc/self/environ | tr '\\0' '\\n' | grep -c s3cret
"""


def test_the_workload_user_reads_its_secrets_and_only_there(scope, secret):
    path, value = secret
    result = scope.nucleus(*scope.run_args("-u", "nobody", "--secret", f"{path}:/run/secrets/api_key",
                                           "--secret", f"{path}:/etc/tls/cert.pem"),
                           "--", *scope.sh(SHOW))
    assert result.returncode == 1, describe(result)  # grep -c found nothing
    assert result.stdout.splitlines() == [
        "api_key", "cert.pem",
        "dr-x------ 65534 65534", "-r-------- 65534 65534", "-r-------- 65534 65534",
        value, value,
        "/run/secrets ro,nosuid,nodev,noexec,relatime tmpfs",
        "/etc/tls/cert.pem ro,nosuid,nodev,noexec,relatime tmpfs",
        "read-only",
        "0",
    ], describe(result)
    assert result.stderr == "", describe(result)
    scope.assert_clean()


def _files_holding(top: str, value: bytes) -> list[str]:
    found = []
    for where, _dirs, files in os.walk(top):
        for name in files:
            file = os.path.join(where, name)
            try:
                with open(file, "rb") as f:
                    if value in f.read():
                        found.append(file)
            except OSError:
                pass
    return found


def test_the_secret_is_in_no_environment_record_trace_or_log(scope, secret, tmp_path):
    path, value = secret
    trace = tmp_path / "trace.json"
    cid = started(scope, "echo ready; while :; do sleep 0.05; done", "--secret", f"{path}:/run/secrets/api_key",
                  "--trace", str(trace))
    record = scope.record(cid)
    init = record["init_pid"]
    pids = [init] + [int(p) for p in os.listdir("/proc") if p.isdigit() and _child_of(int(p), init)]
    for pid in pids:
        with open(f"/proc/{pid}/environ", "rb") as f:
            assert value.encode() not in f.read(), pid
    assert _files_holding(scope.state_dir, value.encode()) == []
    result = scope.nucleus("attach", "web", "--", "/bin/cat", "/run/secrets/api_key")
    assert (result.returncode, result.stdout) == (0, value), describe(result)
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    assert trace.exists()
    assert _files_holding(str(tmp_path), value.encode()) == [path]
    assert _files_holding(scope.state_dir, value.encode()) == []
    scope.assert_clean()  # the tmpfs went with the container's mount namespace


def _child_of(pid: int, parent: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[1] == str(parent)
    except OSError:
        return False


def test_a_symlink_a_fifo_or_a_kernel_file_is_refused(scope, secret, tmp_path):
    path, _ = secret
    link = tmp_path / "link"
    link.symlink_to(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for source, why in ((link, "a symlink (a secret is read as itself, never through a link)"),
                        (fifo, f"{str(fifo)!r} is not a regular file"),
                        ("/proc/self/environ", "is the kernel's file")):
        result = scope.nucleus(*scope.run_args("--secret", f"{source}:/run/secrets/k"), "--", "/bin/true")
        assert (result.returncode, result.stdout) == (125, ""), describe(result)
        assert result.stderr.startswith(f"error: --secret '{source}:/run/secrets/k': "), describe(result)
        assert why in result.stderr, describe(result)
    scope.assert_clean()


def test_production_refuses_a_secret_in_the_environment(scope, closure, secret):  # noqa: F811
    result = scope.nucleus(*production(scope, closure, "-e", "API_TOKEN=x"), "--", "/bin/sh", "-c", "echo ran")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (
        "error: -e 'API_TOKEN': a variable that looks like a secret is refused in production mode (row "
        "\"Secrets\": secrets go on the in-memory tmpfs at /run/secrets, never in the environment)\n"
        "hint: put the value in a file and pass --secret FILE:/run/secrets/api_token (the workload reads "
        "it there; API_TOKEN_FILE=/run/secrets/api_token may tell it where)\n")
    path, value = secret
    result = scope.nucleus(*production(scope, closure, "--secret", f"{path}:/run/secrets/api_token"),
                           "--", "/bin/sh", "-c", "read v < /run/secrets/api_token; echo $v")
    assert (result.returncode, result.stdout, result.stderr) == (0, value + "\n", ""), describe(result)
    scope.assert_clean()


def test_a_dest_in_a_volume_is_refused_and_leaves_the_host_directory_empty(scope, secret, tmp_path):
    path, _ = secret
    data = tmp_path / "data"
    data.mkdir()
    result = scope.nucleus(*scope.run_args("-v", f"{data}:/data", "--secret", f"{path}:/data/conf/key"),
                           "--", *scope.sh("true"))
    assert result.returncode == 125, describe(result)
    assert (f"--secret '{path}:/data/conf/key': DEST '/data/conf/key' is below the path of -v/--volume "
            f"'{data}:/data:rw'") in result.stderr, describe(result)
    assert os.listdir(data) == []  # no directory 0755, no empty file 0400 behind the volume
    scope.assert_clean()
