"""The Gvisor machine's vocabulary (nucleus.machines.gvisor, formal/Gvisor.tla): what the
supervisor of a gVisor container observes (the bundle written, runsc run under way, a setup
step failed, the workload's end, a signal to pass on, the supervisor lost, the cleanup's steps)
and what the machine asks of it (write the bundle, make the network namespace, run runsc,
signal the sandbox, delete it, end the namespace's process, remove the bundle). The intents
carry the paths and the runsc command lines as they are run. With a bridge the Network
machine's own events and intents (nucleus.vocab) take part too."""

from __future__ import annotations

from typing import ClassVar

from nucleus.vocab import tla
from nucleus.vocab.events import Event
from nucleus.vocab.intents import CopyTree, Intent
from nucleus.vocab.record import record


@record
class GvEvent(Event):
    machine: ClassVar[str] = "gv"


@record
class Create(GvEvent):
    """A run asks for the container."""


@record
class Written(GvEvent):
    """The bundle is on disk."""


@record
class Netns(GvEvent):
    """The container's network namespace is made; `pid`: the process that holds it."""

    pid: int = 0


@record
class Started(GvEvent):
    """runsc run made the sandbox and started the workload; `pid`: runsc's own process."""

    pid: int = 0


@record
class Fail(GvEvent):
    """A setup step ("bundle", "netns" or "run") failed with `message`."""

    step: str = "run"
    message: str = ""

    def tla_arg(self) -> str:
        return self.step


@record
class Exit(GvEvent):
    """The workload ended with `code` (128 + N for signal N), as runsc run reports it."""

    code: int = 0


@record
class Kill(GvEvent):
    """Pass `signal` (a name without SIG) to the workload."""

    signal: str = "TERM"

    def tla_arg(self) -> str:
        return self.signal


@record
class Exec(GvEvent):
    """Run `command` in the sandbox as `user` (UID[:GID]; "" for the workload's) in `cwd` (""
    for the workload's) with `env` added, reading the caller's stdin when `stdin`."""

    command: tuple[str, ...] = ()
    user: str = ""
    cwd: str = ""
    env: tuple[tuple[str, str], ...] = ()
    stdin: bool = False


@record
class Lost(GvEvent):
    """The supervisor is gone before the container was cleaned up (seen by another process)."""


@record
class Deleted(GvEvent):
    """runsc delete --force removed the sandbox (or found none)."""


@record
class Unshared(GvEvent):
    """The process holding the container's network namespace is gone (ended, or found gone)."""


@record
class Unbundled(GvEvent):
    """The bundle directory is removed."""


@record
class Sweep(GvEvent):
    """Start the cleanup again (nucleus rm --force, after a cleanup step failed)."""


@record
class Remove(GvEvent):
    """Forget the container: its record goes."""


@record
class WriteBundle(Intent):
    """Make `directory` (0711) with `config` (the JSON text of config.json) and the directory
    `root` the bundle's root names, holding `dirs` (the mount points), `links` (relative path,
    symlink target) and `files` (relative path, text: the generated /etc), and with `context`
    the context's copy."""

    directory: str = ""
    config: str = ""
    root: str = ""
    dirs: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    owner: tuple[int, int] = (0, 0)  # the root directory's host ids: the container's root's, mapped
    # --context-mode copy: the filtered copy, made in the bundle (its target) as a native run
    # makes it, which the bundle binds at /context in place of the host's tree.
    context: CopyTree | None = None


@record
class MakeNetns(Intent):
    """Fork a process into a network namespace of its own (it ends with the supervisor, or when
    asked), and make the symlink `link` to that namespace (/proc/PID/ns/net), as the bundle
    names it, and `holder`, "PID START" (its pid and start time), for EndNetns."""

    link: str = ""
    holder: str = ""


@record
class RunSandbox(Intent):
    """Start `argv` (runsc ... run --pid-file P --bundle D ID) with the supervisor's stdio; it is
    started once runsc has written `pid_file`, failed if it exits before that (its error is the
    last one in `log`)."""

    argv: tuple[str, ...] = ()
    pid_file: str = ""
    log: str = ""
    stdin: bool = False  # the workload reads the supervisor's stdin (else /dev/null)
    # Mounted over with an empty read-only tmpfs in a mount namespace of runsc's own (none: the
    # supervisor's): Debian's runsc (2022) takes a network namespace that has
    # /proc/sys/net/core/rmem_default for the host's, and since Linux 6.x every one has it.
    masked: tuple[str, ...] = ()


@record
class SignalSandbox(Intent):
    """Run `argv` (runsc ... kill ID SIGNAL)."""

    argv: tuple[str, ...] = ()


@record
class ExecSandbox(Intent):
    """Run `argv` (runsc ... exec [--user U] [--cwd D] [--env K=V]... ID COMMAND...) with the
    caller's stdio (stdin /dev/null unless `stdin`) and wait for it: its status is the command's."""

    argv: tuple[str, ...] = ()
    stdin: bool = False


@record
class DeleteSandbox(Intent):
    """Run `kill` (runsc ... kill --all ID KILL: a sandbox still running stops at once, and one
    already stopped makes it fail, which is fine), then `argv` (runsc ... delete --force ID): a
    container runsc does not know is deleted."""

    argv: tuple[str, ...] = ()
    kill: tuple[str, ...] = ()


@record
class EndNetns(Intent):
    """End the process `holder` names ("PID START", if it is still that process) and remove
    `link` and `holder`: the network namespace goes with its last process."""

    link: str = ""
    holder: str = ""


@record
class RemoveBundle(Intent):
    """Remove `directory`, the bundle (never anything mounted: runsc binds inside its sandbox)."""

    directory: str = ""


EVENTS = (Create, Written, Netns, Started, Fail, Exit, Kill, Exec, Lost, Deleted, Unshared, Unbundled, Sweep, Remove)
INTENTS = (WriteBundle, MakeNetns, RunSandbox, SignalSandbox, ExecSandbox, DeleteSandbox, EndNetns, RemoveBundle)


def from_wire(data: dict[str, object]) -> Event:
    """The event a recorded trace's step holds (nucleus.vocab.to_wire's form)."""
    kinds: dict[str, type[Event]] = {e.__name__: e for e in EVENTS}
    kind = kinds.get(str(data.get("t")))
    fields = data.get("f", {})
    if kind is None or not isinstance(fields, dict):
        raise ValueError(f"{data.get('t')!r} is not an event of the gVisor machine")
    return kind(**{key: tuple(tuple(x) if isinstance(x, list) else x for x in value) if isinstance(value, list)
                   else value for key, value in fields.items()})


def event_from_tla(action: str, arg: str) -> Event:
    """The event a trace step names (`gv`, action, argument)."""
    return tla.event_from_tla("gv", EVENTS, action, arg,
                              {Fail: lambda a: Fail(step=a), Kill: lambda a: Kill(signal=a)})
