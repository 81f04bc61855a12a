"""The command line. It only composes: parse arguments into a spec, hand it to the runner,
print results, and turn NucleusError into a message and an exit code."""

from __future__ import annotations

import sys

import click

from nucleus import __version__
from nucleus.errors import InvalidInput, NucleusError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

# Set by the callbacks that parse --debug, so an argument of the workload spelled "--debug"
# never counts.
_debug = False


def _set_debug(on: bool) -> None:
    global _debug
    _debug = _debug or on


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="nucleus", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """nucleus: a security-hardened, Nix-native Linux container runtime."""
    ctx.obj = {"debug": debug}
    _set_debug(debug)


@cli.command(context_settings={**CONTEXT_SETTINGS, "allow_interspersed_args": False})
@click.option("--name", help="Container name (letters, digits, '_', '.', '-').")
@click.option("--hostname", help="Host name inside the container [default: the name, or nucleus].")
@click.option("--context", "context", metavar="DIR", help="Directory to populate /context from.")
@click.option("--context-mode", type=click.Choice(["copy", "bind"]), default="copy", show_default=True,
              help="copy: a private writable copy without secrets and VCS junk; bind: the host tree, read-only.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable.")
@click.option("--workdir", metavar="PATH", help="Working directory inside [default: /context with --context, else home].")
@click.option("--rootless", is_flag=True, help="Map container root to the caller instead of an unprivileged range.")
@click.option("--time-namespace", is_flag=True, help="Give the container its own time namespace.")
@click.option("--allow-degraded-security", is_flag=True,
              help="Run even if seccomp or Landlock cannot be applied (a warning instead of an error).")
@click.option("--allow-chroot-fallback", is_flag=True, help="Fall back to chroot if pivot_root fails.")
@click.option("--trace", "trace", metavar="FILE", help="Record the run's state transitions as an ITF trace.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.argument("command", nargs=-1, required=False, metavar="COMMAND...", type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, command: tuple[str, ...], name, hostname, context, context_mode, env,
        workdir, rootless, time_namespace, allow_degraded_security, allow_chroot_fallback, trace,
        debug) -> None:
    """Run COMMAND in an ephemeral, isolated agent sandbox and exit with its status."""
    from nucleus.spec.container import ContainerSpec, parse_env, validate

    if debug:
        ctx.obj["debug"] = True
    _set_debug(debug)
    import os

    spec = validate(ContainerSpec(
        argv=tuple(command), name=name, hostname=hostname, context=context,
        context_mode=context_mode, env=parse_env(env), workdir=workdir, rootless=rootless,
        time_namespace=time_namespace, allow_degraded_security=allow_degraded_security,
        allow_chroot_fallback=allow_chroot_fallback, term=os.environ.get("TERM") or "xterm",
    ))
    from nucleus.runner import run as run_container

    ctx.exit(run_container(spec, trace_path=trace))


@cli.group()
def trace() -> None:
    """Work with ITF traces of nucleus's state machines."""


@trace.command("replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def trace_replay(files: tuple[str, ...]) -> None:
    """Replay FILES through the production state machines; report the first divergence of each."""
    from nucleus import itf, replay

    failed = 0
    for path in files:
        try:
            result = replay.replay(itf.load(path))
        except (OSError, ValueError) as e:
            raise InvalidInput(f"trace {path!r}: {e}") from e
        if result is None:
            click.echo(f"ok {path}")
        else:
            failed += 1
            click.echo(f"DIVERGED {result}", err=True)
    click.echo(f"{len(files) - failed} of {len(files)} traces agree with the machines")
    if failed:
        sys.exit(1)


def main() -> None:
    try:
        rv = cli.main(standalone_mode=False)
    except NucleusError as e:
        if _debug:
            raise
        click.echo(e.render(), err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if isinstance(e, click.UsageError) else 1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
