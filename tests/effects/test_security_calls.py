"""The confinement effects against the recording fake of nucleus.effects.libc: the capability
drop, Landlock, seccomp loading (through the handlers the setup process runs) and rlimits, as the
calls the kernel would receive, and a failed call as the Fail event the supervisor receives. Runs
as any user; tests/kernel proves the same on the kernel."""

from __future__ import annotations

import errno
import hashlib
import resource
import struct

import pytest

from nucleus import linux
from nucleus import vocab as v
from nucleus.config import landlock_default as ll
from nucleus.effects import abi, caps, handlers, landlock, libc, rlimits, setup
from tests.fakes.libc import fake_libc_fixture, syscall_error  # noqa: F401 - the fixture
from tests.fakes.serving import serve_batch

RULESET = 7  # the fd the fake's landlock_create_ruleset hands out
ALLOW_ALL = bytes.fromhex("060000000000ff7f")  # one instruction: return SECCOMP_RET_ALLOW
SHA = hashlib.sha256(ALLOW_ALL).hexdigest()


def prctl_call(option: int, arg2: int = 0) -> tuple[str, tuple[int, ...]]:
    return ("prctl", (option, arg2, 0, 0, 0))


NO_NEW_PRIVS = prctl_call(linux.PR_SET_NO_NEW_PRIVS, 1)


def run(intent: v.Intent, programs: dict[str, bytes] | None = None) -> None:
    handlers.child_handler(intent)(setup.SetupProcess(programs=programs or {}), intent)


# --- capabilities ---------------------------------------------------------------------------------


@pytest.fixture
def bounding(fake_libc, tmp_path, monkeypatch):
    """A kernel whose last capability is ``last`` and whose bounding set lacks ``absent``."""
    def kernel(last: int, absent: frozenset[int] = frozenset()) -> None:
        path = tmp_path / "cap_last_cap"
        path.write_text(f"{last}\n")
        monkeypatch.setattr(caps, "CAP_LAST_CAP_PATH", str(path))

        def prctl(option, arg2, *_):
            if option == linux.PR_CAPBSET_READ:
                assert 0 <= arg2 <= last, f"asked about capability {arg2} above cap_last_cap"
                return int(arg2 not in absent)
            return 0
        fake_libc.answer("prctl", prctl)
    return kernel


def test_drop_capabilities_sequence(fake_libc, bounding):
    """Each capability not kept is read from the bounding set and dropped if there (one already
    absent is not dropped again: that would need CAP_SETPCAP for nothing); then the ambient set
    is cleared, capset leaves only the kept ones, and no_new_privs is set."""
    bounding(last=5, absent=frozenset({3}))
    run(v.DropCapabilities(keep=("CAP_CHOWN", "kill")))  # 0 and 5
    kept = 1 << 0 | 1 << 5
    assert fake_libc.calls == [
        prctl_call(linux.PR_CAPBSET_READ, 1), prctl_call(linux.PR_CAPBSET_DROP, 1),
        prctl_call(linux.PR_CAPBSET_READ, 2), prctl_call(linux.PR_CAPBSET_DROP, 2),
        prctl_call(linux.PR_CAPBSET_READ, 3),
        prctl_call(linux.PR_CAPBSET_READ, 4), prctl_call(linux.PR_CAPBSET_DROP, 4),
        prctl_call(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL),
        ("capset", (kept, kept, 0)),
        prctl_call(linux.PR_SET_DUMPABLE, 0),  # again: a run's setup process was dumpable since become_root
        NO_NEW_PRIVS,
    ]


def test_drop_everything_reaches_cap_last_cap(fake_libc, bounding):
    bounding(last=40)
    run(v.JoinDropCapabilities(keep=()))
    drops = [args[1] for name, args in fake_libc.calls
             if name == "prctl" and args[0] == linux.PR_CAPBSET_DROP]
    assert drops == list(range(41))
    assert fake_libc.calls[-3:] == [("capset", (0, 0, 0)), prctl_call(linux.PR_SET_DUMPABLE, 0), NO_NEW_PRIVS]


def test_a_failed_capset_is_the_sec_fail_event(fake_libc, bounding):
    bounding(last=2)
    fake_libc.fail("capset", errno.EPERM)
    events, _ = serve_batch((v.DropCapabilities(keep=("CAP_NET_BIND_SERVICE",)),
                             v.LoadSeccomp(program_sha256=SHA)), programs={SHA: ALLOW_ALL})
    assert events == [v.SecFailed(step="caps", errno=errno.EPERM, message=(
        "capset(effective=0x400, permitted=0x400, inheritable=0x0) failed: "
        "EPERM (Operation not permitted)"))]


# --- seccomp --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("log_denied", "flags"),
                         [(False, 0), (True, abi.SECCOMP_FILTER_FLAG_LOG)])
def test_load_seccomp_sets_no_new_privs_then_installs_the_program(fake_libc, log_denied, flags):
    run(v.LoadSeccomp(program_sha256=SHA, log_denied=log_denied), programs={SHA: ALLOW_ALL})
    assert fake_libc.calls == [NO_NEW_PRIVS, ("seccomp_set_mode_filter", (ALLOW_ALL, flags))]


