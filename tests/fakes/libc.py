"""A recording fake of ``nucleus.effects.libc``, the seam every effect makes its kernel calls
through, so an effect's calls can be checked without root (youki's Syscall trait and its test
double are the model).

The ``fake_libc`` fixture (import ``fake_libc_fixture`` into a test module) replaces every public
call of the module (each public function or class defined there) with a stub that

- checks the arguments against the real call's signature and records the call as
  ``(name, args)``, ``args`` being every parameter's value in order, defaults filled in: what the
  kernel would receive, e.g. ``("prctl", (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))``;
- raises a scripted SyscallError (``fail(name, errno, nth=...)``), or returns the next scripted
  result (``returns(name, *results)``), or one computed from the arguments
  (``answer(name, fn)``), or the call's default: None for a call that only acts (mount, chdir,
  capset, ...), 0 for seccomp(2) and for a prctl that sets something;
- otherwise refuses: a call that answers a question (capget, a prctl query, statvfs, readlink,
  open, landlock_create_ruleset, ...) or one added to libc after this fake fails the test
  (``pytest.fail``, which no ``except Exception`` swallows), so no call slips through
  unrecorded. A refusal caught by the code under test still fails the test at teardown.

Constants come from ``nucleus.effects.abi``, which is data and is never replaced.
"""

from __future__ import annotations

import inspect
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nucleus import linux
from nucleus.effects import abi, libc

Call = tuple[str, tuple[Any, ...]]
q = abi.quoted


def public_calls() -> dict[str, Callable[..., Any]]:
    """Every call of the seam: the public functions and classes defined in nucleus.effects.libc."""
    return {
        name: obj
        for name, obj in vars(libc).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == libc.__name__
    }


def _nothing(*_: Any) -> None:
    return None


# prctl options that set something (their answer is 0) and the ambient operations that do.
_PRCTL_SETS = frozenset({linux.PR_SET_PDEATHSIG, linux.PR_SET_DUMPABLE, linux.PR_SET_KEEPCAPS, linux.PR_SET_NAME,
                         linux.PR_CAPBSET_DROP, linux.PR_SET_SECUREBITS, linux.PR_SET_CHILD_SUBREAPER,
                         linux.PR_SET_NO_NEW_PRIVS})
_AMBIENT_SETS = frozenset({linux.PR_CAP_AMBIENT_RAISE, linux.PR_CAP_AMBIENT_LOWER,
                           linux.PR_CAP_AMBIENT_CLEAR_ALL})
_NO_DEFAULT = object()


def _prctl_default(option: int, arg2: int, *_: int) -> object:
    if option in _PRCTL_SETS or (option == linux.PR_CAP_AMBIENT and arg2 in _AMBIENT_SETS):
        return 0
    return _NO_DEFAULT  # a query: the test must say what the kernel answers


DEFAULTS: dict[str, Callable[..., Any]] = {
    **{name: _nothing for name in (
        "unshare", "setns", "mount", "mount_setattr", "move_mount", "umount2", "pivot_root", "sethostname", "setdomainname",
        "capset", "setresuid", "setresgid", "setgroups", "landlock_add_rule",
        "landlock_restrict_self", "chown", "lchown", "chroot", "chdir", "close", "setrlimit",
        "set_process_title", "set_process_name",
    )},
    "seccomp_set_mode_filter": lambda *_: 0,
    "prctl": _prctl_default,
}

# How a failed call's arguments read in its message, as libc renders them (checked against the
# real calls by tests/effects/test_libc_fake.py); any other call shows each argument quoted.
_CALL_NAMES = {"seccomp_set_mode_filter": "seccomp", "seccomp_get_action_avail": "seccomp"}
_RENDER: dict[str, Callable[..., tuple[str, ...]]] = {
    "mount": lambda s, t, f, fl, d: (q(s), q(t), q(f), abi.mount_flag_names(fl), q(d)),
    "umount2": lambda t, fl: (q(t), abi.umount_flag_names(fl)),
    "mount_setattr": lambda fd, p, fl, aset, aclr, prop, userns: (
        abi.dirfd_name(fd), q(p), abi.at_flag_names(fl),
        f"{{attr_set={abi.mount_attr_names(aset)}, attr_clr={abi.mount_attr_names(aclr)}, "
        f"propagation={abi.mount_flag_names(prop)}, userns_fd={userns}}}"),
    "unshare": lambda fl: (abi.clone_flag_names(fl),),
    "setns": lambda fd, ns: (str(fd), abi.clone_flag_names(ns)),
    "prctl": lambda o, *rest: (abi.prctl_option_name(o), *map(str, rest)),
    "open": lambda p, fl, _mode: (q(p), abi.open_flag_names(fl)),
    "capset": lambda e, p, i: (f"effective={e:#x}", f"permitted={p:#x}", f"inheritable={i:#x}"),
    "setgroups": lambda groups: (repr(list(groups)),),
    "setrlimit": lambda res, soft, hard: (abi.rlimit_name(res), f"{{{soft}, {hard}}}"),
    "seccomp_set_mode_filter": lambda bpf, fl: (
        "SECCOMP_SET_MODE_FILTER", abi.seccomp_flag_names(fl),
        f"<{len(bpf) // abi.BPF_INSN_SIZE} instructions>"),
}


