"""What --changes brings back (nucleus.config.changes): the comparison of two snapshots, the
symlinks it refuses, the manifest and the flags; the patch in git's format (made by
nucleus.effects.changes, a pure function of its texts); and the ends of `nucleus cp`
(nucleus.config.transfer)."""

from __future__ import annotations

import pytest

from nucleus.config import changes, transfer
from nucleus.config.changes import DIRECTORY, FILE, SYMLINK, Change, Entry, LeftOut
from nucleus.config.container import ContainerConfig, validate
from nucleus.effects import changes as patches
from nucleus.errors import InvalidInput

A = Entry(FILE, 0o644, 2, "aa")


def test_added_modified_and_deleted_in_path_order():
    before = {"a": A, "d": Entry(DIRECTORY, 0o755, 0), "d/x": A, "gone": A, "mode": A}
    after = {"a": Entry(FILE, 0o644, 3, "bb"), "d": Entry(DIRECTORY, 0o755, 0), "d/x": A,
             "mode": Entry(FILE, 0o755, 2, "aa"), "new": Entry(SYMLINK, 0o777, 1, "a")}
    assert [(c.path, c.change) for c in changes.compare(before, after)] == [
        ("a", "modified"), ("gone", "deleted"), ("mode", "modified"), ("new", "added")]


def test_the_copy_gives_modes_without_special_bits_and_owner_writable_directories():
    assert changes.copied_mode(FILE, 0o104755) == 0o755
    assert changes.copied_mode(DIRECTORY, 0o041555) == 0o755


@pytest.mark.parametrize(("path", "target", "refused"), [
    ("a", "b", None),
    ("d/a", "../b", None),
    ("d/e/a", "../../b/c", None),
    ("a", "/etc/passwd", "a symlink to '/etc/passwd', an absolute path: it would point elsewhere on the host"),
    ("a", "../x", "a symlink to '../x', out of the tree"),
    ("d/a", "../../x", "a symlink to '../../x', out of the tree"),
    ("a", "up/../../x", "a symlink to 'up/../../x', through the symlink 'up'"),
    ("a", "", "a symlink to '', an absolute path: it would point elsewhere on the host"),
])
def test_a_symlink_comes_back_only_if_it_stays_in_the_tree(path, target, refused):
    assert changes.link_refusal(path, target, {"up": SYMLINK, "d": DIRECTORY}) == refused


def test_the_patch_is_gits_unified_format():
    added = Change("new.txt", "added", None, Entry(FILE, 0o644, 4, "x"))
    assert patches.unified(added, None, "one\n") == (
        "diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n"
        "@@ -0,0 +1 @@\n+one\n")
    deleted = Change("old.txt", "deleted", Entry(FILE, 0o600, 4, "x"), None)
    assert patches.unified(deleted, "one\ntwo", None) == (
        "diff --git a/old.txt b/old.txt\ndeleted file mode 100600\n--- a/old.txt\n+++ /dev/null\n"
        "@@ -1,2 +0,0 @@\n-one\n-two\n\\ No newline at end of file\n")
    chmod = Change("run.sh", "modified", Entry(FILE, 0o644, 1, "x"), Entry(FILE, 0o755, 1, "x"))
    assert patches.unified(chmod, "x\n", "x\n") == (
        "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n")


def test_text_is_utf8_without_nul_and_not_too_large():
    assert changes.text_of(b"caf\xc3\xa9\n") == "café\n"
    assert changes.text_of(b"\x00\x01") is None
    assert changes.text_of(b"\xff") is None
    assert changes.text_of(b"a" * (changes.TEXT_MAX + 1)) is None


def test_the_manifest_names_each_change_and_what_was_left_out():
    rows = changes.document("/src", [
        Change("a", "modified", A, Entry(FILE, 0o644, 3, "bb")),
        Change("l", "added", None, Entry(SYMLINK, 0o777, 1, "a")),
        Change("g", "deleted", A, None)], [LeftOut("fifo", changes.SPECIAL)])
    assert rows == {"context": "/src", "changes": [
        {"path": "a", "change": "modified", "type": "file", "size": 3, "mode": "0644", "sha256": "bb"},
        {"path": "l", "change": "added", "type": "symlink", "size": 1, "mode": "0777", "target": "a"},
        {"path": "g", "change": "deleted", "type": "file", "size": 2, "mode": "0644", "sha256": "aa"},
    ], "left_out": [{"path": "fifo", "reason": changes.SPECIAL}]}


@pytest.mark.parametrize(("fields", "message"), [
    ({"changes": "out"}, "--changes 'out': needs --context: the changes are those of /context"),
    ({"changes": "out", "context": "/src", "context_mode": "bind"},
     "--changes 'out': applies to a copied context, not --context-mode bind"),
    ({"changes_max_size": 10}, "--changes-max-size needs --changes"),
])
def test_the_changes_flags_are_checked_before_anything(fields, message):
    with pytest.raises(InvalidInput) as info:
        validate(ContainerConfig(argv=("true",), **fields))
    assert info.value.message == message


def test_a_patch_is_asked_for_by_its_suffix():
    assert changes.patch_only("review.patch") and changes.patch_only("x.diff")
    assert not changes.patch_only("review")


# --- nucleus cp ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dest", "ends"), [
    ("box:/context/out.txt", ".", transfer.Ends("box", "/context/out.txt", ".", True)),
    ("./in.txt", "box:/tmp/", transfer.Ends("box", "/tmp", "./in.txt", False)),
    ("/a:b", "c1:/x", transfer.Ends("c1", "/x", "/a:b", False)),
])
def test_one_end_names_the_container(src, dest, ends):
    assert transfer.parse(src, dest) == ends


@pytest.mark.parametrize(("src", "dest", "message"), [
    ("a", "b", "nucleus cp: name a container on exactly one side, as CONTAINER:PATH"),
    ("a:/x", "b:/y", "nucleus cp: name a container on exactly one side, as CONTAINER:PATH (both 'a:/x' and 'b:/y' do)"),
    ("box:out.txt", ".", "'box:out.txt': the container's path 'out.txt' is not absolute"),
    ("box:/a/../etc", ".", "'box:/a/../etc': the container's path '/a/../etc' holds '..' or a NUL byte"),
])
def test_bad_ends_are_refused(src, dest, message):
    with pytest.raises(InvalidInput) as info:
        transfer.parse(src, dest)
    assert info.value.message == message


def test_the_root_is_no_entry_to_copy():
    assert transfer.entry_name("/context/", "box:/context/") == "context"
    with pytest.raises(InvalidInput):
        transfer.entry_name("/", "box:/")
