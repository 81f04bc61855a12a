"""A bound context (`--context-mode bind`) and the system directories, through `nucleus run`, as
root, on the real kernel (issue 9, item 4): every mount of the container audited from inside,
a submount (and a submount of it) of the bound tree read-only, nosuid and nodev like its top,
the same for a submount under a system directory, the host's mounts unchanged, and system trees
refused as a context in every mode, naming the rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from nucleus.plan.mounts import PROC_MASKED
from tests.helpers import NUCLEUS, SANDBOX_PYTHON, Scope, describe

pytestmark = pytest.mark.requires("root", "userns", "seccomp", "landlock", f"bin:{SANDBOX_PYTHON}")

# Every mount inside, as mountinfo shows it: (mount point, per-mount options).
MOUNTS = textwrap.dedent("""\
    import json
    out = []
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        out.append([fields[4].replace("\\\\040", " "), fields[5].split(",")])
    print(json.dumps(out))
""")
# Where the workload may write (never execute), and the device nodes: every other mount is
# read-only, and only the device nodes (and devpts) are not nodev. The masked /proc files are
# /dev/null bound over them, read-only, with the flags of the host's /dev (MaskPaths).
WRITABLE = ("/tmp", "/home/agent", "/dev/shm", "/dev/pts")
DEVICES = (*(f"/dev/{d}" for d in ("null", "zero", "full", "random", "urandom", "tty", "pts")),
           *(f"/proc/{name}" for name in PROC_MASKED))


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def _host_mounts() -> dict[str, str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4]: line.split()[5] for line in f}


@pytest.fixture
def bound_tree():
    """A context with a tmpfs mounted inside (rw, suid, dev: as a user's mount could be) and
    a second tmpfs inside that one, both unmounted afterwards."""
    top = Path(tempfile.mkdtemp(prefix="nucleus-test-bind-"))
    os.chmod(top, 0o755)
    (top / "a.txt").write_text("a\n")
    sub = top / "sub"
    sub.mkdir()
    mounted = []
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "rw,suid,dev,exec,mode=0755", "tmpfs", str(sub)], check=True)
        mounted.append(sub)
        (sub / "deeper").mkdir()
        (sub / "s.txt").write_text("s\n")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "rw,suid,dev,mode=0755", "tmpfs", str(sub / "deeper")],
                       check=True)
        mounted.append(sub / "deeper")
        (sub / "deeper" / "d.txt").write_text("d\n")
        yield top
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], check=False)
        shutil.rmtree(top, ignore_errors=True)


def test_every_mount_of_a_bound_context_is_read_only_nosuid_nodev(scope, bound_tree):
    before = _host_mounts()
    result = scope.nucleus(*scope.run_args("--context", str(bound_tree), "--context-mode", "bind"),
                           "--", *scope.python(MOUNTS))
    assert result.returncode == 0, describe(result)
    mounts = json.loads(result.stdout)
    below = {point: set(options) for point, options in mounts if point == "/context" or point.startswith("/context/")}
    assert set(below) == {"/context", "/context/sub", "/context/sub/deeper"}, mounts
    for point, options in below.items():
        assert {"ro", "nosuid", "nodev"} <= options, (point, options)
    problems = []
    for point, options in mounts:
        opts = set(options)
        if point in DEVICES:
            continue
        if "nosuid" not in opts:
            problems.append(f"{point}: suid allowed")
        if "nodev" not in opts and point != "/dev":
            problems.append(f"{point}: devices allowed")
        if not point.startswith(WRITABLE) and point not in DEVICES and "ro" not in opts:
            problems.append(f"{point}: writable ({','.join(options)})")
    assert not problems, problems
    assert _host_mounts() == before  # the host's own mounts of the tree keep their flags
    scope.assert_clean()


def test_writes_into_a_submount_of_a_bound_context_fail(scope, bound_tree):
    result = scope.nucleus(*scope.run_args("--context", str(bound_tree), "--context-mode", "bind"), "--",
                           *scope.sh("for f in /context/x /context/sub/x /context/sub/deeper/x; do "
                                     "(echo x > $f) 2>/dev/null && echo wrote $f; done; "
                                     "cat /context/sub/s.txt /context/sub/deeper/d.txt"))
    assert (result.returncode, result.stdout) == (0, "s\nd\n"), describe(result)
    assert sorted(os.listdir(bound_tree / "sub")) == ["deeper", "s.txt"]


def test_a_submount_under_a_system_directory_is_read_only_nosuid_nodev(scope):
    """/usr (and the others) are bound recursively: a mount below them gets the same flags.
    The tmpfs is mounted in a mount namespace of the test's own, so the host never sees it."""
    if shutil.which("unshare") is None:
        pytest.skip("requires unshare (util-linux)")
    point = "/usr/local/share"
    script = (f"mount -t tmpfs -o rw,suid,dev tmpfs {point} && echo planted > {point}/x && "
              f"exec {NUCLEUS} run --cgroup-parent {scope.cgroup_parent} -- {SANDBOX_PYTHON} -c "
              f"{_quote(MOUNTS)} {scope.marker}")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            env={**os.environ, **scope.env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, describe(result)
    options = {p: set(o) for p, o in json.loads(result.stdout)}
    assert {"ro", "nosuid", "nodev"} <= options[point], options
    assert {"ro", "nosuid", "nodev"} <= options["/usr"], options
    scope.assert_clean()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.mark.parametrize("path", ["/", "/proc", "/sys", "/dev", "/etc", "/root", "/home", "/run"])
def test_system_trees_are_refused_in_every_mode(scope, path):
    """Issue 9: `--context /` with bind was accepted even untrusted in strict-agent mode,
    exposing the host's processes."""
    for options in (["--context-mode", "bind", "--trust-level", "untrusted", "--service-mode", "strict-agent"],
                    ["--context-mode", "bind"], []):
        result = scope.nucleus(*scope.run_args("--context", path, *options), "--", "ls", "/context")
        assert (result.returncode, result.stdout) == (125, ""), describe(result)
        assert result.stderr.startswith(f"error: --context {path!r}: "), describe(result)
        assert "never a context" in result.stderr, describe(result)
    scope.assert_clean()


def test_another_users_home_is_refused_as_a_context(scope):
    home = Path("/home") / f"nucleus-test-{os.getpid()}"
    home.mkdir()
    try:
        os.chown(home, 4242, 4242)
        result = scope.nucleus(*scope.run_args("--context", str(home), "--context-mode", "bind"), "--", "true")
    finally:
        home.rmdir()
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (
        f"error: --context '{home}': {home} is the home of uid 4242, not the caller's (uid 0); "
        "another user's home is never a context\nhint: name the project directory inside it\n")


def test_a_bind_mount_of_the_root_elsewhere_is_refused_as_the_root(scope):
    alias = Path(tempfile.mkdtemp(prefix="nucleus-test-alias-"))
    try:
        subprocess.run(["mount", "--bind", "/", str(alias)], check=True)
        try:
            result = scope.nucleus(*scope.run_args("--context", str(alias), "--context-mode", "bind"), "--", "true")
        finally:
            subprocess.run(["umount", str(alias)], check=False)
    finally:
        alias.rmdir()
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr.startswith(f"error: --context '{alias}': it is / under another name (a bind "
                                    "mount), which holds the host's whole file system"), describe(result)
