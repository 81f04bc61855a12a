"""Classic BPF for seccomp: a small assembler, the trace filter of seccomp trace mode, the notify
form of an enforced program, the stub that answers syscalls newer than libseccomp's table, and
an interpreter of the kernel's seccomp programs.

The filter returns ``SECCOMP_RET_USER_NOTIF`` for every native syscall and kills the process on
any other ABI, exactly as an enforced profile naming only the native architecture would: on
x86_64 that is i386 (``int 0x80``) and x32 (a native number with ``__X32_SYSCALL_BIT`` set), on
aarch64 the 32-bit arm ABI. The architecture's facts (its AUDIT_ARCH value, whether it has an
x32 bit, the number of sendmsg) come from ``nucleus.effects.abi``'s table for the machine.

The one exemption, the handoff's ``sendmsg``, is described in ``nucleus.effects.seccomp_handoff``.

The notify form (:func:`notify_filter`) is what a container whose refusals are recorded runs:
the enforced program with each refusal's return (an errno other than ENOSYS, a kill, a log)
turned into ``SECCOMP_RET_USER_NOTIF``, behind a guard that kills any other ABI itself. Allowed
calls return ALLOW from the same instructions as before, at no extra cost; a refused call waits
for the violation monitor (``nucleus.effects.monitor``), which runs the original program on the
call with :func:`evaluate` to learn what the policy says (which errno, a kill, a log) and does
exactly that. ENOSYS answers (clone3, newer syscalls) stay in the kernel: they tell a program to
fall back, they refuse nothing it needs.
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING

from nucleus.effects import abi

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Literal

    # (code, k, jump_true_label, jump_false_label); a label of None: the next instruction
    _Insn = tuple[int, int, str | None, str | None]
    _Label = tuple[Literal["label"], str]

# --- classic BPF ---------------------------------------------------------------------------------
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JA = 0x05  # BPF_JMP | BPF_JA: k instructions forward
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGT_K = 0x25  # BPF_JMP | BPF_JGT | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
SECCOMP_RET_DATA = 0x0000FFFF
ENOSYS = 38
# struct seccomp_data, as the kernel lays it out for a filter (native byte order)
SECCOMP_DATA = struct.Struct("=iIQ6Q")
# offsets in struct seccomp_data { int nr; u32 arch; u64 instruction_pointer; u64 args[6]; }
_NR, _ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


def _arg_hi(i: int) -> int:
    return 16 + 8 * i + 4


def _assemble(program: list[_Insn | _Label]) -> bytes:
    """Lay out ``(code, k, jump_true_label, jump_false_label)`` rows and ``("label", name)``
    markers as struct sock_filter; jumps are forward, to labels."""
    labels: dict[str, int] = {}
    rows: list[_Insn] = []
    for row in program:
        if row[0] == "label":
            labels[row[1]] = len(rows)
        else:
            rows.append(row)
    out = bytearray()
    for pc, (code, k, jt, jf) in enumerate(rows):
        offsets = [0 if target is None else labels[target] - pc - 1 for target in (jt, jf)]
        assert all(0 <= o <= 255 for o in offsets), "jump out of range"
        out += struct.pack("=HBBI", code, offsets[0], offsets[1], k)
    return bytes(out)


def _eq(offset: int, value: int, otherwise: str) -> list[_Insn]:
    return [(BPF_LD_W_ABS, offset, None, None), (BPF_JEQ_K, value, None, otherwise)]


_cached_filter: bytes | None = None


def trace_filter(exempt: tuple[int, int] | None = None, arch: abi.Arch | None = None) -> bytes:
    """The trace filter as raw ``struct sock_filter`` bytes for ``arch`` (default: this
    machine's): a foreign ABI (any other AUDIT_ARCH, and x32 calls on x86_64) kills the process;
    every other syscall is notified.

    ``exempt=(fd, msghdr_address)`` allows the one handoff call ``sendmsg(fd, msghdr_address,
    ...)`` without notification (see ``seccomp_handoff``). Without it the program for this
    machine is built once and cached.
    """
    global _cached_filter
    native = arch is None
    if native and exempt is None and _cached_filter is not None:
        return _cached_filter
    arch = arch or abi.architecture()
    program = _checks(arch, exempt, "notify") + [
        ("label", "notify"),
        (BPF_RET_K, SECCOMP_RET_USER_NOTIF, None, None),
        ("label", "kill"),
        (BPF_RET_K, SECCOMP_RET_KILL_PROCESS, None, None),
    ]
    code = _assemble(program)
    if native and exempt is None:
        _cached_filter = code
    return code


# --- the notify form of an enforced program -------------------------------------------------------

# Returns a recorded container hands to the monitor instead of carrying them out in the kernel.
_NOTIFIED = (SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_LOG)


def _instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    if not program or len(program) % abi.BPF_INSN_SIZE:
        raise ValueError(f"a seccomp program of {len(program)} bytes is not whole instructions")
    return [struct.unpack_from("=HBBI", program, at) for at in range(0, len(program), abi.BPF_INSN_SIZE)]


def notified(ret: int) -> bool:
    """Whether the notify form hands a call the program answers with ``ret`` to the monitor."""
    action = ret & SECCOMP_RET_ACTION_FULL
    if action == SECCOMP_RET_ERRNO:
        return ret & SECCOMP_RET_DATA != ENOSYS
    return action in _NOTIFIED


def _checks(arch: abi.Arch, exempt: tuple[int, int] | None, then: str) -> list[_Insn | _Label]:
    """Jump to "kill" for any other ABI (and x32); with ``exempt=(fd, msghdr_address)``, allow
    the handoff's one ``sendmsg`` (see seccomp_handoff); every other call goes on to ``then``
    (or falls through, without an exemption)."""
    program: list[_Insn | _Label] = [*_eq(_ARCH, arch.audit_arch, "kill"), (BPF_LD_W_ABS, _NR, None, None)]
    if arch.x32_syscall_bit is not None:
        program.append((BPF_JGE_K, arch.x32_syscall_bit, "kill", None))
    if exempt is not None:
        fd, address = exempt
        program += [
            (BPF_JEQ_K, arch.syscalls["sendmsg"], None, then),
            *_eq(_arg_lo(0), fd & 0xFFFFFFFF, then),
            *_eq(_arg_hi(0), fd >> 32 & 0xFFFFFFFF, then),
            *_eq(_arg_lo(1), address & 0xFFFFFFFF, then),
            *_eq(_arg_hi(1), address >> 32 & 0xFFFFFFFF, then),
            (BPF_RET_K, SECCOMP_RET_ALLOW, None, None),
        ]
    return program


def _guard(arch: abi.Arch, exempt: tuple[int, int] | None) -> bytes:
    """Kill any other ABI (and x32) here, so that no such call is ever notified; then allow the
    handoff's one sendmsg; then go on to what follows."""
    return _assemble(_checks(arch, exempt, "program") + [
        (BPF_JA, 1, None, None),  # over the kill
        ("label", "kill"),
        (BPF_RET_K, SECCOMP_RET_KILL_PROCESS, None, None),
        ("label", "program"),
    ])


def notify_filter(program: bytes, exempt: tuple[int, int] | None = None,
                  arch: abi.Arch | None = None) -> bytes:
    """The notify form of an enforced ``program`` (raw ``struct sock_filter`` bytes) for
    ``arch`` (default: this machine's): a guard that kills other ABIs, the handoff's exempt
    sendmsg (``exempt=(fd, msghdr_address)``, as :func:`trace_filter` takes it), then the
    program with every return :func:`notified` names turned into ``SECCOMP_RET_USER_NOTIF``.
    Jumps in a classic BPF program are relative, so a prefix leaves the program's intact."""
    arch = arch or abi.architecture()
    out = bytearray(_guard(arch, exempt))
    for code, jt, jf, k in _instructions(program):
        if code == BPF_RET_K and notified(k):
            k = SECCOMP_RET_USER_NOTIF
        out += struct.pack("=HBBI", code, jt, jf, k)
    if len(out) // abi.BPF_INSN_SIZE > abi.BPF_MAXINSNS:
        raise ValueError(f"the notify form of the program has more than {abi.BPF_MAXINSNS} instructions")
    return bytes(out)


def newer_syscalls_stub(highest: int, errno: int, arch: abi.Arch | None = None) -> bytes:
    """What goes before a compiled program to answer every native syscall numbered above
    ``highest`` (the last one libseccomp's table knows) with ``errno``, as Docker's runc does:
    a program cannot name a call its compiler does not know, and ENOSYS makes glibc and the
    language runtimes fall back to the older call instead of failing on a refusal. Other ABIs
    and x32 go on to the program, which kills them."""
    arch = arch or abi.architecture()
    program: list[_Insn | _Label] = [*_eq(_ARCH, arch.audit_arch, "program"), (BPF_LD_W_ABS, _NR, None, None)]
    if arch.x32_syscall_bit is not None:
        program.append((BPF_JGE_K, arch.x32_syscall_bit, "program", None))
    program += [
        (BPF_JGT_K, highest, None, "program"),
        (BPF_RET_K, SECCOMP_RET_ERRNO | errno & SECCOMP_RET_DATA, None, None),
        ("label", "program"),
    ]
    return _assemble(program)


# --- the interpreter ------------------------------------------------------------------------------

_U32 = 0xFFFFFFFF
_ALU: dict[int, Callable[[int, int], int]] = {
    0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
    0x30: lambda a, b: a // b, 0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b,
    0x60: lambda a, b: a << b if b < 32 else 0, 0x70: lambda a, b: a >> b if b < 32 else 0,
    0x90: lambda a, b: a % b, 0xA0: lambda a, b: a ^ b,
}
_JUMPS: dict[int, Callable[[int, int], bool]] = {
    0x10: lambda a, b: a == b, 0x20: lambda a, b: a > b, 0x30: lambda a, b: a >= b,
    0x40: lambda a, b: bool(a & b),
}


@functools.lru_cache(maxsize=4)
def _decoded(program: bytes) -> tuple[tuple[int, int, int, int], ...]:
    """A program's instructions, decoded once (the monitor consults one program per call)."""
    return tuple(_instructions(program))


def evaluate(program: bytes, data: bytes) -> int:
    """What ``program`` returns for one call, ``data`` being its ``struct seccomp_data``
    (SECCOMP_DATA): classic BPF run as the kernel runs a seccomp filter (the instructions
    seccomp accepts; 32-bit arithmetic; a division by zero returns 0, as in the kernel)."""
    rows = _decoded(program)
    a = x = 0
    memory = [0] * 16
    pc = 0
    while pc < len(rows):
        code, jt, jf, k = rows[pc]
        pc += 1
        kind = code & 0x07
        if kind == 0x06:  # RET
            return (a if code & 0x18 == 0x10 else k) & _U32
        if kind in (0x00, 0x01):  # LD, LDX
            mode = code & 0xE0
            if mode == 0x20 and kind == 0x00:
                if k % 4 or k + 4 > len(data):
                    raise ValueError(f"instruction {pc - 1}: load at {k} outside seccomp_data")
                value = struct.unpack_from("=I", data, k)[0]
            elif mode == 0x80:
                value = len(data)
            elif mode == 0x00:
                value = k
            elif mode == 0x60:
                value = memory[k & 15]
            else:
                raise ValueError(f"instruction {pc - 1}: load mode {mode:#x} is not seccomp's")
            if kind == 0x00:
                a = value
            else:
                x = value
        elif kind in (0x02, 0x03):  # ST, STX
            memory[k & 15] = a if kind == 0x02 else x
        elif kind == 0x04:  # ALU
            op = code & 0xF0
            if op == 0x80:
                a = -a & _U32
                continue
            operand = x if code & 0x08 else k
            if op in (0x30, 0x90) and operand == 0:
                return 0
            if op not in _ALU:
                raise ValueError(f"instruction {pc - 1}: ALU operation {op:#x}")
            a = _ALU[op](a, operand) & _U32
        elif kind == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
            elif op in _JUMPS:
                pc += jt if _JUMPS[op](a, x if code & 0x08 else k) else jf
            else:
                raise ValueError(f"instruction {pc - 1}: jump {op:#x}")
        else:  # MISC: TAX, TXA
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
    raise ValueError("the program ran past its end without a return")


def seccomp_data(nr: int, arch: int, ip: int, args: tuple[int, ...]) -> bytes:
    """A call as a seccomp filter sees it (struct seccomp_data)."""
    return SECCOMP_DATA.pack(nr, arch, ip, *(tuple(args) + (0,) * 6)[:6])
