"""Security policy files through `nucleus run`, on the real kernel, each showing from inside the
container both what the policy allows and what it denies:

- Docker's published default seccomp profile runs ordinary programs unchanged and denies what
  Docker denies (EPERM, its default action);
- a profile recorded with `--seccomp-mode trace` and made by `nucleus seccomp generate` runs the
  traced program and kills it (SIGSYS, exit 159) on a syscall it never made;
- sha256 pins: the right pin runs, a wrong, malformed or orphaned one refuses to start (exit 125);
- a capability policy keeping CAP_CHOWN alone;
- a Landlock policy allowing one directory of the context and denying its sibling.

Every test works in a Scope of its own (tests.helpers): a private state directory and cgroup
parent, so other containers on the machine neither hide nor fake a leftover.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from nucleus.config.policy.seccomp_profile import INIT_TIMED_CALLS
from tests.helpers import (
    DOCKER_PROFILE,
    NEEDS_DOCKER_PROFILE,
    SANDBOX_PYTHON,
    SIGSYS_EXIT,
    Scope,
    describe,
)

SANDBOX = pytest.mark.requires("root", "userns", "seccomp", "landlock")

EPERM, EFAULT, EINVAL, ENOSYS = 1, 14, 22, 38
UNKNOWN_TO_LIBSECCOMP = "nucleus: warning: seccomp profile: syscalls unknown to libseccomp "


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def docker_profile() -> str:
    assert DOCKER_PROFILE.is_file(), f"Docker's default profile is missing: {DOCKER_PROFILE}"
    return str(DOCKER_PROFILE)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def only_libseccomp_warnings(stderr: str) -> bool:
    """True when stderr holds nothing but the (non-fatal) warning about syscall names
    libseccomp does not know."""
    return all(line.startswith(UNKNOWN_TO_LIBSECCOMP) for line in stderr.splitlines())


def ok(result, stdout: str | None = None) -> None:
    assert result.returncode == 0, describe(result)
    if stdout is not None:
        assert result.stdout == stdout, describe(result)


# --- Docker's default profile -----------------------------------------------------------------

# Ordinary programs: a shell, ls, a pipe, python with a thread and a child process (glibc tries
# clone3 first, which Docker answers with ENOSYS, then falls back to clone).
ORDINARY = r"""
ls /
echo 'hello, world' | tr a-z A-Z | wc -c
/usr/bin/python3 -c '
import subprocess, threading
out = []
t = threading.Thread(target=lambda: out.append(6 * 7))
t.start(); t.join()
print("thread", out[0])
print(subprocess.run(["/bin/echo", "child"], capture_output=True, text=True).stdout, end="")
'
id -u
"""


@SANDBOX
@NEEDS_DOCKER_PROFILE
def test_docker_default_profile_runs_ordinary_programs_unchanged(scope):
    plain = scope.nucleus(*scope.run_args(), "--", *scope.sh(ORDINARY))
    ok(plain)
    docker = scope.nucleus(*scope.run_args("--seccomp-profile", docker_profile()), "--",
                           *scope.sh(ORDINARY))
    ok(docker)
    assert docker.stdout == plain.stdout, describe(docker)
    lines = docker.stdout.splitlines()
    assert "context" in lines and "usr" in lines, describe(docker)
    assert lines[-4:] == ["13", "thread 42", "child", "0"], describe(docker)
    assert only_libseccomp_warnings(docker.stderr), describe(docker)
    scope.assert_clean()


# Raw syscalls through ctypes: [return value, errno].
PROBE = r"""
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a) for a in args))
    return [ret, ctypes.get_errno() if ret == -1 else 0]
CLONE_NEWUSER = 0x10000000
print(json.dumps({
    "getppid": call(110),
    "unshare": call(272, CLONE_NEWUSER),
    "keyctl": call(250, 0, 0, 0, 0, 0),
    "mount": call(165, 0, 0, 0, 0, 0),
    "clone3": call(435, 0, 0),
}))
with open("/proc/self/status") as f:
    print([l.split()[1] for l in f if l.startswith("Seccomp:")][0])
