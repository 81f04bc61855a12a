"""`nucleus oci`: runc's command-line contract over nucleus's run, so that containerd (its runc
shim) and Kubernetes (a RuntimeClass) can use nucleus as their OCI runtime.

Each command asks the OCI machine (nucleus.machines.oci) whether the container's status allows
it, then carries out what the machine asks. `create` reads the bundle (nucleus.config.oci) and
forks the container's supervisor: an ordinary `nucleus run` in the foreground, with the bundle's
root file system, whose setup stops short of the workload and waits on the container's fifo
(nucleus.effects.ocistate) until `start`, `kill` or `delete` writes to it. The supervisor is the
process the --pid-file names: it holds the container's stdio, passes signals and the workload's
exit status through, and releases the container's cgroup, mounts and namespaces itself once the
workload has ended; what `delete` removes is the runtime's own state directory. Once the container
exists the supervisor joins its network, IPC and UTS namespaces (ocistate.POD_SHARED): containerd's CRI
plugin tells a pod's other containers to join /proc/PID/ns/ipc and uts of the pid the --pid-file
names, which are then the sandbox container's, never the host's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nucleus import __version__
from nucleus.config import oci as bundles
from nucleus.config.container import validate
from nucleus.config.exec_options import ExecOptions
from nucleus.effects import ocistate
from nucleus.effects.process import process_start, reap
from nucleus.errors import InvalidInput, NucleusError, RuntimeFailure, error_from_data
from nucleus.machines import oci
from nucleus.machines.base import Refused
from nucleus.vocab import oci as ov

SPEC_VERSION = "1.2.0"
STOP_WAIT = 10.0  # seconds `delete` waits for a killed container's supervisor to finish its cleanup
CONSOLE_HINT = "pass --console-socket (containerd's shim does), or set process.terminal to false"

Warn = Callable[[str], None]


def _status(c: ocistate.Container, record: dict[str, Any]) -> oci.OciState:
    """The machine's state from the record, with the exit the record cannot know yet: a
    created or running container whose supervisor is gone is stopped."""
    state = oci.OciState(str(record.get("status", "none")))
    if state.status in oci.LIVE and process_start(record.get("pid", 0)) != record.get("pid_start"):
        state = _step(c, state, ov.Exited())[0]
    return state


def _step(c: ocistate.Container, state: oci.OciState, event: ov.OciEvent) -> tuple[oci.OciState, tuple[Any, ...]]:
    result = oci.step(state, event)
    if isinstance(result, Refused):
        raise RuntimeFailure(result.why.replace("the container", f"container {c.id!r}"))
    return result.state, result.intents


def create(root: str, bundle: str, cid: str, pid_file: str | None, console_socket: str | None,
           warn: Warn, runtime: bundles.Runtime = bundles.STRICT) -> None:
    """Set the container up and leave its supervisor waiting for `start`."""
    bundles.container_id(cid)
    bundle, data = ocistate.read_bundle(bundle)
    spec = bundles.load(data, bundle, cid, runtime)
    rootfs = bundles.check_root(data["root"]["path"], ocistate.real_path(spec.config.rootfs or bundle),
                                ocistate.real_path(bundle))
    spec = replace(spec, config=replace(spec.config, rootfs=rootfs))
    _check_console(bundles.where("process.terminal"), spec.terminal, console_socket, warn)
    spec = replace(spec, config=bundles.with_root_entries(spec.config, ocistate.root_entries(spec.config.rootfs)))
    try:
        validate(spec.config)
    except InvalidInput as e:  # checked as `nucleus run` checks its flags: said as the bundle's
        raise InvalidInput(f"{bundles.FILE}: {e.message}", hint=e.hint) from None
    ocistate.check_rlimits(spec.config.rlimits)
    for line in spec.warnings:
        warn(line)
    c = ocistate.Container(root, cid)
    state, _ = _step(c, oci.initial(), ov.Create())
    c.make()
    record = {"ociVersion": spec.version, "id": cid, "status": state.status, "bundle": bundle,
              "annotations": dict(spec.annotations), "created": time.time()}
    pid = 0
    try:
        c.write(record)
        config = _with_profile(c, spec)
        slave = ocistate.console(console_socket) if spec.terminal and console_socket else None
        config = replace(config, tty=True) if slave is not None else config
        channel = ocistate.Channel()
        pid = ocistate.fork(lambda: _supervise(c, config, channel), slave, channel)
        message = channel.receive()
        if "created" not in message:
            reap(pid)
            state, _ = _step(c, state, ov.CreateFailed())
            if "error" in message:
                raise error_from_data(message["error"])
            raise RuntimeFailure(f"container {cid!r}: its supervisor ended before the container was created")
        state, _ = _step(c, state, ov.Created())
        record.update(status=state.status, pid=pid, pid_start=process_start(pid),
                      init=message["created"], init_start=message.get("init_start"))
        c.write(record)
        if pid_file:
            ocistate.write_pid_file(pid_file, pid)
    except BaseException:
        if pid:
            _cancel(c, pid)
        c.remove()
        raise


def _cancel(c: ocistate.Container, pid: int) -> None:
    """A create that failed after its supervisor was forked: the init waiting for `start` is
    told it never will, and the supervisor's cleanup awaited (its child)."""
    deadline = time.monotonic() + STOP_WAIT
    while ocistate.alive(pid) and not c.send_word(str(oci.SIGKILL).encode()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    reap(pid)


def _with_profile(c: ocistate.Container, spec: bundles.Bundle) -> Any:
    """The run's configuration, with the config's own seccomp profile loaded as
    --seccomp-profile would load it when the runtime's operator asks for it (--seccomp bundle)."""
    if spec.seccomp is None:
        return spec.config
    from nucleus.app import policyfiles
    from nucleus.config import mode_validation, modes

    path = c.keep(ocistate.PROFILE, spec.seccomp)
    loaded = policyfiles.load(seccomp=path)
    config = replace(spec.config, loaded_policies=loaded)
    mode_validation.validate_mode(modes.from_container_spec(config, policies=loaded.files,
                                                            caps_kept=loaded.caps_kept))
    return config


class Cancelled(RuntimeFailure):
    """`kill` or `delete` ended a created container before it started."""


def _check_console(where: str, terminal: bool, console_socket: str | None, warn: Warn) -> None:
    if terminal and not console_socket:
        raise InvalidInput(f"{where} true: a terminal needs --console-socket", hint=CONSOLE_HINT)
    if console_socket and not terminal:
        warn(f"--console-socket is ignored: {where} is false")


def _supervise(c: ocistate.Container, config: Any, channel: ocistate.Channel) -> int:
    """In the forked supervisor: run the container (nucleus.app.run) with a gate that reports
    it created and waits for the word on its fifo; the exit status to leave with."""
    from nucleus.app import run as app_run

    def gate(init: int) -> None:
        started = process_start(init)
        ocistate.share_namespaces(init, started)
        channel.send({"created": init, "init_start": started})
        word = c.wait_for_word()
        if word != ocistate.START:
            signal = int(word) if word.isdigit() else 9
            error = Cancelled(f"container {c.id!r} was killed (signal {signal}) before it started")
            error.exit_code = 128 + signal
            raise error

    try:
        return app_run.run(config, gate=gate)
    except NucleusError as e:
        told = channel.sent  # once created, `create` has returned: the error is the container's to show
        channel.send({"error": e.to_data()})
        if told and not isinstance(e, Cancelled):
            sys.stderr.write(e.render() + "\n")
        return e.exit_code
    except BaseException as e:  # noqa: BLE001 - reported to `create`, never unwound
        channel.send({"error": {"kind": "RuntimeFailure", "message": f"internal error: {type(e).__name__}: {e}",
                                "exit_code": 125}})
        return 125


def start(root: str, cid: str) -> None:
    c = ocistate.Container(root, cid)
    record = c.read()
    state, intents = _step(c, _status(c, record), ov.Start())
    for intent in intents:
        if isinstance(intent, ov.Proceed) and not c.send_word(ocistate.START):
            raise RuntimeFailure(f"container {cid!r}: its init is not waiting to start",
                                 hint="it was killed or its supervisor died; delete it")
    record["status"] = state.status
    c.write(record)


def state(root: str, cid: str) -> dict[str, Any]:
    """The runtime-spec's state of the container. Its pid is the container's process as the
    host sees it (its init, in the container's namespaces); the --pid-file names the supervisor
    instead, the process whose exit status is the workload's, which runc's callers wait for."""
    c = ocistate.Container(root, cid)
    record = c.read()
    status = _status(c, record).status
    out: dict[str, Any] = {"ociVersion": record.get("ociVersion", SPEC_VERSION), "id": cid, "status": status,
                           "bundle": record.get("bundle", ""),
                           "pid": record.get("init", 0) if status in oci.LIVE else 0}
    if record.get("annotations"):
        out["annotations"] = record["annotations"]
    return out


def kill(root: str, cid: str, signal: int, every: bool) -> None:
    c = ocistate.Container(root, cid)
    record = c.read()
    _, intents = _step(c, _status(c, record), ov.Kill(signal))
    _carry_out(c, record, intents, every)


def _carry_out(c: ocistate.Container, record: dict[str, Any], intents: tuple[Any, ...], every: bool = False) -> None:
    for intent in intents:
        if isinstance(intent, ov.Cancel):
            if c.send_word(str(intent.signal).encode()):
                continue
            intent = ov.Signal(intent.signal)  # its init stopped waiting meanwhile: it runs
        if isinstance(intent, ov.Signal):
            ocistate.signal(_targets(c, record, every), intent.signal)


def _targets(c: ocistate.Container, record: dict[str, Any], every: bool) -> dict[int, int | None]:
    """The processes to signal, each with the start time it must still have: the container's
    init, when it is in the container's cgroup as nucleus's own record of the run names it (not
    only as the state record says), and with `every` each process in that cgroup."""
    from nucleus.app import records

    run = _run(c.id)
    policy = records.join_policy(run) if run is not None else None
    members = ocistate.cgroup_pids(policy.cgroup_procs) if policy is not None else []
    init = record.get("init")
    targets: dict[int, int | None] = {init: record.get("init_start")} if init in members else {}
    if every:
        for pid in members:
            targets.setdefault(pid, process_start(pid))
    return targets


def delete(root: str, cid: str, force: bool) -> None:
    """Remove the container's state; with `force`, one that is not there is no error (runc's,
    which containerd's shim relies on when it cleans up after a delete)."""
    c = ocistate.Container(root, cid)
    if force and not c.exists():
        return
    record = c.read()
    state = _status(c, record)
    state, intents = _step(c, state, ov.Delete(force))
    if state.status != "deleted":
        _carry_out(c, record, intents, every=True)
        deadline = time.monotonic() + STOP_WAIT
        while process_start(record.get("pid", 0)) == record.get("pid_start"):
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"container {cid!r}: its supervisor (pid {record['pid']}) did not end "
                                     f"within {STOP_WAIT:.0f} seconds of SIGKILL to the container")
            time.sleep(0.05)
        state = _status(c, record)
        state, intents = _step(c, state, ov.Delete(force))
    _reclaim(cid)
    c.remove()


