"""Landlock policy files: every message a bad one gets, and the access rights good ones grant
(tests/unit/policy_support.py says why the text is pinned)."""

from __future__ import annotations

import pytest

from nucleus.config import landlock_default as ll
from nucleus.config.policy import landlock_policy as lp
from tests.unit.policy_support import DATA, refusal

RIGHTS = "access rights: read, write, execute, create, remove, readdir, ioctl_dev, all"


def landlock(text: str, path="l.toml") -> lp.LandlockPolicy:
    return lp.parse_landlock_policy(text.encode(), path)


@pytest.mark.parametrize(
    "text, message, hint",
    [
        ("min_abi = \n", "l.toml: not valid TOML: Invalid value (at line 1, column 11)",
         "check the syntax near that position"),
        ("min_ab = 3\n", "l.toml: min_ab: unknown key",
         "did you mean 'min_abi'? the keys of a Landlock policy are: min_abi, rules"),
        ("min_abi = 0\n", "l.toml: min_abi: 0 is not a Landlock ABI version 1..7",
         "ABI 1 came with Linux 5.13, 2 with 5.19, 3 with 6.2 (truncate), 5 with 6.10 (ioctl on "
         "devices)"),
        ("min_abi = \"3\"\n", "l.toml: min_abi: '3' is not a Landlock ABI version 1..7",
         "ABI 1 came with Linux 5.13, 2 with 5.19, 3 with 6.2 (truncate), 5 with 6.10 (ioctl on "
         "devices)"),
        ("[rules]\npath = \"/tmp\"\n", "l.toml: rules: expected an array of [[rules]] tables, got "
         "a table {\"path\": \"/tmp\"}", "write each rule under [[rules]], with two brackets"),
        ("[[rules]]\npath = \"/tmp\"\naccess = [\"read\", \"exec\"]\n",
         "l.toml: rules[0].access[1]: unknown access right 'exec'",
         f"did you mean 'execute'? {RIGHTS}"),
        ("[[rules]]\npath = \"/tmp\"\naccess = [\"READ\"]\n",
         "l.toml: rules[0].access[0]: unknown access right 'READ'", f"did you mean 'read'? {RIGHTS}"),
        ("[[rules]]\npath = \"/tmp\"\naccess = []\n",
         "l.toml: rules[0].access: empty: the rule would grant nothing",
         "list rights among read, write, execute, create, remove, readdir, ioctl_dev, all, or "
         "remove the rule"),
        ("[[rules]]\npath = \"/tmp\"\naccess = \"read\"\n",
         "l.toml: rules[0].access: expected an array of access rights, got a string 'read'", None),
        ("[[rules]]\npath = \"/tmp\"\n", "l.toml: rules[0].access: missing",
         "each rule needs path = \"/dir\" and access = [\"read\"]"),
        ("[[rules]]\npath = \"/tmp\"\naccess = [\"read\"]\nmode = 1\n",
         "l.toml: rules[0].mode: unknown key", "the keys of a rule are: path, access"),
        ("[[rules]]\npath = \"tmp\"\naccess = [\"read\"]\n",
         "l.toml: rules[0].path: 'tmp' is not an absolute path",
         "write the full path from /, e.g. \"/etc/myservice\""),
        ("[[rules]]\npath = 5\naccess = [\"read\"]\n",
         "l.toml: rules[0].path: expected an absolute path, got an integer 5", None),
        ("[[rules]]\npath = \"/srv/../etc\"\naccess = [\"read\"]\n",
         "l.toml: rules[0].path: '/srv/../etc' contains '..'",
         "write the path without '..' components"),
        ("[[rules]]\npath = \"/tmp\"\naccess = [\"read\"]\n[[rules]]\npath = \"//tmp/./\"\n"
         "access = [\"write\"]\n", "l.toml: rules[1].path: '/tmp' is already given in rules[0]",
         "merge the two access lists into one rule"),
    ],
)
def test_landlock_errors(text, message, hint):
    assert refusal(landlock, text) == (message, hint)


def test_landlock_readme_example():
    policy = lp.parse_landlock_policy((DATA / "readme.landlock.toml").read_bytes(), "r.toml")
    assert policy.min_abi == 3
    assert [(r.path, sorted(r.access)) for r in policy.rules] == [
        ("/bin", ["execute", "read"]),
        ("/etc/myservice", ["read"]),
        ("/run/secrets", ["read"]),
        ("/tmp", ["create", "read", "remove", "write"]),
    ]
    assert policy.restrict_rules()[1] == ("/etc/myservice", frozenset({"read"}))


def test_landlock_read_does_not_imply_execute():
    policy = landlock('[[rules]]\npath = "/srv/"\naccess = ["read"]\n')
    (only,) = policy.rules
    assert only.path == "/srv" and policy.min_abi == 1
    assert only.mask == ll.READ_FILE | ll.READ_DIR
    assert not only.mask & ll.EXECUTE
    every = landlock('[[rules]]\npath = "/"\naccess = ["all"]\n').rules[0]
    assert every.mask == ll.FS_RIGHTS_BY_ABI[ll.LATEST_ABI] and every.mask & ll.EXECUTE


def test_landlock_empty_policy_has_no_rules():
    assert landlock("").rules == () and landlock("min_abi = 7\n").min_abi == 7
