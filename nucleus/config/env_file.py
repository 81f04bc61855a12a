"""`--env-file FILE`: Docker's format, each variable held to the rules of `-e`.

One variable a line: `KEY=VALUE` (the value verbatim, to the end of the line: no quotes are
removed, nothing is expanded), or a bare `KEY`, which takes the caller's value and is left out
when the caller has none. Blank lines and lines starting with `#` are skipped; leading
whitespace is dropped; a line may end with CR LF. The file must be UTF-8.

Values may be secrets: an error names the file, the line and, when it is one, the variable's
name, never a value or a line that names no variable. Pure: the caller reads the file
(nucleus.effects.prepare.read_small_file) and gives its environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nucleus.config.container import ENV_KEY_RE, ENV_NAME_HINT, LOADER_HINT, env_key_refused
from nucleus.errors import InvalidInput

FLAG = "--env-file"
MAX_BYTES = 1 << 20  # an environment file larger than this is refused unread


def parse(data: bytes, path: str, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs of one file, in its order."""
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise _fail(path, data[:e.start].count(b"\n") + 1, "not UTF-8 text") from None
    out: list[tuple[str, str]] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key:
            raise _fail(path, number, "no variable name before '='", hint="write KEY=VALUE")
        if not ENV_KEY_RE.fullmatch(key):
            # Not shown: a line that names no variable may be part of a value (a key's PEM text).
            raise _fail(path, number, "not KEY=VALUE or KEY: no valid variable name", hint=ENV_NAME_HINT)
        if env_key_refused(key):
            raise _fail(path, number, f"{key} is refused: it changes how the dynamic loader loads code",
                        hint=LOADER_HINT)
        if not sep:
            if key not in environ:
                continue  # as Docker: a bare name the caller has not set is left out
            value = environ[key]
        if "\0" in value:
            raise _fail(path, number, f"the value of {key} holds a NUL byte")
        out.append((key, value))
    return tuple(out)


def parse_all(files: Iterable[tuple[str, bytes]], environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Every file's pairs, in the order given (a later value of a name wins, as -e's do)."""
    return tuple(pair for path, data in files for pair in parse(data, path, environ))


def _fail(path: str, number: int, problem: str, hint: str | None = None) -> InvalidInput:
    return InvalidInput(f"{FLAG} {path!r}, line {number}: {problem}", hint=hint)
