"""-u's switch, as the calls the kernel receives (the recording fake of nucleus.effects.libc):
in the capability step, after the bounding set is cut and before the other sets are, with
PR_SET_KEEPCAPS around the change of uid, then the parent-death signal and non-dumpability
the change cleared restored; and the id maps' setgroups as the intent says. Runs as any user."""

from __future__ import annotations

import signal

import pytest

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import caps, handlers, namespaces, setup
from tests.fakes.libc import fake_libc_fixture  # noqa: F401 - the fixture


def prctl_call(option: int, arg2: int = 0) -> tuple[str, tuple[int, ...]]:
    return ("prctl", (option, arg2, 0, 0, 0))


@pytest.fixture
def kernel(fake_libc, tmp_path, monkeypatch):
    """A kernel with capabilities 0-2, all in the bounding set."""
    path = tmp_path / "cap_last_cap"
    path.write_text("2\n")
    monkeypatch.setattr(caps, "CAP_LAST_CAP_PATH", str(path))
    fake_libc.answer("prctl", lambda option, *_: 1 if option == linux.PR_CAPBSET_READ else 0)
    return fake_libc


def run(intent: v.Intent) -> None:
    handlers.child_handler(intent)(setup.SetupProcess(), intent)


def test_the_switch_comes_between_the_bounding_set_and_capset(kernel):
    run(v.DropCapabilities(keep=("CAP_CHOWN",), user=(1000, 100, (10, 20))))
    assert kernel.calls == [
        prctl_call(linux.PR_CAPBSET_READ, 1), prctl_call(linux.PR_CAPBSET_DROP, 1),
        prctl_call(linux.PR_CAPBSET_READ, 2), prctl_call(linux.PR_CAPBSET_DROP, 2),
        prctl_call(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL),
        # The permitted set survives the change of uid only for capset to cut it to what is kept.
        prctl_call(linux.PR_SET_KEEPCAPS, 1),
        ("setgroups", ((10, 20),)), ("setresgid", (100, 100, 100)), ("setresuid", (1000, 1000, 1000)),
        prctl_call(linux.PR_SET_KEEPCAPS, 0),
        # What a change of credentials clears: die with the supervisor, stay unreadable.
        prctl_call(linux.PR_SET_PDEATHSIG, signal.SIGKILL), prctl_call(linux.PR_SET_DUMPABLE, 0),
        ("capset", (1, 1, 0)),
        prctl_call(linux.PR_SET_DUMPABLE, 0),  # a run's setup process was dumpable since become_root
        prctl_call(linux.PR_SET_NO_NEW_PRIVS, 1),
    ]


def test_without_a_user_nothing_is_switched(kernel):
    run(v.JoinDropCapabilities(keep=()))
    names = [name for name, _ in kernel.calls]
    assert "setresuid" not in names and "setgroups" not in names
    assert prctl_call(linux.PR_SET_KEEPCAPS, 1) not in kernel.calls


def test_a_failed_switch_fails_the_step(kernel):
    kernel.fail("setresuid", 1)  # EPERM
    with pytest.raises(OSError):
        run(v.DropCapabilities(user=(1000, 1000, ())))
    assert ("capset", (0, 0, 0)) not in kernel.calls  # nothing after it was done


@pytest.mark.parametrize("value", ["deny", "allow"])
def test_the_id_maps_setgroups_is_what_the_intent_says(monkeypatch, value):
    written: list[tuple[str, str]] = []
    monkeypatch.setattr(namespaces, "write", lambda path, text: written.append((path, text)))
    namespaces.write_id_maps(v.WriteIdMaps(((0, 100000, 65536),), ((0, 100000, 65536),), value), 42)
    assert written == [("/proc/42/setgroups", value), ("/proc/42/uid_map", "0 100000 65536\n"),
                       ("/proc/42/gid_map", "0 100000 65536\n")]
