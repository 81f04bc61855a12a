"""What the policy file tests share: building seccomp profiles, and reading the refusal a bad file
gets.

Each error names the file, the dotted field path and the bad value, and a hint where the fix is
known; the tests pin the exact text, because the text is the interface.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nucleus.config.policy import seccomp_profile as sp
from nucleus.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "policies"

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"
EQ = "SCMP_CMP_EQ"


def error(fn, *args, **kw) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        fn(*args, **kw)
    return info.value


def refusal(fn, *args, **kw) -> tuple[str, str | None]:
    """The message and hint of the InvalidInput that fn(*args, **kw) raises."""
    e = error(fn, *args, **kw)
    return e.message, e.hint


def seccomp(doc, path="x.json", **facts) -> dict:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return sp.parse_seccomp_profile(data, path, **facts)


def seccomp_error(doc, **facts) -> tuple[str, str | None]:
    return refusal(seccomp, doc, **facts)



def rule(names, action=ALLOW, **extra) -> dict:
    return {"names": list(names), "action": action, **extra}


def arg(index, value, op=EQ, **extra) -> dict:
    return {"index": index, "value": value, "op": op, **extra}


def profile(*rules, default=ERRNO, **extra) -> dict:
    return {"defaultAction": default, **extra, "syscalls": list(rules)}


def conds(out_rule) -> list[tuple]:
    return [(a["index"], a["op"], a["value"], a["valueTwo"]) for a in out_rule.get("args", [])]