def _reclaim(cid: str) -> None:
    """What a supervisor that was itself killed left behind (its record, the container's
    cgroup, mounts and namespaces), released as `nucleus rm --force` releases it; a supervisor
    that ended on its own left nothing."""
    from nucleus.app import manage

    run = _run(cid)
    if run is not None:
        manage.remove(run["id"], force=True)


def _run(cid: str) -> dict[str, Any] | None:
    """nucleus's own record of the container's run: the one named `cid` (never another run
    whose id `cid` happens to begin), if there is one."""
    from nucleus.app import manage

    try:
        run = manage.find(cid)
    except NucleusError:
        return None
    return run if run.get("name") == cid else None


def exec_process(root: str, cid: str, process: str, detach: bool, pid_file: str | None,
                 console_socket: str | None, warn: Warn) -> int:
    """Run process.json's process in the container (`nucleus exec`'s join); with `detach`, leave
    it running (the --pid-file names it) and return 0."""
    from nucleus.app import attach

    c = ocistate.Container(root, cid)
    record = c.read()
    _step(c, _status(c, record), ov.Exec())
    data = bundles.obj(ocistate.read_json(process, "--process"), "(top level)", required=True)
    warnings: list[str] = []
    argv, env, cwd, user, terminal = bundles.process_fields(data, warnings)
    _check_console(f"--process {process!r}: terminal", terminal, console_socket, warn)
    for line in warnings:
        warn(line)
    options = ExecOptions(user=user, workdir=cwd, env=tuple(env), interactive=True, tty=terminal)
    if not detach and not terminal:
        return attach.attach(cid, argv, options=options, verb="exec")
    def join() -> int:
        try:
            return attach.attach(cid, argv, options=options, verb="exec")
        except NucleusError as e:
            sys.stderr.write(e.render() + "\n")
            return e.exit_code

    pid = ocistate.fork(join, ocistate.console(console_socket) if terminal and console_socket else None)
    if pid_file:
        ocistate.write_pid_file(pid_file, pid)
    if detach:
        return 0
    status = reap(pid)
    return 125 if status is None else status


def ps(root: str, cid: str) -> list[int]:
    c = ocistate.Container(root, cid)
    record = c.read()
    if _status(c, record).status not in oci.LIVE:
        return []
    return sorted(_targets(c, record, every=True))


def features() -> dict[str, Any]:
    """runtime-spec features.md: what this runtime reads of a bundle."""
    return {
        "ociVersionMin": "1.0.0", "ociVersionMax": SPEC_VERSION, "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "size"],
        "linux": {"namespaces": list(bundles.NAMESPACES), "capabilities": [],
                  "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
                  "seccomp": {"enabled": True, "actions": list(bundles.SECCOMP_ACTIONS)},
                  "apparmor": {"enabled": False}, "selinux": {"enabled": False}},
        "annotations": {"org.nucleus.version": __version__},
    }


def version() -> str:
    return f"nucleus-oci version {__version__}\nspec: {SPEC_VERSION}"
