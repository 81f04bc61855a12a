"""A recursive-descent parser for the TLA+ the specs in formal/ are written in.

Expressions are parsed by precedence climbing, with TLA+'s precedences (`=>` loosest, then
`<=>`/`~>`, `/\\`/`\\/`, `~`, the relations, `@@`, `:>`, the set operators, `..`, `+`/`-`, `*`,
`\\o`, ...; `'`, `f[x]` and `r.a` bind tightest). `/\\` and `\\/` mixed without parentheses are
refused, as SANY refuses them.

Bullet lists follow TLA+'s alignment rule: a `/\\` or `\\/` where an expression starts opens a
list whose bullets are all in its column; an item is everything after its bullet up to the first
token that is not to the right of the bullet (a token in the bullet's column or left of it, on a
later line), so

    /\\ a                     /\\ \\/ a
    /\\ \\/ b        is  a /\\ (b \\/ c),       \\/ b         is  (a \\/ b) /\\ c.
       \\/ c                  /\\ c

The parser keeps that column as a bound: tokens at or left of it are invisible (as the end of the
input) until the list is done. The same rule ends IF/THEN/ELSE, CASE and quantifier bodies inside
an item.
"""

from __future__ import annotations

from pathlib import Path

from nucleus.tla import syntax as s
from nucleus.tla.errors import SpecError
from nucleus.tla.lexer import Token, tokenize

# Infix operators: precedence and whether they associate to the left (else: to the right).
INFIX: dict[str, tuple[int, bool]] = {
    "=>": (1, False), "<=>": (2, True), "~>": (2, True),
    "/\\": (3, True), "\\/": (3, True),
    "=": (5, True), "#": (5, True), "<": (5, True), ">": (5, True), "<=": (5, True),
    ">=": (5, True), "\\in": (5, True), "\\notin": (5, True), "\\subseteq": (5, True),
    "\\subset": (5, True), "\\supseteq": (5, True),
    "@@": (6, True), ":>": (7, True),
    "\\cup": (8, True), "\\cap": (8, True), "\\": (8, True),
    "..": (9, True), "+": (10, True), "-": (10, True), "%": (10, True), "\\X": (10, True),
    "*": (13, True), "\\div": (13, True), "\\o": (13, True), "^": (14, False),
}
# Prefix operators: the precedence their operand is parsed at.
PREFIX = {"~": 5, "[]": 5, "<>": 5, "ENABLED": 5, "UNCHANGED": 5, "SUBSET": 9, "UNION": 9,
          "DOMAIN": 10, "-": 13}
RELATIONS = frozenset(op for op, (prec, _) in INFIX.items() if prec == 5)
FAIRNESS = ("WF_", "SF_")
# The module's declarations: keyword -> the list of s.Module they add names to.
DECLARATIONS = {"EXTENDS": "extends", "VARIABLE": "variables", "VARIABLES": "variables",
                "CONSTANT": "constants", "CONSTANTS": "constants"}

END = Token("end", "", 0, 0)


