"""Compiling profiles and the on-disk program cache (no filter is loaded here)."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nucleus.config.seccomp_default import default_profile
from nucleus.effects import libc, seccomp

pytestmark = pytest.mark.requires("pyseccomp")

REPO = Path(__file__).resolve().parents[2]


def bpf_ok(program: bytes) -> bool:
    if not program or len(program) % 8:
        return False
    code = struct.unpack_from("=H", program, len(program) - 8)[0]
    return code & 0x07 == 0x06  # ends in BPF_RET


def entry(cache: Path, profile: dict) -> Path:
    return cache / f"{seccomp.cache_key(profile)}.bpf"


def test_compile_default_profiles():
    none = seccomp.compile_profile(default_profile(networked=False))
    net = seccomp.compile_profile(default_profile(networked=True))
    assert bpf_ok(none) and bpf_ok(net)
    assert none != net
    assert seccomp.compile_profile(default_profile(networked=False)) == none


def test_round_trip(tmp_path):
    profile = default_profile(networked=False)
    program = seccomp.cached_program(profile, str(tmp_path))
    path = entry(tmp_path, profile)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert path.read_bytes() == program == seccomp.compile_profile(profile)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    assert seccomp.cached_program(profile, str(tmp_path)) == program


def test_key_follows_profile_and_library():
    a = default_profile(networked=False)
    b = default_profile(networked=True)
    assert seccomp.cache_key(a) == seccomp.cache_key(default_profile(networked=False))
    assert seccomp.cache_key(a) != seccomp.cache_key(b)
    reordered = dict(reversed(list(a.items())))
    assert seccomp.cache_key(reordered) == seccomp.cache_key(a)
    assert len(seccomp.cache_key(a)) == 64
    assert libc.libseccomp_version().count(".") == 2


def test_cache_is_used(tmp_path):
    """A valid entry is returned as is, without compiling (a marker program proves it)."""
    profile = default_profile(networked=False)
    path = entry(tmp_path, profile)
    marker = bytes.fromhex("0600000000000000")  # one instruction: return KILL
    path.write_bytes(marker)
    path.chmod(0o600)
    assert seccomp.cached_program(profile, str(tmp_path)) == marker


@pytest.mark.parametrize(
    "damage",
    [
        "empty",
        "not_multiple_of_8",
        "no_final_return",
        "group_writable",
        "world_writable",
        "other_owner",
        "symlink",
        "fifo",
    ],
)
def test_bad_entry_is_rejected_and_replaced(tmp_path, damage, capsys):
    profile = default_profile(networked=False)
    good = seccomp.compile_profile(profile)
    path = entry(tmp_path, profile)
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "not_multiple_of_8":
        path.write_bytes(good[:-3])
    elif damage == "no_final_return":
        path.write_bytes(good[:-8] + bytes.fromhex("2000000004000000"))  # ld [4]
    elif damage in ("group_writable", "world_writable", "other_owner"):
        path.write_bytes(good)
        path.chmod({"group_writable": 0o620, "world_writable": 0o602}.get(damage, 0o600))
        if damage == "other_owner":
            if os.geteuid() != 0:
                pytest.skip("needs root to chown")
            os.chown(path, 65534, 65534)
    elif damage == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(good)
        target.chmod(0o600)
        path.symlink_to(target)
    elif damage == "fifo":
        os.mkfifo(path, 0o600)
    if damage in ("empty", "not_multiple_of_8", "no_final_return"):
        path.chmod(0o600)

    assert seccomp.cached_program(profile, str(tmp_path)) == good
    assert "seccomp cache" in capsys.readouterr().err
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert path.read_bytes() == good


def test_insecure_directory_is_not_used(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    profile = default_profile(networked=False)
    program = seccomp.cached_program(profile, str(cache))
    assert program == seccomp.compile_profile(profile)
    assert list(cache.iterdir()) == []
    assert "directory not used" in capsys.readouterr().err


def test_cache_directory_is_created_private(tmp_path):
    cache = tmp_path / "a" / "b"
    seccomp.cached_program(default_profile(networked=True), str(cache))
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


def test_cache_hit_does_not_import_pyseccomp(tmp_path):
    profile = default_profile(networked=False)
    seccomp.cached_program(profile, str(tmp_path))
    code = textwrap.dedent(
        f"""
        import sys
        from nucleus.effects import seccomp
        from nucleus.config.seccomp_default import default_profile
        program = seccomp.cached_program(default_profile(networked=False), {str(tmp_path)!r})
        print(len(program), "pyseccomp" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    size = len(seccomp.compile_profile(profile))
    assert out.stdout.split() == [str(size), "False"], out.stderr
    assert out.stderr == ""


def test_default_cache_dir(monkeypatch):
    if os.geteuid() == 0:
        assert seccomp.default_cache_dir() == "/var/cache/nucleus/seccomp"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert seccomp.default_cache_dir() == "/x/cache/nucleus/seccomp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert seccomp.default_cache_dir() == "/home/u/.cache/nucleus/seccomp"


# --- compiling other profiles --------------------------------------------------------------------


def test_unknown_syscall_is_skipped_with_a_warning(capsys):
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"}],
    }
    assert bpf_ok(seccomp.compile_profile(profile))
    err = capsys.readouterr().err
    assert "'no_such_syscall_xyz'" in err and "skipped" in err


@pytest.mark.parametrize(
    "profile, message",
    [
        ({"defaultAction": "SCMP_ACT_TRACE"}, "defaultAction: action 'SCMP_ACT_TRACE' is not"),
        ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action 'SCMP_ACT_NOPE'"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]},
            "architectures[0]: unknown architecture 'SCMP_ARCH_VAX'",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}],
                    },
                ],
            },
            "syscalls[0].args[0].index: 7",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_LIKE"}],
                    },
                ],
            },
            "syscalls[0].args[0].op: unknown comparison 'SCMP_CMP_LIKE'",
        ),
    ],
)
def test_bad_profiles_name_the_field(profile, message):
    with pytest.raises(ValueError) as info:
        seccomp.compile_profile(profile)
    assert message in str(info.value)


def test_all_supported_actions_and_ops_compile():
    ops = ["NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ"]
    actions = ["KILL", "KILL_THREAD", "TRAP", "LOG", "ERRNO", "ALLOW", "ERRNO"]
    names = ["read", "write", "close", "dup", "lseek", "getpid", "kill"]
    syscalls = [
        {
            "names": [name],
            "action": f"SCMP_ACT_{action}",
            "args": [{"index": 0, "value": 3, "valueTwo": 1, "op": f"SCMP_CMP_{op}"}],
        }
        for name, action, op in zip(names, actions, ops, strict=True)
    ]
    for default in ("SCMP_ACT_KILL_PROCESS", "SCMP_ACT_ERRNO", "SCMP_ACT_LOG"):
        profile = {"defaultAction": default, "defaultErrnoRet": 13, "syscalls": syscalls}
        assert bpf_ok(seccomp.compile_profile(profile))


def test_listed_architecture_is_added():
    base = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}],
    }
    native = seccomp.compile_profile(base)
    both = seccomp.compile_profile({**base, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]})
    assert len(both) > len(native)
