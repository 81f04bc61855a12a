"""`nucleus cp` on the real kernel, as root:

- both ways on a running container: out of it as the caller's files (a directory with its
  symlink copied as a link and its FIFO named and left out), into it as the container's root;
- the container's symlinks never lead out of it (resolved in its root), a host path through a
  symlink is refused, nothing that exists is replaced, and a copy over --max-size leaves
  nothing behind;
- out of a stopped detached container: its copied /context is kept until `nucleus rm` (which
  lets it go), any other path is refused, and a container that kept nothing says its file
  system ended with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import Scope, describe
from tests.kernel.outputs_support import host_dir, scope_fixture  # noqa: F401 - the scope fixture

pytestmark = pytest.mark.requires("root", "userns", "seccomp", "landlock")

SETUP = ("mkdir -p /tmp/d/e && echo deep > /tmp/d/e/f && ln -s e/f /tmp/d/rel && mkfifo /tmp/d/fifo && "
         "ln -s / /tmp/escape && echo up > /tmp/ready && while :; do sleep 1; done")


@pytest.fixture
def base():
    with host_dir("nucleus-test-copy-") as top:
        (top / "project").mkdir()
        (top / "project" / "notes.txt").write_text("v1\n")
        yield top


def box(scope: Scope, base: Path, *options: str) -> str:
    cid = scope.detach(scope.sh(SETUP), "--context", str(base / "project"), *options)
    ready = base / "ready-check"
    for _ in range(200):
        if scope.nucleus("cp", f"{cid}:/tmp/ready", str(ready)).returncode == 0:
            return cid
    pytest.fail("the container never got ready")


def cp(scope: Scope, *args: str, cwd=None):
    return scope.nucleus("cp", *args, cwd=cwd)


def test_out_of_a_running_container(scope, base):
    cid = box(scope, base)
    result = cp(scope, f"{cid}:/tmp/d", str(base / "out"))
    assert result.returncode == 0, describe(result)
    assert result.stderr == "note: nucleus cp: left out 'out/fifo': a device, socket or FIFO: not copied\n"
    out = base / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["e", "e/f", "rel"]
    assert (out / "e" / "f").read_text() == "deep\n"
    assert os.readlink(out / "rel") == "e/f"
    for path in (out, *out.rglob("*")):
        assert (path.lstat().st_uid, path.lstat().st_gid) == (0, 0)
    # Into an existing directory, under the source's name.
    into = cp(scope, f"{cid}:/context/notes.txt", str(base))
    assert into.returncode == 0, describe(into)
    assert (base / "notes.txt").read_text() == "v1\n"


def test_into_a_running_container(scope, base):
    cid = box(scope, base)
    (base / "in").mkdir()
    (base / "in" / "a.txt").write_text("a\n")
    (base / "in" / "sub").mkdir()
    (base / "in" / "sub" / "b.txt").write_text("b\n")
    result = cp(scope, str(base / "in"), f"{cid}:/context/")
    assert result.returncode == 0, describe(result)
    seen = scope.nucleus("attach", cid, "--", "sh", "-c", "cd /context/in && find . | sort && cat sub/b.txt && "
                         "stat -c '%u %g' a.txt")
    assert seen.returncode == 0, describe(seen)
    assert seen.stdout == ".\n./a.txt\n./sub\n./sub/b.txt\nb\n0 0\n"
    again = cp(scope, str(base / "in" / "a.txt"), f"{cid}:/context/in/a.txt")
    assert again.returncode == 125
    assert again.stderr.startswith(f"error: nucleus cp: copying '{base}/in/a.txt' to {cid}:/context/in/a.txt: ")
    assert "File exists" in again.stderr
    # Removed while it runs: the /context its supervisor kept as it ended goes with it.
    assert scope.nucleus("rm", "--force", cid).returncode == 0
    scope.assert_clean()


def test_the_containers_symlinks_stay_inside_it(scope, base):
    cid = box(scope, base)
    # /tmp/escape -> / inside: resolved from the container's root, never the host's.
    shadow = cp(scope, f"{cid}:/tmp/escape/etc/shadow", str(base / "shadow"))
    assert shadow.returncode == 125, describe(shadow)
    assert not (base / "shadow").exists()
    hosts = cp(scope, f"{cid}:/tmp/escape/etc/hostname", str(base / "hostname"))
    assert hosts.returncode == 0, describe(hosts)
    assert (base / "hostname").read_text() != Path("/etc/hostname").read_text()
    link = cp(scope, f"{cid}:/tmp/escape", str(base / "escape"))
    assert link.returncode == 0, describe(link)
    assert os.readlink(base / "escape") == "/"
    # Into the container through its symlink: its own root, which is read-only.
    (base / "x.txt").write_text("x\n")
    refused = cp(scope, str(base / "x.txt"), f"{cid}:/tmp/escape/x.txt")
    assert refused.returncode == 125 and "Read-only file system" in refused.stderr, describe(refused)


def test_the_host_side_is_never_reached_through_a_symlink_nor_replaced(scope, base):
    cid = box(scope, base)
    (base / "real").mkdir()
    os.symlink(base / "real", base / "link")
    through = cp(scope, f"{cid}:/context/notes.txt", str(base / "link" / "n.txt"))
    assert through.returncode == 125
    assert through.stderr == (f"error: nucleus cp: '{base}/link/n.txt': '{base}/link' is a symlink (to "
                              f"'{base}/real'); a destination of a copy's path may hold none\n"
                              f"hint: name the real path: {base}/real\n")
    (base / "real" / "n.txt").write_text("mine\n")
    exists = cp(scope, f"{cid}:/context/notes.txt", str(base / "real" / "n.txt"))
    assert exists.returncode == 125
    assert exists.stderr.startswith(f"error: nucleus cp: '{base}/real/n.txt': {base}/real/n.txt exists")
    assert (base / "real" / "n.txt").read_text() == "mine\n"
    source = cp(scope, str(base / "link"), f"{cid}:/tmp/")
    assert source.returncode == 125 and "is a symlink" in source.stderr
    root_file = cp(scope, "/etc/hostname", f"{cid}:/tmp/")
    assert root_file.returncode == 125
    assert "system trees are never a source of a copy" in root_file.stderr


def test_a_copy_over_the_limit_leaves_nothing(scope, base):
    cid = box(scope, base)
    made = scope.nucleus("attach", cid, "--", "sh", "-c", "mkdir /tmp/big && echo a > /tmp/big/a && "
                         "head -c 8192 /dev/zero > /tmp/big/z")
    assert made.returncode == 0, describe(made)
    result = cp(scope, "--max-size", "4K", f"{cid}:/tmp/big", str(base / "big"))
    assert result.returncode == 125
    assert "more than --max-size (4096 bytes) to copy" in result.stderr
    assert not (base / "big").exists()


def test_out_of_a_stopped_detached_container_only_its_kept_context(scope, base):
    cid = box(scope, base)
    changed = scope.nucleus("attach", cid, "--", "sh", "-c", "echo v2 > /context/notes.txt; "
                            "mkdir /context/built; echo artifact > /context/built/out")
    assert changed.returncode == 0, describe(changed)
    assert scope.nucleus("stop", "-t", "1", cid).returncode == 0
    scope.wait_finished(cid)
    result = cp(scope, f"{cid}:/context/built", str(base / "built"))
    assert result.returncode == 0, describe(result)
    assert (base / "built" / "out").read_text() == "artifact\n"
    whole = cp(scope, f"{cid}:/context", str(base))
    assert whole.returncode == 0, describe(whole)
    assert (base / "context" / "notes.txt").read_text() == "v2\n"
    other = cp(scope, f"{cid}:/tmp/d", str(base / "d"))
    assert other.returncode == 125
    assert other.stderr == (f"error: cannot copy /tmp/d from container '{cid[:12]}': it has stopped, "
                            "and only its /context is kept\nhint: copy a path below /context\n")
    assert scope.nucleus("rm", cid).returncode == 0
    scope.assert_clean()


def test_a_stopped_container_that_kept_nothing_says_so(scope, base):
    cid = scope.detach(scope.sh("true"))
    scope.wait_finished(cid)
    result = cp(scope, f"{cid}:/tmp", str(base / "tmp"))
    assert result.returncode == 125
    assert result.stderr.startswith(f"error: cannot copy from container '{cid[:12]}': it is stopped, "
                                    "and its file system ended with it\n")
    assert not (base / "tmp").exists()
    into = cp(scope, str(base / "project"), f"{cid}:/tmp/")
    assert into.returncode == 125
    assert into.stderr.startswith(f"error: cannot copy into container '{cid[:12]}': it is stopped\n")
