"""-u on the real kernel: the workload (and the container's init) run as the user asked for,
inside the container's user namespace, with its groups, its own writable home and a copied
context of its own, every restriction in force; names come from the generated /etc/passwd or a
--rootfs closure's, read without following a symlink out of it; bad values and ids the
container does not map are refused before anything starts, leaving nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import SANDBOX, SUBUID_BASE, Scope, describe, run_nucleus

pytestmark = SANDBOX

WHO = ("id; whoami; echo home=$HOME; touch \"$HOME/written\" && echo home-writable; "
       "grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status")


def status(text: str) -> dict[str, str]:
    return {k: val.split() and val.split()[0] or "" for k, _, val in
            (line.partition(":\t") for line in text.splitlines() if ":\t" in line)}


def test_a_numeric_uid_runs_as_that_user_with_a_home_of_its_own():
    result = run_nucleus(["run", "-u", "1000", "--", "sh", "-c", WHO])
    assert result.returncode == 0, describe(result)
    lines = result.stdout.splitlines()
    assert lines[:4] == ["uid=1000(user) gid=1000(user) groups=1000(user)", "user", "home=/home/user",
                         "home-writable"], describe(result)
    fields = status(result.stdout)
    assert (fields["Uid"], fields["Gid"]) == ("1000", "1000")
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapBnd"] == "0000000000000000"
    assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("1", "2")


def test_the_containers_init_runs_as_the_user_too_and_stays_unreadable():
    """The switch happens in the caps step, in the process that becomes PID 1: no process of
    the container is root, and PID 1 is still not dumpable (its /proc files are root's)."""
    result = run_nucleus(["run", "-u", "1000", "--", "sh", "-c",
                          "stat -c '%u' /proc/1/status; cat /proc/1/environ 2>/dev/null || echo unreadable"])
    assert result.returncode == 0, describe(result)
    # Not dumpable: its files belong to host root (65534 inside), and the user cannot read them.
    assert result.stdout.splitlines() == ["65534", "unreadable"], describe(result)


def test_the_user_is_an_unprivileged_host_id():
    with Scope() as scope:
        cid = scope.detach(scope.sh("echo up; sleep 30"), "-u", "1000")
        scope.wait_log(cid, lambda text: "up" in text)
        workload = [p for p in scope.processes() if "sleep" in p.cmdline]
        assert [p.uid for p in workload] == [SUBUID_BASE + 1000], workload
        init = scope.record(cid)["init_pid"]
        with open(f"/proc/{init}/status") as f:
            assert f"Uid:\t{SUBUID_BASE + 1000}\t" in f.read()
        assert scope.nucleus("rm", "--force", cid).returncode == 0
        scope.assert_clean()


def test_nobody():
    result = run_nucleus(["run", "-u", "nobody", "--", "sh", "-c", WHO])
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines()[:4] == [
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)", "nobody",
        "home=/home/agent", "home-writable"], describe(result)


def test_uid_0_is_the_default():
    default = run_nucleus(["run", "--", "sh", "-c", "id; echo $HOME"])
    root = run_nucleus(["run", "-u", "0", "--", "sh", "-c", "id; echo $HOME"])
    assert root.returncode == default.returncode == 0, describe(root)
    assert root.stdout == default.stdout == "uid=0(root) gid=0(root) groups=0(root)\n/home/agent\n"


def test_a_copied_context_is_the_users(tmp_path):
    """git works on it (it refuses a repository someone else owns); the workload can write it."""
    (tmp_path / "file").write_text("x")
    result = run_nucleus(["run", "-u", "1000", "--context", str(tmp_path), "--", "sh", "-c",
                          "stat -c '%u %U' /context /context/file; touch /context/new && echo writable"])
    assert result.returncode == 0, describe(result)
    assert result.stdout == "1000 user\n1000 user\nwritable\n", describe(result)


