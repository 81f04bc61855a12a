"""The trace filter of seccomp trace mode, as classic BPF: a small assembler and the program.

The filter returns ``SECCOMP_RET_USER_NOTIF`` for every native syscall and kills the process on
any other ABI, exactly as an enforced profile naming only the native architecture would: on
x86_64 that is i386 (``int 0x80``) and x32 (a native number with ``__X32_SYSCALL_BIT`` set), on
aarch64 the 32-bit arm ABI. The architecture's facts (its AUDIT_ARCH value, whether it has an
x32 bit, the number of sendmsg) come from ``nucleus.effects.abi``'s table for the machine.

The one exemption, the handoff's ``sendmsg``, is described in ``nucleus.effects.seccomp_handoff``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from nucleus.effects import abi

if TYPE_CHECKING:
    from typing import Literal

    # (code, k, jump_true_label, jump_false_label); a label of None: the next instruction
    _Insn = tuple[int, int, str | None, str | None]
    _Label = tuple[Literal["label"], str]

# --- classic BPF ---------------------------------------------------------------------------------
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ALLOW = 0x7FFF0000
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
    program: list[_Insn | _Label] = [
        *_eq(_ARCH, arch.audit_arch, "kill"),
        (BPF_LD_W_ABS, _NR, None, None),
    ]
    if arch.x32_syscall_bit is not None:
        program.append((BPF_JGE_K, arch.x32_syscall_bit, "kill", None))
    if exempt is not None:
        fd, address = exempt
        program += [
            (BPF_JEQ_K, arch.syscalls["sendmsg"], None, "notify"),
            *_eq(_arg_lo(0), fd & 0xFFFFFFFF, "notify"),
            *_eq(_arg_hi(0), fd >> 32 & 0xFFFFFFFF, "notify"),
            *_eq(_arg_lo(1), address & 0xFFFFFFFF, "notify"),
            *_eq(_arg_hi(1), address >> 32 & 0xFFFFFFFF, "notify"),
            (BPF_RET_K, SECCOMP_RET_ALLOW, None, None),
        ]
    program += [
        ("label", "notify"),
        (BPF_RET_K, SECCOMP_RET_USER_NOTIF, None, None),
        ("label", "kill"),
        (BPF_RET_K, SECCOMP_RET_KILL_PROCESS, None, None),
    ]
    code = _assemble(program)
    if native and exempt is None:
        _cached_filter = code
    return code
