"""Volumes (-v/--volume) through `nucleus run`, as root, on the real kernel:

- a read-write volume written inside appears on the host owned by the caller (root's files, or,
  with SUDO_UID, the user sudo runs nucleus for), through an id-mapped mount: the container's
  root is an unprivileged host uid;
- a read-only volume, and every mount below it, is ro, nosuid and nodev inside;
- each refusal class stops the run before anything starts, names the flag and the value, and
  leaves nothing behind: a system tree, a symlink on the path, another user's directory, a
  container path that is relative, holds '..' or lands on nucleus's own mounts; and a volume
  swapped for a symlink while the supervisor is stopped before the mount
  (NUCLEUS_PAUSE_AT=MountVolume#1) fails the setup instead of binding what it leads to.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import Scope, describe, paused
from tests.kernel.outputs_support import host_dir, scope_fixture  # noqa: F401 - the scope fixture

pytestmark = pytest.mark.requires("root", "userns", "seccomp", "landlock")

ALICE = 4242


@pytest.fixture
def base():
    with host_dir("nucleus-test-volumes-") as top:
        yield top


def run(scope: Scope, *options: str, script: str, extra_env=None) -> subprocess.CompletedProcess:
    return scope.nucleus(*scope.run_args(*options), "--", *scope.sh(script), extra_env=extra_env)


def test_a_writable_volume_is_written_as_the_caller(scope, base):
    out = base / "out"
    out.mkdir()
    (out / "before.txt").write_text("from the host\n")
    result = run(scope, "-v", f"{out}:/out", script=(
        "id -u; cat /out/before.txt; echo result > /out/result.txt; mkdir /out/sub; "
        "echo deep > /out/sub/file; ls -ln /out/before.txt | cut -d' ' -f3"))
    assert result.returncode == 0, describe(result)
    # Inside, the caller's files are the container's root's.
    assert result.stdout == "0\nfrom the host\n0\n"
    for path in (out / "result.txt", out / "sub", out / "sub" / "file"):
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0), path
    assert (out / "sub" / "file").read_text() == "deep\n"
    scope.assert_clean()


def test_root_may_bind_the_sudo_users_directory_and_writes_there_as_them(scope, base):
    out = base / "alice-out"
    out.mkdir()
    os.chown(out, ALICE, ALICE)
    refused = run(scope, "-v", f"{out}:/out", script="true")
    assert (refused.returncode, refused.stdout) == (125, ""), describe(refused)
    assert refused.stderr == (
        f"error: -v/--volume '{out}:/out:rw': {out} belongs to uid {ALICE}; a volume must be the "
        "caller's (uid 0)\nhint: copy what the workload needs into a directory of your own\n")
    result = run(scope, "-v", f"{out}:/out", script="echo hi > /out/made; ls -ln /out | sed 1d | cut -d' ' -f3",
                 extra_env={"SUDO_UID": str(ALICE)})
    assert result.returncode == 0, describe(result)
    assert result.stdout == "0\n"
    st = (out / "made").lstat()
    assert (st.st_uid, st.st_gid) == (ALICE, ALICE)
    # Under sudo, root's own directory is lent read-only only: writable, it would hand the sudo
    # user whatever root keeps there.
    mine = base / "root-owned"
    mine.mkdir()
    refused = run(scope, "-v", f"{mine}:/out", script="true", extra_env={"SUDO_UID": str(ALICE)})
    assert (refused.returncode, refused.stdout) == (125, ""), describe(refused)
    assert f"{mine} belongs to root; under sudo a writable volume must be uid {ALICE}'s" in refused.stderr
    read = run(scope, "-v", f"{mine}:/out:ro", script="ls /out", extra_env={"SUDO_UID": str(ALICE)})
    assert read.returncode == 0, describe(read)
    scope.assert_clean()


def test_a_read_only_volume_and_every_mount_below_it_are_ro_nosuid_nodev(scope, base):
    data = base / "data"
    (data / "inner").mkdir(parents=True)
    (data / "file.txt").write_text("data\n")
    # A mount below the volume on the host, writable and without nosuid or nodev there.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "inner", str(data / "inner")], check=True)
    (data / "inner" / "x").write_text("inner\n")
    result = run(scope, "-v", f"{data}:/data:ro", script=(
        "cat /data/file.txt /data/inner/x; grep -E ' /data(/| )' /proc/self/mountinfo | cut -d' ' -f5,6; "
        "for f in /data/new /data/inner/new; do (echo x > $f) 2>/dev/null && echo wrote $f; done; true"))
    assert result.returncode == 0, describe(result)
    lines = result.stdout.splitlines()
    assert lines[:2] == ["data", "inner"]
    mounts = dict(line.split() for line in lines[2:] if not line.startswith("wrote"))
    assert sorted(mounts) == ["/data", "/data/inner"], result.stdout
    for point, options in mounts.items():
        assert {"ro", "nosuid", "nodev"} <= set(options.split(",")), (point, options)
    assert "wrote" not in result.stdout
    scope.assert_clean()


@pytest.mark.parametrize(("make", "message"), [
    (lambda base: ("/etc", "/etc"),
     "error: -v/--volume '/etc:/x:rw': /etc holds the host's configuration; system trees are never a volume\n"
     "hint: copy what the workload needs into a directory of its own\n"),
    (lambda base: (str(base / "link" / "d"), str(base / "link")),
     "error: -v/--volume '{host}:/x:rw': '{link}' is a symlink (to '{real}'); a volume's path may hold none\n"
     "hint: name the real path: {real}/d\n"),
    (lambda base: (str(base / "alice"), ""),
     "error: -v/--volume '{host}:/x:rw': {host} belongs to uid 4242; a volume must be the caller's (uid 0)\n"
     "hint: copy what the workload needs into a directory of your own\n"),
])
def test_a_host_path_that_may_not_be_a_volume_is_refused_before_anything(scope, base, make, message):
    real = base / "real"
    (real / "d").mkdir(parents=True)
    os.symlink(real, base / "link")
    (base / "alice").mkdir()
    os.chown(base / "alice", ALICE, ALICE)
    host, link = make(base)
    result = run(scope, "-v", f"{host}:/x", script="true")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == message.format(host=host, link=link, real=real)
    scope.assert_clean()


@pytest.mark.parametrize(("target", "message"), [
    ("out", "the container path 'out' is not absolute"),
    ("/out/../etc", "the container path '/out/../etc' holds '..'"),
    ("/proc/sys", "/proc/sys is below /proc, which nucleus mounts itself"),
    ("/context/out", "/context/out is below /context, which nucleus mounts itself"),
    ("/etc/hosts", "/etc/hosts would replace what nucleus makes there"),
])
def test_a_container_path_that_may_not_be_used_is_refused_before_anything(scope, base, target, message):
    (base / "out").mkdir()
    result = run(scope, "--context", str(base), "-v", f"{base / 'out'}:{target}", script="true")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    given = f"{base / 'out'}:{target}" + ("" if "not absolute" in message or "'..'" in message else ":rw")
    assert result.stderr.startswith(f"error: -v/--volume '{given}': {message}\n"), describe(result)
    scope.assert_clean()


def test_a_volume_swapped_for_a_symlink_during_the_setup_is_not_bound(scope, base):
    """While the supervisor is stopped right before the mount, the volume becomes a symlink to a
    root-only tree: the setup process finds the path no longer leads to what was opened and the
    run fails, naming it; nothing of the other tree is reached and nothing is left."""
    out = base / "out"
    out.mkdir()
    secret = base / "secret"
    secret.mkdir(mode=0o700)
    (secret / "shadow").write_text("root's secret\n")

    def swap():
        os.rename(out, base / "out.orig")
        os.symlink(secret, out)

    proc = scope.popen(*scope.run_args("-v", f"{out}:/out"), "--", *scope.sh("cat /out/shadow"),
                       extra_env={"NUCLEUS_PAUSE_AT": "MountVolume#1"}, text=False, bufsize=0)
    code, stdout, stderr = paused(proc, "MountVolume", swap)
    assert (code, stdout) == (125, b""), stderr
    assert stderr.decode() == (
        "paused MountVolume\n"
        f"error: setup failed at fs.mount: '{out}' is not the directory opened before the run any "
        "more (Not a directory) (ESTALE)\n")
    scope.assert_clean()