def test_supplementary_groups_are_set_inside_the_namespace(closure):
    result = run_nucleus(["run", "--rootfs", closure, "-u", "alice", "--", "sh", "-c", WHO])
    assert result.returncode == 0, describe(result)
    lines = result.stdout.splitlines()
    assert lines[:4] == ["uid=1234(alice) gid=2000(staff) groups=2000(staff),3000(dev)", "alice",
                         "home=/home/alice", "home-writable"], describe(result)
    assert status(result.stdout)["Groups"] == "3000"


def test_a_group_of_the_closure_by_name(closure):
    """The group given replaces the primary one (staff, which /etc/group does not list alice in)."""
    result = run_nucleus(["run", "--rootfs", closure, "-u", "alice:dev", "--", "id"])
    assert result.returncode == 0, describe(result)
    assert result.stdout == "uid=1234(alice) gid=3000(dev) groups=3000(dev)\n"


def test_a_closures_account_file_is_never_followed_out_of_it(closure, tmp_path):
    """A symlink in the closure's etc could lead anywhere on the host: it is not followed, and
    a name that needed the file is refused naming why."""
    group = os.path.join(closure, "etc", "group")
    os.rename(group, group + ".real")
    os.symlink("/etc/group", group)
    try:
        with Scope() as scope:
            result = scope.nucleus(*scope.run_args("--rootfs", closure, "-u", "alice:dev"), "--", "id")
            scope.assert_clean()
        assert result.returncode == 125, describe(result)
        assert result.stderr == (
            f"error: --user 'alice:dev': no group 'dev' in --rootfs {closure!r}: etc/passwd and "
            f"etc/group ({group} is a symbolic link, which is never followed)\n"
            "hint: name a group of the container's /etc/group, or give a number\n")
    finally:
        os.unlink(group)
        os.rename(group + ".real", group)


@pytest.mark.parametrize("args,message", [
    (["-u", "carol"], "error: --user 'carol': no user 'carol' in the container's generated /etc/passwd "
                      "and /etc/group\nhint: name a user of the container's /etc/passwd, or give a number\n"),
    (["-u", "1000:"], "error: --user '1000:': the group is empty\n"),
    (["-u", "a b"], "error: --user 'a b': 'a b' is not a user name or id\n"),
    (["-u", "70000"], "error: --user '70000': uid 70000 is not mapped in the container's user namespace "
                      "(it maps 0-65535)\n"),
    (["--rootless", "-u", "1000"], "error: --user '1000': uid 1000 is not mapped in the container's user "
                                   "namespace (it maps 0)\n"),
], ids=["unknown", "empty-group", "not-a-name", "unmapped", "rootless"])
def test_bad_values_are_refused_before_anything_starts(args, message):
    with Scope() as scope:
        result = scope.nucleus(*scope.run_args(*args), "--", "true")
        scope.assert_clean()
    assert result.returncode == 125, describe(result)
    assert result.stderr.startswith(message), describe(result)
    if "rootless" in args:
        assert "a rootless run maps only the caller" in result.stderr


@pytest.fixture
def closure(tmp_path):
    """A --rootfs closure: dash as bin/sh, id, whoami, their libraries, and its own etc/passwd
    and etc/group naming alice (1234, primary group staff 2000, a member of dev 3000)."""
    root = tmp_path / "closure"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    for binary, name in (("/bin/dash", "sh"), ("/usr/bin/id", "id"), ("/usr/bin/whoami", "whoami"),
                         ("/usr/bin/touch", "touch"), ("/usr/bin/grep", "grep")):
        shutil.copy(binary, root / "bin" / name)
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        for lib in {w for line in out.splitlines() for w in line.split() if w.startswith("/")}:
            target = root / lib.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(lib, target)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "alice:x:1234:2000:Alice:/home/alice:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nstaff:x:2000:\ndev:x:3000:alice\n")
    for directory, _dirs, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o755)
    return str(root)
