"""`nucleus compose`: the verbs over a topology file (nucleus.config.topology). Every service's
options are checked here exactly as `nucleus run` checks its own: the service's run arguments
go through click's parsing of RUN_FLAGS and run_options.to_config, so a topology accepts what
`run` accepts and says what `run` would refuse, naming the service."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from nucleus.config import topology as topo
from nucleus.errors import InvalidInput, NucleusError

FILE_HELP = f"The topology file [default: compose's -f, else {topo.DEFAULT_FILE}]."
FILE = click.option("-f", "--file", "path", metavar="FILE", help=FILE_HELP)


def _path(path: str | None) -> str:
    """The file a verb names, else the one the group names (`compose -f FILE up`), else the
    default."""
    parent = click.get_current_context().parent
    given = parent.params.get("path") if parent is not None else None
    return path or given or topo.DEFAULT_FILE


def load(path: str) -> topo.Topology:
    """The topology `path` holds, every key checked (not yet the run options)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"-f {path!r}: no such file",
                           hint="write a topology file (see README: Topologies), or name it with -f FILE") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"-f {path!r}: cannot read it: {e}") from None
    return topo.parse(text, path)


def service_config(t: topo.Topology, instance: str, volume_dir: Any = None,
                   hosts: tuple[tuple[str, str], ...] = (), labels: tuple[str, ...] = ()) -> Any:
    """An instance's ContainerConfig (a service's, or one of its replicas'), from its run
    arguments parsed and validated as `nucleus run` parses and validates them; a refusal names
    the file, the service and its key."""
    from nucleus.cli import main, run_options

    args = topo.run_arguments(t, instance, volume_dir or (lambda name: f"/{name}"), hosts, labels)
    where = f"{t.path}: services.{t.service_of(instance)}"
    try:
        ctx = main.run.make_context("nucleus run", list(args))
    except click.ClickException as e:
        raise InvalidInput(f"{where}{_key_of(e.format_message())}: {e.format_message()}") from None
    opts = dict(ctx.params)
    command = tuple(opts.pop("command"))
    try:
        return run_options.to_config(command, opts, "xterm", environ={})
    except NucleusError as e:
        raise InvalidInput(f"{where}{_key_of(e.message)}: {e.message}", hint=e.hint) from None


def _key_of(message: str) -> str:
    """`.key` when the message is about the flag of a service key."""
    for key, spec in topo.SERVICE_KEYS.items():
        if spec.flag is not None and (message.startswith(spec.flag + " ") or f"'{spec.flag}'" in message):
            return f".{key}"
    if message.startswith("--tmpfs ") or message.startswith(("-v/--volume ", "--volume ")):
        return ".volumes"
    return ""


def validated(path: str) -> topo.Topology:
    """The topology with every service's options checked (nothing started, no host probed)."""
    t = load(path)
    for instance in t.instance_order:
        service_config(t, instance)
    return t


def _say(text: str) -> None:
    click.echo(text, err=True)


@click.group()
@click.option("-f", "--file", "path", metavar="FILE", help=f"The topology file [default: {topo.DEFAULT_FILE}].")
def compose(path: str | None) -> None:
    """Topologies: services, their networks and volumes, from a TOML file (nucleus.toml)."""


@compose.command()
@FILE
def validate(path: str | None) -> None:
    """Check the file and every service's options as run would; print the start order."""
    t = validated(_path(path))
    for i, service in enumerate(t.order, start=1):
        deps = ", ".join(f"{d.service} ({d.condition})" for d in t.services[service].depends_on)
        replicas = t.instances(service) if t.services[service].replicas > 1 else ()
        click.echo(f"{i}. {service}" + (f" ({len(replicas)} replicas: {', '.join(replicas)})" if replicas else "")
                   + (f" after {deps}" if deps else ""))


@compose.command("config")
@FILE
def config_(path: str | None) -> None:
    """Print the resolved topology as JSON."""
    click.echo(json.dumps(topo.to_json(validated(_path(path))), indent=1))


