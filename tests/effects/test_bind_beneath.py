"""A bind from below a chosen directory (BindMount's `beneath`: a host /etc entry, a directory of
the copied context that --allow-exec names): the source is opened one component at a time
without following a symlink and bound from that descriptor, the mount point made to match it.
Against the recording fake of nucleus.effects.libc; the files are real, in tmp_path."""

from __future__ import annotations

import errno
import os

import pytest

from nucleus import vocab as v
from nucleus.effects import abi, fs, handlers, setup
from tests.fakes.libc import fake_libc_fixture  # noqa: F401 - the fake_libc fixture


def run(intent: v.Intent) -> None:
    handlers.child_handler(intent)(setup.SetupProcess(), intent)


def bound_from(fake_libc) -> str:
    (call,) = [c for c in fake_libc.calls if c[0] == "mount"]
    return call[1][0]


@pytest.mark.parametrize("rel,is_dir", [("ssl/certs", True), ("ssl/openssl.cnf", False)])
def test_the_source_is_bound_from_its_descriptor_and_the_mount_point_matches_it(fake_libc, tmp_path, rel,
                                                                                 is_dir):
    etc, root = tmp_path / "etc", tmp_path / "root" / "etc"
    (etc / "ssl" / "certs").mkdir(parents=True)
    (etc / "ssl" / "openssl.cnf").write_text("x")
    run(v.BindMount(str(etc / rel), str(root / rel), beneath=str(etc)))
    assert (root / rel).is_dir() == is_dir and (root / rel).exists()
    assert bound_from(fake_libc).startswith("/proc/self/fd/")
    assert fake_libc.calls == [("mount", (bound_from(fake_libc), str(root / rel), None, abi.MS_BIND, None))]


@pytest.mark.parametrize("link", ["ssl", "ssl/certs"], ids=["parent", "last"])
def test_a_symlink_anywhere_below_the_directory_is_refused_and_nothing_is_bound(fake_libc, tmp_path, link):
    etc, elsewhere = tmp_path / "etc", tmp_path / "secret"
    (elsewhere / "certs").mkdir(parents=True)
    (etc / "ssl").mkdir(parents=True)
    if link == "ssl":
        (etc / "ssl").rmdir()
        os.symlink(elsewhere, etc / "ssl")
    else:
        os.symlink(elsewhere / "certs", etc / "ssl" / "certs")
    with pytest.raises(OSError) as info:
        run(v.BindMount(str(etc / "ssl/certs"), str(tmp_path / "root/ssl/certs"), beneath=str(etc)))
    assert info.value.errno == errno.ELOOP
    assert info.value.strerror == f"{str(etc / link)!r} is a symlink, which is not followed here"
    assert fake_libc.calls == []


def test_a_missing_source_is_named(fake_libc, tmp_path):
    with pytest.raises(OSError) as info:
        fs.open_beneath(str(tmp_path), str(tmp_path / "bin" / "x"))
    assert (info.value.errno, info.value.strerror) == (errno.ENOENT, f"{str(tmp_path / 'bin')!r} does not exist")
    with pytest.raises(OSError, match="is not below"):
        fs.open_beneath(str(tmp_path / "a"), str(tmp_path / "b"))
