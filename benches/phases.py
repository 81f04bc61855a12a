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


import nucleus.cli.main as cli_main  # noqa: E402

mark("import cli")

# Everything the run path imports lazily, imported here so that the phases below time work,
# not imports. The list comes from a `python -X importtime` run of the same command
# (BENCH_PRELOAD names a file with one module per line); without it, a fixed list. A module
# the run still imports later shows up in "late_imports".
PRELOAD = (
    "nucleus.config.container", "nucleus.config.context", "nucleus.config.rootfs",
    "nucleus.config.landlock_default", "nucleus.config.seccomp_default", "nucleus.config.capabilities",
    "nucleus.runner", "nucleus.driver", "nucleus.vocab", "nucleus.machines.system",
    "nucleus.effects.host", "nucleus.effects.inside", "nucleus.effects.seccomp",
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

from nucleus import runner  # noqa: E402
from nucleus.effects import host as _host  # noqa: E402
from nucleus.effects import inside as _inside  # noqa: E402
from nucleus.machines import system as _system  # noqa: E402

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
for _attr in ("check_context", "check_trace", "gather_facts", "build"):
    _wrap(runner, _attr, _attr)
# State records (nucleus ps/rm): the registration, the recorder writing them at phase changes,
# and the store's file operations.
_wrap(runner, "register", "state register")
for _cls in [c for c in vars(runner).values() if isinstance(c, type) and c.__module__ == runner.__name__]:
    _wrap(_cls, "record", "state record")
try:
    from nucleus.effects import store as _store
except ImportError:
    _store = None
if _store is not None and hasattr(_store, "Store"):
    for _attr in ("ensure", "write", "update", "read", "delete"):
        _wrap(_store.Store, _attr, f"state store.{_attr}")

_orig_run = runner.run


def _run(*args, **kwargs):
    mark("run")
    try:
        return _orig_run(*args, **kwargs)
    finally:
        mark("run returned")


runner.run = _run

_orig_local = _host.HostExecutor._local
_orig_remote = _host.HostExecutor._remote


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


_host.HostExecutor._local = _local
_host.HostExecutor._remote = _remote
_wrap(_host.HostExecutor, "wait", "wait")
_wrap(_host.HostExecutor, "cleanup", "cleanup")

_orig_effects = _inside._effects


def _effects(inside):
    return {name: _child_span(name, fn) for name, fn in _orig_effects(inside).items()}


_orig_fork_init = _inside._fork_init


def _fork_init(inside, intent, events):
    t0 = time.monotonic_ns()
    became_init = _orig_fork_init(inside, intent, events)
    if became_init:
        _child(f"ForkInit {t0} {time.monotonic_ns()}")
    return became_init


_orig_exec_workload = _inside._exec_workload


def _exec_workload(inside, events):
    _child(f"ExecWorkload {time.monotonic_ns()} 0")
    _orig_exec_workload(inside, events)


_orig_exec_child = _inside._exec_child


def _exec_child(w):
    _child(f"exec {time.monotonic_ns()} 0")
    _orig_exec_child(w)


_inside._effects = _effects
_inside._fork_init = _fork_init
_inside._exec_workload = _exec_workload
_inside._exec_child = _exec_child


def main() -> int:
    out = sys.argv[1]
    sys.argv = ["nucleus", *sys.argv[2:]]
    mark("main")
    code = 0
    try:
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
