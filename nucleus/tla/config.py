"""A TLC model configuration (.cfg): what to check, and the values of the spec's constants.

    CONSTANT(S) N = 3   S = {"a", "b"}   p = p (a model value)   Op <- Def (a substitution)
    INIT Init   NEXT Next   (or SPECIFICATION Spec)
    INVARIANT(S) ...   PROPERTY/PROPERTIES ...   CONSTRAINT(S) ...   ACTION_CONSTRAINT(S) ...
    CHECK_DEADLOCK TRUE|FALSE

SYMMETRY, VIEW and the like change what counts as a distinct state; they are refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from nucleus.tla import syntax as s
from nucleus.tla.errors import SpecError
from nucleus.tla.lexer import tokenize
from nucleus.tla.parser import Parser

LISTS = {
    "INVARIANT": "invariants", "INVARIANTS": "invariants",
    "PROPERTY": "properties", "PROPERTIES": "properties",
    "CONSTRAINT": "constraints", "CONSTRAINTS": "constraints",
    "ACTION_CONSTRAINT": "action_constraints", "ACTION_CONSTRAINTS": "action_constraints",
}
SINGLE = {"INIT": "init", "NEXT": "next", "SPECIFICATION": "specification"}
UNSUPPORTED = {"SYMMETRY", "VIEW", "ALIAS", "POSTCONDITION"}


@dataclass
class Config:
    path: str
    init: str | None = None
    next: str | None = None
    specification: str | None = None
    invariants: list[str] = field(default_factory=list)
    properties: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    action_constraints: list[str] = field(default_factory=list)
    constants: dict[str, s.Expr] = field(default_factory=dict)  # N = value
    substitutions: dict[str, str] = field(default_factory=dict)  # N <- Def
    check_deadlock: bool = True

    def entries(self) -> dict[str, list[str]]:
        """The names listed under each keyword (INVARIANTS folded into INVARIANT, and so on)."""
        found = {k: [getattr(self, a)] for k, a in SINGLE.items() if getattr(self, a) is not None}
        for keyword in ("INVARIANT", "PROPERTY", "CONSTRAINT", "ACTION_CONSTRAINT"):
            if getattr(self, LISTS[keyword]):
                found[keyword] = list(getattr(self, LISTS[keyword]))
        return found


def read_config(path: Path) -> Config:
    return parse_config(path.read_text(), str(path))


def parse_config(text: str, path: str) -> Config:
    # The .cfg's tokens are TLA+'s (comments, strings, sets), so the module lexer reads them.
    wrapped = tokenize(f"---- MODULE cfg ----\n{text}\n====", path)
    tokens = [dataclasses.replace(t, line=t.line - 1) for t in wrapped[4:-2]]
    cfg = Config(path)
    parser = Parser([*tokens, wrapped[-1]], path)
    keyword = ""
    while parser.pos < len(tokens):
        tok = tokens[parser.pos]
        word = tok.text
        if tok.kind in ("name", "keyword") and (word in LISTS or word in SINGLE or word in UNSUPPORTED
                                                 or word in ("CONSTANT", "CONSTANTS", "CHECK_DEADLOCK")):
            parser.pos += 1
            if word in UNSUPPORTED:
                raise SpecError(f"{tok.where(path)}: {word} is not supported by this checker")
            if word == "CHECK_DEADLOCK":
                value = tokens[parser.pos].text if parser.pos < len(tokens) else ""
                if value not in ("TRUE", "FALSE"):
                    raise SpecError(f"{tok.where(path)}: CHECK_DEADLOCK takes TRUE or FALSE")
                cfg.check_deadlock = value == "TRUE"
                parser.pos += 1
                keyword = ""
                continue
            keyword = word
            continue
        if tok.kind != "name" or not keyword:
            raise SpecError(f"{tok.where(path)}: unexpected {tok.shown()}")
        parser.pos += 1
        if keyword in ("CONSTANT", "CONSTANTS"):
            if parser.at("="):
                parser.advance()
                cfg.constants[word] = parser.expr()
            elif parser.at("<-"):
                parser.advance()
                cfg.substitutions[word] = parser.expect_name()
            else:
                raise SpecError(f"{tok.where(path)}: constant {word} needs `= value` or `<- Definition`")
        elif keyword in SINGLE:
            if getattr(cfg, SINGLE[keyword]) is not None:
                raise SpecError(f"{tok.where(path)}: {keyword} given twice")
            setattr(cfg, SINGLE[keyword], word)
        else:
            getattr(cfg, LISTS[keyword]).append(word)
    if cfg.specification is None and (cfg.init is None or cfg.next is None):
        raise SpecError(f"{path}: needs INIT and NEXT, or SPECIFICATION")
    return cfg