"""


def probe(scope: Scope, profile: str) -> tuple[dict, str]:
    result = scope.nucleus(*scope.run_args("--seccomp-profile", profile), "--",
                           *scope.python(PROBE))
    ok(result)
    assert only_libseccomp_warnings(result.stderr), describe(result)
    first, mode = result.stdout.splitlines()
    return json.loads(first), mode


@SANDBOX
@NEEDS_DOCKER_PROFILE
def test_docker_default_profile_denies_what_docker_denies(scope, tmp_path):
    calls, mode = probe(scope, docker_profile())
    assert mode == "2"  # a seccomp filter is in force
    assert calls["getppid"] == [1, 0]  # allowed: the parent is the container's init
    # Denied with Docker's default action, ERRNO(EPERM); clone3 with ENOSYS, as Docker does.
    assert calls["unshare"] == [-1, EPERM]
    assert calls["keyctl"] == [-1, EPERM]
    assert calls["mount"] == [-1, EPERM]
    assert calls["clone3"] == [-1, ENOSYS]

    # The same calls under a profile that allows everything reach the kernel: the EPERMs above
    # are the profile's.
    allow_all = tmp_path / "allow-all.json"
    allow_all.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    calls, mode = probe(scope, str(allow_all))
    assert mode == "2"
    assert calls["unshare"] == [0, 0]  # a nested user namespace is allowed to anyone
    assert calls["keyctl"] == [-1, EINVAL]  # no keyring 0
    assert calls["mount"] == [-1, EFAULT]  # NULL arguments
    assert calls["clone3"] == [-1, EINVAL]  # size 0
    scope.assert_clean()


@pytest.mark.requires("root", "userns", "seccomp", "landlock", "pyseccomp")
@NEEDS_DOCKER_PROFILE
def test_syscalls_unknown_to_libseccomp_are_a_warning_on_every_run(scope):
    import pyseccomp

    from nucleus.config.policy import seccomp_profile

    profile = seccomp_profile.parse_seccomp_profile(DOCKER_PROFILE.read_bytes(), str(DOCKER_PROFILE),
                                                    kernel=os.uname().release)
    names = [n for rule in profile["syscalls"] for n in rule["names"]]
    unknown = [n for n in dict.fromkeys(names)
               if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, n) == -1]
    if not unknown:
        pytest.skip("this libseccomp knows every syscall name of Docker's profile")
    # The second run finds the program in the cache: the user must still be told what the
    # filter leaves out.
    for attempt in ("first", "second"):
        result = scope.nucleus(*scope.run_args("--seccomp-profile", docker_profile()), "--",
                               "/bin/echo", "ran")
        ok(result, "ran\n")
        warnings = result.stderr.splitlines()
        assert len(warnings) == 1 and warnings[0].startswith(UNKNOWN_TO_LIBSECCOMP), \
            f"{attempt} run:\n{describe(result)}"
        for name in unknown:
            assert repr(name) in warnings[0], f"{attempt} run: {name!r} not named\n{describe(result)}"
    scope.assert_clean()


# --- trace, generate, enforce -------------------------------------------------------------------

# Its only difference between two runs is one mkdir(2): given "-", it never makes that call.
MKDIR_SCRIPT = (
    "import os, sys\n"
    "os.write(1, b'started\\n')\n"
    "if sys.argv[2] != '-':\n"
    "    os.mkdir(sys.argv[2])\n"
    "os.write(1, b'done\\n')\n"
)


def traced(scope: Scope, tmp_path, argv: list[str], name: str):
    log = tmp_path / f"{name}.ndjson"
    result = scope.nucleus(*scope.run_args("--seccomp-mode", "trace", "--seccomp-log", str(log)),
                           "--", *argv)
    ok(result)
    assert result.stderr == "", describe(result)
    lines = log.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert "summary" in events[-1], f"the trace was cut short:\n{lines[-3:]}"
    seen = {e["syscall"] for e in events[:-1]}
    assert events[-1]["summary"]["syscalls"] == len(seen)
    return result, log, seen


def generate(scope: Scope, log: Path, out: Path) -> bytes:
    result = scope.nucleus("seccomp", "generate", str(log), "-o", str(out))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), describe(result)
    return out.read_bytes()


@SANDBOX
def test_trace_generate_enforce_round_trip(scope, tmp_path):
    program = [SANDBOX_PYTHON, "-c", MKDIR_SCRIPT, scope.marker]
    run, log, seen = traced(scope, tmp_path, [*program, "-"], "python")
    assert run.stdout == "started\ndone\n"
    assert "execve" in seen and "write" in seen
    assert "mkdir" not in seen and "mkdirat" not in seen

    profile_path = tmp_path / "python.seccomp.json"
    data = generate(scope, log, profile_path)
    again = generate(scope, log, tmp_path / "again.json")
    assert again == data, "seccomp generate is not deterministic"
    profile = json.loads(data)
    assert profile["defaultAction"] == "SCMP_ACT_KILL_PROCESS"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    allowed = [n for rule in profile["syscalls"] for n in rule["names"]]
    assert [rule["action"] for rule in profile["syscalls"]] == ["SCMP_ACT_ALLOW"]
    assert allowed == sorted(seen | set(INIT_TIMED_CALLS)), (
        "the profile allows exactly the traced syscalls and the init's timed ones, sorted")
    assert list(profile) == sorted(profile)

    enforced = ["--seccomp-profile", str(profile_path)]
    # The traced program runs under its profile...
    ok(scope.nucleus(*scope.run_args(*enforced), "--", *program, "-"), "started\ndone\n")
    # ...and is killed at the first syscall the trace never saw.
    killed = scope.nucleus(*scope.run_args(*enforced), "--", *program, "/tmp/new")
    assert killed.returncode == SIGSYS_EXIT, describe(killed)
    assert killed.stdout == "started\n", describe(killed)
    # Without the generated profile the same mkdir is allowed.
    ok(scope.nucleus(*scope.run_args(), "--", *program, "/tmp/new"), "started\ndone\n")
    scope.assert_clean()


@SANDBOX
def test_round_trip_of_ls(scope, tmp_path):
    ls = ["/bin/ls", "/"]
    run, log, seen = traced(scope, tmp_path, ls, "ls")
    profile_path = tmp_path / "ls.seccomp.json"
    generate(scope, log, profile_path)
    enforced = scope.run_args("--seccomp-profile", str(profile_path))
    ok(scope.nucleus(*enforced, "--", *ls), run.stdout)
    assert "mkdir" not in seen
    killed = scope.nucleus(*enforced, "--", "/bin/mkdir", "/tmp/new")
    assert killed.returncode == SIGSYS_EXIT, describe(killed)
    ok(scope.nucleus(*scope.run_args(), "--", "/bin/mkdir", "/tmp/new"), "")
    scope.assert_clean()


@SANDBOX
def test_a_profile_that_would_kill_the_init_is_refused_before_anything_starts(scope, tmp_path):
    sleep = ["/bin/sleep", "0.3"]  # outlives the init's first look: its init waits with rt_sigtimedwait
    _, log, _ = traced(scope, tmp_path, sleep, "sleep")
    generated = tmp_path / "sleep.seccomp.json"
    profile = json.loads(generate(scope, log, generated))
    ok(scope.nucleus(*scope.run_args("--seccomp-profile", str(generated)), "--", *sleep), "")
    names = profile["syscalls"][0]["names"]
    profile["syscalls"][0]["names"] = [n for n in names if n not in INIT_TIMED_CALLS]
    stripped = tmp_path / "stripped.seccomp.json"
    stripped.write_text(json.dumps(profile))
    refused = scope.nucleus(*scope.run_args("--seccomp-profile", str(stripped)), "--", *sleep)
    assert (refused.returncode, refused.stdout) == (125, ""), describe(refused)
    lines = refused.stderr.splitlines()
    assert lines[0] == (f"error: --seccomp-profile {str(stripped)!r}: it kills kill and rt_sigtimedwait, "
                        "which the container's init calls to wait for the workload and to forward "
                        "signals to it: the container would be killed at random, with its init"), describe(refused)
    assert lines[1].startswith('hint: allow them with a rule {"names": ["kill", "rt_sigtimedwait"]'), describe(refused)
    scope.assert_clean()


# --- sha256 pins ----------------------------------------------------------------------------------

CAPS_CHOWN = '# keep one harmless capability\n[bounding]\nkeep = ["CHOWN"]\n'

LANDLOCK_SIBLINGS = """\
min_abi = 1

