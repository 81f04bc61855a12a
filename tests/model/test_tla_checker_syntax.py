"""The parser of the built-in TLA+ checker (nucleus/tla/parser.py): every module in formal/
reads, bullet lists follow TLA+'s column rule, and what it cannot read is named by file, line and
column."""

from __future__ import annotations

import pytest

from nucleus.tla import syntax as s
from nucleus.tla.errors import SpecError
from nucleus.tla.lexer import tokenize
from nucleus.tla.parser import parse_module
from tests.model.tla_cases import FORMAL


def shape(e: s.Expr) -> str:
    """An expression's structure in prefix form: and(p, or(q, r))."""
    if isinstance(e, s.And | s.Or):
        return f"{type(e).__name__.lower()}({', '.join(shape(i) for i in e.items)})"
    if isinstance(e, s.Name):
        return e.name
    if isinstance(e, s.Num | s.Str):
        return repr(e.value)
    if isinstance(e, s.OpCall):
        return f"{e.op}({', '.join(shape(a) for a in e.args)})"
    if isinstance(e, s.If):
        return f"if({shape(e.cond)}, {shape(e.then)}, {shape(e.other)})"
    if isinstance(e, s.Prime):
        return shape(e.expr) + "'"
    if isinstance(e, s.Case):
        arms = ", ".join(f"{shape(g)} -> {shape(v)}" for g, v in e.arms)
        return f"case({arms}{', other -> ' + shape(e.other) if e.other else ''})"
    if isinstance(e, s.Temporal):
        return f"{e.op}({', '.join(shape(a) for a in e.args)})"
    if isinstance(e, s.BoxAction):
        return f"[{shape(e.action)}]_{shape(e.sub)}"
    return type(e).__name__


def definitions(body: str) -> dict[str, str]:
    mod = parse_module(f"---- MODULE M ----\nEXTENDS Naturals\nVARIABLES p, q, r, x\n{body}\n====\n", "M.tla")
    return {name: shape(d.body) for name, d in mod.definitions.items()}


@pytest.mark.parametrize("path", sorted(FORMAL.glob("*.tla")), ids=lambda p: p.name)
def test_every_module_in_formal_parses(path):
    mod = parse_module(path.read_text(), path)
    assert mod.name == path.stem
    assert mod.definitions
    if (FORMAL / f"{path.stem}.cfg").is_file() and not path.stem.endswith("Export"):
        assert {"Init", "Next", "Inv", "vars"} <= set(mod.definitions)
        assert "event" in mod.variables


def test_bullets_nest_by_column():
    found = definitions(
        "A ==\n"
        "  /\\ p\n"
        "  /\\ \\/ q\n"
        "     \\/ r\n"
        "B ==\n"
        "  \\/ /\\ p\n"
        "     /\\ q\n"
        "  \\/ r\n"
    )
    assert found == {"A": "and(p, or(q, r))", "B": "or(and(p, q), r)"}


def test_a_token_left_of_the_bullet_ends_the_list():
    # The \/ in column 3 is left of the bullets in column 5: the list (p /\ q) is its left operand.
    assert definitions("C == /\\ p\n     /\\ q\n   \\/ r\n") == {"C": "or(and(p, q), r)"}


def test_an_item_goes_on_while_its_tokens_are_right_of_the_bullet():
    found = definitions(
        "D ==\n"
        "    /\\ p = 1\n"
        "    /\\ IF q THEN /\\ x' = 1\n"
        "                 /\\ r\n"
        "       ELSE x' = 2\n"
        "    /\\ r\n"
    )
    assert found == {"D": "and(=(p, 1), if(q, and(=(x', 1), r), =(x', 2)), r)"}


def test_infix_junctions_and_case():
    found = definitions(
        "E == p /\\ q /\\ r\n"
        "F == CASE x = 1 -> p\n"
        "       [] x = 2 -> q\n"
        "       [] OTHER -> r\n"
        "G == ~p = q\n"
        "H == [][x' > x]_x /\\ WF_x(x' = 1)\n"
    )
    assert found == {
        "E": "and(p, q, r)",
        "F": "case(=(x, 1) -> p, =(x, 2) -> q, other -> r)",
        "G": "~(=(p, q))",
        "H": "and([]([>(x', x)]_x), WF(x, =(x', 1)))",
    }


def test_mixing_and_or_without_bullets_or_parentheses_is_refused():
    with pytest.raises(SpecError, match=r"M.tla:4:13: /\\ and \\/ mixed without parentheses or bullets"):
        definitions("X == p /\\ q \\/ r\n")
    assert definitions("Y == (p /\\ q) \\/ r\n") == {"Y": "or(and(p, q), r)"}


def test_comments_are_dropped_and_strings_kept():
    mod = parse_module(
        "text before the module\n"
        "---- MODULE M ----\n"
        "(* a comment (* nested *) still a comment *)\n"
        'S == "(* not a comment *) \\\\* nor this" \\* a line comment\n'
        "====\n"
        "text after it\n",
        "M.tla",
    )
    assert shape(mod.definitions["S"].body) == repr("(* not a comment *) \\* nor this")


@pytest.mark.parametrize(("body", "message"), [
    ("Z == (p\n", r"M.tla:6:1: expected '\)', found '===='"),
    ("Z == p \\ominus q\n", r"M.tla:4:8: operator \\ominus is not supported"),
    ("Z == \\E x : p\n", r"M.tla:4:11: only bounded quantifiers \(x \\in S\) are supported, found .:."),
    ("Z == \"open\n", r"M.tla:4:6: unterminated string"),
    ("Z == p\nZ == q\n", r"M.tla:5:1: Z is defined twice"),
])
def test_what_cannot_be_read_is_named_with_its_place(body, message):
    with pytest.raises(SpecError, match=message):
        definitions(body)


def test_a_module_without_its_header_is_refused():
    with pytest.raises(SpecError, match="no `---- MODULE Name ----` line"):
        tokenize("A == 1\n", "A.tla")
    with pytest.raises(SpecError, match="has no closing `====` line"):
        tokenize("---- MODULE A ----\nA == 1\n", "A.tla")
