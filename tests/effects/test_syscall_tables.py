"""The per-architecture tables of nucleus.effects.abi: every syscall number and AUDIT_ARCH value
checked against libseccomp's own tables (through pyseccomp), the built-in syscall-name tables of
trace mode, the trace filter per architecture, the refusal of a machine without a table, and the
rule that only nucleus.effects.libc touches ctypes."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from nucleus.config import seccomp_default, seccomp_generate
from nucleus.effects import abi, libc, seccomp_bpf, seccomp_names
from nucleus.errors import HostUnsupported

PACKAGE = Path(__file__).resolve().parents[2] / "nucleus"
MACHINES = ("aarch64", "x86_64")


def pyseccomp_arch(machine: str):
    import pyseccomp

    return {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64}[machine]


def test_the_supported_machines():
    assert sorted(abi.ARCHITECTURES) == list(MACHINES)
    for machine, arch in abi.ARCHITECTURES.items():
        assert arch.machine == machine
        assert abi.architecture(machine) is arch
    assert abi.architecture("x86_64").x32_syscall_bit == 0x40000000
    assert abi.architecture("aarch64").x32_syscall_bit is None


# --- the numbers, checked with libseccomp ----------------------------------------------------------


@pytest.mark.requires("pyseccomp")
@pytest.mark.parametrize("machine", MACHINES)
def test_every_syscall_number_is_libseccomps(machine):
    import pyseccomp

    arch = abi.architecture(machine)
    token = pyseccomp_arch(machine)
    wrong = {
        name: (nr, pyseccomp.resolve_syscall(token, name))
        for name, nr in arch.syscalls.items()
        if pyseccomp.resolve_syscall(token, name) != nr
    }
    assert not wrong, f"{machine}: name: (ours, libseccomp's): {wrong}"
    assert set(arch.syscalls) >= {
        "capget", "capset", "pivot_root", "seccomp", "sendmsg", "close_range", "mount_setattr",
        "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    }


@pytest.mark.requires("pyseccomp")
@pytest.mark.parametrize("machine", MACHINES)
def test_audit_arch_and_token_are_libseccomps(machine):
    import pyseccomp

    arch = abi.architecture(machine)
    token = pyseccomp_arch(machine)
    assert arch.audit_arch == int(token)  # pyseccomp's Arch values are the AUDIT_ARCH constants
    # The token names that value, as nucleus.effects.seccomp reads "architectures" entries.
    assert arch.seccomp_arch.startswith("SCMP_ARCH_")
    assert getattr(pyseccomp.Arch, arch.seccomp_arch[len("SCMP_ARCH_"):]) == arch.audit_arch


@pytest.mark.requires("pyseccomp")
def test_the_x32_bit_is_libseccomps():
    import pyseccomp

    native = pyseccomp.resolve_syscall(pyseccomp.Arch.X86_64, "getpid")
    x32 = pyseccomp.resolve_syscall(pyseccomp.Arch.X32, "getpid")
    assert x32 == native | abi.architecture("x86_64").x32_syscall_bit


def test_the_running_machine_is_supported_here():
    """The machines these tests run on have a table (else every raw syscall is refused)."""
    assert abi.check_architecture() is abi.ARCHITECTURES[abi.MACHINE]
    assert abi.syscall_number("seccomp") == abi.ARCHITECTURES[abi.MACHINE].syscalls["seccomp"]


# --- a machine without a table ---------------------------------------------------------------------

REFUSAL = ("architecture 'riscv64' is not supported: nucleus knows the syscall numbers of "
           "aarch64 and x86_64 only")


def test_an_unknown_architecture_is_refused_with_its_name(monkeypatch):
    with pytest.raises(abi.UnsupportedArchitecture) as info:
        abi.architecture("riscv64")
    err = info.value
    assert isinstance(err, HostUnsupported) and err.exit_code == 125
    assert err.message == REFUSAL
    assert err.hint == "run nucleus on an aarch64 or x86_64 machine"
    assert err.render() == f"error: {REFUSAL}\nhint: run nucleus on an aarch64 or x86_64 machine"
    again = pickle.loads(pickle.dumps(err))  # it may cross a pipe
    assert (type(again), again.message, again.hint) == (type(err), err.message, err.hint)

    monkeypatch.setattr(abi, "MACHINE", "riscv64")
    with pytest.raises(abi.UnsupportedArchitecture, match="^architecture 'riscv64' is not"):
        abi.check_architecture()


def test_no_raw_syscall_is_made_on_an_unknown_architecture(monkeypatch):
    """Refused before anything reaches the kernel: a number from another table would be some
    other call."""
    monkeypatch.setattr(abi, "MACHINE", "riscv64")
    for call in (
        lambda: libc.pivot_root("/nonexistent-a", "/nonexistent-b"),
        lambda: libc.close_range(1 << 30),
        lambda: libc.landlock_restrict_self(-1),
        lambda: libc.seccomp_get_action_avail(0),
        lambda: libc.PreparedSyscall("sendmsg", -1, None, 0),
        lambda: abi.syscall_number("capget"),
    ):
        with pytest.raises(abi.UnsupportedArchitecture) as info:
            call()
        assert info.value.message == REFUSAL


# --- syscall names of trace mode -------------------------------------------------------------------


@pytest.mark.requires("pyseccomp")
@pytest.mark.parametrize("machine", MACHINES)
def test_builtin_name_table_agrees_with_libseccomp(machine):
    import pyseccomp

    arch = abi.architecture(machine)
    token = pyseccomp_arch(machine)
    table = seccomp_names.builtin_table(machine)
    compared = 0
    for nr in range(0, 1024):
        try:
            name = pyseccomp.resolve_syscall(token, nr)
        except (OSError, ValueError):
            name = None
        if not name:
            assert libc.libseccomp_syscall_name(nr, arch.audit_arch) is None, nr
            continue
        name = name.decode() if isinstance(name, bytes) else name
        assert libc.libseccomp_syscall_name(nr, arch.audit_arch) == name, nr
        assert table.get(nr) == name, (machine, nr)
        assert seccomp_names.syscall_name(nr, arch) == name
        compared += 1
    assert compared > 300
    # Newer than libseccomp 2.5, from the table; numbers from 424 on are the same everywhere.
    assert seccomp_names.syscall_name(457, arch) == "statmount"
    assert seccomp_names.syscall_name(469, arch) == "file_setattr"
    assert seccomp_names.syscall_name(1000, arch) is None


def test_builtin_name_tables_differ_where_the_numbers_do():
    x86, arm = seccomp_names.builtin_table("x86_64"), seccomp_names.builtin_table("aarch64")
    assert (x86[0], x86[46], x86[155]) == ("read", "sendmsg", "pivot_root")
    assert (arm[63], arm[211], arm[41]) == ("read", "sendmsg", "pivot_root")
    assert {nr: x86[nr] for nr in range(424, 470)} == {nr: arm[nr] for nr in range(424, 470)}
    for arch in abi.ARCHITECTURES.values():  # the table's own numbers name the right calls
        names = seccomp_names.builtin_table(arch.machine)
        assert all(names[nr] == name for name, nr in arch.syscalls.items())


# --- the trace filter per architecture -------------------------------------------------------------


def _words(program: bytes) -> list[tuple[int, int]]:
    return [
        (int.from_bytes(program[i : i + 2], "little"), int.from_bytes(program[i + 4 : i + 8], "little"))
        for i in range(0, len(program), 8)
    ]


def test_x86_64_trace_filter_is_unchanged():
    x86 = abi.architecture("x86_64")
    assert seccomp_bpf.trace_filter(arch=x86).hex() == (
        "2000000004000000150000033e0000c0200000000000000035000100000000400600000000"
        "00c07f0600000000000080"
    )


def test_aarch64_trace_filter_checks_its_audit_arch_and_has_no_x32_check():
    arm = abi.architecture("aarch64")
    plain = _words(seccomp_bpf.trace_filter(arch=arm))
    assert plain == [
        (seccomp_bpf.BPF_LD_W_ABS, 4),
        (seccomp_bpf.BPF_JEQ_K, 0xC00000B7),
        (seccomp_bpf.BPF_LD_W_ABS, 0),
        (seccomp_bpf.BPF_RET_K, seccomp_bpf.SECCOMP_RET_USER_NOTIF),
        (seccomp_bpf.BPF_RET_K, seccomp_bpf.SECCOMP_RET_KILL_PROCESS),
    ]
    exempt = _words(seccomp_bpf.trace_filter((7, 0x7F00_1234_5678), arch=arm))
    assert exempt[3] == (seccomp_bpf.BPF_JEQ_K, 211)  # aarch64's sendmsg
    assert seccomp_bpf.BPF_JGE_K not in {code for code, _ in exempt}


# --- the pure side names the same architectures ----------------------------------------------------


def test_config_architectures_agree_with_libc():
    assert seccomp_generate.ARCHITECTURES == {
        m: a.seccomp_arch for m, a in abi.ARCHITECTURES.items()
    }
    for arch in abi.ARCHITECTURES.values():
        assert seccomp_default.default_profile(False, arch.seccomp_arch)["architectures"] == [
            arch.seccomp_arch
        ]
    assert seccomp_default.DEFAULT_ARCH == abi.architecture("x86_64").seccomp_arch


# --- only libc touches ctypes ----------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_libc_imports_ctypes_or_loads_a_library():
    sources = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    libc_path = PACKAGE / "effects" / "libc.py"
    assert libc_path in sources and "ctypes" in _imports(libc_path)
    offenders = [str(p.relative_to(PACKAGE.parent)) for p in sources
                 if p != libc_path and ({"ctypes", "_ctypes", "cffi"} & _imports(p))]
    assert not offenders, f"only nucleus/effects/libc.py may import ctypes: {offenders}"
    loaders = [str(p.relative_to(PACKAGE.parent)) for p in sources
               if p != libc_path and ("CDLL(" in p.read_text() or "find_library(" in p.read_text())]
    assert not loaders, f"only nucleus/effects/libc.py may load a shared library: {loaders}"
    # By soname, never through ctypes.util.find_library (it forks).
    assert "find_library(" not in libc_path.read_text()
