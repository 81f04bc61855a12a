"""The command line. It only composes: parse arguments into a spec, hand it to the runner,
print results, and turn NucleusError into a message and an exit code."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from nucleus import __version__
from nucleus.cli import entry, run_options
from nucleus.errors import EXIT_FAILURE, InvalidInput, NucleusError

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
@click.option("--root", "root", metavar="DIR", envvar="NUCLEUS_STATE_DIR",
              help="State directory [default: /run/nucleus as root, else $XDG_RUNTIME_DIR/nucleus].")
@click.pass_context
def cli(ctx: click.Context, debug: bool, root: str | None) -> None:
    """nucleus: a security-hardened, Nix-native Linux container runtime."""
    ctx.obj = {"debug": debug}
    _set_debug(debug)
    if root:
        import os

        os.environ["NUCLEUS_STATE_DIR"] = os.path.abspath(root)


@cli.command(context_settings={**CONTEXT_SETTINGS, "allow_interspersed_args": False})
@run_options.click_options
@click.argument("command", nargs=-1, required=False, metavar="COMMAND...", type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, /, command: tuple[str, ...], **opts: Any) -> None:
    """Run COMMAND in an ephemeral, isolated agent sandbox and exit with its status."""
    if opts["debug"]:
        ctx.obj["debug"] = True
    _set_debug(opts["debug"])
    ctx.exit(run_options.start(command, opts))


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[h for _, h in columns]] + [[_cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _ago(ts: float | None) -> str:
    import time

    if not ts:
        return "-"
    seconds = int(time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                      show_default=True, help="Output format.")


@cli.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Also list stopped containers.")
@FORMAT
def ps(all_: bool, fmt: str) -> None:
    """List running containers (with --all, stopped ones too, until removed)."""
    import json

    from nucleus.app import manage

    rows = manage.listing(all_)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    for r in rows:
        r["id"] = r["id"][:12]
        r["created"] = _ago(r.get("created_at"))
        r["command"] = " ".join(r.get("argv", []))[:40]
        r["log"] = _size(r.get("log_size"))
        # stopped (3, restarts 2); a service's health too: running (healthy, restarts 1)
        shown = [str(r["exit_code"])] + ([r["reason"]] if r.get("reason") else []) \
            if r.get("exit_code") is not None else [r["health"]] if r.get("health") else []
        shown += [f"restarts {r['restarts']}"] if r.get("restarts") else []
        if shown:
            r["status"] = f"{r['status']} ({', '.join(shown)})"
    columns = [("id", "ID"), ("name", "NAME"), ("status", "STATUS"), ("created", "CREATED")]
    if all_:  # the size of each detached container's log (every file it keeps)
        columns.append(("log", "LOG"))
    if any((r.get("network") or {}).get("ports") for r in rows):  # published ports, Docker's way
        from nucleus.config.network import publish_text

        for r in rows:
            r["ports"] = [publish_text((p[0], p[1], p[2], p[3])) for p in (r.get("network") or {}).get("ports", [])] or None
        columns.append(("ports", "PORTS"))
    click.echo(_table(rows, columns + [("command", "COMMAND")]))


@cli.command()
@click.argument("container")
def inspect(container: str) -> None:
    """One container, as ps --format json shows it: status, processes, limits, network."""
    import json

    from nucleus.app import manage

    click.echo(json.dumps(manage.inspect(container), indent=1, sort_keys=True))


def _size(n: float | None) -> str | None:
    if n is None:
        return None
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GiB"


@cli.command()
@click.argument("containers", nargs=-1)
@FORMAT
def stats(containers: tuple[str, ...], fmt: str) -> None:
    """Memory, CPU and process figures from each container's cgroup."""
    import json

    from nucleus.app import manage

    rows = manage.stats(containers)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    for r in rows:
        r["id"] = r["id"][:12]
        r["mem"] = f"{_size(r.get('memory_current')) or '-'} / {_size(r.get('memory_max')) or 'unlimited'}"
        usage = r.get("cpu_usage_usec")
        r["cpu"] = None if usage is None else f"{usage / 1e6:.2f}s"
        r["throttled"] = r.get("cpu_nr_throttled")
        r["pids"] = f"{_cell(r.get('pids_current'))} / {_cell(r.get('pids_max'))}"
    click.echo(_table(rows, [("id", "ID"), ("name", "NAME"), ("status", "STATUS"), ("mem", "MEMORY"),
                             ("cpu", "CPU TIME"), ("throttled", "THROTTLED"), ("pids", "PIDS")]))


@cli.command()
@click.option("-t", "--timeout", default=10.0, show_default=True, type=float, help="Seconds before KILL.")
@click.argument("container")
def stop(container: str, timeout: float) -> None:
    """Stop a container: TERM, then KILL after the timeout."""
    from nucleus.app import manage

    click.echo(manage.stop(container, timeout)["name"])


@cli.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal name or number.")
@click.argument("container")
@click.argument("signal_arg", required=False, metavar="[SIGNAL]")
def kill(container: str, sig: str, signal_arg: str | None) -> None:
    """Send a signal to a container's processes."""
    from nucleus.app import manage
    from nucleus.config.signals import parse_signal

    click.echo(manage.kill(container, parse_signal(signal_arg or sig))["name"])


