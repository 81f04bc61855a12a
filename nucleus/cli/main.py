"""The command line. It only composes: parse arguments into a spec, hand it to the runner,
print results, and turn NucleusError into a message and an exit code."""

from __future__ import annotations

import os
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
@click.option("-d", "--detach", is_flag=True,
              help="Print the id once the workload has started and leave it running; output goes to its log.")
@click.option("--memory", metavar="SIZE", help="Memory limit, e.g. 512M (the OOM killer acts above it).")
@click.option("--swap", metavar="SIZE", help="Swap allowed on top of --memory [default: none].")
@click.option("--cpus", metavar="N", help="CPU time, in CPUs (e.g. 0.5).")
@click.option("--cpu-weight", metavar="1-10000", help="Relative CPU share under contention [default: 100].")
@click.option("--pids", metavar="N", default="512", show_default=True, help="Maximum number of processes.")
@click.option("--io-limit", "io_limit", multiple=True, metavar="'MAJ:MIN riops=N wbps=N ...'",
              help="Block I/O limits for one device (repeatable).")
@click.option("--memlock", metavar="SIZE", default="64K", show_default=True, help="Locked-memory limit.")
@click.option("--cgroup-parent", metavar="PATH", default="nucleus", show_default=True,
              help="Parent cgroup, under each hierarchy's root.")
@click.option("--disable-cgroup-namespace", is_flag=True, help="Show the host's cgroup paths inside.")
@click.option("--service-mode", type=click.Choice(["agent", "strict-agent", "production"]), default="agent",
              show_default=True, help="Which invariants are enforced (see README: Service modes).")
@click.option("--trust-level", type=click.Choice(["trusted", "untrusted"]), default="trusted",
              show_default=True, help="untrusted refuses every option that weakens isolation.")
@click.option("--require-kernel-lockdown", type=click.Choice(["integrity", "confidentiality"]),
              help="Refuse to start unless the kernel's lockdown is at least this.")
@click.option("--verify-context-integrity", is_flag=True,
              help="Hash the context before the copy and check /context against it.")
@click.option("--seccomp-mode", type=click.Choice(["enforce", "trace"]), default="enforce", show_default=True,
              help="trace: allow every syscall and record it (with --seccomp-log) for seccomp generate.")
