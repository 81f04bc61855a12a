"""`nucleus oci` and the `nucleus-oci` command: runc's command line (the global --root, --log,
--log-format, --systemd-cgroup; create, start, state, kill, delete, exec, ps, features), as
containerd's runc shim calls it (`ctr run --runc-binary`, a runtime's BinaryName). Errors go to
stderr and, with --log, to the log as runc writes it (one JSON object a line with
--log-format json), where the shim reads the last one."""

from __future__ import annotations

import json
import signal as signals
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

import click

from nucleus.app import oci
from nucleus.config import oci as bundles
from nucleus.effects.ocistate import DEFAULT_ROOT
from nucleus.errors import EXIT_FAILURE, InvalidInput, NucleusError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


F = TypeVar("F", bound=Callable[..., Any])


class Log:
    """runc's --log: text lines, or with --log-format json, logrus's JSON objects."""

    def __init__(self, path: str | None, form: str) -> None:
        self.path = path
        self.form = form

    def write(self, level: str, message: str) -> None:
        if self.path is None:
            if level != "error":  # an error is the CLI's to print
                sys.stderr.write(f"nucleus-oci: {level}: {message}\n")
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = (json.dumps({"level": level, "msg": message, "time": stamp}) if self.form == "json"
                else f'time="{stamp}" level={level} msg="{message}"')
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError as e:
            sys.stderr.write(f"nucleus-oci: cannot write the log {self.path!r}: {e.strerror}\n")

    def warn(self, message: str) -> None:
        self.write("warning", message)


def logged(command: F) -> F:
    """The command with its error also written to the --log (where containerd's shim reads why
    the runtime failed)."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NucleusError as e:
            _log(click.get_current_context()).write("error", e.message)
            raise

    return cast("F", wrapper)


def _log(ctx: click.Context) -> Log:
    log: Log = ctx.obj["log"]
    return log


def _root(ctx: click.Context) -> str:
    root: str = ctx.obj["root"]
    return root


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(oci.version())
        ctx.exit(0)


@click.group(name="oci", context_settings=CONTEXT_SETTINGS)
@click.option("--version", "-v", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version.")
@click.option("--root", default=DEFAULT_ROOT, show_default=True, metavar="DIR",
              help="Where the runtime keeps each container's state.")
@click.option("--log", metavar="FILE", help="Write the runtime's log here (default: stderr).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--systemd-cgroup", is_flag=True, help="Refused: nucleus manages cgroups through cgroupfs.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--rootless", default="auto", metavar="true|false|auto", help="Accepted for runc's callers.")
@click.option("--criu", hidden=True)
@click.option("--seccomp", type=click.Choice(bundles.SECCOMP_SOURCES), default="nucleus", show_default=True,
              envvar=bundles.SECCOMP_ENV, show_envvar=True,
              help="Whose seccomp profile a container gets: nucleus's own, or its bundle's linux.seccomp.")
@click.option(bundles.DEGRADED, "allow_degraded", is_flag=True, envvar=bundles.DEGRADED_ENV, show_envvar=True,
              help="Let a bundle weaken nucleus's hardening: share the host's network (no network "
                   "namespace), or (with --seccomp bundle) a profile that allows every call it does not name.")
@click.pass_context
def group(ctx: click.Context, root: str, log: str | None, log_format: str, systemd_cgroup: bool,
          debug: bool, rootless: str, criu: str | None, seccomp: str, allow_degraded: bool) -> None:
    """An OCI runtime with runc's command line: containerd and Kubernetes run nucleus through it."""
    import os

    ctx.obj = {"root": os.path.abspath(root), "log": Log(log, log_format), "debug": debug,
               "runtime": bundles.Runtime(seccomp, allow_degraded)}
    if ctx.parent is not None and isinstance(ctx.parent.obj, dict):
        ctx.obj["debug"] = debug or ctx.parent.obj.get("debug", False)
    if systemd_cgroup:
        ctx.obj["log"].write("error", "--systemd-cgroup: not supported")
        raise InvalidInput("--systemd-cgroup: nucleus manages the container's cgroups through cgroupfs, "
                           "not through systemd",
                           hint="set SystemdCgroup = false in containerd's options for the nucleus runtime")
    if rootless not in ("true", "false", "auto"):
        raise InvalidInput(f"--rootless {rootless!r}: must be true, false or auto")


@group.command()
@click.option("--bundle", "-b", default=".", show_default=True, metavar="DIR",
              help="The bundle: config.json and the root file system it names.")