[[rules]]
path = "/"
access = ["readdir"]

[[rules]]
path = "/usr"
access = ["read", "execute"]

[[rules]]
path = "/bin"
access = ["read", "execute"]

[[rules]]
path = "/lib"
access = ["read", "execute"]

[[rules]]
path = "/lib64"
access = ["read", "execute"]

[[rules]]
path = "/context/allowed"
access = ["read"]

[[rules]]
path = "/dev/null"
access = ["read", "write"]
"""


@pytest.fixture
def policy_files(tmp_path) -> dict[str, Path]:
    caps = tmp_path / "chown.caps.toml"
    caps.write_text(CAPS_CHOWN)
    landlock = tmp_path / "siblings.landlock.toml"
    landlock.write_text(LANDLOCK_SIBLINGS)
    # Docker's profile is read only by the tests that carry NEEDS_DOCKER_PROFILE.
    return {"seccomp": DOCKER_PROFILE, "caps": caps, "landlock": landlock}


FLAGS = {"seccomp": "--seccomp-profile", "caps": "--caps-policy", "landlock": "--landlock-policy"}
KINDS = [pytest.param("seccomp", marks=NEEDS_DOCKER_PROFILE), "caps", "landlock"]


@pytest.fixture
def siblings(tmp_path) -> Path:
    """A context with two sibling directories, each holding a file."""
    ctx = tmp_path / "ctx"
    for name in ("allowed", "denied"):
        (ctx / name).mkdir(parents=True)
        (ctx / name / "file").write_text(f"{name} content\n")
    return ctx


@SANDBOX
@NEEDS_DOCKER_PROFILE
def test_correct_pins_run(scope, policy_files, siblings):
    options = ["--context", str(siblings)]
    for kind, path in policy_files.items():
        pin = sha256(path)
        # Either case is accepted, with blanks around it.
        pin = pin.upper() if kind == "caps" else f" {pin} " if kind == "landlock" else pin
        options += [FLAGS[kind], str(path), f"{FLAGS[kind]}-sha256", pin]
    result = scope.nucleus(*scope.run_args(*options), "--", "/bin/sh", "-c",
                           "cat /context/allowed/file; cat /context/denied/file || echo denied")
    # Every pinned file was accepted, and the Landlock policy is in force.
    ok(result, "allowed content\ndenied\n")
    assert "Permission denied" in result.stderr, describe(result)
    scope.assert_clean()


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_pin_refuses_and_prints_both_hashes(scope, policy_files, kind):
    path = policy_files[kind]
    actual = sha256(path)
    wrong = hashlib.sha256(b"not the policy").hexdigest()
    result = scope.nucleus(*scope.run_args(FLAGS[kind], str(path), f"{FLAGS[kind]}-sha256", wrong),
                           "--", "/bin/echo", "ran")
    assert result.returncode == 125, describe(result)
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {FLAGS[kind]}-sha256: {str(path)!r} has sha256 {actual}, expected {wrong}\n"
        "hint: the file is not the one that was pinned: review what changed, then pin the new "
        f"hash (sha256sum {path})\n"
    )
    scope.assert_clean()


@pytest.mark.parametrize("pin", ["xyz", "g" * 64, "0" * 63, "0" * 65], ids=["short", "non-hex", "63", "65"])
def test_pin_that_is_not_a_sha256_is_refused(scope, policy_files, pin):
    path = policy_files["caps"]
    result = scope.nucleus(*scope.run_args("--caps-policy", str(path), "--caps-policy-sha256", pin),
                           "--", "/bin/echo", "ran")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (
        f"error: --caps-policy-sha256 {pin!r}: not a sha256 (64 hexadecimal characters)\n"
        f"hint: compute it with: sha256sum {path}\n"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_pin_without_its_file_is_refused(scope, policy_files, kind):
    result = scope.nucleus(*scope.run_args(f"{FLAGS[kind]}-sha256", sha256(policy_files[kind])),
                           "--", "/bin/echo", "ran")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == f"error: {FLAGS[kind]}-sha256 given without {FLAGS[kind]}\n"


# --- a capability policy keeping one harmless capability ----------------------------------------

CHOWN_SCRIPT = r"""
touch /tmp/f
chown 1000 /tmp/f && echo chowned
stat -c 'owner %u' /tmp/f
chmod 600 /tmp/f || echo chmod-denied
grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status
"""


def cap_lines(inh: str, mask: str) -> str:
    return (f"CapInh:\t{inh}\nCapPrm:\t{mask}\nCapEff:\t{mask}\nCapBnd:\t{mask}\n"
            f"CapAmb:\t0000000000000000\n")


@SANDBOX
def test_caps_policy_keeping_chown(scope, policy_files):
    kept = scope.nucleus(*scope.run_args("--caps-policy", str(policy_files["caps"])), "--",
                         *scope.sh(CHOWN_SCRIPT))
    ok(kept)
    # CAP_CHOWN (bit 0) alone: chown works; the file now belongs to uid 1000, and changing its
    # mode needs CAP_FOWNER, which the policy does not keep.
    assert kept.stdout == ("chowned\nowner 1000\nchmod-denied\n"
                           + cap_lines("0000000000000000", "0000000000000001")), describe(kept)
    assert kept.stderr == "chmod: changing permissions of '/tmp/f': Operation not permitted\n"

    dropped = scope.nucleus(*scope.run_args(), "--", *scope.sh(CHOWN_SCRIPT))
    ok(dropped)
    assert dropped.stdout == "owner 0\n" + cap_lines("0000000000000000", "0000000000000000"), \
        describe(dropped)
    assert dropped.stderr == "chown: changing ownership of '/tmp/f': Operation not permitted\n"
    scope.assert_clean()


# --- a Landlock policy allowing one directory and denying its sibling --------------------------

SIBLINGS_SCRIPT = r"""
cat /context/allowed/file
cat /context/denied/file
echo new > /context/allowed/new && echo wrote
ls /context
"""


@SANDBOX
def test_landlock_policy_allows_one_directory_and_denies_its_sibling(scope, policy_files, siblings):
    confined = scope.nucleus(
        *scope.run_args("--context", str(siblings), "--landlock-policy", str(policy_files["landlock"])),
        "--", *scope.sh(SIBLINGS_SCRIPT))
    assert confined.returncode == 0, describe(confined)
    assert confined.stdout == "allowed content\nallowed\ndenied\n", describe(confined)
    assert confined.stderr == (
        "cat: /context/denied/file: Permission denied\n"
        f"{scope.marker}: 4: cannot create /context/allowed/new: Permission denied\n"
    ), describe(confined)

    # Under the default rules the copied context is readable and writable throughout.
    default = scope.nucleus(*scope.run_args("--context", str(siblings)), "--", *scope.sh(SIBLINGS_SCRIPT))
    ok(default, "allowed content\ndenied content\nwrote\nallowed\ndenied\n")
    assert default.stderr == ""
    scope.assert_clean()


def test_landlock_policy_needing_a_newer_abi_is_refused(scope, tmp_path):
    from nucleus.config.landlock_default import LATEST_ABI

    policy = tmp_path / "future.landlock.toml"
    policy.write_text(LANDLOCK_SIBLINGS.replace("min_abi = 1", f"min_abi = {LATEST_ABI + 1}"))
    result = scope.nucleus(*scope.run_args("--landlock-policy", str(policy)), "--", "/bin/echo", "ran")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    first = result.stderr.splitlines()[0]
    assert first == (f"error: {policy}: min_abi: {LATEST_ABI + 1} is not a Landlock ABI version "
                     f"1..{LATEST_ABI}"), describe(result)
    assert len(result.stderr.splitlines()) == 2 and result.stderr.splitlines()[1].startswith("hint: ")
    scope.assert_clean()
