"""Capability policies (TOML): ``parse_caps_policy`` returns a ``CapsPolicy``.

Tables ``bounding``, ``permitted``, ``effective``, ``inheritable``, ``ambient``, each with
``keep = [names]`` (``"NET_BIND_SERVICE"``, ``"CAP_NET_BIND_SERVICE"``, any case). A missing table
is derived: bounding = nothing (an empty file drops every capability), permitted = bounding,
effective = permitted, inheritable = nothing, ambient = nothing. The kernel's rules are checked:
permitted and inheritable within bounding, effective within permitted, ambient within permitted
and inheritable.
"""

from __future__ import annotations

from collections.abc import Iterable

from nucleus.config import capabilities as _caps
from nucleus.config.modes import DANGEROUS_CAPABILITIES
from nucleus.config.policy.common import (
    _check_keys,
    _closest,
    _fail,
    _kind,
    _list,
    _load_toml,
    _show,
)
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

CAP_SETS = ("bounding", "permitted", "effective", "inheritable", "ambient")

# Refused in production: each one lets the workload leave its confinement or take over the
# host's resources (modules, raw I/O, mounts, tracing, BPF, any file's permissions, any uid).
# One list, kept with the service modes' rules.
DANGEROUS: frozenset[str] = DANGEROUS_CAPABILITIES

CAP_NAME_HINT = "names are those of capabilities(7), with or without CAP_: NET_BIND_SERVICE"


def _capability(path: str, field: str, value: object) -> int:
    if isinstance(value, str):
        try:
            return _caps.capability_number(value)
        except ValueError:
            pass
        key = value.strip().upper()
        near = _closest(key if key.startswith("CAP_") else "CAP_" + key, _caps.CAPABILITY_NAMES)
        hint = f"did you mean {near!r}? {CAP_NAME_HINT}" if near else CAP_NAME_HINT
        raise _fail(path, field, f"unknown capability {value!r}", hint=hint)
    raise _fail(path, field, f"expected a capability name, got {_kind(value)} {_show(value)}",
                hint=CAP_NAME_HINT)


def _names_of(numbers: Iterable[int]) -> list[str]:
    return [_caps.capability_name(n) for n in sorted(numbers)]


@frozen
class CapsPolicy:
    """The five capability sets, as capability numbers, after derivation and checks."""

    path: str
    bounding: frozenset[int]
    permitted: frozenset[int]
    effective: frozenset[int]
    inheritable: frozenset[int]
    ambient: frozenset[int]

    @property
    def keep(self) -> frozenset[int]:
        """The bounding set: every capability the workload can ever hold."""
        return self.bounding

    @property
    def simple(self) -> bool:
        """True when ``effects.caps.drop_capabilities(self.keep)`` applies the policy exactly
        (permitted = effective = bounding, nothing inheritable or ambient)."""
        return (
            self.permitted == self.effective == self.bounding
            and not self.inheritable
            and not self.ambient
        )

    def names(self, which: str) -> list[str]:
        """The names (``"CAP_NET_BIND_SERVICE"``) in one set, in number order."""
        if which not in CAP_SETS:
            raise ValueError(f"unknown capability set {which!r} (known: {', '.join(CAP_SETS)})")
        return _names_of(getattr(self, which))

    def mask(self, which: str) -> int:
        """One set as the 64-bit mask capset(2) and /proc/<pid>/status use."""
        self.names(which)  # validates ``which``
        return _caps.capability_mask(getattr(self, which))

    def dangerous(self) -> list[str]:
        """The DANGEROUS capabilities the policy keeps (in the bounding set), in number order."""
        return [name for name in self.names("bounding") if name in DANGEROUS]


def refuse_dangerous(policy: CapsPolicy, mode: str = "production") -> None:
    """InvalidInput naming the first DANGEROUS capability the policy keeps."""
    kept = policy.dangerous()
    if kept:
        raise InvalidInput(
            f"{policy.path}: bounding.keep: {kept[0]!r} is refused in {mode} mode "
            f"(dangerous capabilities kept: {', '.join(kept)})",
            hint=f"remove them from the policy, or run in another service mode than {mode}",
        )


def parse_caps_policy(data: bytes, path: str) -> CapsPolicy:
    """Validate a capability policy (TOML) and derive the missing sets (see the module's doc)."""
    doc = _load_toml(data, path)
    _check_keys(path, "", doc, CAP_SETS, "the tables of a capability policy are")
    given: dict[str, frozenset[int]] = {}
    for name in CAP_SETS:
        if name not in doc:
            continue
        table = doc[name]
        if not isinstance(table, dict):
            raise _fail(path, name, f"expected a table, got {_kind(table)} {_show(table)}",
                        hint=f"write it as [{name}] with keep = [...]")
        _check_keys(path, name, table, ("keep",), f"the keys of [{name}] are")
        if "keep" not in table:
            raise _fail(path, f"{name}.keep", "missing",
                        hint="list the capabilities to keep; keep = [] keeps none")
        keep = _list(path, f"{name}.keep", table["keep"], "an array of capability names",
                     null_ok=False)
        given[name] = frozenset(
            _capability(path, f"{name}.keep[{i}]", c) for i, c in enumerate(keep)
        )
    bounding = given.get("bounding", frozenset())
    permitted = given.get("permitted", bounding)
    effective = given.get("effective", permitted)
    inheritable = given.get("inheritable", frozenset())
    ambient = given.get("ambient", frozenset())
    derived = ("bounding" if "bounding" in given else "bounding (none: the table is absent)")
    checks = (
        ("permitted", permitted, bounding, derived,
         "add it to [bounding] keep, or remove it from [permitted]"),
        ("effective", effective, permitted, "permitted",
         "add it to [permitted] keep, or remove it from [effective]"),
        ("inheritable", inheritable, bounding, derived,
         "add it to [bounding] keep, or remove it from [inheritable]"),
        ("ambient", ambient, permitted, "permitted",
         "the kernel keeps an ambient capability only when it is permitted and inheritable"),
        ("ambient", ambient, inheritable, "inheritable",
         "the kernel keeps an ambient capability only when it is permitted and inheritable"),
    )
    for name, subset, superset, super_name, hint in checks:
        extra = subset - superset
        if extra:
            raise _fail(
                path,
                f"{name}.keep",
                f"{_names_of(extra)[0]!r} is not in {super_name}",
                hint=hint,
            )
    return CapsPolicy(path, bounding, permitted, effective, inheritable, ambient)
