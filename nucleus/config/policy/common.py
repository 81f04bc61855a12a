"""What the policy parsers share: reading a file's bytes as JSON or TOML (UTF-8, at most
``MAX_POLICY_BYTES``; a JSON key given twice is remembered), messages that name the file, the
dotted field path and the bad value (``_fail``, ``_show``, ``_kind``, ``_join``), the closest known
name for a hint (``_closest``, ``_known_hint``), and the checks of one field (``_check_keys``,
``_list``, ``_string``, ``_integer``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from nucleus.errors import InvalidInput

MAX_POLICY_BYTES = 4 << 20


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object that remembers the keys the file repeated (the last value wins)."""

    repeated: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    repeated = []
    for key, value in pairs:
        if key in obj:
            repeated.append(key)
        obj[key] = value
    obj.repeated = tuple(repeated)
    return obj


def _show(value: object, limit: int = 60) -> str:
    """A value as the message quotes it: strings in quotes, the rest as JSON; escaped, so a
    message never carries a control character or a lone surrogate to the terminal."""
    try:
        if isinstance(value, str):
            text = repr(value)
        else:
            text = json.dumps(value, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        # JSON objects are read as _Object; a plain dict comes from a TOML file.
        return "an object" if isinstance(value, _Object) else "a table"
    return type(value).__name__


def _fail(path: str, field: str, problem: str, hint: str | None = None) -> InvalidInput:
    where = f"{path}: {field}: " if field else f"{path}: "
    return InvalidInput(where + problem, hint=hint)


def _distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _shared_prefix(words: list[str]) -> str:
    if not words:
        return ""
    first, last = min(words), max(words)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _closest(word: str, known: Iterable[str]) -> str | None:
    """The known word the user most likely meant, or None. The prefix every known word shares
    (``SCMP_ACT_``) is set aside, then: the same letters in another case; the nearest word
    within one edit per three letters; a word that begins the other (three letters at least);
    a common beginning of four letters or more covering half the word."""
    if len(word) > 64:
        return None
    known = list(known)
    lowered = [k.lower() for k in known]
    shared = _shared_prefix(lowered) if len(set(lowered)) > 1 else ""
    low = word.lower()
    if shared and low.startswith(shared):
        low = low[len(shared) :]
    parts = [k[len(shared) :] for k in lowered]
    for candidate, part in zip(known, parts, strict=True):
        if part == low:
            return candidate
    best, best_d = None, max(1, len(low) // 3) + 1
    for candidate, part in zip(known, parts, strict=True):
        d = _distance(low, part)
        if d < best_d:
            best, best_d = candidate, d
    if best is not None:
        return best
    if len(low) >= 3:
        for candidate, part in zip(known, parts, strict=True):
            if part.startswith(low) or (low.startswith(part) and len(part) >= 3):
                return candidate
    for candidate, part in zip(known, parts, strict=True):
        common = len(_shared_prefix([low, part]))
        if common >= 4 and common * 2 >= len(low):
            return candidate
    return None


def _known_hint(word: object, known: Iterable[str], what: str) -> str:
    known = list(known)
    near = _closest(word, known) if isinstance(word, str) else None
    listing = f"{what}: {', '.join(known)}"
    return f"did you mean {near!r}? {listing}" if near else listing


def _check_keys(path: str, field: str, obj: dict[str, object], known: tuple[str, ...], what: str) -> None:
    repeated = getattr(obj, "repeated", ())
    if repeated:
        raise _fail(
            path, _join(field, repeated[0]), "key given twice", hint="keep one of the two"
        )
    for key in obj:
        if key not in known:
            raise _fail(
                path, _join(field, key), "unknown key", hint=_known_hint(key, known, what)
            )


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _join(field: str, key: str) -> str:
    """``field.key``; a key that is not a plain word is quoted: ``syscalls[0]['my key']``."""
    if not _PLAIN_KEY.fullmatch(key):
        return f"{field}[{_show(key)}]"
    return f"{field}.{key}" if field else key


def _text(data: object, path: str, kind: str) -> str:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"policy data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_POLICY_BYTES:
        raise _fail(
            path,
            "",
            f"{len(data)} bytes is too large for a {kind} file (at most {MAX_POLICY_BYTES})",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(
            path,
            "",
            f"not UTF-8 text: byte {data[e.start]:#04x} at offset {e.start}",
            hint=f"save the {kind} file as UTF-8",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _load_json(data: bytes, path: str) -> Any:
    text = _text(data, path, "JSON")

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise _fail(
            path,
            "",
            f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
            hint="check the syntax near that position (a missing comma or quote, a trailing comma)",
        ) from None
    except ValueError as e:  # NaN/Infinity, or an integer too long to read
        raise _fail(path, "", f"not valid JSON: {e}") from None
    except RecursionError:
        raise _fail(path, "", "not valid JSON: nested too deeply") from None


def _load_toml(data: bytes, path: str) -> dict[str, Any]:
    import tomllib  # here, not at the top: only runs given a TOML policy pay for the parser

    text = _text(data, path, "TOML")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _fail(
            path, "", f"not valid TOML: {e}", hint="check the syntax near that position"
        ) from None
    except RecursionError:
        raise _fail(path, "", "not valid TOML: nested too deeply") from None
    except ValueError as e:  # an integer too long to read
        raise _fail(path, "", f"not valid TOML: {e}") from None


def _list(path: str, field: str, value: object, what: str, *, null_ok: bool = True) -> list[object]:
    if value is None and null_ok:
        return []
    if not isinstance(value, list):
        raise _fail(path, field, f"expected {what}, got {_kind(value)} {_show(value)}")
    return value


def _string(path: str, field: str, value: object, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise _fail(path, field, f"expected {what}, got {_kind(value)} {_show(value)}")
    return value


def _integer(path: str, field: str, value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(path, field, f"{_show(value)} is not {what}")
    return value
