"""A mount point the plan asks for (MakeDirs: a --tmpfs's, /run/secrets, the root's
directories) is made below its root one component at a time without following a symlink: a
symlink there (one of the host's /etc links bound into the root) would lead the setup process,
which runs as host root before pivot_root, out of the root and onto the host's own tree."""

from __future__ import annotations

import errno
import os

import pytest

from nucleus import vocab as v
from nucleus.effects import handlers, setup
from tests.fakes.libc import fake_libc_fixture  # noqa: F401 - the fake_libc fixture


def run(intent: v.Intent) -> None:
    handlers.child_handler(intent)(setup.SetupProcess(), intent)


@pytest.mark.parametrize("rel", ["etc/alternatives/jre/made", "etc/alternatives/jre"],
                         ids=["through-a-link", "on-a-link"])
def test_a_symlink_below_the_root_is_refused_and_nothing_is_made_where_it_leads(fake_libc, tmp_path, rel):
    root, host = tmp_path / "root", tmp_path / "host-jvm"
    (root / "etc" / "alternatives").mkdir(parents=True)
    host.mkdir()
    (root / "etc" / "alternatives" / "jre").symlink_to(host)
    with pytest.raises(OSError) as e:
        run(v.MakeDirs(root=str(root), paths=(rel,), mode=0o755, owner=(100000, 100000)))
    assert e.value.errno == errno.ELOOP and "etc/alternatives/jre" in str(e.value)
    assert os.listdir(host) == [] and fake_libc.calls == []


def test_the_root_itself_may_be_reached_through_a_symlink(fake_libc, tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "state")
    run(v.MakeDirs(root=str(tmp_path / "link"), paths=("a/b", "a/c"), mode=0o700))
    assert sorted(os.listdir(tmp_path / "state" / "a")) == ["b", "c"]
    assert (tmp_path / "state" / "a" / "b").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("rel", ["../escape", "a/../../escape", "a/./b"])
def test_a_dot_or_dotdot_component_is_refused_and_nothing_is_made_above_the_root(fake_libc, tmp_path, rel):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(OSError) as e:
        run(v.MakeDirs(root=str(root), paths=(rel,), mode=0o755))
    assert e.value.errno == errno.EINVAL and rel in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["root"] and os.listdir(root) == []
