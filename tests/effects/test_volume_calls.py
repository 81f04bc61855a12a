"""The calls of a volume's bind and of handing over the copied context (MountVolume, KeepTree),
against the recording fake of nucleus.effects.libc; the directories are real, in tmp_path: the
host object found again by its path without following a symlink, a detached copy of its mount
tree with the flags (and the id mapping) set on every mount before it is attached, the flags
checked in mountinfo; a detached read-only copy of the context sent over the socket."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from nucleus import vocab as v
from nucleus.effects import abi, fs, handlers, setup
from tests.fakes.libc import fake_libc_fixture  # noqa: F401 - the fake_libc fixture

CLONE = abi.OPEN_TREE_CLONE | abi.OPEN_TREE_CLOEXEC


def run(intent: v.Intent, process: setup.SetupProcess | None = None) -> None:
    handlers.child_handler(intent)(process or setup.SetupProcess(), intent)


@pytest.fixture
def mounted(tmp_path, monkeypatch):
    """A mountinfo that shows the volume's mount point with `options`."""

    def show(target, options: str) -> None:
        path = tmp_path / "mountinfo"
        path.write_text(f"90 27 0:50 / {os.path.realpath(target)} {options} - ext4 /dev/vda rw\n")
        monkeypatch.setattr(fs, "MOUNTINFO", str(path))

    return show


@pytest.mark.parametrize("idmapped", [True, False])
def test_a_volume_is_a_detached_copy_with_its_flags_then_attached(fake_libc, tmp_path, mounted, idmapped):
    source, target = tmp_path / "src", tmp_path / "root" / "out"
    source.mkdir()
    opened = os.open(source, os.O_PATH | os.O_CLOEXEC)
    mounted(target, "ro,nosuid,nodev,relatime,idmapped")
    fake_libc.returns("open_tree", 77)
    run(v.MountVolume(str(source), str(target), ("rdonly", "nosuid", "nodev"), opened,
                      9 if idmapped else -1, ((0, 100000), (0, 100000)) if idmapped else ()))
    assert target.is_dir()
    names = [name for name, _ in fake_libc.calls]
    assert names == ["open_tree", "mount_setattr", "move_mount", "close"]
    (_, tree_args), (_, attr_args), (_, move_args), (_, close_args) = fake_libc.calls
    assert tree_args[1:] == ("", CLONE | abi.AT_EMPTY_PATH | abi.AT_RECURSIVE)
    attrs = abi.MOUNT_ATTR_RDONLY | abi.MOUNT_ATTR_NOSUID | abi.MOUNT_ATTR_NODEV
    assert attr_args == (77, "", abi.AT_EMPTY_PATH | abi.AT_RECURSIVE,
                         attrs | (abi.MOUNT_ATTR_IDMAP if idmapped else 0), 0, 0, 9 if idmapped else 0)
    assert move_args == (77, "", abi.AT_FDCWD, str(target), abi.MOVE_MOUNT_F_EMPTY_PATH)
    assert close_args == (77,)


def test_a_file_volume_gets_a_file_as_its_mount_point(fake_libc, tmp_path, mounted):
    source, target = tmp_path / "app.conf", tmp_path / "root" / "etc" / "app.conf"
    source.write_text("x")
    mounted(target, "rw,nosuid,nodev")
    fake_libc.returns("open_tree", 77)
    run(v.MountVolume(str(source), str(target), ("nosuid", "nodev"), os.open(source, os.O_PATH | os.O_CLOEXEC)))
    assert target.is_file()


def test_a_volume_swapped_since_it_was_opened_is_not_bound(fake_libc, tmp_path):
    source, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    source.mkdir()
    elsewhere.mkdir()
    opened = os.open(source, os.O_PATH | os.O_CLOEXEC)
    source.rmdir()
    source.symlink_to(elsewhere)
    with pytest.raises(OSError) as info:
        run(v.MountVolume(str(source), str(tmp_path / "root" / "out"), ("nosuid", "nodev"), opened))
    assert info.value.errno == errno.ESTALE
    assert fake_libc.calls == []


def test_a_mount_below_without_the_flags_fails_the_check(fake_libc, tmp_path, monkeypatch):
    source, target = tmp_path / "src", tmp_path / "root" / "data"
    source.mkdir()
    info = tmp_path / "mountinfo"
    real = os.path.realpath(target.parent) + "/data"
    info.write_text(f"90 27 0:50 / {real} ro,nosuid,nodev - ext4 /dev/vda rw\n"
                    f"91 90 0:51 / {real}/inner rw,nosuid - tmpfs t rw\n")
    monkeypatch.setattr(fs, "MOUNTINFO", str(info))
    fake_libc.returns("open_tree", 77)
    with pytest.raises(OSError) as error:
        run(v.MountVolume(str(source), str(target), ("rdonly", "nosuid", "nodev"),
                          os.open(source, os.O_PATH | os.O_CLOEXEC)))
    assert error.value.strerror == f"mount flags: {real}/inner lacks rdonly, nodev"


def test_the_context_is_handed_over_read_only(fake_libc, tmp_path):
    supervisor, inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tree = os.open(tmp_path, os.O_PATH | os.O_CLOEXEC)
    fake_libc.returns("open_tree", tree)
    run(v.KeepTree(str(tmp_path)), setup.SetupProcess(handover=inside))
    _, fds, _, _ = socket.recv_fds(supervisor, 1, 1)
    assert os.path.samestat(os.fstat(fds[0]), os.stat(tmp_path))
    kept = abi.MOUNT_ATTR_RDONLY | abi.MOUNT_ATTR_NOSUID | abi.MOUNT_ATTR_NODEV | abi.MOUNT_ATTR_NOEXEC
    assert fake_libc.calls == [("open_tree", (abi.AT_FDCWD, str(tmp_path), CLONE)),
                               ("mount_setattr", (tree, "", abi.AT_EMPTY_PATH, kept, 0, 0, 0)),
                               ("close", (tree,))]
    os.close(fds[0])
    os.close(tree)
    supervisor.close()
    inside.close()


def test_without_a_socket_nothing_is_handed_over(fake_libc, tmp_path):
    with pytest.raises(OSError) as info:
        run(v.KeepTree(str(tmp_path)))
    assert info.value.errno == errno.EBADF
    assert fake_libc.calls == []