@compose.command()
@FILE
@click.option("--keep-going", is_flag=True, help="On a failure, keep the services that started running.")
@click.option("--timeout", "timeout", type=float, default=60.0, show_default=True,
              help="Seconds a healthy dependency may take.")
def up(path: str | None, keep_going: bool, timeout: float) -> None:
    """Start the services in dependency order; on a running topology, recreate only what changed
    and stop what the file no longer has."""
    from nucleus.app import compose as app

    t = validated(_path(path))
    volumes = app.volume_dir(t)
    state = app.up(t, lambda s, hosts, labels: service_config(t, s, volumes, hosts, labels), _say,
                   keep_going=keep_going, health_timeout=timeout)
    started = sum(st != "absent" for st in state.statuses)
    _say(f"{t.name}: {started} container{'s' if started != 1 else ''} up")


@compose.command()
@FILE
@click.option("--volumes", is_flag=True, help="Also remove the topology's persistent volumes.")
def down(path: str | None, volumes: bool) -> None:
    """Stop and remove the services, dependents before their dependencies."""
    from nucleus.app import compose as app

    app.down(load(_path(path)), _say, volumes=volumes)


@compose.command()
@FILE
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
def ps(path: str | None, fmt: str) -> None:
    """The topology's services: container, status, health, address."""
    from nucleus.app import compose as app
    from nucleus.cli.main import _table

    rows = app.status(load(_path(path)))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    for r in rows:
        r["id"] = (r["id"] or "")[:12] or None
        r["addresses"] = r["addresses"] or None
        r["changed"] = "yes" if r["changed"] else None
    click.echo(_table(rows, [("service", "SERVICE"), ("name", "NAME"), ("id", "ID"), ("status", "STATUS"),
                             ("health", "HEALTH"), ("addresses", "ADDRESS"), ("changed", "CHANGED")]))


@compose.command()
@click.option("--file", "path", metavar="FILE", help=FILE_HELP)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the services stop.")
@click.argument("services", nargs=-1)
def logs(path: str | None, follow: bool, services: tuple[str, ...]) -> None:
    """Print the services' output, each line prefixed with its service."""
    from nucleus.app import compose as app
    from nucleus.app import manage

    t = load(_path(path))
    names = tuple(i for s in services for i in app.instances_of(t, s)) or t.instance_order
    opened = []
    width = max(len(s) for s in names)
    for service in names:
        log = manage.log_lines(app.container_of(t, service)["id"], None)
        for line in log.lines:
            click.echo(f"{service.ljust(width)} | {line}")
        opened.append((service, log))
    if follow:
        manage.follow_many([(f"{s.ljust(width)} | ", log) for s, log in opened], sys.stdout)
    else:
        for _, log in opened:
            log.close()


@compose.command()
@FILE
@click.option("--timeout", "timeout", type=float, default=60.0, show_default=True,
              help="Seconds a healthy dependency may take.")
@click.argument("service")
def restart(path: str | None, service: str, timeout: float) -> None:
    """Recreate SERVICE (each of its replicas; or one, S-N) (its dependents keep running)."""
    from nucleus.app import compose as app

    t = validated(_path(path))
    app.container_of(t, service)
    volumes = app.volume_dir(t)
    app.up(t, lambda s, hosts, labels: service_config(t, s, volumes, hosts, labels), _say,
           health_timeout=timeout, recreate=frozenset(app.instances_of(t, service)))


@compose.command("exec", context_settings={"allow_interspersed_args": False})
@FILE
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, path: str | None, service: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside SERVICE's container (a replicated one's first, or S-N), with its
    restrictions."""
    from nucleus.app import compose as app
    from nucleus.app.attach import attach
    from nucleus.config.exec_options import ExecOptions, validate

    argv = list(command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise InvalidInput("no command given", hint="put the command after --, e.g. nucleus compose exec web -- sh")
    record = app.container_of(load(_path(path)), service)
    ctx.exit(attach(record["id"], argv, None, validate(ExecOptions()), verb="exec"))
