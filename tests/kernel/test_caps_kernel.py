"""Capability drop, no_new_privs and dumpability, for real in a forked child."""

from __future__ import annotations

import os
import pickle

import pytest

from nucleus import linux
from nucleus.config import capabilities as capspec
from nucleus.effects import abi, caps, libc
from tests.child import in_child

ROOT = pytest.mark.requires("root")
SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


@ROOT
def test_drop_everything():
    def body():
        before = caps.read_status_caps()
        caps.drop_capabilities()
        caps.set_no_new_privs()
        return [before, caps.read_status_caps(), list(libc.capget())]

    before, after, capget = in_child(body).value
    assert before["CapEff"] != 0  # the test starts privileged, so the drop is observable
    assert {k: after[k] for k in SETS} == dict.fromkeys(SETS, 0)
    assert after["NoNewPrivs"] == 1
    assert capget == [0, 0, 0]


@ROOT
def test_privileged_calls_fail_after_drop(tmp_path):
    def body():
        # A private mount namespace first, so a broken drop could not touch the host's mounts.
        libc.unshare(linux.CLONE_NEWNS)
        libc.mount(None, "/", None, abi.MS_REC | abi.MS_PRIVATE)
        caps.drop_capabilities()
        out = []
        flags = abi.MS_NOSUID | abi.MS_NODEV
        for call in (
            lambda: libc.mount("tmpfs", tmp_path, "tmpfs", flags, "size=1g"),
            lambda: libc.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWUTS),
            lambda: libc.prctl(linux.PR_CAPBSET_DROP, 0),
        ):
            try:
                call()
                out.append("ok")
            except abi.SyscallError as e:
                out.append(str(e))
        return out

    assert in_child(body).value == [
        f"mount('tmpfs', '{tmp_path}', 'tmpfs', MS_NOSUID|MS_NODEV, 'size=1g') failed: "
        "EPERM (Operation not permitted)",
        "unshare(CLONE_NEWNS|CLONE_NEWUTS) failed: EPERM (Operation not permitted)",
        "prctl(PR_CAPBSET_DROP, 0, 0, 0, 0) failed: EPERM (Operation not permitted)",
    ]


@ROOT
def test_keep_set():
    keep = frozenset({capspec.capability_number("NET_BIND_SERVICE")})

    def body():
        caps.drop_capabilities(keep)
        return caps.read_status_caps()

    after = in_child(body).value
    bit = 1 << 10
    assert (after["CapBnd"], after["CapPrm"], after["CapEff"]) == (bit, bit, bit)
    assert (after["CapInh"], after["CapAmb"]) == (0, 0)


@ROOT
def test_drop_twice_needs_no_capability():
    """A second drop finds nothing left in the bounding set and does not need CAP_SETPCAP."""

    def body():
        caps.drop_capabilities()
        caps.drop_capabilities()
        return caps.read_status_caps()["CapBnd"]

    assert in_child(body).value == 0


@ROOT
def test_dumpable():
    def body():
        caps.set_dumpable(False)
        off = libc.prctl(linux.PR_GET_DUMPABLE)
        caps.set_dumpable(True)
        return [off, libc.prctl(linux.PR_GET_DUMPABLE)]

    assert in_child(body).value == [0, 1]


def test_read_status_caps_of_another_process():
    mine = caps.read_status_caps()
    assert set(SETS) <= set(mine) and "NoNewPrivs" in mine and "Seccomp" in mine
    assert caps.read_status_caps(os.getpid()) == mine
    with pytest.raises(abi.SyscallError) as info:
        caps.read_status_caps(2**22 + 12345)
    assert "failed: ENOENT" in str(info.value)


def test_cap_last_cap_matches_the_table():
    assert caps.cap_last_cap() >= capspec.CAP_LAST_KNOWN


# --- pure parts used above ----------------------------------------------------------------------


def test_capability_names():
    assert capspec.capability_number("SYS_ADMIN") == 21
    assert capspec.capability_number("CAP_SYS_ADMIN") == 21
    assert capspec.capability_number("cap_chown") == 0
    assert capspec.capability_number("CHECKPOINT_RESTORE") == 40
    assert capspec.capability_name(39) == "CAP_BPF"
    assert len(capspec.CAPABILITY_NAMES) == 41
    assert sorted(capspec.CAPABILITY_NAMES.values()) == list(range(41))
    with pytest.raises(ValueError, match="unknown capability 'SYS_GOD'"):
        capspec.capability_number("SYS_GOD")
    assert capspec.capability_names_of(1 << 21 | 1) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]


def test_syscall_error_message_and_pickle():
    err = abi.SyscallError("umount2", ("'/x'", abi.umount_flag_names(abi.MNT_DETACH)), 16)
    assert str(err) == "umount2('/x', MNT_DETACH) failed: EBUSY (Device or resource busy)"
    assert isinstance(err, OSError) and err.errno == 16
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.call == "umount2"
    assert (
        abi.mount_flag_names(abi.MS_BIND | abi.MS_REC | 1 << 30) == "MS_BIND|MS_REC|0x40000000"
    )
    assert abi.mount_flag_names(0) == "0"