@cli.command()
@click.option("--socket", "socket_path", metavar="PATH",
              help="Where to listen [default: serve.sock in the state directory].")
@click.option("--group", metavar="GROUP", help="Also serve this group's members (root only): the "
              "socket 0660 and the group's; each sandbox is made as its caller.")
@click.option("--grace", default=10.0, show_default=True, type=float,
              help="Seconds a shutdown waits for the running sandboxes.")
@click.pass_context
def serve(ctx: click.Context, socket_path: str | None, group: str | None, grace: float) -> None:
    """Serve `nucleus run --server SOCK` from one process that imported the run path once."""
    from nucleus.cli import serve as serve_cli

    ctx.exit(serve_cli.serve(socket_path, group, grace))


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("containers", nargs=-1, required=True)
def rm(containers: tuple[str, ...], force: bool) -> None:
    """Remove containers and everything they hold."""
    from nucleus.app import manage

    for ref in containers:
        click.echo(manage.remove(ref, force)["name"])


@cli.command(context_settings={**CONTEXT_SETTINGS, "allow_interspersed_args": False})
@click.option("--trace", "trace", metavar="FILE", help="Record the join's state transitions as an ITF trace.")
@click.argument("container")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def attach(ctx: click.Context, container: str, command: tuple[str, ...], trace: str | None) -> None:
    """Run COMMAND (default /bin/sh) inside a running container, with its restrictions."""
    from nucleus.app.attach import attach as join
    from nucleus.config.exec_options import ATTACH

    argv = list(command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    ctx.exit(join(container, argv, trace, ATTACH))


@cli.command("exec", context_settings={**CONTEXT_SETTINGS, "allow_interspersed_args": False})
@click.option("-t", "--tty", is_flag=True, help="Give the command a terminal of its own.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open to the command (else /dev/null).")
@click.option("-u", "--user", metavar="USER", help="UID[:GID] or NAME[:GROUP] of the container's "
              "/etc/passwd [default: the container's user].")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory [default: the container's].")
@click.option("-e", "--env", "env", metavar="KEY=VALUE", multiple=True, help="Set an environment variable.")
@click.option("--env-file", "env_file", metavar="FILE", multiple=True,
              help="Read variables from a file of KEY=VALUE lines (repeatable; -e wins).")
@click.option("--trace", "trace", metavar="FILE", help="Record the join's state transitions as an ITF trace.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, container: str, command: tuple[str, ...], tty: bool, interactive: bool,
          user: str | None, workdir: str | None, env: tuple[str, ...], env_file: tuple[str, ...],
          trace: str | None) -> None:
    """Run COMMAND inside a running container, with its restrictions, as Docker's exec does."""
    from nucleus.app import envfiles
    from nucleus.app.attach import attach as join
    from nucleus.config.container import parse_env
    from nucleus.config.exec_options import ExecOptions, validate

    argv = list(command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise InvalidInput("no command given", hint="put the command after --, e.g. nucleus exec web -- sh")
    options = validate(ExecOptions(user=user, workdir=workdir, tty=tty, interactive=interactive,
                                   env=envfiles.load(env_file, os.environ) + parse_env(env)))
    ctx.exit(join(container, argv, trace, options, verb="exec"))


@cli.command("cp")
@click.option("--max-size", "max_size", metavar="SIZE", help="The most data to copy [default: 1G].")
@click.argument("src")
@click.argument("dest")
def cp(src: str, dest: str, max_size: str | None) -> None:
    """Copy between a container and the host: CONTAINER:PATH HOSTDEST, or HOSTSRC CONTAINER:PATH."""
    from nucleus.app.copy import copy, parse_max_size

    copy(src, dest, parse_max_size(max_size))


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container stops.")
@click.option("-n", "--tail", "lines", type=int, default=None, help="Only the last N lines.")
@click.argument("container")
def logs(container: str, follow: bool, lines: int | None) -> None:
    """Print a detached container's output (its rotated files first)."""
    from nucleus.app import manage

    log = manage.log_lines(container, lines)
    for line in log.lines:
        click.echo(line)
    if follow:
        manage.follow(log, sys.stdout)
    else:
        log.close()


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container stops.")
@FORMAT
@click.argument("container")
def violations(container: str, follow: bool, fmt: str) -> None:
    """Print what the sandbox refused a container (seccomp and Landlock), with the rule and a hint."""
    from nucleus.app import violations as stream
    from nucleus.config.violations import TABLE_COLUMNS, line, table_row

    def emit(found: list[dict[str, Any]], header: bool) -> None:
        if fmt == "json":
            for record in found:
                click.echo(line(record).decode(), nl=False)
        elif found or header:
            text = _table([table_row(r) for r in found], list(TABLE_COLUMNS))
            click.echo(text if header else text.split("\n", 1)[1])

    reading = stream.reading(container)
    try:
        emit(reading.snapshot(), header=True)
        while follow and (found := reading.more()) is not None:
            if found:
                emit(found, header=False)
    finally:
        reading.close()


@cli.command()
@FORMAT
def check(fmt: str) -> None:
    """What this host offers, and what each service mode would refuse here."""
    import json

    from nucleus.effects import hostcheck

    facts = hostcheck.probe()
    if fmt == "json":
        click.echo(json.dumps(hostcheck.report_data(facts), indent=2, sort_keys=True, default=str))
    else:
        click.echo(hostcheck.report(facts))


@cli.command()
@click.option("--store-path", "store_paths", metavar="PATH", multiple=True,
              help="A /nix/store path the closure needs (repeatable) [default: the closure's "
                   ".nucleus-rootfs-store-paths, else the store paths its symlinks reach].")
@click.argument("directory", metavar="DIR")
def attest(directory: str, store_paths: tuple[str, ...]) -> None:
    """Write DIR's .nucleus-rootfs-sha256 manifest (and .nucleus-rootfs-store-paths), which
    --verify-rootfs-attestation checks before a run mounts the closure."""
    from nucleus.effects import attestation

    count, stores = attestation.attest(directory, store_paths or None)
    click.echo(f"{directory}: {count} entr{'y' if count == 1 else 'ies'} attested"
               + (f" across {len(stores)} store paths" if stores else ""))


@cli.group()
def seccomp() -> None:
    """Seccomp profiles."""


@seccomp.command("generate")
@click.argument("traces", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", metavar="PROFILE", help="Write the profile here [default: stdout].")
def seccomp_generate(traces: tuple[str, ...], output: str | None) -> None:
    """Make a minimal OCI seccomp profile from trace-mode records (NDJSON)."""
    import os

    from nucleus.config import seccomp_generate as sg

    texts = []
    for path in traces:
        try:
            with open(path, "rb") as f:
                texts.append(f.read())
        except OSError as e:
            raise InvalidInput(f"trace {path!r}: {e.strerror}") from e
    for path, text in zip(traces, texts, strict=True):
        if sg.summary(text) is None:
            click.echo(f"warning: trace {path!r} was cut short (no summary line)", err=True)
    data = sg.dump(sg.generate(texts, list(traces)))
    if output is None:
        click.echo(data, nl=False)
        return
    tmp = f"{output}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, output)
    except OSError as e:
        raise InvalidInput(f"-o {output!r}: {e.strerror}") from e


@cli.group()
def trace() -> None:
    """Work with ITF traces of nucleus's state machines."""


@trace.command("replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def trace_replay(files: tuple[str, ...]) -> None:
    """Replay FILES through the production state machines; report the first divergence of each."""
    from nucleus.trace import itf, replay

    failed = 0
    for path in files:
        try:
            result = replay.replay(itf.load(path))
        except (OSError, ValueError) as e:
            if len(files) == 1:
                raise InvalidInput(f"trace {path!r}: {e}") from e
            failed += 1  # report it and go on with the rest
            click.echo(f"UNREADABLE {path}: {e}", err=True)
            continue
        if result is None:
            click.echo(f"ok {path}")
        else:
            failed += 1
            click.echo(f"DIVERGED {result}", err=True)
    click.echo(f"{len(files) - failed} of {len(files)} traces agree with the machines")
    if failed:
        sys.exit(1)


@trace.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--formal", metavar="DIR", help="The specifications (default: formal/ beside the package, or $NUCLEUS_FORMAL).")
def trace_check(files: tuple[str, ...], formal: str | None) -> None:
    """Check that FILES are behaviours of their spec: Init holds first, and each step is a Next step."""
    from nucleus.trace import check

    directory = check.formal_directory(formal)
    if not directory.is_dir():
        raise InvalidInput(f"--formal {str(directory)!r}: no such directory",
                           hint="give the directory of the TLA+ specifications (formal/ in the source tree)")
    refused, unreadable = 0, []
    for path in files:
        try:
            verdict = check.check_file(path, directory)
        except check.Unreadable as e:
            unreadable.append(f"trace {path!r}: {e}")
            continue
        if verdict.ok:
            click.echo(str(verdict))
        else:
            refused += 1
            click.echo(f"REFUSED {verdict}", err=True)
    if unreadable:
        raise InvalidInput("; ".join(unreadable))
    click.echo(f"{len(files) - refused} of {len(files)} traces are behaviours of their spec")
    if refused:
        sys.exit(1)


from nucleus.cli.compose import compose  # noqa: E402 - the group it joins is defined above

cli.add_command(compose)

from nucleus.cli.oci import group as oci  # noqa: E402 - likewise

cli.add_command(oci)


def run_cli() -> int:
    """The CLI: returns the exit status (errors leave through SystemExit with theirs)."""
    try:
        rv = cli.main(standalone_mode=False)
    except NucleusError as e:
        if _debug:
            raise
        sys.exit(entry.report(e))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_FAILURE)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: say so plainly, the traceback is one flag away
        if _debug:
            raise
        sys.exit(entry.report(e))
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Every command through click (the console script's `nucleus.cli.entry.main` takes a plain
    run past click)."""
    entry.leave(run_cli())


if __name__ == "__main__":
    main()
