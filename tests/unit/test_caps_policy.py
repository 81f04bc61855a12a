"""Capability policy files: every message a bad one gets, what good ones keep, and the
capabilities production mode refuses (tests/unit/policy_support.py says why the text is pinned)."""

from __future__ import annotations

import pytest

from nucleus.config import capabilities as capspec
from nucleus.config.policy import caps_policy as cp
from tests.unit.policy_support import DATA, error, refusal

CAP_HINT = "names are those of capabilities(7), with or without CAP_: NET_BIND_SERVICE"
CAP_TABLES = "the tables of a capability policy are: bounding, permitted, effective, inheritable, ambient"


def caps(text: str, path="c.toml") -> cp.CapsPolicy:
    return cp.parse_caps_policy(text.encode(), path)


@pytest.mark.parametrize(
    "text, message, hint",
    [
        ("[bounding\nkeep = []\n", "c.toml: not valid TOML: Expected ']' at the end of a table "
         "declaration (at line 1, column 10)", "check the syntax near that position"),
        ("[bounds]\nkeep = []\n", "c.toml: bounds: unknown key", f"did you mean 'bounding'? {CAP_TABLES}"),
        ("[bounding]\nkeep = []\ndrop = []\n", "c.toml: bounding.drop: unknown key",
         "the keys of [bounding] are: keep"),
        ("[bounding]\nkeep = [\"NET_BIND\"]\n", "c.toml: bounding.keep[0]: unknown capability "
         "'NET_BIND'", f"did you mean 'CAP_NET_BIND_SERVICE'? {CAP_HINT}"),
        ("[ambient]\nkeep = [\"KILL\", \"CAP_FLY\"]\n", "c.toml: ambient.keep[1]: unknown "
         "capability 'CAP_FLY'", CAP_HINT),
        ("[bounding]\nkeep = [10]\n", "c.toml: bounding.keep[0]: expected a capability name, got "
         "an integer 10", CAP_HINT),
        ("[bounding]\nkeep = \"NET_BIND_SERVICE\"\n", "c.toml: bounding.keep: expected an array "
         "of capability names, got a string 'NET_BIND_SERVICE'", None),
        ("[bounding]\n", "c.toml: bounding.keep: missing",
         "list the capabilities to keep; keep = [] keeps none"),
        ("bounding = 3\n", "c.toml: bounding: expected a table, got an integer 3",
         "write it as [bounding] with keep = [...]"),
        ("[permitted]\nkeep = [\"KILL\"]\n", "c.toml: permitted.keep: 'CAP_KILL' is not in "
         "bounding (none: the table is absent)",
         "add it to [bounding] keep, or remove it from [permitted]"),
        ("[bounding]\nkeep = [\"KILL\"]\n[effective]\nkeep = [\"CHOWN\"]\n", "c.toml: "
         "effective.keep: 'CAP_CHOWN' is not in permitted",
         "add it to [permitted] keep, or remove it from [effective]"),
        ("[bounding]\nkeep = [\"KILL\"]\n[inheritable]\nkeep = [\"CHOWN\"]\n", "c.toml: "
         "inheritable.keep: 'CAP_CHOWN' is not in bounding",
         "add it to [bounding] keep, or remove it from [inheritable]"),
        ("[bounding]\nkeep = [\"KILL\"]\n[ambient]\nkeep = [\"KILL\"]\n", "c.toml: ambient.keep: "
         "'CAP_KILL' is not in inheritable",
         "the kernel keeps an ambient capability only when it is permitted and inheritable"),
        ("[bounding]\nkeep = [\"KILL\"]\n[permitted]\nkeep = []\n[inheritable]\nkeep = "
         "[\"KILL\"]\n[ambient]\nkeep = [\"KILL\"]\n", "c.toml: ambient.keep: 'CAP_KILL' is not "
         "in permitted",
         "the kernel keeps an ambient capability only when it is permitted and inheritable"),
    ],
)
def test_caps_errors(text, message, hint):
    assert refusal(caps, text) == (message, hint)


def test_caps_readme_example_drops_everything():
    policy = cp.parse_caps_policy((DATA / "readme.caps.toml").read_bytes(), "r.toml")
    for which in cp.CAP_SETS:
        assert getattr(policy, which) == frozenset()
    assert policy.simple and policy.keep == frozenset()
    assert caps("") == policy.__class__("c.toml", *[frozenset()] * 5)


def test_caps_missing_sets_follow_bounding():
    policy = cp.parse_caps_policy((DATA / "net-bind.caps.toml").read_bytes(), "n.toml")
    nbs = capspec.capability_number("NET_BIND_SERVICE")
    assert policy.bounding == policy.permitted == policy.effective == frozenset({nbs})
    assert policy.inheritable == policy.ambient == frozenset()
    assert policy.simple and policy.keep == frozenset({nbs})
    assert policy.names("effective") == ["CAP_NET_BIND_SERVICE"]
    assert policy.mask("bounding") == 1 << 10
    assert policy.dangerous() == []


def test_caps_all_five_tables_any_spelling():
    policy = cp.parse_caps_policy((DATA / "full.caps.toml").read_bytes(), "f.toml")
    assert policy.names("bounding") == ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert policy.names("permitted") == ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert policy.names("effective") == policy.names("inheritable") == policy.names("ambient") == [
        "CAP_NET_BIND_SERVICE"
    ]
    assert not policy.simple
    with pytest.raises(ValueError, match="unknown capability set 'bound'"):
        policy.names("bound")


def test_dangerous_capabilities():
    assert len(cp.DANGEROUS) == 17 and cp.DANGEROUS <= set(capspec.CAPABILITY_NAMES)
    policy = caps('[bounding]\nkeep = ["net_raw", "NET_BIND_SERVICE", "SYS_ADMIN"]\n')
    assert policy.dangerous() == ["CAP_NET_RAW", "CAP_SYS_ADMIN"]
    e = error(cp.refuse_dangerous, policy)
    assert e.message == (
        "c.toml: bounding.keep: 'CAP_NET_RAW' is refused in production mode (dangerous "
        "capabilities kept: CAP_NET_RAW, CAP_SYS_ADMIN)"
    )
    assert e.hint == "remove them from the policy, or run in another service mode than production"
    cp.refuse_dangerous(caps('[bounding]\nkeep = ["NET_BIND_SERVICE"]\n'))

