"""--violations FILE is opened once, safely, before anything changes (nucleus.effects.prepare.
AppendFile): a regular file of the caller's with one name, never through a symlink; a run refused
afterwards takes back a file it made."""

from __future__ import annotations

import os

import pytest

from nucleus.effects.prepare import AppendFile
from nucleus.errors import InvalidInput


def test_a_new_file_is_made_0600_and_appended_to(tmp_path):
    path = tmp_path / "v.ndjson"
    f = AppendFile("--violations", str(path))
    assert f.created and oct(path.stat().st_mode & 0o777) == "0o600"
    os.write(f.fd, b"one\n")
    os.close(f.fd)
    again = AppendFile("--violations", str(path))
    assert not again.created
    os.write(again.fd, b"two\n")
    os.close(again.fd)
    assert path.read_text() == "one\ntwo\n"


def test_nothing_is_opened_without_a_path():
    f = AppendFile("--violations", None)
    assert f.fd is None
    f.discard()


@pytest.mark.parametrize("kind, message", [
    ("symlink", "cannot be opened for appending: is a symbolic link"),
    ("fifo", "cannot be opened for appending: is not a regular file (a FIFO or a socket)"),
    ("directory", "cannot be opened for appending: Is a directory"),
    ("hardlink", "has 2 names (hard links)"),
])
def test_what_is_not_a_file_of_the_caller_s_own_is_refused(tmp_path, kind, message):
    path = tmp_path / "v.ndjson"
    target = tmp_path / "target"
    target.write_text("keep\n")
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        os.link(target, path)
    with pytest.raises(InvalidInput) as e:
        AppendFile("--violations", str(path))
    assert str(e.value).startswith(f"--violations {str(path)!r}: {message}")
    assert target.read_text() == "keep\n"


@pytest.mark.requires("root")
def test_another_user_s_file_is_refused(tmp_path):
    path = tmp_path / "v.ndjson"
    path.write_text("")
    os.chown(path, 65534, 65534)
    with pytest.raises(InvalidInput, match="belongs to uid 65534"):
        AppendFile("--violations", str(path))


def test_discard_removes_only_an_empty_file_it_made(tmp_path):
    made = AppendFile("--violations", str(tmp_path / "new"))
    made.discard()
    assert not (tmp_path / "new").exists() and made.fd is None
    (tmp_path / "old").write_text("earlier runs\n")
    kept = AppendFile("--violations", str(tmp_path / "old"))
    kept.discard()
    assert (tmp_path / "old").read_text() == "earlier runs\n"
    written = AppendFile("--violations", str(tmp_path / "written"))
    os.write(written.fd, b"x\n")
    written.discard()
    assert (tmp_path / "written").read_text() == "x\n"
