"""Who `-u` runs the workload as (nucleus.config.users, nucleus.plan.users): the value's form,
the account a name or number stands for in the container's /etc/passwd and /etc/group, the
supplementary groups and home that come with it, the entries the generated files gain for a
uid without one, and ids the container's user namespace does not map, refused by flag and value.
Pure."""

from __future__ import annotations

import pytest

from nucleus.config import users as spec
from nucleus.config.container import DEFAULT_HOME
from nucleus.errors import InvalidInput
from nucleus.plan import users

PRIVILEGED = ((0, 100000, 65536),)
ROOTLESS = ((0, 1000, 1),)
PASSWD = """root:x:0:0:root:/root:/bin/bash
# a comment, and a line that is not an entry
broken
alice:x:1000:1000:Alice:/home/alice:/bin/bash
bob:x:1001:100::/srv/../etc:/bin/sh
svc:x:999:999::/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
users:x:100:alice,bob
alice:x:1000:
wheel:x:10:alice
far:x:70000:alice
"""


def resolve(text: str, uid_map=PRIVILEGED, gid_map=PRIVILEGED, **kw) -> users.Account:
    return users.resolve(text, PASSWD, GROUP, uid_map, gid_map, **kw)


@pytest.mark.parametrize("text,parts", [
    ("1000", ("1000", None)), ("alice", ("alice", None)), ("1000:100", ("1000", "100")),
    ("alice:wheel", ("alice", "wheel")), ("nobody:65534", ("nobody", "65534")), ("m$", ("m$", None)),
])
def test_the_forms_of_a_user(text, parts):
    assert spec.parse(text) == spec.UserSpec(*parts)


@pytest.mark.parametrize("text,problem", [
    ("", "the user is empty"), (":100", "the user is empty"), ("1000:", "the group is empty"),
    ("a b", "'a b' is not a user name or id"), ("1000:x:y", "'x:y' is not a group name or id"),
    ("9999999999", "user id 9999999999 is out of range"), ("-1", "'-1' is not a user name or id"),
    ("root\n", "is not a user name or id"),
])
def test_a_malformed_user_is_refused_by_flag_and_value(text, problem):
    with pytest.raises(InvalidInput) as e:
        spec.parse(text)
    assert e.value.message.startswith(f"--user {text!r}: ") and problem in e.value.message
    assert "-u 1000" in (e.value.hint or "")


def test_a_name_takes_its_entry_its_groups_and_its_home():
    a = resolve("alice")
    assert (a.uid, a.gid, a.name, a.group_name, a.home) == (1000, 1000, "alice", "alice", "/home/alice")
    # Every group listing it but its primary one, and only those the namespace maps (not 70000).
    assert a.groups == (10, 100)
    assert a.switch == (1000, 1000, (10, 100))


def test_a_group_given_replaces_the_primary_group():
    assert (resolve("alice:wheel").gid, resolve("alice:wheel").groups) == (10, (100,))
    assert resolve("alice:5").gid == 5


def test_a_number_with_an_entry_is_that_entry():
    assert resolve("1000") == resolve("alice")


def test_a_number_without_an_entry_gets_its_own_gid_and_the_unnamed_home():
    a = resolve("4242")
    assert (a.uid, a.gid, a.groups, a.name, a.group_name, a.home) == (4242, 4242, (), "", "", "/home/user")


def test_root_without_groups_changes_nothing():
    assert resolve("0").switch is None and resolve("root").switch is None
    assert resolve("0:10").switch == (0, 10, ())


@pytest.mark.parametrize("name,home", [("bob", DEFAULT_HOME), ("svc", DEFAULT_HOME), ("root", "/root")])
def test_a_home_the_container_cannot_have_falls_back_to_the_default(name, home):
    """/srv/../etc is not normal, /nonexistent is "no home": the default home is theirs then."""
    assert resolve(name).home == home


@pytest.mark.parametrize("path,usable", [
    ("/home/a", True), ("/root", True), ("/var/lib/x", True), ("/", False), ("/nonexistent", False),
    ("/usr/lib/x", False), ("/etc", False), ("/tmp/h", False), ("/context", False), ("home/a", False),
    ("/home/../etc", False), ("//home", False), ("/proc/1", False),
])
def test_usable_homes(path, usable):
    assert users.usable_home(path) is usable


def test_an_unknown_name_is_refused_naming_where_it_was_looked_up():
    with pytest.raises(InvalidInput) as e:
        resolve("carol")
    assert e.value.message == ("--user 'carol': no user 'carol' in the container's generated "
                               "/etc/passwd and /etc/group")
    with pytest.raises(InvalidInput, match="no group 'staff'"):
        resolve("alice:staff")


def test_why_the_files_could_not_be_read_is_part_of_the_refusal():
    with pytest.raises(InvalidInput, match=r"no user 'alice' in the closure \(etc/passwd is a symbolic link\)"):
        users.resolve("alice", "", "", PRIVILEGED, PRIVILEGED, where="the closure",
                      problem="etc/passwd is a symbolic link")


def test_a_rootless_container_maps_only_root():
    assert resolve("0", ROOTLESS, ROOTLESS).switch is None
    with pytest.raises(InvalidInput) as e:
        resolve("1000", ROOTLESS, ROOTLESS)
    assert e.value.message == ("--user '1000': uid 1000 is not mapped in the container's user "
                               "namespace (it maps 0)")
    assert "rootless run maps only the caller" in (e.value.hint or "")
    with pytest.raises(InvalidInput, match="gid 100 is not mapped"):
        resolve("0:100", ROOTLESS, ROOTLESS)
    with pytest.raises(InvalidInput, match=r"uid 70000 is not mapped .*\(it maps 0-65535\)"):
        resolve("70000")


def test_the_generated_files_gain_an_entry_for_a_number_without_one():
    passwd, group = users.generated("/home/agent")
    assert passwd.splitlines()[0] == "root:x:0:0:root:/home/agent:/bin/sh" and len(passwd.splitlines()) == 2
    unnamed = users.resolve("1000", passwd, group, PRIVILEGED, PRIVILEGED)
    passwd, group = users.generated("/home/agent", unnamed)
    assert passwd.splitlines()[-1] == "user:x:1000:1000::/home/user:/bin/sh"
    assert group.splitlines()[-1] == "user:x:1000:"
    # Looked up again, the entry names it (whoami, id).
    again = users.resolve("1000", passwd, group, PRIVILEGED, PRIVILEGED)
    assert (again.name, again.group_name, again.home) == ("user", "user", "/home/user")
    nobody = users.resolve("nobody", passwd, group, PRIVILEGED, PRIVILEGED)
    assert users.generated("/home/agent", nobody) == users.generated("/home/agent")
    assert (nobody.uid, nobody.gid, nobody.group_name) == (65534, 65534, "nogroup")