def test_load_seccomp_of_a_program_never_compiled_makes_no_call(fake_libc):
    with pytest.raises(OSError) as info:
        run(v.JoinLoadSeccomp(program_sha256="ab" * 32), programs={SHA: ALLOW_ALL})
    assert info.value.errno == errno.ENOENT
    assert setup.describe(info.value) == (
        "no compiled seccomp program abababababab (ENOENT)")
    assert fake_libc.calls == []


def test_a_refused_seccomp_names_the_call(fake_libc):
    fake_libc.fail("seccomp_set_mode_filter", errno.EACCES)
    with pytest.raises(OSError) as info:
        run(v.LoadSeccomp(program_sha256=SHA, log_denied=True), programs={SHA: ALLOW_ALL})
    assert setup.describe(info.value) == (
        "seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, <1 instructions>) failed: "
        "EACCES (Permission denied)")


# --- Landlock -------------------------------------------------------------------------------------


def _landlock(fake, abi_version: int) -> None:
    fake.answer("landlock_create_ruleset", lambda attr, size, flags: (
        abi_version if flags == abi.LANDLOCK_CREATE_RULESET_VERSION else RULESET))


@pytest.mark.parametrize(
    ("abi_version", "size", "scoped"),
    [(1, 8, 0), (3, 8, 0), (4, 16, 0), (5, 16, 0),
     (6, 24, ll.SCOPE_ABSTRACT_UNIX_SOCKET | ll.SCOPE_SIGNAL),
     (7, 24, ll.SCOPE_ABSTRACT_UNIX_SOCKET | ll.SCOPE_SIGNAL)],
)
def test_the_ruleset_attr_is_the_size_the_abi_knows(fake_libc, abi_version, size, scoped):
    """A kernel reads the prefix of struct landlock_ruleset_attr it knows: handled_access_fs,
    then handled_access_net (ABI 4), then scoped (ABI 6)."""
    _landlock(fake_libc, abi_version)
    landlock.restrict([], abi=abi_version)
    ((attr, attr_size, flags),) = fake_libc.of("landlock_create_ruleset")
    assert (len(attr), attr_size, flags) == (size, size, 0)
    fields = struct.unpack(f"={size // 8}Q", attr)
    assert fields[0] == ll.fs_rights_for_abi(abi_version)  # every right this ABI knows
    assert fields[1:] == ((0,) if size == 16 else (0, scoped) if size == 24 else ())
    assert fake_libc.calls[1:] == [NO_NEW_PRIVS, ("landlock_restrict_self", (RULESET, 0)),
                                   ("close", (RULESET,))]


def test_restrict_adds_one_rule_per_existing_path(fake_libc, tmp_path):
    """Rules in order; a missing path is skipped; on a file the rights are cut to those a file
    can carry, and a rule left with none is skipped; then no_new_privs, restrict_self, and the
    ruleset fd is closed."""
    (tmp_path / "usr").mkdir()
    (tmp_path / "app.sh").write_text("#!/bin/sh\n")
    (tmp_path / "tmp").mkdir()
    _landlock(fake_libc, 5)
    done = landlock.restrict([
        (str(tmp_path / "usr"), {"read", "execute"}),
        (str(tmp_path / "app.sh"), {"read", "execute", "create"}),  # create: a directory right
        (str(tmp_path / "gone"), {"read"}),
        (str(tmp_path / "app.sh"), {"create", "remove"}),  # nothing left on a file
        (str(tmp_path / "tmp"), {"read", "write", "create", "remove", "ioctl_dev"}),
    ], abi=5)
    assert fake_libc.names() == ["landlock_create_ruleset", "landlock_add_rule",
                                 "landlock_add_rule", "landlock_add_rule", "prctl",
                                 "landlock_restrict_self", "close"]
    rules = fake_libc.of("landlock_add_rule")
    assert all((fd, kind, flags) == (RULESET, abi.LANDLOCK_RULE_PATH_BENEATH, 0)
               for fd, kind, _, flags in rules)
    granted = [struct.unpack("=Qi", attr)[0] for _, _, attr, _ in rules]
    assert granted == [
        ll.READ_FILE | ll.READ_DIR | ll.EXECUTE,
        ll.READ_FILE | ll.EXECUTE,
        ll.access_mask({"read", "write", "create", "remove", "ioctl_dev"}),
    ]
    assert all(struct.unpack("=Qi", attr)[1] >= 0 for _, _, attr, _ in rules)  # an O_PATH fd
    assert fake_libc.calls[-3:] == [NO_NEW_PRIVS, ("landlock_restrict_self", (RULESET, 0)),
                                    ("close", (RULESET,))]
    assert [path for path, _ in done.skipped] == [str(tmp_path / "gone"),
                                                   str(tmp_path / "app.sh")]


