"""The notify form of an enforced seccomp program, the stub for syscalls newer than libseccomp's
table, and the interpreter the violation monitor consults (nucleus.effects.seccomp_bpf). The
kernel runs the same programs in tests/kernel/test_seccomp_kernel.py and
tests/kernel/test_violation_stream.py."""

from __future__ import annotations

import struct

import pytest

from nucleus.config import seccomp_default as sd
from nucleus.effects import abi, seccomp
from nucleus.effects import seccomp_bpf as bpf

pytestmark = pytest.mark.requires("pyseccomp")

X86 = abi.architecture("x86_64")


class _Numbers(dict):
    """Syscall numbers by name, from libseccomp's table for x86_64."""

    def __missing__(self, name):
        import pyseccomp

        return pyseccomp.resolve_syscall(pyseccomp.Arch.X86_64, name)


NR = _Numbers()


if abi.architecture().machine != "x86_64":
    pytestmark = [pytestmark, pytest.mark.skip(reason="the numbers below are x86_64's; compiled for this machine")]


@pytest.fixture(scope="module")
def program():
    return seccomp.compile_profile(sd.default_profile(False, sd.DEFAULT_ARCH))


def run(program, name_or_nr, *args, arch=X86.audit_arch):
    nr = NR[name_or_nr] if isinstance(name_or_nr, str) else name_or_nr
    return bpf.evaluate(program, bpf.seccomp_data(nr, arch, 0, args))


def test_the_interpreter_reads_the_default_profile_as_the_kernel_does(program):
    assert run(program, "read", 0, 0, 0) == bpf.SECCOMP_RET_ALLOW
    assert run(program, "unshare", 0x10000000) == bpf.SECCOMP_RET_ERRNO | 1
    assert run(program, "socket", 16, 3, 9) == bpf.SECCOMP_RET_ERRNO | 97
    assert run(program, "socket", 2, 1, 0) == bpf.SECCOMP_RET_ALLOW
    assert run(program, "clone3") == bpf.SECCOMP_RET_ERRNO | 38
    assert run(program, "clone", 0x10000000 | 17) == bpf.SECCOMP_RET_ERRNO | 1
    assert run(program, "clone", 0x3D0F00) == bpf.SECCOMP_RET_ALLOW  # a thread
    assert run(program, "mprotect", 0, 4096, 7) == bpf.SECCOMP_RET_ERRNO | 1
    assert run(program, "ioctl", 0, 0xDEADBEEF00005401) == bpf.SECCOMP_RET_ALLOW  # TCGETS, 32 bits
    # Another ABI: i386 and x32 are killed.
    assert run(program, 20, arch=0x40000003) == bpf.SECCOMP_RET_KILL_PROCESS
    assert run(program, NR["read"] | X86.x32_syscall_bit) == bpf.SECCOMP_RET_KILL_PROCESS


def test_calls_newer_than_libseccomp_answer_enosys(program):
    import pyseccomp

    known = [n for n in range(1024) if _known(pyseccomp, n)]
    assert run(program, max(known) + 1) == bpf.SECCOMP_RET_ERRNO | 38
    assert run(program, max(known) + 40) == bpf.SECCOMP_RET_ERRNO | 38
    stub = bpf.newer_syscalls_stub(450, 38, X86)
    assert bpf.evaluate(stub + _ret(bpf.SECCOMP_RET_ALLOW), bpf.seccomp_data(451, X86.audit_arch, 0, ())) == (
        bpf.SECCOMP_RET_ERRNO | 38)
    assert bpf.evaluate(stub + _ret(bpf.SECCOMP_RET_ALLOW), bpf.seccomp_data(450, X86.audit_arch, 0, ())) == (
        bpf.SECCOMP_RET_ALLOW)
    # x32 and foreign ABIs go on to the program (which kills them), never to ENOSYS.
    assert bpf.evaluate(stub + _ret(7), bpf.seccomp_data(0x40000000 | 999, X86.audit_arch, 0, ())) == 7
    assert bpf.evaluate(stub + _ret(7), bpf.seccomp_data(999, 0x40000003, 0, ())) == 7


def _known(pyseccomp, nr):
    try:
        pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, nr)
    except ValueError:
        return False
    return True


def _ret(k):
    return struct.pack("=HBBI", bpf.BPF_RET_K, 0, 0, k)


