"""Landlock policies (TOML): ``parse_landlock_policy`` returns a ``LandlockPolicy``.

``min_abi`` (1..7, default 1) and ``[[rules]]`` of an absolute ``path`` and an ``access`` list of
read, write, execute, create, remove, readdir, ioctl_dev and all (read does not imply execute). A
path may appear in one rule only: two rules for one path are refused, so the rights of a path are
read in one place.
"""

from __future__ import annotations

from nucleus.config import landlock_default as _ll
from nucleus.config.policy.common import (
    _check_keys,
    _fail,
    _kind,
    _known_hint,
    _list,
    _load_toml,
    _show,
    _string,
)
from nucleus.frozen import frozen

LANDLOCK_ACCESS = (
    "read", "write", "execute", "create", "remove", "readdir", "ioctl_dev", "all",
)  # fmt: skip
MIN_ABI_RANGE = (1, _ll.LATEST_ABI)
_LANDLOCK_TOP_KEYS = ("min_abi", "rules")
_LANDLOCK_RULE_KEYS = ("path", "access")
MAX_PATH = 4095


@frozen
class LandlockRule:
    path: str  # absolute, normalized
    access: frozenset[str]  # group names of LANDLOCK_ACCESS
    mask: int  # the LANDLOCK_ACCESS_FS_* bits (latest ABI; the effect masks to the kernel's)


@frozen
class LandlockPolicy:
    path: str
    min_abi: int
    rules: tuple[LandlockRule, ...]

    def restrict_rules(self) -> list[tuple[str, frozenset[str]]]:
        """The rules as ``nucleus.effects.landlock.restrict`` takes them."""
        return [(rule.path, rule.access) for rule in self.rules]


def _landlock_path(path: str, field: str, value: object) -> str:
    text = _string(path, field, value, "an absolute path")
    if not text.startswith("/"):
        raise _fail(path, field, f"{text!r} is not an absolute path",
                    hint="write the full path from /, e.g. \"/etc/myservice\"")
    if "\0" in text:
        raise _fail(path, field, f"{_show(text)} contains a NUL character")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _fail(path, field, f"{text!r} contains '..'",
                    hint="write the path without '..' components")
    normal = "/" + "/".join(parts)
    if len(normal) > MAX_PATH:
        raise _fail(path, field, f"{_show(text)} is longer than {MAX_PATH} bytes")
    return normal


def parse_landlock_policy(data: bytes, path: str) -> LandlockPolicy:
    """Validate a Landlock policy (TOML; see the module's doc)."""
    doc = _load_toml(data, path)
    _check_keys(path, "", doc, _LANDLOCK_TOP_KEYS, "the keys of a Landlock policy are")
    low, high = MIN_ABI_RANGE
    min_abi = 1
    if "min_abi" in doc:
        value = doc["min_abi"]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(
                path,
                "min_abi",
                f"{_show(value)} is not a Landlock ABI version {low}..{high}",
                hint="ABI 1 came with Linux 5.13, 2 with 5.19, 3 with 6.2 (truncate), 5 with "
                "6.10 (ioctl on devices)",
            )
        min_abi = value
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise _fail(
            path,
            "rules",
            f"expected an array of [[rules]] tables, got {_kind(raw_rules)} {_show(raw_rules)}",
            hint="write each rule under [[rules]], with two brackets",
        )
    rules: list[LandlockRule] = []
    where: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        field = f"rules[{i}]"
        if not isinstance(raw, dict):
            raise _fail(path, field, f"expected a table, got {_kind(raw)} {_show(raw)}",
                        hint="write each rule as [[rules]] with path = ... and access = [...]")
        _check_keys(path, field, raw, _LANDLOCK_RULE_KEYS, "the keys of a rule are")
        for key in _LANDLOCK_RULE_KEYS:
            if key not in raw:
                raise _fail(path, f"{field}.{key}", "missing",
                            hint="each rule needs path = \"/dir\" and access = [\"read\"]")
        rule_path = _landlock_path(path, f"{field}.path", raw["path"])
        if rule_path in where:
            raise _fail(
                path,
                f"{field}.path",
                f"{rule_path!r} is already given in rules[{where[rule_path]}]",
                hint="merge the two access lists into one rule",
            )
        where[rule_path] = i
        access = _list(path, f"{field}.access", raw["access"], "an array of access rights",
                       null_ok=False)
        if not access:
            raise _fail(path, f"{field}.access", "empty: the rule would grant nothing",
                        hint=f"list rights among {', '.join(LANDLOCK_ACCESS)}, or remove the rule")
        groups = []
        for j, right in enumerate(access):
            if not (isinstance(right, str) and right in LANDLOCK_ACCESS):
                raise _fail(path, f"{field}.access[{j}]", f"unknown access right {_show(right)}",
                            hint=_known_hint(right, LANDLOCK_ACCESS, "access rights"))
            groups.append(right)
        chosen = frozenset(groups)
        rules.append(LandlockRule(rule_path, chosen, _ll.access_mask(sorted(chosen))))
    return LandlockPolicy(path, min_abi, tuple(rules))