def test_rights_the_abi_lacks_are_masked_off(fake_libc, tmp_path):
    _landlock(fake_libc, 1)
    landlock.restrict([(str(tmp_path), {"read", "write", "ioctl_dev"})], abi=1)
    ((_, _, attr, _),) = fake_libc.of("landlock_add_rule")
    assert struct.unpack("=Qi", attr)[0] == ll.READ_FILE | ll.READ_DIR | ll.WRITE_FILE


def test_a_failed_restrict_self_still_closes_the_ruleset(fake_libc, tmp_path):
    _landlock(fake_libc, 3)
    fake_libc.fail("landlock_restrict_self", errno.EPERM)
    with pytest.raises(abi.SyscallError, match=r"^landlock_restrict_self\(7, 0\) failed: EPERM"):
        landlock.restrict([(str(tmp_path), {"read"})], abi=3)
    assert fake_libc.calls[-1] == ("close", (RULESET,))


def test_apply_landlock_asks_the_abi_once_then_restricts(fake_libc, tmp_path):
    _landlock(fake_libc, 4)
    run(v.ApplyLandlock(rules=((str(tmp_path), ("read",)),), min_abi=2))
    assert fake_libc.calls[0] == ("landlock_create_ruleset",
                                  (None, 0, abi.LANDLOCK_CREATE_RULESET_VERSION))
    assert fake_libc.names() == ["landlock_create_ruleset", "landlock_create_ruleset",
                                 "landlock_add_rule", "prctl", "landlock_restrict_self", "close"]
    assert len(fake_libc.of("landlock_create_ruleset")[1][0]) == 16  # the ABI 4 struct


@pytest.mark.parametrize(
    ("kernel", "min_abi", "message"),
    [
        (2, 3, "Landlock ABI 2 is below the required 3"),
        (errno.ENOSYS, 0, "Landlock ABI 0 is below the required 1"),  # no Landlock at all
        (errno.EOPNOTSUPP, 0, "Landlock ABI 0 is below the required 1"),  # LSM not enabled
    ],
    ids=["too-old", "enosys", "eopnotsupp"],
)
def test_apply_landlock_refuses_a_kernel_below_the_required_abi(fake_libc, kernel, min_abi,
                                                                 message):
    if min_abi:
        _landlock(fake_libc, kernel)
    else:
        fake_libc.fail("landlock_create_ruleset", kernel)
    with pytest.raises(OSError) as info:
        run(v.JoinApplyLandlock(rules=(("/", ("read",)),), min_abi=min_abi))
    assert (info.value.errno, info.value.strerror) == (errno.EOPNOTSUPP, message)
    assert fake_libc.names() == ["landlock_create_ruleset"]  # nothing restricted


def test_an_abi_query_refused_otherwise_is_the_error(fake_libc):
    fake_libc.fail("landlock_create_ruleset", errno.EPERM)
    with pytest.raises(abi.SyscallError, match=r"^landlock_create_ruleset\(NULL, 0, 1\) failed"):
        run(v.ApplyLandlock(rules=(), min_abi=1))


# --- rlimits --------------------------------------------------------------------------------------


def test_rlimits_are_capped_at_the_hard_limit(fake_libc):
    hard = {resource.RLIMIT_NOFILE: 4096, resource.RLIMIT_NPROC: resource.RLIM_INFINITY,
            resource.RLIMIT_MEMLOCK: 8192}
    fake_libc.answer("getrlimit", lambda res: (1024, hard[res]))
    applied = rlimits.apply(nofile=1 << 20, nproc=512, memlock=65536)
    assert fake_libc.calls == [
        ("getrlimit", (resource.RLIMIT_NOFILE,)),
        ("setrlimit", (resource.RLIMIT_NOFILE, 4096, 4096)),
        ("getrlimit", (resource.RLIMIT_NPROC,)),
        ("setrlimit", (resource.RLIMIT_NPROC, 512, 512)),
        ("getrlimit", (resource.RLIMIT_MEMLOCK,)),
        ("setrlimit", (resource.RLIMIT_MEMLOCK, 8192, 8192)),
    ]
    assert applied == {"nofile": (4096, 4096), "nproc": (512, 512), "memlock": (8192, 8192)}


def test_a_refused_rlimit_names_it(fake_libc):
    fake_libc.answer("getrlimit", lambda res: (1024, resource.RLIM_INFINITY))
    fake_libc.fail("setrlimit", errno.EPERM, nth=2)
    with pytest.raises(abi.SyscallError) as info:
        rlimits.apply(nofile=1024, nproc=512, memlock=65536)
    assert str(info.value) == (
        "setrlimit(RLIMIT_NPROC, {512, 512}) failed: EPERM (Operation not permitted)")


def test_syscall_error_helper_matches_the_fake(fake_libc):
    """The helper the tests script errors with builds what a scripted failure raises."""
    fake_libc.fail("setns", errno.EINVAL)
    with pytest.raises(abi.SyscallError) as info:
        libc.setns(3, linux.CLONE_NEWNS)
    assert str(info.value) == str(syscall_error("setns", (3, linux.CLONE_NEWNS), errno.EINVAL))