def test_the_notify_form_hands_over_refusals_only(program):
    notify = bpf.notify_filter(program, arch=X86)
    for call in (("read", 0), ("socket", 2, 1, 0), ("clone", 0x3D0F00)):
        assert run(notify, *call) == bpf.SECCOMP_RET_ALLOW
    for call in (("unshare", 0x10000000), ("socket", 16, 3, 9), ("mprotect", 0, 4096, 7)):
        assert run(notify, *call) == bpf.SECCOMP_RET_USER_NOTIF
    # ENOSYS stays in the kernel (a fallback, not a refusal); other ABIs are killed there.
    assert run(notify, "clone3") == bpf.SECCOMP_RET_ERRNO | 38
    assert run(notify, 20, arch=0x40000003) == bpf.SECCOMP_RET_KILL_PROCESS
    assert run(notify, NR["read"] | X86.x32_syscall_bit) == bpf.SECCOMP_RET_KILL_PROCESS


@pytest.mark.parametrize("action", ["kill", "log"])
def test_kills_and_logs_are_handed_over_too(action):
    program = seccomp.compile_profile(sd.default_profile(False, default_action=action))
    refused = run(program, "unshare", 0x10000000) if action == "kill" else run(program, "msgget", 0, 0)
    assert refused == (bpf.SECCOMP_RET_KILL_PROCESS if action == "kill" else bpf.SECCOMP_RET_LOG)
    notify = bpf.notify_filter(program, arch=X86)
    assert run(notify, "unshare", 0x10000000) == bpf.SECCOMP_RET_USER_NOTIF
    assert run(notify, "msgget", 0, 0) == bpf.SECCOMP_RET_USER_NOTIF
    assert run(notify, 20, arch=0x40000003) == bpf.SECCOMP_RET_KILL_PROCESS


def test_the_handoff_is_exempt_by_both_arguments(program):
    notify = bpf.notify_filter(program, (7, 0x7F00_1234_5678), X86)
    sendmsg = NR["sendmsg"]
    data = bpf.seccomp_data
    assert bpf.evaluate(notify, data(sendmsg, X86.audit_arch, 0, (7, 0x7F00_1234_5678))) == bpf.SECCOMP_RET_ALLOW
    # sendmsg itself is allowed by the default profile anyway; a profile that refused it would
    # still let exactly the handoff through.
    refusing = bpf.notify_filter(_ret(bpf.SECCOMP_RET_ERRNO | 1), (7, 0x7F00_1234_5678), X86)
    assert bpf.evaluate(refusing, data(sendmsg, X86.audit_arch, 0, (7, 0x7F00_1234_5678))) == bpf.SECCOMP_RET_ALLOW
    assert bpf.evaluate(refusing, data(sendmsg, X86.audit_arch, 0, (7, 0x7F00_1234_5679))) == (
        bpf.SECCOMP_RET_USER_NOTIF)
    assert bpf.evaluate(refusing, data(sendmsg, X86.audit_arch, 0, (8, 0x7F00_1234_5678))) == (
        bpf.SECCOMP_RET_USER_NOTIF)


def test_an_aarch64_notify_form_checks_its_own_arch_and_has_no_x32_guard():
    arm = abi.architecture("aarch64")
    notify = bpf.notify_filter(_ret(bpf.SECCOMP_RET_ERRNO | 1), arch=arm)
    assert bpf.evaluate(notify, bpf.seccomp_data(1 << 30, arm.audit_arch, 0, ())) == bpf.SECCOMP_RET_USER_NOTIF
    assert bpf.evaluate(notify, bpf.seccomp_data(0, X86.audit_arch, 0, ())) == bpf.SECCOMP_RET_KILL_PROCESS


def _insn(code, k, jt=0, jf=0):
    return struct.pack("=HBBI", code, jt, jf, k)


def test_the_interpreter_runs_the_rest_of_seccomp_s_instructions():
    data = bpf.seccomp_data(5, 0, 0, (0x10, 0x3))
    program = b"".join([
        _insn(0x20, 16),  # ld arg0 (low half)
        _insn(0x07, 0),  # tax
        _insn(0x00, 2),  # ld #2
        _insn(0x0C, 0),  # add x -> 0x12
        _insn(0x02, 3),  # st M[3]
        _insn(0x61, 3),  # ldx M[3]
        _insn(0x54, 0xF0),  # and #0xf0 -> 0x10
        _insn(0x45, 0x10, 0, 1),  # jset #0x10 -> next
        _insn(0x16, 0),  # ret a
        _insn(0x06, 0),
    ])
    assert bpf.evaluate(program, data) == 0x10
    assert bpf.evaluate(_insn(0x00, 1) + _insn(0x34, 0) + _insn(0x16, 0), data) == 0  # a / 0
    with pytest.raises(ValueError, match="outside seccomp_data"):
        bpf.evaluate(_insn(0x20, 64) + _insn(0x06, 0), data)
    with pytest.raises(ValueError, match="past its end"):
        bpf.evaluate(_insn(0x00, 1), data)
