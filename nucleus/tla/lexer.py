"""The tokens of a TLA+ module, each with its line and column: the parser needs the columns,
since the bullets of a /\\ or \\/ list are aligned by column and an item ends at the first token
that is not to the right of its bullet.

Comments are dropped here: `\\*` to the end of the line and `(* ... *)`, which nest. Text before
the module's `---- MODULE` line and after its `====` line is not part of the module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nucleus.tla.errors import SpecError

KEYWORDS = frozenset({
    "MODULE", "EXTENDS", "VARIABLE", "VARIABLES", "CONSTANT", "CONSTANTS", "ASSUME", "ASSUMPTION",
    "AXIOM", "THEOREM", "LOCAL", "INSTANCE", "WITH", "LET", "IN", "IF", "THEN", "ELSE", "CASE",
    "OTHER", "CHOOSE", "EXCEPT", "DOMAIN", "SUBSET", "UNION", "UNCHANGED", "ENABLED", "RECURSIVE",
})

# Backslash operators, by their spelling after the backslash; synonyms map to one name.
BACKSLASH_OPS = {
    "in": "\\in", "notin": "\\notin", "subseteq": "\\subseteq", "subset": "\\subset",
    "supseteq": "\\supseteq", "union": "\\cup", "cup": "\\cup", "intersect": "\\cap",
    "cap": "\\cap", "o": "\\o", "circ": "\\o", "land": "/\\", "lor": "\\/", "lnot": "~",
    "neg": "~", "equiv": "<=>", "E": "\\E", "exists": "\\E", "A": "\\A", "forall": "\\A",
    "leq": "<=", "geq": ">=", "div": "\\div", "X": "\\X", "times": "\\X",
}

# Other operators and punctuation, longest first.
SYMBOLS = sorted([
    "<=>", "|->", "=>", "==", "=<", "<=", ">=", "/=", "/\\", "\\/", "->", "<-", "<<", ">>", "[]",
    "<>", "~>", "..", "::", ":>", "@@", "'", "(", ")", "[", "]", "{", "}", ",", ".", "!", "=",
    "#", "<", ">", "+", "-", "*", "~", ":", "@", "%", "^", "|",
], key=len, reverse=True)
SYNONYMS = {"=<": "<=", "/=": "#"}

_NAME = re.compile(r"[A-Za-z0-9_]*[A-Za-z][A-Za-z0-9_]*|_")
_NUMBER = re.compile(r"\d+")
_DASHES = re.compile(r"-{4,}")
_EQUALS = re.compile(r"={4,}")
_BACKSLASH_WORD = re.compile(r"\\([A-Za-z]+)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", '"': '"', "\\": "\\"}


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "number", "string", "keyword", "op", "----", "====", "eof"
    text: str  # the name, the keyword, the operator (synonyms folded), the string's value
    line: int  # 1-based
    col: int  # 0-based: the column the parser aligns bullets by

    def where(self, path: str | Path) -> str:
        return f"{path}:{self.line}:{self.col + 1}"

    def shown(self) -> str:
        return "end of module" if self.kind == "eof" else repr(self.text) if self.kind != "string" else f'"{self.text}"'


def tokenize(text: str, path: str | Path = "<text>") -> list[Token]:
    """The module's tokens from its `---- MODULE Name ----` line to its `====` line, and an eof."""
    tokens: list[Token] = []
    i, line, line_start = 0, 1, 0
    n = len(text)

    def fail(message: str) -> SpecError:
        return SpecError(f"{path}:{line}:{i - line_start + 1}: {message}")

    while i < n:
        c = text[i]
        if c == "\n":
            i += 1
            line += 1
            line_start = i
            continue
        if c in " \t\r\f":
            i += 1
            continue
        col = i - line_start
        if text.startswith("\\*", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("(*", i):
            depth, j = 0, i
            while j < n:
                if text.startswith("(*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*)", j):
                    depth, j = depth - 1, j + 2
                    if depth == 0:
                        break
                else:
                    if text[j] == "\n":
                        line += 1
                        line_start = j + 1
                    j += 1
            if depth:
                raise fail("unterminated comment (*")
            i = j
            continue
        if c == '"':
            value, j = [], i + 1
            while True:
                if j >= n or text[j] == "\n":
                    raise fail("unterminated string")
                if text[j] == '"':
                    break
                if text[j] == "\\":
                    esc = _ESCAPES.get(text[j + 1] if j + 1 < n else "")
                    if esc is None:
                        raise fail(f"unknown escape in a string: \\{text[j + 1:j + 2]}")
                    value.append(esc)
                    j += 2
                else:
                    value.append(text[j])
                    j += 1
            tokens.append(Token("string", "".join(value), line, col))
            i = j + 1
            continue
        m = _DASHES.match(text, i) or _EQUALS.match(text, i)
        if m:
            tokens.append(Token(m.group()[:4], m.group()[:4], line, col))
            i = m.end()
            continue
        m = _NAME.match(text, i)
        if m and not _NUMBER.fullmatch(m.group()):
            word = m.group()
            tokens.append(Token("keyword" if word in KEYWORDS else "name", word, line, col))
            i = m.end()
            continue
        m = _NUMBER.match(text, i)
        if m:
            tokens.append(Token("number", m.group(), line, col))
            i = m.end()
            continue
        if c == "\\" and not text.startswith(("\\/", "\\*"), i):
            m = _BACKSLASH_WORD.match(text, i)
            if m is None:  # a lone backslash: set difference
                tokens.append(Token("op", "\\", line, col))
                i += 1
                continue
            op = BACKSLASH_OPS.get(m.group(1))
            if op is None:
                raise fail(f"operator \\{m.group(1)} is not supported by this checker")
            tokens.append(Token("op", op, line, col))
            i = m.end()
            continue
        sym = next((s for s in SYMBOLS if text.startswith(s, i)), None)
        if sym is None:
            raise fail(f"unexpected character {c!r}")
        # `]_v` and `>>_v`: the subscript of an action (`[A]_v`), glued to the bracket.
        if sym in ("]", ">>") and text.startswith("_", i + len(sym)):
            tokens.append(Token("op", sym + "_", line, col))
            i += len(sym) + 1
            continue
        tokens.append(Token("op", SYNONYMS.get(sym, sym), line, col))
        i += len(sym)
    tokens.append(Token("eof", "", line, 0))
    return _module_part(tokens, path)


def _module_part(tokens: list[Token], path: str | Path) -> list[Token]:
    """The tokens from the first `---- MODULE` to the matching `====` (text around a module is
    free-form), with an eof token after them."""
    start = next(
        (k for k in range(len(tokens) - 1) if tokens[k].kind == "----" and tokens[k + 1].text == "MODULE"),
        None,
    )
    if start is None:
        raise SpecError(f"{path}: no `---- MODULE Name ----` line")
    depth = 0
    for k in range(start, len(tokens)):
        tok = tokens[k]
        if tok.kind == "----" and k + 1 < len(tokens) and tokens[k + 1].text == "MODULE":
            depth += 1
        elif tok.kind == "====":
            depth -= 1
            if depth == 0:
                return [*tokens[start:k + 1], Token("eof", "", tok.line + 1, -1)]
    raise SpecError(f"{path}: the module has no closing `====` line")
