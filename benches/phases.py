"""Runs `nucleus run` in this process with a timestamp at every phase, for the cold-start
breakdown. It wraps nucleus's own functions from the outside; nucleus itself is unchanged.

    python benches/phases.py OUT.json [nucleus run options] -- COMMAND...

Writes OUT.json: "marks" (name, CLOCK_MONOTONIC ns) in order, "spans" (name, start, end) of the
supervisor's steps, "child" spans of the setup process and the container's init, and the
modules the run imported after the preload. The caller notes when it spawned this process and
when it exited; CLOCK_MONOTONIC is the same clock in every process.
"""

import time

T_SCRIPT = time.monotonic_ns()

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

MARKS = [("script", T_SCRIPT)]
SPANS: list[tuple[str, int, int]] = []


def mark(name: str) -> None:
    MARKS.append((name, time.monotonic_ns()))


# Started like the `nucleus` launcher (python -IS): the launcher's sys.path, given by the caller.
if os.environ.get("BENCH_SYS_PATH"):
    sys.path[:0] = os.environ["BENCH_SYS_PATH"].split(os.pathsep)

try:  # the entry point that parses `run` without click, where nucleus has one
    import nucleus.cli.entry as cli_entry
except ImportError:
    cli_entry = None

mark("import cli")

# Everything the run path imports lazily, imported here so that the phases below time work,
# not imports. The list comes from a `python -X importtime` run of the same command
# (BENCH_PRELOAD names a file with one module per line); without it, a fixed list. A module
# the run still imports later shows up in "late_imports".
PRELOAD = (
    "nucleus.config.container", "nucleus.config.context", "nucleus.plan.mounts",
    "nucleus.config.landlock_default", "nucleus.config.seccomp_default", "nucleus.config.capabilities",
    "nucleus.app.run", "nucleus.driver", "nucleus.vocab", "nucleus.machines.system",
    "nucleus.effects.executor", "nucleus.effects.setup", "nucleus.effects.seccomp",
)
if os.environ.get("BENCH_PRELOAD"):
    with open(os.environ["BENCH_PRELOAD"]) as _f:
        PRELOAD = tuple(line.strip() for line in _f if line.strip())
for _name in PRELOAD:
    if _name in sys.modules or _name.endswith("__main__"):
        continue
    try:
        importlib.import_module(_name)
    except Exception:  # noqa: BLE001 - a module that cannot be preloaded is imported late
        pass
mark("import run path")
PRELOADED = set(sys.modules)

from nucleus.app import records as _records  # noqa: E402
from nucleus.app import run as _run_app  # noqa: E402
from nucleus.effects import executor as _executor  # noqa: E402
from nucleus.effects import handlers as _handlers  # noqa: E402
from nucleus.effects import probe as _probe  # noqa: E402
from nucleus.effects import setup as _setup  # noqa: E402
from nucleus.machines import system as _system  # noqa: E402
from nucleus.plan import run as _plan  # noqa: E402

CHILD_R, CHILD_W = os.pipe()


def _span(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.monotonic_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            SPANS.append((name, t0, time.monotonic_ns()))
    return wrapper


def _child(record: str) -> None:
    try:
        os.write(CHILD_W, (record + "\n").encode())
    except OSError:
        pass


def _child_span(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.monotonic_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            _child(f"{name} {t0} {time.monotonic_ns()}")
    return wrapper


def _wrap(obj, attr: str, name: str) -> None:
    """Time obj.attr as a span called name; nothing if nucleus has no such function."""
    fn = getattr(obj, attr, None)
    if callable(fn):
        setattr(obj, attr, _span(name, fn))


_wrap(_system, "step", "step")
_wrap(_system, "advance", "step")
# The phases before anything changes on the host: probe, prepare (seccomp program), plan.
_wrap(_probe, "for_run", "probe")
_wrap(_run_app, "prepare_artifacts", "prepare")
_wrap(_plan, "plan", "plan")
# State records (nucleus ps/rm): the registration, the recorder writing them at phase changes,
# and the store's file operations.
_wrap(_records, "register", "state register")
_wrap(_records.StateRecorder, "record", "state record")
try:
    from nucleus.effects import store as _store
except ImportError:
    _store = None
if _store is not None and hasattr(_store, "Store"):
    for _attr in ("ensure", "write", "update", "read", "delete"):
        _wrap(_store.Store, _attr, f"state store.{_attr}")

_orig_run = _run_app.run


def _run(*args, **kwargs):
    mark("run")
    try:
        return _orig_run(*args, **kwargs)
    finally:
        mark("run returned")


_run_app.run = _run

_orig_local = _executor.Executor._local
_orig_remote = _executor.Executor._remote


def _local(self, intent):
    t0 = time.monotonic_ns()
    try:
        return _orig_local(self, intent)
    finally:
        SPANS.append((f"host {intent.name}", t0, time.monotonic_ns()))


def _remote(self, intents):
    t0 = time.monotonic_ns()
    try:
        return _orig_remote(self, intents)
    finally:
        SPANS.append(("pipe " + "+".join(i.name for i in intents), t0, time.monotonic_ns()))


_executor.Executor._local = _local
_executor.Executor._remote = _remote
_wrap(_executor.Executor, "wait", "wait")
_wrap(_executor.Executor, "cleanup", "cleanup")

# Inside: every child-side handler, the fork of PID 1, the workload's fork and exec.
for _cls, _fn in list(_handlers.HANDLERS.items()):
    if _cls.where == "child":
        _handlers.HANDLERS[_cls] = _child_span(_cls.__name__, _fn)

_orig_fork = _setup._fork


def _fork(setup, intent, events):
    t0 = time.monotonic_ns()
    forked = _orig_fork(setup, intent, events)
    if forked:
        _child(f"ForkInit {t0} {time.monotonic_ns()}")
    return forked


_orig_exec_workload = _setup._exec_workload


def _exec_workload(setup, intent, events):
    _child(f"ExecWorkload {time.monotonic_ns()} 0")
    _orig_exec_workload(setup, intent, events)


_orig_exec_command = _setup.exec_command


def _exec_command(op, *args, **kwargs):
    _child(f"exec {time.monotonic_ns()} 0")
    _orig_exec_command(op, *args, **kwargs)


_setup._fork = _fork
_setup._exec_workload = _exec_workload
_setup.exec_command = _exec_command


def main() -> int:
    out = sys.argv[1]
    sys.argv = ["nucleus", *sys.argv[2:]]
    mark("main")
    code = 0
    try:
        code = cli_entry.fast_run(sys.argv[1:]) if cli_entry is not None else None
        if code is None:
            import nucleus.cli.main as cli_main

            code = cli_main.run_cli()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    mark("main returned")
    os.close(CHILD_W)
    data = b""
    while chunk := os.read(CHILD_R, 65536):
        data += chunk
    child = []
    for line in data.decode().splitlines():
        name, t0, t1 = line.split()
        child.append((name, int(t0), int(t1)))
    with open(out, "w") as f:
        json.dump({"marks": MARKS, "spans": SPANS, "child": child, "exit_code": code,
                   "late_imports": sorted(set(sys.modules) - PRELOADED)}, f)
    return code


if __name__ == "__main__":
    sys.exit(main())