def syscall_error(name: str, args: tuple[Any, ...], err: int) -> abi.SyscallError:
    """The SyscallError the real ``libc.<name>(*args)`` raises when the kernel answers ``err``."""
    render = _RENDER.get(name, lambda *a: tuple(q(x) for x in a))
    return abi.SyscallError(_CALL_NAMES.get(name, name), render(*args), err)


def mount_flags(st_flags: int = 0) -> os.statvfs_result:
    """A statvfs answer for a mount with ``st_flags`` (os.ST_NOSUID, ...), for ``statvfs``."""
    return os.statvfs_result((4096, 4096, 0, 0, 0, 0, 0, 0, st_flags, 255))


class RecordingLibc:
    """The calls made, in order, and what each call answers. Scripting methods return the fake,
    so they chain: ``fake.returns("capget", (0, 0, 0)).fail("capset", errno.EPERM)``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []  # (name, args), in order
        self.refused: list[Call] = []  # the calls it had no answer for
        self.real = public_calls()
        self._queued: dict[str, deque[Any]] = {}
        self._answers: dict[str, Callable[..., Any]] = {}
        self._failures: dict[str, dict[int | None, int]] = {}
        self._count: Counter[str] = Counter()

    # --- scripting ----------------------------------------------------------------------------

    def _known(self, name: str) -> str:
        if name not in self.real:
            raise ValueError(f"nucleus.effects.libc has no call {name!r}")
        return name

    def returns(self, name: str, *results: Any) -> RecordingLibc:
        """The next calls of ``name`` return ``results`` in turn (an exception in it is raised);
        once they are used up, the call falls back to its answer, default or refusal."""
        self._queued.setdefault(self._known(name), deque()).extend(results)
        return self

    def answer(self, name: str, fn: Callable[..., Any]) -> RecordingLibc:
        """Calls of ``name`` return ``fn(*args)`` (all arguments, defaults filled in)."""
        self._answers[self._known(name)] = fn
        return self

    def fail(self, name: str, err: int, nth: int | None = None) -> RecordingLibc:
        """The ``nth`` call of ``name`` (counting from 1; every call when None) raises the
        SyscallError the real call raises when the kernel answers ``err``."""
        self._failures.setdefault(self._known(name), {})[nth] = err
        return self

    # --- reading ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of the calls made, in order."""
        return [name for name, _ in self.calls]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of ``name``, in order."""
        return [args for called, args in self.calls if called == self._known(name)]

    # --- the stubs ----------------------------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> RecordingLibc:
        for name, real in self.real.items():
            monkeypatch.setattr(libc, name, self._stub(name, inspect.signature(real)))
        return self

    def _stub(self, name: str, signature: inspect.Signature) -> Callable[..., Any]:
        def stub(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)  # a TypeError for a call the real one refuses
            bound.apply_defaults()
            return self._call(name, tuple(bound.arguments.values()))

        stub.__name__ = stub.__qualname__ = name
        return stub

    def _call(self, name: str, args: tuple[Any, ...]) -> Any:
        self.calls.append((name, args))
        self._count[name] += 1
        failures = self._failures.get(name, {})
        err = failures.get(self._count[name], failures.get(None))
        if err is not None:
            raise syscall_error(name, args, err)
        queued = self._queued.get(name)
        if queued:
            result = queued.popleft()
            if isinstance(result, BaseException):
                raise result
            return result
        if name in self._answers:
            return self._answers[name](*args)
        if name in DEFAULTS:
            result = DEFAULTS[name](*args)
            if result is not _NO_DEFAULT:
                return result
        self.refused.append((name, args))
        pytest.fail(
            f"libc.{name}{args!r}: the fake has no answer for this call; script it with "
            f"returns/answer/fail (tests/fakes/libc.py)",
            pytrace=False,
        )


@pytest.fixture(name="fake_libc")
def fake_libc_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingLibc]:
    """Every public call of nucleus.effects.libc replaced by a RecordingLibc for the test."""
    fake = RecordingLibc().install(monkeypatch)
    yield fake
    if fake.refused:
        pytest.fail(f"calls the fake refused: {fake.refused!r}", pytrace=False)
