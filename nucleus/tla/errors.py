"""What the checker reports other than a verdict: a spec it cannot read, and an expression it
cannot evaluate (as TLC, it stops there rather than guess)."""

from __future__ import annotations


class TlaError(Exception):
    """The checker could not give a verdict."""


class SpecError(TlaError):
    """A module, a .cfg or a trace that cannot be read: it names the file, line and column."""


class EvalError(TlaError):
    """An expression that has no value: a function applied outside its domain, values of
    different kinds compared, a variable read before it is assigned, an unsupported operator."""