@click.option("--pid-file", metavar="FILE", help="Write the container process's pid here.")
@click.option("--console-socket", metavar="SOCKET", help="Where to send a terminal's master (terminal: true).")
@click.option("--no-pivot", is_flag=True, hidden=True)
@click.option("--no-new-keyring", is_flag=True, hidden=True)
@click.option("--preserve-fds", type=int, default=0, hidden=True)
@click.argument("container_id")
@click.pass_context
@logged
def create(ctx: click.Context, bundle: str, pid_file: str | None, console_socket: str | None,
           no_pivot: bool, no_new_keyring: bool, preserve_fds: int, container_id: str) -> None:
    """Create the container: everything up to running its process, which waits for `start`."""
    if preserve_fds:
        raise InvalidInput(f"--preserve-fds {preserve_fds}: no descriptor beyond 0-2 reaches the container",
                           hint="nucleus holds that line for every workload")
    oci.create(_root(ctx), bundle, container_id, pid_file, console_socket, _log(ctx).warn, ctx.obj["runtime"])


@group.command()
@click.argument("container_id")
@click.pass_context
@logged
def start(ctx: click.Context, container_id: str) -> None:
    """Run the created container's process."""
    oci.start(_root(ctx), container_id)


@group.command()
@click.argument("container_id")
@click.pass_context
@logged
def state(ctx: click.Context, container_id: str) -> None:
    """Print the container's state (runtime-spec's state, JSON)."""
    click.echo(json.dumps(oci.state(_root(ctx), container_id), indent=2))


def parse_signal(text: str) -> int:
    """A signal by number, by name or by name without SIG (as runc takes them)."""
    if text.isdigit():
        number = int(text)
        if 0 < number < signals.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        member = getattr(signals.Signals, "__members__", {}).get(name)
        if member is not None:
            return int(member)
    raise InvalidInput(f"signal {text!r}: not a signal", hint="for example TERM, SIGKILL or 9")


@group.command()
@click.option("--all", "-a", "every", is_flag=True, help="Signal every process in the container.")
@click.argument("container_id")
@click.argument("signal", default="TERM")
@click.pass_context
@logged
def kill(ctx: click.Context, every: bool, container_id: str, signal: str) -> None:
    """Send SIGNAL (default TERM) to the container's process."""
    oci.kill(_root(ctx), container_id, parse_signal(signal), every)


@group.command()
@click.option("--force", "-f", is_flag=True, help="Kill a running container first.")
@click.argument("container_id")
@click.pass_context
@logged
def delete(ctx: click.Context, force: bool, container_id: str) -> None:
    """Remove the stopped (or created) container."""
    oci.delete(_root(ctx), container_id, force)


@group.command(name="exec")
@click.option("--process", "-p", "process", required=True, metavar="FILE",
              help="The process to run (runtime-spec's process, JSON).")
@click.option("--detach", "-d", is_flag=True, help="Leave it running; --pid-file names it.")
@click.option("--pid-file", metavar="FILE")
@click.option("--console-socket", metavar="SOCKET")
@click.option("--preserve-fds", type=int, default=0, hidden=True)
@click.argument("container_id")
@click.pass_context
@logged
def exec_(ctx: click.Context, process: str, detach: bool, pid_file: str | None, console_socket: str | None,
          preserve_fds: int, container_id: str) -> None:
    """Run another process in the running container."""
    if preserve_fds:
        raise InvalidInput(f"--preserve-fds {preserve_fds}: no descriptor beyond 0-2 reaches the container")
    ctx.exit(oci.exec_process(_root(ctx), container_id, process, detach, pid_file, console_socket,
                              _log(ctx).warn))


@group.command()
@click.option("--format", "-f", "form", type=click.Choice(["table", "json"]), default="table")
@click.argument("container_id")
@click.argument("ps_args", nargs=-1)
@click.pass_context
@logged
def ps(ctx: click.Context, form: str, container_id: str, ps_args: tuple[str, ...]) -> None:
    """List the container's processes (--format json: their pids)."""
    pids = oci.ps(_root(ctx), container_id)
    click.echo(json.dumps(pids) if form == "json" else "\n".join(["PID", *map(str, pids)]))


@group.command()
@click.pass_context
def features(ctx: click.Context) -> None:
    """Print what this runtime reads of a bundle (runtime-spec's features, JSON)."""
    click.echo(json.dumps(oci.features(), indent=2))


def run_cli(args: list[str] | None = None) -> int:
    """`nucleus-oci ARGS`: the exit status; errors are told on stderr (and in the --log)."""
    from nucleus.cli import entry

    try:
        rv = group.main(args, prog_name="nucleus-oci", standalone_mode=False)
    except NucleusError as e:
        if "--debug" in (args if args is not None else sys.argv[1:]):
            raise
        return entry.report(e)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return EXIT_FAILURE
    except Exception as e:  # noqa: BLE001 - a bug: said plainly, as `nucleus` does
        return entry.report(e)
    return rv if isinstance(rv, int) else 0


def main() -> None:
    from nucleus.cli import entry

    entry.leave(run_cli())
