"""Random mutations of valid policy files never produce a traceback.

Each parser, fed a mutated file (keys deleted or renamed, values replaced by values of other
types or by tokens from the vocabulary, items duplicated; or the bytes truncated, spliced with
random bytes or random text), either returns a policy or raises InvalidInput whose message starts
with the file's name. Any other exception is a bug a user would see as a traceback.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nucleus.config import capabilities as capspec
from nucleus.config.policy import caps_policy as cp
from nucleus.config.policy import landlock_policy as lp
from nucleus.config.policy import pins
from nucleus.config.policy import seccomp_args as sa
from nucleus.config.policy import seccomp_host as sh
from nucleus.config.policy import seccomp_profile as sp
from nucleus.errors import InvalidInput
from tests.helpers import DOCKER_PROFILE, NEEDS_DOCKER_PROFILE

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "policies"

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- seeds: valid files ----------------------------------------------------------------------------

RICH_PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": None},
    ],
    "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
    "listenerPath": "",
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 0xF, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"},
            ],
            "comment": "unix or inet, stream",
        },
        {"name": "getppid", "action": "SCMP_ACT_KILL"},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_LOG",
         "includes": {"minKernel": "4.8", "arches": ["amd64"], "caps": ["CAP_SYS_PTRACE"]}},
    ],
}


def _files(suffix: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(DATA.glob(f"*{suffix}"))]


SECCOMP_FILES = _files(".seccomp.json") + [json.dumps(RICH_PROFILE).encode()]
CAPS_FILES = _files(".caps.toml")
LANDLOCK_FILES = _files(".landlock.toml") + [
    b'min_abi = 5\n[[rules]]\npath = "/dev/pts"\naccess = ["read", "write", "ioctl_dev"]\n'
    b'[[rules]]\npath = "/"\naccess = ["readdir"]\n[[rules]]\npath = "/srv//x/."\n'
    b'access = ["all"]\n'
]

SECCOMP_DOCS = [json.loads(b) for b in SECCOMP_FILES]
CAPS_DOCS = [tomllib.loads(b.decode()) for b in CAPS_FILES]
LANDLOCK_DOCS = [tomllib.loads(b.decode()) for b in LANDLOCK_FILES]

# Words from the vocabulary, so replaced values often get past the first check.
TOKENS = [
    *sp.SECCOMP_ACTIONS, *sp.REFUSED_ACTIONS, *sa.SECCOMP_OPS, *sh.SECCOMP_ARCHES[:4],
    *sp.SECCOMP_FLAGS_ACCEPTED, *sp.SECCOMP_FLAGS_REFUSED, *sh.DOCKER_ARCHES[:4],
    "CAP_SYS_ADMIN", "NET_BIND_SERVICE", "kill", "read", "socket", "4.8", "99.99", "x.y",
    *lp.LANDLOCK_ACCESS, "/", "/tmp", "relative", "/a/../b", "", "names", "name", "args",
    "index", "value", "valueTwo", "op", "keep", "rules", "path", "access", "min_abi",
]  # fmt: skip
NUMBERS = [0, 1, 5, 6, -1, 38, 4095, 4096, 2**32 - 1, 2**64 - 1, 2**64, 10**30]
KEYS = sorted(
    {*sp._TOP_KEYS, *sp._SYSCALL_KEYS, *sa._ARG_KEYS, *sh._FILTER_KEYS, *sh._ARCHMAP_KEYS,
     *cp.CAP_SETS, "keep", "min_abi", "rules", "path", "access"}
)  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TOKENS),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=4),
    ),
    max_leaves=8,
)


def _containers(doc, path=()):
    """Every (path, container) in the document, the root first."""
    yield path, doc
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, child in items:
        if isinstance(child, (dict, list)):
            yield from _containers(child, (*path, key))


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw, docs: list) -> object:
    doc = copy.deepcopy(draw(st.sampled_from(docs)))
    for _ in range(draw(st.integers(1, 4))):
        spots = list(_containers(doc))
        path, node = draw(st.sampled_from(spots))
        op = draw(st.sampled_from(["delete", "rename", "replace", "insert", "duplicate", "retype"]))
        if isinstance(node, dict):
            keys = list(node)
            if op == "insert" or not keys:
                key = draw(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)))
                node[key] = draw(values)
                continue
            key = draw(st.sampled_from(keys))
            if op == "delete":
                del node[key]
            elif op == "rename":
                new = draw(st.one_of(st.sampled_from(KEYS), st.text(max_size=8),
                                     st.just(key.upper()), st.just(key[:-1])))
                node[new] = node.pop(key)
            elif op == "duplicate":
                node[key] = [node[key], copy.deepcopy(node[key])]
            elif op == "retype":
                v = node[key]
                node[key] = draw(st.sampled_from([[v], {"x": v}, str(v)[:20], len(str(v))]))
            else:
                node[key] = draw(values)
        else:
            if op == "insert" or not node:
                node.insert(draw(st.integers(0, len(node))), draw(values))
                continue
            i = draw(st.integers(0, len(node) - 1))
            if op == "delete":
                del node[i]
            elif op in ("duplicate", "rename"):
                node.append(copy.deepcopy(node[i]))
            elif op == "retype":
                node[i] = draw(st.sampled_from([[node[i]], {"x": node[i]}, str(node[i])[:20]]))
            else:
                node[i] = draw(values)
    return doc


# --- writing documents back ---------------------------------------------------------------------------


def _toml_value(v) -> str | None:
    if v is None:
        return None  # TOML has no null: the key is left out
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        items = [t for t in (_toml_value(x) for x in v) if t is not None]
        return "[" + ", ".join(items) + "]"
    pairs = [(k, _toml_value(x)) for k, x in v.items()]
    return "{" + ", ".join(f"{json.dumps(k)} = {t}" for k, t in pairs if t is not None) + "}"


def to_toml(doc) -> bytes:
    if not isinstance(doc, dict):
        doc = {"root": doc}
    lines = []
    for key, value in doc.items():
        text = _toml_value(value)
        if text is not None:
            lines.append(f"{json.dumps(key, ensure_ascii=False)} = {text}")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def to_json(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def spliced(draw, files: list[bytes]) -> bytes:
    data = draw(st.sampled_from(files))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["truncate", "bytes", "text", "flip", "cut"]))
        if op == "truncate":
            data = data[:at]
        elif op == "bytes":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif op == "text":
            text = draw(st.text(min_size=1, max_size=8))
            data = data[:at] + text.encode("utf-8", "surrogatepass") + data[at:]
        elif op == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif op == "cut":
            end = draw(st.integers(at, min(len(data), at + 40)))
            data = data[:at] + data[end:]
    return data


# --- the property -------------------------------------------------------------------------------------


def outcome(parse, data: bytes, label: str):
    try:
        return parse(data, label)
    except InvalidInput as e:
        assert e.message.startswith(f"{label}: "), e.message
        assert e.hint is None or (isinstance(e.hint, str) and e.hint)
        # printable as is: one line, no control character, no lone surrogate
        for text in (e.message, e.hint or ""):
            text.encode("utf-8")
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text), repr(text)
        return None


host_facts = st.fixed_dictionaries(
    {
        "arch": st.sampled_from(sorted(sh.HOST_ARCHES)),
        "caps": st.sets(st.sampled_from(sorted(capspec.CAPABILITY_NAMES)), max_size=4),
        "kernel": st.one_of(st.none(), st.tuples(st.integers(2, 7), st.integers(0, 20))),
    }
)


def check_seccomp(data: bytes, facts: dict) -> None:
    out = outcome(lambda d, p: sp.parse_seccomp_profile(d, p, **facts), data, "fuzz.json")
    if out is None:
        return
    json.dumps(out, allow_nan=False)  # plain data, as compile_profile and the cache key take it
    assert out["defaultAction"] in sp.SECCOMP_ACTIONS.values()
    assert out["architectures"][0] == sh.HOST_ARCHES[facts["arch"]][0]
    for rule in out["syscalls"]:
        assert rule["names"] and rule["action"] in sp.SECCOMP_ACTIONS.values()
        indexes = [a["index"] for a in rule.get("args", [])]
        assert indexes == sorted(set(indexes))


@SETTINGS
@given(doc=mutated(SECCOMP_DOCS), facts=host_facts)
def test_seccomp_structure_mutations(doc, facts):
    check_seccomp(to_json(doc), facts)


@SETTINGS
@given(data=spliced(SECCOMP_FILES), facts=host_facts)
def test_seccomp_byte_mutations(data, facts):
    check_seccomp(data, facts)


# Docker's default profile, a large real-world seed, is read when the first example is drawn (in
# a test that carries the marker), never at import: a clone without ../shared skips these two.


@NEEDS_DOCKER_PROFILE
@SETTINGS
@given(doc=st.deferred(lambda: mutated([json.loads(DOCKER_PROFILE.read_bytes())])),
       facts=host_facts)
def test_docker_profile_structure_mutations(doc, facts):
    check_seccomp(to_json(doc), facts)


@NEEDS_DOCKER_PROFILE
@SETTINGS
@given(data=st.deferred(lambda: spliced([DOCKER_PROFILE.read_bytes()])), facts=host_facts)
def test_docker_profile_byte_mutations(data, facts):
    check_seccomp(data, facts)


def check_caps(data: bytes) -> None:
    policy = outcome(cp.parse_caps_policy, data, "fuzz.caps.toml")
    if policy is None:
        return
    assert policy.permitted <= policy.bounding and policy.effective <= policy.permitted
    assert policy.ambient <= policy.permitted & policy.inheritable
    assert policy.inheritable <= policy.bounding


@SETTINGS
@given(doc=mutated(CAPS_DOCS))
def test_caps_structure_mutations(doc):
    check_caps(to_toml(doc))


@SETTINGS
@given(data=spliced(CAPS_FILES))
def test_caps_byte_mutations(data):
    check_caps(data)


def check_landlock(data: bytes) -> None:
    policy = outcome(lp.parse_landlock_policy, data, "fuzz.landlock.toml")
    if policy is None:
        return
    assert 1 <= policy.min_abi <= 7
    paths = [r.path for r in policy.rules]
    assert len(paths) == len(set(paths))
    for r in policy.rules:
        assert r.path.startswith("/") and r.access and r.mask


@SETTINGS
@given(doc=mutated(LANDLOCK_DOCS))
def test_landlock_structure_mutations(doc):
    check_landlock(to_toml(doc))


@SETTINGS
@given(data=spliced(LANDLOCK_FILES))
def test_landlock_byte_mutations(data):
    check_landlock(data)


@SETTINGS
@given(data=st.binary(max_size=64), text=st.text(max_size=64))
def test_arbitrary_input(data, text):
    for raw in (data, text.encode("utf-8", "surrogatepass")):
        check_seccomp(raw, {"arch": "x86_64", "caps": set(), "kernel": None})
        check_caps(raw)
        check_landlock(raw)


@SETTINGS
@given(pin=st.one_of(st.text(max_size=80), st.sampled_from(["0" * 64, "A" * 64])),
       data=st.binary(max_size=16))
def test_pins(pin, data):
    try:
        assert pins.check_pin("f", data, pin, "--x-sha256") == pins.sha256_of(data)
    except InvalidInput as e:
        assert e.message.startswith("--x-sha256")