class Parser:
    def __init__(self, tokens: list[Token], path: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.path = path
        self.bound = -1  # tokens in this column or left of it end the expression (bullet lists)

    # -- tokens ---------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        tok = self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]
        if tok.col <= self.bound or tok.kind == "eof":
            return END
        return tok

    def at(self, text: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind in ("op", "keyword") and tok.text == text

    def advance(self) -> Token:
        tok = self.peek()
        if tok is END:
            raise self.error("unexpected end of the expression")
        self.pos += 1
        return tok

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise self.error(f"expected {text!r}")
        return self.advance()

    def expect_name(self) -> str:
        tok = self.peek()
        if tok.kind != "name":
            raise self.error("expected a name")
        self.pos += 1
        return tok.text

    def error(self, message: str) -> SpecError:
        tok = self.tokens[min(self.pos, len(self.tokens) - 1)]
        found = tok.shown()
        if tok.kind != "eof" and self.peek() is END:
            found += f" (not right of the bullet in column {self.bound + 1})"
        return SpecError(f"{tok.where(self.path)}: {message}, found {found}")

    def where(self) -> s.Pos:
        tok = self.tokens[self.pos]
        return (tok.line, tok.col + 1)

    # -- the module -----------------------------------------------------------------------

    def module(self) -> s.Module:
        self.expect_raw("----")
        self.expect_raw("MODULE")
        name = self.expect_name()
        self.expect_raw("----")
        mod = s.Module(name, self.path)
        while True:
            tok = self.tokens[self.pos]
            if tok.kind == "====":
                return mod
            keyword = tok.text if tok.kind == "keyword" else ""
            if tok.kind == "----":
                self.pos += 1
            elif keyword in DECLARATIONS:
                self.pos += 1
                getattr(mod, DECLARATIONS[keyword]).extend(self.name_list())
            elif keyword == "RECURSIVE":
                self.pos += 1
                mod.recursive.update(self.recursive_list())
            elif keyword in ("ASSUME", "ASSUMPTION", "THEOREM", "AXIOM"):
                self.pos += 1
                statement = self.unit_expr()
                if keyword.startswith("ASSUM"):
                    mod.assumptions.append(statement)  # theorems: proofs are not this checker's business
            else:
                self.unit(mod)

    def expect_raw(self, text: str) -> None:
        tok = self.tokens[self.pos]
        if tok.text != text and tok.kind != text:
            raise SpecError(f"{tok.where(self.path)}: expected {text!r}, found {tok.shown()}")
        self.pos += 1

    def name_list(self) -> list[str]:
        names = [self.expect_name()]
        while self.at(","):
            self.advance()
            names.append(self.expect_name())
        return names

    def recursive_list(self) -> list[str]:
        names = []
        while True:
            names.append(self.expect_name())
            if self.at("("):
                self.advance()
                while not self.at(")"):
                    self.advance()
                self.advance()
            if not self.at(","):
                return names
            self.advance()

    def unit_expr(self) -> s.Expr:
        self.bound = -1
        return self.expr()

    def unit(self, mod: s.Module) -> None:
        """A definition (`Op == e`, `Op(a, b) == e`) or an instance (`N == INSTANCE M`,
        `INSTANCE M`), possibly LOCAL."""
        local = False
        if self.at("LOCAL"):
            self.advance()
            local = True
        at = self.where()
        if self.at("INSTANCE"):
            mod.instances.append(self.instance(None, local, at))
            return
        name = self.expect_name()
        params: list[str] = []
        if self.at("("):
            self.advance()
            params = self.name_list()
            self.expect(")")
        if self.at("["):
            raise self.error(f"function definitions ({name}[x \\in S] == ...) are not supported")
        self.expect("==")
        if self.at("INSTANCE"):
            if params:
                raise self.error("parameterized instances are not supported")
            mod.instances.append(self.instance(name, local, at))
            return
        if name in mod.definitions:
            raise SpecError(f"{self.path}:{at[0]}:{at[1]}: {name} is defined twice")
        mod.definitions[name] = s.Definition(name, tuple(params), self.unit_expr(), local, at)

    def instance(self, name: str | None, local: bool, at: s.Pos) -> s.Instance:
        self.expect("INSTANCE")
        module = self.expect_name()
        subs: list[tuple[str, s.Expr]] = []
        if self.at("WITH"):
            self.advance()
            while True:
                target = self.expect_name()
                self.expect("<-")
                subs.append((target, self.expr()))
                if not self.at(","):
                    break
                self.advance()
        return s.Instance(name, module, tuple(subs), local, at)

    # -- expressions ----------------------------------------------------------------------

    def expr(self, min_prec: int = 0) -> s.Expr:
        return self.infix_rest(self.prefix(), min_prec)

    def infix_rest(self, lhs: s.Expr, min_prec: int) -> s.Expr:
        junction = ""  # the /\ or \/ this loop joins with: mixing the two needs parentheses
        joined: s.Expr | None = None  # the And/Or this loop built last (a /\ b /\ c is one And)
        while True:
            tok = self.peek()
            if tok.kind != "op" or tok.text not in INFIX:
                return lhs
            prec, left = INFIX[tok.text]
            if prec < min_prec:
                return lhs
            at = self.where()
            op = tok.text
            if op in ("/\\", "\\/"):
                if junction and junction != op:
                    raise self.error("/\\ and \\/ mixed without parentheses or bullets")
                junction = op
            self.advance()
            rhs = self.expr(prec + 1 if left else prec)
            if op in ("/\\", "\\/"):
                node = s.And if op == "/\\" else s.Or
                items = joined.items if isinstance(joined, node) and lhs is joined else (lhs,)
                lhs = joined = node((*items, rhs), at)
            elif op == "~>":
                lhs = s.Temporal("~>", (lhs, rhs), at)
            else:
                lhs = s.OpCall(op, (lhs, rhs), at)

    def prefix(self) -> s.Expr:
        tok = self.peek()
        if tok is END:
            raise self.error("expected an expression")
        if tok.kind == "op" and tok.text in ("/\\", "\\/"):
            return self.bullets(tok)
        if tok.text in PREFIX and tok.kind in ("op", "keyword"):
            at = self.where()
            self.advance()
            operand = self.expr(PREFIX[tok.text])
            if tok.text == "UNCHANGED":
                return s.Unchanged(operand, at)
            if tok.text in ("[]", "<>", "ENABLED"):
                return s.Temporal(tok.text, (operand,), at)
            return s.OpCall("-." if tok.text == "-" else tok.text, (operand,), at)
        if tok.kind == "op" and tok.text in ("\\E", "\\A"):
            return self.quantifier()
        if tok.kind == "keyword":
            if tok.text == "IF":
                return self.if_then_else()
            if tok.text == "CASE":
                return self.case()
            if tok.text == "LET":
                return self.let()
            if tok.text == "CHOOSE":
                at = self.where()
                self.advance()
                bound = self.bound_decl()
                self.expect(":")
                return s.Choose(bound, self.expr(), at)
        return self.postfix(self.primary())

    def bullets(self, first: Token) -> s.Expr:
        """A bullet list: every `/\\` (or `\\/`) in `first`'s column, each item right of it."""
        at = self.where()
        col, op = first.col, first.text
        outer = self.bound
        items = []
        while True:
            tok = self.peek()
            if tok is END or tok.kind != "op" or tok.text != op or tok.col != col:
                break
            self.advance()
            self.bound = col
            try:
                items.append(self.expr())
            finally:
                self.bound = outer
        return s.And(tuple(items), at) if op == "/\\" else s.Or(tuple(items), at)

    def quantifier(self) -> s.Expr:
        at = self.where()
        kind = self.advance().text
        bounds = self.bounds()
        self.expect(":")
        return s.Quant(kind, bounds, self.expr(), at)

    def bounds(self) -> tuple[s.Bound, ...]:
        """`x \\in S`, `x, y \\in S`, `<<x, y>> \\in S`, separated by commas."""
        result = []
        while True:
            result.append(self.bound_decl())
            if not self.at(","):
                return tuple(result)
            self.advance()

    def bound_decl(self) -> s.Bound:
        if self.at("<<"):
            self.advance()
            names = self.name_list()
            self.expect(">>")
            self.expect("\\in")
            return s.Bound(tuple(names), True, self.expr(6))
        names = [self.expect_name()]
        # `x, y \in S`: more names before the \in
        while self.at(",") and self.peek(1).kind == "name" and (self.at("\\in", 2) or self.at(",", 2)):
            self.advance()
            names.append(self.expect_name())
        if not self.at("\\in"):
            raise self.error("only bounded quantifiers (x \\in S) are supported")
        self.advance()
        return s.Bound(tuple(names), False, self.expr(6))

    def if_then_else(self) -> s.Expr:
        at = self.where()
        self.expect("IF")
        cond = self.expr()
        self.expect("THEN")
        then = self.expr()
        self.expect("ELSE")
        return s.If(cond, then, self.expr(), at)

    def case(self) -> s.Expr:
        at = self.where()
        self.expect("CASE")
        arms = []
        other = None
        while True:
            if self.at("OTHER"):
                self.advance()
                self.expect("->")
                other = self.expr()
                break
            guard = self.expr()
            self.expect("->")
            arms.append((guard, self.expr()))
            if not self.at("[]"):
                break
            self.advance()
        return s.Case(tuple(arms), other, at)

    def let(self) -> s.Expr:
        at = self.where()
        self.expect("LET")
        defs = []
        while not self.at("IN"):
            if self.at("RECURSIVE"):
                self.advance()
                self.recursive_list()
                continue
            dat = self.where()
            name = self.expect_name()
            params: list[str] = []
            if self.at("("):
                self.advance()
                params = self.name_list()
                self.expect(")")
            self.expect("==")
            defs.append(s.Definition(name, tuple(params), self.expr(), False, dat))
        self.expect("IN")
        return s.Let(tuple(defs), self.expr(), at)

    def primary(self) -> s.Expr:
        at = self.where()
        tok = self.advance()
        if tok.kind == "number":
            return s.Num(int(tok.text), at)
        if tok.kind == "string":
            return s.Str(tok.text, at)
        if tok.kind == "name":
            if tok.text in ("TRUE", "FALSE"):
                return s.Bool(tok.text == "TRUE", at)
            if tok.text.startswith(FAIRNESS):
                return self.fairness(tok, at)
            if self.at("!"):
                return self.instance_ref(tok.text, at)
            if self.at("("):
                return s.Apply(tok.text, self.arguments(), at)
            return s.Name(tok.text, at)
        if tok.kind == "op":
            if tok.text == "(":
                inner = self.expr()
                self.expect(")")
                return inner
            if tok.text == "{":
                return self.braces(at)
            if tok.text == "<<":
                return self.angles(at)
            if tok.text == "[":
                return self.brackets(at)
            if tok.text == "@":
                return s.At(at)
        self.pos -= 1
        raise self.error("expected an expression")

    def arguments(self) -> tuple[s.Expr, ...]:
        self.expect("(")
        args = [self.expr()]
        while self.at(","):
            self.advance()
            args.append(self.expr())
        self.expect(")")
        return tuple(args)

    def instance_ref(self, first: str, at: s.Pos) -> s.Expr:
        path = [first]
        while self.at("!"):
            self.advance()
            path.append(self.expect_name())
        args = self.arguments() if self.at("(") else ()
        return s.InstanceRef(tuple(path[:-1]), path[-1], args, at)

    def fairness(self, tok: Token, at: s.Pos) -> s.Expr:
        rest = tok.text[3:]
        sub = s.Name(rest, at) if rest else self.postfix(self.primary())
        self.expect("(")
        action = self.expr()
        self.expect(")")
        return s.Temporal(tok.text[:2], (sub, action), at)

    def braces(self, at: s.Pos) -> s.Expr:
        if self.at("}"):
            self.advance()
            return s.SetEnum((), at)
        if self.peek().kind == "name" and self.at("\\in", 1):
            # {x \in S : P}, or an enumeration whose first element is `x \in S`
            start = self.pos
            name = self.expect_name()
            self.advance()
            domain = self.expr(6)
            if self.at(":"):
                self.advance()
                pred = self.expr()
                self.expect("}")
                return s.SetFilter(s.Bound((name,), False, domain), pred, at)
            self.pos = start
        first = self.expr()
        if self.at(":"):
            self.advance()
            bounds = self.bounds()
            self.expect("}")
            return s.SetMap(first, bounds, at)
        items = [first]
        while self.at(","):
            self.advance()
            items.append(self.expr())
        self.expect("}")
        return s.SetEnum(tuple(items), at)

    def angles(self, at: s.Pos) -> s.Expr:
        items: list[s.Expr] = []
        if not self.at(">>") and not self.at(">>_"):
            items.append(self.expr())
            while self.at(","):
                self.advance()
                items.append(self.expr())
        if self.at(">>_"):
            self.advance()
            if len(items) != 1:
                raise self.error("<<A>>_v takes one action")
            return s.AngleAction(items[0], self.postfix(self.primary()), at)
        self.expect(">>")
        return s.Tuple(tuple(items), at)

    def brackets(self, at: s.Pos) -> s.Expr:
        """`[a |-> e]`, `[a : S]`, `[x \\in S |-> e]`, `[S -> T]`, `[f EXCEPT ...]`, `[A]_v`."""
        if self.peek().kind == "name" and self.at("|->", 1):
            return s.Record(self.fields("|->"), at)
        if self.peek().kind == "name" and self.at(":", 1):
            return s.RecordSet(self.fields(":"), at)
        if self.peek().kind == "name" or self.at("<<"):
            start = self.pos
            try:
                bounds = self.bounds()
                if self.at("|->"):
                    self.advance()
                    body = self.expr()
                    self.expect("]")
                    return s.FnCons(bounds, body, at)
            except SpecError:
                pass
            self.pos = start
        first = self.expr()
        if self.at("->"):
            self.advance()
            codomain = self.expr()
            self.expect("]")
            return s.FnSet(first, codomain, at)
        if self.at("EXCEPT"):
            self.advance()
            return self.except_(first, at)
        if self.at("]_"):
            self.advance()
            return s.BoxAction(first, self.postfix(self.primary()), at)
        raise self.error("expected ->, EXCEPT or ]_ in [...]")

    def fields(self, sep: str) -> tuple[tuple[str, s.Expr], ...]:
        result = []
        while True:
            name = self.expect_name()
            self.expect(sep)
            result.append((name, self.expr()))
            if not self.at(","):
                break
            self.advance()
        self.expect("]")
        return tuple(result)

    def except_(self, fn: s.Expr, at: s.Pos) -> s.Expr:
        updates = []
        while True:
            self.expect("!")
            path: list[s.Expr | str] = []
            while self.at("[") or self.at("."):
                if self.advance().text == "[":
                    path.append(self.expr())
                    self.expect("]")
                else:
                    path.append(self.expect_name())
            if not path:
                raise self.error("expected [key] or .field after !")
            self.expect("=")
            updates.append((tuple(path), self.expr()))
            if not self.at(","):
                break
            self.advance()
        self.expect("]")
        return s.Except(fn, tuple(updates), at)

    def postfix(self, expr: s.Expr) -> s.Expr:
        while True:
            if self.at("'"):
                at = self.where()
                self.advance()
                expr = s.Prime(expr, at)
            elif self.at("["):
                at = self.where()
                self.advance()
                args = [self.expr()]
                while self.at(","):
                    self.advance()
                    args.append(self.expr())
                self.expect("]")
                expr = s.FnApp(expr, tuple(args), at)
            elif self.at(".") and self.peek(1).kind == "name":
                at = self.where()
                self.advance()
                expr = s.Field(expr, self.expect_name(), at)
            else:
                return expr


def parse_module(text: str, path: str | Path = "<text>") -> s.Module:
    """The syntax tree of the first module in `text` (a .tla file)."""
    tokens = tokenize(text, path)
    return Parser(tokens, str(path)).module()


def parse_expression(text: str, path: str = "<expression>") -> s.Expr:
    """One expression on its own (a .cfg value, a test's)."""
    tokens = tokenize(f"---- MODULE E ----\nE ==\n{text}\n====", path)
    parser = Parser(tokens, path)
    parser.pos = 6  # after `---- MODULE E ---- E ==`
    expr = parser.expr()
    if parser.tokens[parser.pos].kind != "====":
        raise parser.error("unexpected text after the expression")
    return expr
