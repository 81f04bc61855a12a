"""process.user.additionalGids (the workload's supplementary groups, each mapped in the
container's user namespace) and linux.rootfsPropagation (the new root's, set once the old root
is detached: pivot_root refuses a shared root)."""

from __future__ import annotations

import copy

import pytest

from nucleus import vocab as v
from nucleus.config import oci
from nucleus.effects import abi, fs
from nucleus.errors import InvalidInput
from nucleus.machines import filesystem
from nucleus.plan import users
from tests.fakes.libc import fake_libc_fixture  # noqa: F401 - the fake_libc fixture
from tests.unit.machine_support import ok
from tests.unit.test_oci_config import RUNC_SPEC

GID_MAP = ((0, 100000, 65536),)


def load(change) -> oci.Bundle:
    data = copy.deepcopy(RUNC_SPEC)
    change(data)
    return oci.load(data, "/srv/bundle", "c1")


def test_additional_gids_are_kept_once_each():
    bundle = load(lambda d: d["process"]["user"].update(uid=1000, gid=1000, additionalGids=[27, 5, 27]))
    assert (bundle.config.user, bundle.config.groups) == ("1000:1000", (27, 5))


@pytest.mark.parametrize("gids, message", [
    ([5, "wheel"], "process.user.additionalGids[1] 'wheel': must be an integer of at least 0"),
    ([-1], "process.user.additionalGids[0] -1: must be an integer of at least 0"),
    ([1 << 32], f"process.user.additionalGids[0] {1 << 32}: must be a gid from 0 to 4294967294"),
    ([None], "process.user.additionalGids[0] None: must be a gid"),
])
def test_a_bad_gid_is_refused_naming_it(gids, message):
    with pytest.raises(InvalidInput) as e:
        load(lambda d: d["process"]["user"].update(additionalGids=gids))
    assert e.value.message.startswith(f"config.json: {message}"), e.value.message


def test_the_groups_join_the_accounts_and_must_be_mapped():
    account = users.Account(1000, 1000, (20,))
    assert users.with_groups(account, (5, 20), GID_MAP) == (1000, 1000, (5, 20))
    assert users.with_groups(None, (5,), GID_MAP) == (0, 0, (5,))  # container root, with the group
    assert users.with_groups(None, (), GID_MAP) is None  # nothing to switch
    assert users.with_groups(account, (), GID_MAP) == account.switch
    with pytest.raises(InvalidInput) as e:
        users.with_groups(None, (5, 70000), GID_MAP, "config.json: process.user.additionalGids")
    assert e.value.message == ("config.json: process.user.additionalGids 70000: gid 70000 is not mapped in the "
                               "container's user namespace (it maps 0-65535)")


@pytest.mark.parametrize("value", oci.PROPAGATIONS)
def test_each_propagation_is_kept(value):
    assert load(lambda d: d["linux"].update(rootfsPropagation=value)).config.root_propagation == value


@pytest.mark.parametrize("value", ["rshare", "SHARED", 1])
def test_another_propagation_is_refused(value):
    with pytest.raises(InvalidInput, match=r"^config.json: linux.rootfsPropagation "):
        load(lambda d: d["linux"].update(rootfsPropagation=value))


def test_the_machine_asks_for_it_once_the_old_root_is_detached():
    s = filesystem.initial((), "/r", propagation="rshared")
    r = ok(filesystem.step(s, v.FsBegin()))
    r = ok(filesystem.step(r.state, v.FsDone("pivot")))
    assert r.intents == (v.DetachOldRoot("rshared"),)
    assert filesystem.to_tla(r.state) == filesystem.to_tla(  # the spec's variables do not see it
        ok(filesystem.step(ok(filesystem.step(filesystem.initial((), "/r"), v.FsBegin())).state,
                           v.FsDone("pivot"))).state)


@pytest.mark.parametrize("value, flags", [
    ("", None), ("shared", abi.MS_SHARED), ("rslave", abi.MS_SLAVE | abi.MS_REC),
    ("private", abi.MS_PRIVATE), ("runbindable", abi.MS_UNBINDABLE | abi.MS_REC),
])
def test_the_effect_sets_the_new_roots_after_detaching(fake_libc, value, flags):
    fs.detach_old_root(v.DetachOldRoot(value))
    expected = [("umount2", (".", abi.MNT_DETACH)), ("chdir", ("/",))]
    assert fake_libc.calls == expected + ([("mount", (None, "/", None, flags, None))] if flags else [])
