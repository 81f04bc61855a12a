"""`--changes OUT` through `nucleus run`, as root, on the real kernel: an agent edits /context
(modifies, adds and deletes files, changes a mode, makes a directory, a symlink inside the tree
and one to /etc/passwd, a FIFO and a file larger than --changes-max-size); once it has ended,
OUT holds exactly the reviewable changes (the files as they are now, a manifest, a patch that
`git apply` applies to the original tree) and the run names what it refused. OUT is refused
before the run when it exists, and a run whose setup fails writes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Scope, describe
from tests.kernel.outputs_support import host_dir, scope_fixture  # noqa: F401 - the scope fixture

pytestmark = pytest.mark.requires("root", "userns", "seccomp", "landlock")

AGENT = """
cd /context
echo three >> src/a.txt
echo new > added.txt
rm gone.txt
chmod 755 run.sh
mkdir made
echo inside > made/file
ln -s ../added.txt made/link
ln -s /etc/passwd passwd
mkfifo pipe
head -c 3145728 /dev/zero > big.bin
printf 'bin\\000ary' > blob
"""
SPECIAL = "a device, socket or FIFO: special files are not brought back"
PASSWD = "a symlink to '/etc/passwd', an absolute path: it would point elsewhere on the host"
BIG = "3145728 bytes, more than --changes-max-size (1048576 bytes)"


@pytest.fixture
def base():
    with host_dir("nucleus-test-changes-") as top:
        project = top / "project"
        (project / "src").mkdir(parents=True)
        (project / "src" / "a.txt").write_text("one\ntwo\n")
        (project / "gone.txt").write_text("bye\n")
        (project / "same.txt").write_text("unchanged\n")
        (project / "run.sh").write_text("#!/bin/sh\necho run\n")
        (project / ".env").write_text("TOKEN=1\n")  # left out of the copy: never a change
        yield top


def run(scope: Scope, base: Path, out: str, *options: str, script: str = AGENT) -> subprocess.CompletedProcess:
    return scope.nucleus(*scope.run_args("--context", str(base / "project"), "--changes", out,
                                         "--changes-max-size", "1M", *options), "--", *scope.sh(script),
                         cwd=base)


def test_the_changes_come_back_as_files_a_manifest_and_a_patch(scope, base):
    result = run(scope, base, "review")
    assert result.returncode == 0, describe(result)
    assert result.stderr.splitlines() == [
        "note: --context: left out 1 secret entry: '.env' (--show-excluded lists every entry left "
        "out, with its rule; --context-include keeps one)",
        f"note: --changes: left out 'big.bin': {BIG}",
        f"note: --changes: left out 'passwd': {PASSWD}",
        f"note: --changes: left out 'pipe': {SPECIAL}",
        "note: --changes: wrote 8 changes to 'review' (5 added, 2 modified, 1 deleted); 3 left out",
    ]
    review = base / "review"
    files = review / "files"
    found = sorted(str(p.relative_to(files)) for p in files.rglob("*"))
    assert found == ["added.txt", "blob", "made", "made/file", "made/link", "run.sh", "src", "src/a.txt"]
    assert (files / "src" / "a.txt").read_text() == "one\ntwo\nthree\n"
    assert os.readlink(files / "made" / "link") == "../added.txt"
    assert (files / "run.sh").stat().st_mode & 0o777 == 0o755
    for path in (review, *review.rglob("*")):
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0), path  # written as the caller
    manifest = json.loads((review / "manifest.json").read_text())
    assert manifest["context"] == str(base / "project")
    assert [(c["path"], c["change"], c["type"]) for c in manifest["changes"]] == [
        ("added.txt", "added", "file"), ("blob", "added", "file"), ("gone.txt", "deleted", "file"),
        ("made", "added", "dir"), ("made/file", "added", "file"), ("made/link", "added", "symlink"),
        ("run.sh", "modified", "file"), ("src/a.txt", "modified", "file")]
    by_path = {c["path"]: c for c in manifest["changes"]}
    assert by_path["run.sh"]["mode"] == "0755" and by_path["added.txt"]["size"] == 4
    assert by_path["added.txt"]["sha256"] == "7aa7a5359173d05b63cfd682e3c38487f3cb4f7f1d60659fe59fab1505977d4c"
    assert manifest["left_out"] == [{"path": "big.bin", "reason": BIG}, {"path": "passwd", "reason": PASSWD},
                                    {"path": "pipe", "reason": SPECIAL}]
    patch = (review / "changes.patch").read_text()
    assert "diff --git a/src/a.txt b/src/a.txt\n--- a/src/a.txt\n+++ b/src/a.txt\n@@ -1,2 +1,3 @@\n one\n two\n+three\n" in patch
    assert "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n" in patch
    assert "blob" not in patch and "passwd" not in patch
    scope.assert_clean()


def test_a_patch_alone_applies_to_the_original_tree(scope, base):
    result = run(scope, base, "review.patch")
    assert result.returncode == 0, describe(result)
    assert "note: --changes: left out 'blob': a binary file: not in the patch" in result.stderr.splitlines()
    applied = base / "applied"
    shutil.copytree(base / "project", applied, symlinks=True)
    git = subprocess.run(["git", "apply", str(base / "review.patch")], cwd=applied, capture_output=True, text=True)
    assert git.returncode == 0, git.stderr
    listing = sorted(str(p.relative_to(applied)) for p in applied.rglob("*"))
    assert listing == [".env", "added.txt", "made", "made/file", "made/link", "run.sh", "same.txt", "src",
                       "src/a.txt"]
    assert (applied / "src" / "a.txt").read_text() == "one\ntwo\nthree\n"
    assert os.readlink(applied / "made" / "link") == "../added.txt"
    assert (applied / "run.sh").stat().st_mode & 0o111


def test_a_workload_that_changes_nothing_brings_back_nothing_and_its_status(scope, base):
    result = run(scope, base, "review", script="exit 3")
    assert result.returncode == 3, describe(result)
    assert json.loads((base / "review" / "manifest.json").read_text())["changes"] == []
    assert (base / "review" / "changes.patch").read_text() == ""
    assert list((base / "review" / "files").iterdir()) == []


def test_an_existing_out_is_refused_before_the_run(scope, base):
    (base / "review").mkdir()
    result = run(scope, base, "review", script="touch /context/x")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (f"error: --changes 'review': {base}/review exists; nucleus creates a "
                             "destination only anew, and replaces nothing\nhint: remove it, or name another\n")
    assert list((base / "review").iterdir()) == []
    scope.assert_clean()


def test_a_run_whose_setup_fails_writes_no_changes(scope, base):
    result = scope.nucleus(*scope.run_args("--context", str(base / "project"), "--changes", "review"),
                           "--", "true", cwd=base, extra_env={"NUCLEUS_FAIL_AT": "LoadSeccomp"})
    assert result.returncode == 125, describe(result)
    assert not (base / "review").exists()
    scope.assert_clean()
