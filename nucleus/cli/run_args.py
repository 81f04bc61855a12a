"""`nucleus run`'s arguments parsed without click, from the same table (RUN_FLAGS) and by click's
rules: long options with `=VALUE` or the next argument, short options grouped (`-ti`) or with the
value attached (`-eK=V`), the last of a repeated option winning, `--` or the first argument that
is not an option starting the command, `-` being an argument.

It decides only what it can decide exactly as click would. A command line it refuses, or one
asking for help, raises `Unparsed`, and the caller hands the whole command line to click, which
prints the usage error or the help: the messages and exit codes are click's own by
construction, and the test that compares both parsers keeps their verdicts equal.
"""

from __future__ import annotations

from typing import Any

from nucleus.cli.run_options import RUN_FLAGS, Flag

# The help option of every command (main.py's CONTEXT_SETTINGS).
HELP = ("-h", "--help")


class Unparsed(Exception):
    """click must see this command line: it is refused, or it asks for help."""


def _table() -> tuple[dict[str, Flag], dict[str, Flag]]:
    long_opts: dict[str, Flag] = {}
    short_opts: dict[str, Flag] = {}
    for flag in RUN_FLAGS:
        for name in flag.names:  # click's rule: one prefix character and one letter is short
            (short_opts if len(name) == 2 and name[1] != "-" else long_opts)[name] = flag
    return long_opts, short_opts


_LONG, _SHORT = _table()
_CHOSEN = tuple(f for f in RUN_FLAGS if f.choices and not f.multiple)


def defaults() -> dict[str, Any]:
    """Each option's value when it is not given, as click's `run` receives it."""
    return {f.dest: False if f.switch else () if f.multiple else f.default for f in RUN_FLAGS}


def parse(args: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(command, options) of `nucleus run ARGS`, the options keyed as click names them."""
    opts = defaults()
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            break
        if arg[:1] != "-" or len(arg) == 1:
            rest.insert(0, arg)
            break
        name, eq, value = arg.partition("=")
        if name in HELP[1:]:
            raise Unparsed(arg)
        flag = _LONG.get(name)
        if flag is not None:
            if flag.switch:
                if eq:
                    raise Unparsed(arg)  # "Option '--tty' does not take a value."
                opts[flag.dest] = True
            else:
                _set(opts, flag, value if eq else _next(rest))
            continue
        if arg[:2] == "--":
            raise Unparsed(arg)  # "No such option"
        _short(arg, rest, opts)
    for flag in _CHOSEN:  # click converts the value that won, not the ones it replaced
        value = opts[flag.dest]
        if value != flag.default and value not in flag.choices:
            raise Unparsed(value)  # "Invalid value for '--network': ..."
    return tuple(rest), opts


def without(args: list[str], name: str) -> list[str]:
    """`args`, which `parse` accepted, without the long option `name` and its value: among the
    options before the command only, the command's own arguments untouched."""
    out: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--" or arg[:1] != "-" or len(arg) == 1:
            return [*out, arg, *rest]
        given, eq, _ = arg.partition("=")
        if arg[:2] == "--":
            takes_next = not _LONG[given].switch and not eq
        else:  # a group: the first option with a value takes the rest of it, or the next argument
            valued = [i for i, ch in enumerate(arg[1:], start=1) if not _SHORT["-" + ch].switch]
            takes_next = bool(valued) and valued[0] == len(arg) - 1
        value = [rest.pop(0)] if takes_next and rest else []
        if given != name:
            out += [arg, *value]
    return out


def _short(arg: str, rest: list[str], opts: dict[str, Any]) -> None:
    """A group of short options: `-ti`, `-e`, `-eKEY=VALUE`, `-tiv/a:/b`."""
    for i, ch in enumerate(arg[1:], start=2):
        name = "-" + ch
        if name in HELP[:1]:
            raise Unparsed(arg)
        flag = _SHORT.get(name)
        if flag is None:
            raise Unparsed(arg)
        if flag.switch:
            opts[flag.dest] = True
            continue
        if i < len(arg):
            rest.insert(0, arg[i:])
        _set(opts, flag, _next(rest))
        return


def _next(rest: list[str]) -> str:
    if not rest:
        raise Unparsed("")  # "Option '--name' requires an argument."
    return rest.pop(0)


def _set(opts: dict[str, Any], flag: Flag, value: str) -> None:
    if flag.multiple and flag.choices and value not in flag.choices:
        raise Unparsed(value)  # each value of a repeatable option is converted
    opts[flag.dest] = (*opts[flag.dest], value) if flag.multiple else value