@click.option("--seccomp-log", metavar="FILE", help="Where trace mode writes its NDJSON record.")
@click.option("--seccomp-log-denied", is_flag=True, help="Ask the kernel to log denied syscalls.")
@click.option("--rootfs", metavar="DIR", help="Take /bin /usr /lib /etc /nix from this closure, read-only.")
@click.option("--seccomp-profile", metavar="FILE", help="OCI seccomp profile (JSON) instead of the default.")
@click.option("--seccomp-profile-sha256", metavar="HEX", help="Refuse to start unless the profile has this sha256.")
@click.option("--caps-policy", metavar="FILE", help="Capability policy (TOML) instead of dropping all.")
@click.option("--caps-policy-sha256", metavar="HEX", help="Refuse to start unless the caps policy has this sha256.")
@click.option("--landlock-policy", metavar="FILE", help="Landlock rules (TOML) instead of the defaults.")
@click.option("--landlock-policy-sha256", metavar="HEX", help="Refuse to start unless the Landlock policy has this sha256.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.argument("command", nargs=-1, required=False, metavar="COMMAND...", type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, command: tuple[str, ...], name, hostname, context, context_mode, env,
        workdir, rootless, time_namespace, allow_degraded_security, allow_chroot_fallback, trace,
        detach, memory, swap, cpus, cpu_weight, pids, io_limit, memlock, cgroup_parent,
        disable_cgroup_namespace, service_mode, trust_level, require_kernel_lockdown,
        verify_context_integrity, seccomp_mode, seccomp_log, seccomp_log_denied, rootfs,
        seccomp_profile, seccomp_profile_sha256, caps_policy, caps_policy_sha256, landlock_policy,
        landlock_policy_sha256, debug) -> None:
    """Run COMMAND in an ephemeral, isolated agent sandbox and exit with its status."""
    from nucleus.config.container import ContainerConfig, parse_env, validate
    from nucleus.config.resources import validate_limits

    if debug:
        ctx.obj["debug"] = True
    _set_debug(debug)
    import os

    spec = validate(ContainerConfig(
        argv=tuple(command), name=name, hostname=hostname, context=context,
        context_mode=context_mode, env=parse_env(env), workdir=workdir, rootless=rootless,
        time_namespace=time_namespace, allow_degraded_security=allow_degraded_security,
        allow_chroot_fallback=allow_chroot_fallback, term=os.environ.get("TERM") or "xterm",
        limits=validate_limits(memory=memory, swap=swap, cpus=cpus, cpu_weight=cpu_weight, pids=pids,
                               io=io_limit, memlock=memlock, cgroup_parent=cgroup_parent),
        cgroup_namespace=not disable_cgroup_namespace, detach=detach, service_mode=service_mode,
        trust_level=trust_level, require_kernel_lockdown=require_kernel_lockdown,
        verify_context_integrity=verify_context_integrity, seccomp_mode=seccomp_mode,
        seccomp_log=seccomp_log, seccomp_log_denied=seccomp_log_denied, rootfs=rootfs,
    ))
    from dataclasses import replace

    from nucleus import policyfiles
    from nucleus.config import modes

    if seccomp_profile or caps_policy or landlock_policy or seccomp_profile_sha256 or caps_policy_sha256 or landlock_policy_sha256:
        loaded = policyfiles.load(seccomp_profile, seccomp_profile_sha256, caps_policy, caps_policy_sha256,
                                  landlock_policy, landlock_policy_sha256)
        spec = replace(spec, loaded_policies=loaded)
        modes.validate_mode(modes.from_container_spec(spec, policies=loaded.files, caps_kept=loaded.caps_kept))
    else:
        modes.validate_mode(modes.from_container_spec(spec))
    from nucleus.runner import run as run_container

    ctx.exit(run_container(spec, trace_path=trace))


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    cells = [[h for _, h in columns]] + [[_cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _ago(ts) -> str:
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

    from nucleus import manage

    rows = manage.listing(all_)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    for r in rows:
        r["id"] = r["id"][:12]
        r["created"] = _ago(r.get("created_at"))
        r["command"] = " ".join(r.get("argv", []))[:40]
        if r.get("exit_code") is not None:
            r["status"] = f"{r['status']} ({r['exit_code']}" + (f", {r['reason']}" if r.get("reason") else "") + ")"
    click.echo(_table(rows, [("id", "ID"), ("name", "NAME"), ("status", "STATUS"),
                             ("created", "CREATED"), ("command", "COMMAND")]))


@cli.command()
@click.argument("containers", nargs=-1)
@FORMAT
def stats(containers: tuple[str, ...], fmt: str) -> None:
    """Memory, CPU and process figures from each container's cgroup."""
    import json

    from nucleus import manage

    rows = manage.stats(containers)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return

    def size(n):
        if n is None:
            return None
        for unit in ("B", "KiB", "MiB", "GiB"):
            if n < 1024 or unit == "GiB":
                return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
            n /= 1024

    for r in rows:
        r["id"] = r["id"][:12]
        r["mem"] = f"{size(r.get('memory_current')) or '-'} / {size(r.get('memory_max')) or 'unlimited'}"
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
    from nucleus import manage

    click.echo(manage.stop(container, timeout)["name"])


@cli.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal name or number.")
@click.argument("container")
@click.argument("signal_arg", required=False, metavar="[SIGNAL]")
def kill(container: str, sig: str, signal_arg: str | None) -> None:
    """Send a signal to a container's processes."""
    from nucleus import manage

    click.echo(manage.kill(container, manage.signal_name(signal_arg or sig))["name"])


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("containers", nargs=-1, required=True)
def rm(containers: tuple[str, ...], force: bool) -> None:
    """Remove containers and everything they hold."""
    from nucleus import manage

    for ref in containers:
        click.echo(manage.remove(ref, force)["name"])


@cli.command(context_settings={**CONTEXT_SETTINGS, "allow_interspersed_args": False})
@click.argument("container")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def attach(ctx: click.Context, container: str, command: tuple[str, ...]) -> None:
    """Run COMMAND (default /bin/sh) inside a running container, with its restrictions."""
    from nucleus import manage

    argv = list(command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    ctx.exit(manage.attach(container, argv))


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container stops.")
@click.option("-n", "--tail", "lines", type=int, default=None, help="Only the last N lines.")
@click.argument("container")
def logs(container: str, follow: bool, lines: int | None) -> None:
    """Print a detached container's output."""
    from nucleus import manage

    record, text = manage.log_lines(container, lines)
    for line in text:
        click.echo(line)
    if follow:
        manage.follow(record, sys.stdout)


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


def run_cli() -> int:
    """The CLI: returns the exit status (errors leave through SystemExit with theirs)."""
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
    except Exception as e:  # a bug: say so plainly, the traceback is one flag away
        if _debug:
            raise
        click.echo(f"error: internal error: {type(e).__name__}: {e}\nhint: run again with --debug "
                   "for the traceback, and report it", err=True)
        sys.exit(1)
    return rv if isinstance(rv, int) else 0


def main() -> None:
    code = run_cli()
    # Leave without the interpreter's teardown (a tenth of a short run): nothing is pending but
    # the standard streams, which are flushed here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
