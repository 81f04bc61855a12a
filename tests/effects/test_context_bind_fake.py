"""A recursive bind with flags (a bound context, the system directories): one
mount_setattr(AT_RECURSIVE) for the whole tree, then every mount at or below the target checked
in mountinfo (a fake one here), a per-mount remount where the kernel lacks mount_setattr, and a
bound context taken from the descriptor opened before the run. Against the recording fake of
libc; runs as any user."""

from __future__ import annotations

import errno
import os

import pytest

from nucleus import vocab as v
from nucleus.effects import abi, fs, handlers, setup
from tests.fakes.libc import fake_libc_fixture, mount_flags  # noqa: F401 - the fake_libc fixture

RO = ("rdonly", "nosuid", "nodev")
RO_ATTRS = abi.MOUNT_ATTR_RDONLY | abi.MOUNT_ATTR_NOSUID | abi.MOUNT_ATTR_NODEV


def run(intent: v.Intent) -> None:
    handlers.child_handler(intent)(setup.SetupProcess(), intent)


def mountinfo(tmp_path, monkeypatch, *mounts: tuple[str, str]) -> None:
    lines = [f"{30 + i} 1 0:{i} / {point} {options} - fs none rw\n"
             for i, (point, options) in enumerate(mounts)]
    path = tmp_path / "mountinfo"
    path.write_text("".join(lines))
    monkeypatch.setattr(fs, "MOUNTINFO", str(path))


@pytest.fixture
def paths(tmp_path):
    source, target = tmp_path / "src", tmp_path / "root" / "context"
    source.mkdir()
    return source, target


def test_a_recursive_bind_sets_the_flags_on_every_mount_and_checks_them(fake_libc, paths, tmp_path,
                                                                         monkeypatch):
    source, target = paths
    mountinfo(tmp_path, monkeypatch, ("/", "rw"), (str(target), "ro,nosuid,nodev,relatime"),
              (f"{target}/sub", "ro,nosuid,nodev,noexec"), (f"{target}/sub/deeper", "ro,nodev,nosuid"))
    run(v.BindMount(str(source), str(target), RO, recursive=True))
    assert fake_libc.calls == [
        ("mount", (str(source), str(target), None, abi.MS_BIND | abi.MS_REC, None)),
        ("mount_setattr", (abi.AT_FDCWD, str(target), abi.AT_RECURSIVE, RO_ATTRS, 0, 0, 0)),
    ]


def test_a_submount_that_lacks_a_flag_fails_the_step_naming_it(fake_libc, paths, tmp_path, monkeypatch):
    source, target = paths
    mountinfo(tmp_path, monkeypatch, (str(target), "ro,nosuid,nodev"),
              (f"{target}/sub", "rw,nosuid"), (f"{target}/my\\040dir", "ro,nosuid"),
              (f"{target}-other", "rw"))  # a sibling, not below the target
    with pytest.raises(OSError) as info:
        run(v.BindMount(str(source), str(target), RO, recursive=True))
    assert info.value.errno == errno.EPERM
    assert info.value.strerror == (f"mount flags: {target}/sub lacks rdonly, nodev; "
                                   f"{target}/my dir lacks nodev")


def test_nothing_mounted_at_the_target_fails_the_check(fake_libc, paths, tmp_path, monkeypatch):
    source, target = paths
    mountinfo(tmp_path, monkeypatch, ("/", "rw"))
    with pytest.raises(OSError, match="mount flags: nothing is mounted at"):
        run(v.BindMount(str(source), str(target), RO, recursive=True))


def test_without_mount_setattr_each_mount_is_remounted(fake_libc, paths, tmp_path, monkeypatch):
    """Before Linux 5.12: every mount of the tree, by its path, keeping its locked flags."""
    source, target = paths
    mountinfo(tmp_path, monkeypatch, (str(target), "ro,nosuid,nodev"), (f"{target}/sub", "ro,nosuid,nodev"))
    fake_libc.fail("mount_setattr", errno.ENOSYS)
    fake_libc.returns("statvfs", mount_flags(os.ST_NOEXEC), mount_flags(0))
    run(v.BindMount(str(source), str(target), RO, recursive=True))
    remount = abi.MS_BIND | abi.MS_REMOUNT | abi.MS_RDONLY | abi.MS_NOSUID | abi.MS_NODEV
    assert fake_libc.calls[2:] == [
        ("statvfs", (str(target),)),
        ("mount", (None, str(target), None, remount | abi.MS_NOEXEC, None)),
        ("statvfs", (f"{target}/sub",)),
        ("mount", (None, f"{target}/sub", None, remount, None)),
    ]


def test_another_mount_setattr_failure_fails_the_step(fake_libc, paths):
    source, target = paths
    fake_libc.fail("mount_setattr", errno.EPERM)
    with pytest.raises(abi.SyscallError) as info:
        run(v.BindMount(str(source), str(target), RO, recursive=True))
    assert str(info.value) == (
        f"mount_setattr(AT_FDCWD, '{target}', AT_RECURSIVE, {{attr_set=MOUNT_ATTR_RDONLY|"
        "MOUNT_ATTR_NOSUID|MOUNT_ATTR_NODEV, attr_clr=0, propagation=0, userns_fd=0}) failed: "
        "EPERM (Operation not permitted)")


# --- a bound context, from the descriptor opened before the run ----------------------------------


def test_a_bound_context_is_its_directory_opened_again_and_compared(fake_libc, paths, tmp_path,
                                                                    monkeypatch):
    source, target = paths
    mountinfo(tmp_path, monkeypatch, (str(target), "ro,nosuid,nodev"))
    opened = os.open(source, os.O_PATH | os.O_DIRECTORY)
    try:
        run(v.BindMount(str(source), str(target), RO, recursive=True, opened=opened))
    finally:
        os.close(opened)
    (call, (bound, *rest)), setattr_call = fake_libc.calls
    assert call == "mount" and bound.startswith("/proc/self/fd/")
    assert rest == [str(target), None, abi.MS_BIND | abi.MS_REC, None]
    assert setattr_call[0] == "mount_setattr"
    assert target.is_dir()


def test_a_bound_context_swapped_since_it_was_opened_is_not_bound(fake_libc, paths, tmp_path):
    source, target = paths
    opened = os.open(source, os.O_PATH | os.O_DIRECTORY)
    try:
        os.rename(source, tmp_path / "moved")
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "elsewhere", source)
        with pytest.raises(OSError) as info:
            run(v.BindMount(str(source), str(target), RO, recursive=True, opened=opened))
        os.unlink(source)
        source.mkdir()  # another directory by the same name
        with pytest.raises(OSError) as other:
            run(v.BindMount(str(source), str(target), RO, recursive=True, opened=opened))
    finally:
        os.close(opened)
    assert info.value.errno == errno.ESTALE
    assert info.value.strerror.startswith(f"{str(source)!r} is not the directory opened before the run any more")
    assert other.value.strerror == f"{str(source)!r} is not the directory opened before the run any more"
    assert fake_libc.calls == []
