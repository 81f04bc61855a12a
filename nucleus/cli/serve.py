"""`nucleus serve`'s two ends in the CLI: what the server imports before its first fork, and
what each child runs once it is the caller (a `nucleus run` with the caller's arguments,
through the same fast parser and click fallback as a cold run)."""

from __future__ import annotations

import contextlib
import importlib


def warm() -> None:
    """Import what a run imports, once, before the first fork (the point of the server); also
    what a run imports later, for a child that may no longer read the server's interpreter (a
    root server's, under /root, serving another user): the seccomp compiler, and the violation
    monitor's own modules (each run forks one). What a run builds the same every time is built
    here too: the secret rules /etc is checked with."""
    from nucleus.cli import run_args, run_options

    for name in ("gc", "ctypes.util", "pyseccomp", "nucleus.app.run", "nucleus.cli.entry",
                 "nucleus.config.seccomp_default", "nucleus.effects.audit", "nucleus.effects.executor",
                 "nucleus.effects.handlers", "nucleus.effects.hostcheck", "nucleus.effects.monitor",
                 "nucleus.effects.namespaces", "nucleus.effects.process", "nucleus.effects.refusals",
                 "nucleus.effects.seccomp_bpf", "nucleus.effects.seccomp_handoff",
                 "nucleus.effects.setup"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    run_options.to_config(("/bin/true",), run_args.defaults(), "xterm", environ={})
    from nucleus.config import host_etc
    from nucleus.effects import libc

    libc.capget()  # loads libc (ctypes) once
    host_etc.secret("nucleus", "nucleus", False)  # compiles the rules (kept by host_etc)


def run(argv: list[str]) -> int:
    """`nucleus run ARGV` in a child that is already the caller: its exit status."""
    from nucleus.cli import entry

    try:
        code = entry.fast_run(["run", *argv])
        if code is None:
            from nucleus.cli import main as cli

            code = cli.run_cli()
        return code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 125
    except Exception as e:  # noqa: BLE001 - told as a cold run tells it
        return entry.report(e)


def serve(socket_path: str | None, group: str | None, grace: float) -> int:
    from nucleus.app import serve as app

    return app.serve(socket_path, group, grace, run, warm)
