"""The built-in model checker: the TLA+ that formal/ is written in, checked in pure Python, as
TLC checks it in its exhaustive breadth-first mode (formal/README.md, "The built-in checker").

    lexer        tokens with their columns (bullet lists are aligned by column); comments dropped
    parser       a recursive-descent parser: modules, definitions, expressions, bullet lists
    syntax       the syntax tree
    config       the .cfg: what to check, the constants' values
    modules      EXTENDS, INSTANCE (substitutions), LOCAL, standard modules: what each name means
    builtins     the operators of TLA+ and of the standard modules, on values
    values       TLA+ values as hashable Python values; printing; ITF values
    evaluator    expressions compiled to closures; successor states found as TLC finds them
    model        a spec and its .cfg, compiled: Init, Next, invariants, properties
    explore      breadth-first search, counts, shortest counterexamples
    conformance  whether a trace is a behaviour of its spec
    errors       SpecError (cannot read), EvalError (no value)
"""
