"""The `nucleus` command's entry point. `nucleus run` goes straight to the run, its arguments
parsed from RUN_FLAGS by run_args, without importing click (a fifth of a cold start); every
other command, and a run's help or refused arguments, goes to the click CLI (nucleus.cli.main),
which therefore prints the same help and usage errors for both.
"""

from __future__ import annotations

import os
import sys

from nucleus.errors import EXIT_FAILURE, NucleusError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is for the run path to import, not `run --server`'s client
    from typing import NoReturn

# The group's options that may come before `run` (main.py's `cli`): name -> takes a value.
_GLOBAL = {"--debug": False, "--root": True}


def main() -> None:
    code = fast_run(sys.argv[1:])
    if code is None:
        from nucleus.cli import main as cli

        code = cli.run_cli()
    leave(code)


def leave(code: int) -> NoReturn:
    """Exit without the interpreter's teardown (a tenth of a short run): nothing is pending but
    the standard streams, which are flushed here."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def report(e: Exception) -> int:
    """Tell the user why the command failed (no traceback: that is --debug's); its exit code."""
    if isinstance(e, NucleusError):
        sys.stderr.write(e.render() + "\n")
        return e.exit_code
    sys.stderr.write(f"error: internal error: {type(e).__name__}: {e}\nhint: run again with "
                     "--debug for the traceback, and report it\n")
    return EXIT_FAILURE


def fast_run(args: list[str]) -> int | None:
    """`[--debug] [--root DIR] run ARGS...` without click: the exit status; None when click must
    see the command line (another command, --help, --version, arguments run_args refuses)."""
    given: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in _GLOBAL or (eq and not _GLOBAL[name]):
            break
        if not _GLOBAL[name]:
            given[name] = True
        elif eq:
            given[name] = value
        elif i + 1 < len(args):
            given[name] = args[i + 1]
            i += 1
        else:
            return None
        i += 1
    if args[i:i + 1] != ["run"]:
        return None
    root = given["--root"] if "--root" in given else os.environ.get("NUCLEUS_STATE_DIR")
    server = _server(args[i + 1:])
    if server is not None:  # the warm path: the server's child parses the rest, as a cold run would
        if root:
            os.environ["NUCLEUS_STATE_DIR"] = os.path.abspath(str(root))
        from nucleus.effects import serve_client

        try:
            return serve_client.run(*server)
        except Exception as e:  # said plainly, as below
            if given.get("--debug"):
                raise
            return report(e)
    from nucleus.cli import run_args

    try:
        command, opts = run_args.parse(args[i + 1:])
    except run_args.Unparsed:
        return None
    debug = bool(given.get("--debug")) or bool(opts["debug"])
    if root:
        os.environ["NUCLEUS_STATE_DIR"] = os.path.abspath(str(root))
    from nucleus.cli import run_options

    try:
        return run_options.start(command, opts)
    except KeyboardInterrupt:
        sys.stderr.write("\naborted\n")  # as click says it
        return 130
    except Exception as e:  # a bug or a refusal: said plainly, the traceback is one flag away
        if debug:
            raise
        return report(e)


def _server(args: list[str]) -> tuple[str, list[str]] | None:
    """(SOCK, the rest) of `run --server SOCK ...` (--server first: the client then needs no
    flag table)."""
    if args[:1] == ["--server"] and len(args) > 1:
        return args[1], args[2:]
    if args and args[0].startswith("--server="):
        return args[0].partition("=")[2], args[1:]
    return None
