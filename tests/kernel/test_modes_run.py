"""Service modes, trust levels and the hardening flags through `nucleus run`, on the real kernel:

- production refuses to start without --rootfs, --memory and --cpus (naming the rows), and with
  a real Nix-store closure it runs: /proc with hidepid=2, the cgroup required (a cgroup failure
  stops the run, where agent mode only warns), degraded security refused;
- strict-agent and --trust-level untrusted refuse every weakening flag, naming the row;
- --require-kernel-lockdown, against what this kernel reports;
- `nucleus check` in both formats;
- --verify-context-integrity: a clean copy passes, a context changed between the hash and the
  copy is refused and leaves nothing behind.

Every test works in a Scope of its own (tests.helpers): a private state directory and cgroup
parent, so other containers on the machine neither hide nor fake a leftover.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nucleus.effects import attestation
from tests.helpers import Scope, describe, paused, run_nucleus, store_name, store_paths

SANDBOX = pytest.mark.requires("root", "userns", "seccomp", "landlock")

LIMITS = ("--memory", "64M", "--cpus", "1")


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def refused(result, code: int, stderr: str) -> None:
    """Exit ``code`` with exactly ``stderr``; nothing ran."""
    assert (result.returncode, result.stdout, result.stderr) == (code, "", stderr), describe(result)


def ok(result, stdout: str | None = None, stderr: str | None = "") -> None:
    assert result.returncode == 0, describe(result)
    if stdout is not None:
        assert result.stdout == stdout, describe(result)
    if stderr is not None:
        assert result.stderr == stderr, describe(result)


# --- a Nix-store closure holding a shell ----------------------------------------------------------


def _libraries(binary: str) -> list[str]:
    """The shared objects ``binary`` loads, and its dynamic loader, as ldd names them."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    found = [word for line in out.splitlines() for word in line.split() if word.startswith("/")]
    return list(dict.fromkeys(found))


@pytest.fixture(scope="module")
def closure():
    """/nix/store/<hash>-test-nucleus-modes: dash as bin/sh, its libraries and ld-linux; attested."""
    with store_paths() as made:
        root = Path(store_name("test-nucleus-modes"))
        made.append(str(root))
        root.mkdir(mode=0o755)
        (root / "bin").mkdir(mode=0o755)
        shutil.copy("/bin/dash", root / "bin" / "sh")
        for lib in _libraries("/bin/dash"):
            target = root / lib.lstrip("/")
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            shutil.copy(lib, target)  # the file a symlink leads to, under the link's name
        for directory, _dirs, _files in os.walk(root):
            os.chmod(directory, 0o755)
        attestation.attest(str(root))
        yield str(root)


def production(scope: Scope, closure: str, *options: str) -> list[str]:
    return scope.run_args("--service-mode", "production", "--rootfs", closure,
                          "--verify-rootfs-attestation", *LIMITS, *options)


# --- production ---------------------------------------------------------------------------------

ROOTFS_ROW = ('--rootfs is required in production mode (row "Rootfs": production runs a '
              'pre-built Nix closure, not host bind mounts)')
MEMORY_ROW = ('--memory is required in production mode (row "Memory limit": production requires '
              'an explicit limit)')
CPUS_ROW = ('--cpus is required in production mode (row "CPU limit": production requires an '
            'explicit limit)')


def test_production_without_rootfs_memory_and_cpus_names_the_rows(scope):
    result = scope.nucleus(*scope.run_args("--service-mode", "production"), "--", "/bin/echo", "ran")
    refused(result, 125, f"error: {ROOTFS_ROW}\nalso: {MEMORY_ROW}\nalso: {CPUS_ROW}\n"
                       "hint: build a closure and pass --rootfs /nix/store/<hash>-<name>\n")
    scope.assert_clean()


@pytest.mark.requires("root")
@pytest.mark.parametrize("missing", ["--memory", "--cpus"])
def test_production_requires_each_limit(scope, closure, missing):
    limits = dict(zip(LIMITS[::2], LIMITS[1::2], strict=True))
    del limits[missing]
    args = scope.run_args("--service-mode", "production", "--rootfs", closure, "--verify-rootfs-attestation",
                          *(word for pair in limits.items() for word in pair))
    message, hint = ((MEMORY_ROW, "give a limit, e.g. --memory 1G") if missing == "--memory"
                     else (CPUS_ROW, "give a limit, e.g. --cpus 2"))
    refused(scope.nucleus(*args, "--", "/bin/sh", "-c", "echo ran"), 125,
            f"error: {message}\nhint: {hint}\n")


def test_production_refuses_a_rootfs_outside_the_store(scope, tmp_path):
    result = scope.nucleus(*scope.run_args("--service-mode", "production", "--rootfs", str(tmp_path),
                                           "--verify-rootfs-attestation", *LIMITS), "--", "/bin/sh", "-c", "echo ran")
    refused(result, 125,
            f"error: --rootfs {str(tmp_path)!r} is refused in production mode: not under /nix/store "
            '(row "Rootfs": production needs a path under /nix/store)\n'
            "hint: pass the closure's store path, e.g. --rootfs /nix/store/<hash>-<name>\n")


@pytest.mark.requires("root")
def test_production_refuses_a_store_link_that_leads_out_of_the_store(scope, closure, tmp_path):
    link = Path(store_name("test-link"))
    os.symlink(tmp_path, link)
    try:
        result = scope.nucleus(*production(scope, str(link)), "--", "/bin/sh", "-c", "echo ran")
    finally:
        link.unlink()
    refused(result, 125,
            f"error: --rootfs {str(link)!r} resolves to {str(tmp_path)!r}: not under /nix/store "
            '(row "Rootfs": production needs a path under /nix/store)\n'
            "hint: pass the store path itself, not a link that leads out of the store\n")
    scope.assert_clean()


ATTESTATION_ROW = ('--verify-rootfs-attestation is required in production mode (row "Rootfs attestation": '
                   'production runs a closure only as it was attested)')


@pytest.mark.requires("root")
def test_production_requires_the_attestation(scope, closure):
    args = scope.run_args("--service-mode", "production", "--rootfs", closure, *LIMITS)
    refused(scope.nucleus(*args, "--", "/bin/sh", "-c", "echo ran"), 125,
            f"error: {ATTESTATION_ROW}\nhint: attest the closure when it is built (nucleus attest DIR) and "
            "add --verify-rootfs-attestation\n")
    scope.assert_clean()


@SANDBOX
def test_a_closure_changed_after_its_attestation_is_refused_before_start(scope, closure):
    ok(scope.nucleus(*production(scope, closure), "--", "/bin/sh", "-c", "echo ran"), "ran\n")
    library = next(p for p in Path(closure).rglob("libc.so*") if p.is_file() and not p.is_symlink())
    rel = str(library.relative_to(closure))
    original = library.read_bytes()
    try:
        changed = bytearray(original)
        changed[len(changed) // 2] ^= 1  # one bit of one byte
        library.write_bytes(bytes(changed))
        result = scope.nucleus(*production(scope, closure), "--", "/bin/sh", "-c", "echo ran")
        refused(result, 125, f"error: --verify-rootfs-attestation: the closure {closure!r} is not what "
                             f".nucleus-rootfs-sha256 says: 1 changed ({rel!r})\n"
                             "hint: rebuild the closure; a closure changed after it was attested is not run\n")
        scope.assert_clean()
    finally:
        library.write_bytes(original)
    extra = Path(closure) / "bin" / "planted"
    extra.write_text("#!/bin/sh\n")
    try:
        result = scope.nucleus(*production(scope, closure), "--", "/bin/sh", "-c", "echo ran")
        assert result.returncode == 125 and "1 not in the manifest ('bin/planted')" in result.stderr, describe(result)
    finally:
        extra.unlink()
    scope.assert_clean()


PROC_SCRIPT = r"""
echo "self $$"
echo "pids" /proc/[0-9]*
if [ -e /proc/1 ]; then echo "pid 1 visible"; else echo "pid 1 hidden"; fi
if [ -e /usr/bin/python3 ]; then echo "host /usr"; else echo "no host /usr"; fi
while read -r line; do case "$line" in *" /proc "*) echo "proc $line";; esac; done < /proc/self/mountinfo
"""


def proc_report(result) -> dict[str, str]:
    ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 5, describe(result)
    return {"self": lines[0], "pids": lines[1], "pid1": lines[2], "usr": lines[3],
            "proc_options": lines[4].split(" - ", 1)[1].split()[2].split(",")}


@SANDBOX
def test_production_with_a_closure_hides_other_processes(scope, closure):
    report = proc_report(scope.nucleus(*production(scope, closure), "--", *scope.sh(PROC_SCRIPT)))
    pid = report["self"].split()[1]
    # Only the workload's own processes: the container's init (pid 1) is hidden.
    assert report["pids"] == f"pids /proc/{pid}"
    assert report["pid1"] == "pid 1 hidden"
    assert {"hidepid=2", "hidepid=invisible"} & set(report["proc_options"]), report
    # The system directories come from the closure, not from the host.
    assert report["usr"] == "no host /usr"

    # The same closure in agent mode: /proc shows init.
    agent = proc_report(scope.nucleus(*scope.run_args("--rootfs", closure), "--", *scope.sh(PROC_SCRIPT)))
    assert agent["pids"] == f"pids /proc/1 /proc/{agent['self'].split()[1]}"
    assert agent["pid1"] == "pid 1 visible"
    assert not any(o.startswith("hidepid=") for o in agent["proc_options"]), agent
    scope.assert_clean()


@SANDBOX
def test_production_requires_the_cgroup(scope, closure):
    fault = {"NUCLEUS_FAIL_AT": "SetCgroupLimits"}
    result = scope.nucleus(*production(scope, closure), "--", *scope.sh("echo ran"), extra_env=fault)
    refused(result, 125, "error: setup failed at res.limits: injected failure of SetCgroupLimits #1\n")
    scope.assert_clean()

    # Agent mode runs without limits and says so.
    result = scope.nucleus(*scope.run_args(*LIMITS), "--", *scope.sh("echo ran"), extra_env=fault)
    ok(result, "ran\n", "warning: cgroup limits failed (injected failure of SetCgroupLimits #1); "
                        "running without resource limits\n")
    scope.assert_clean()


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@SANDBOX
def test_production_runs_in_a_limited_cgroup(scope, closure):
    result = scope.nucleus(*production(scope, closure), "--", *scope.sh("echo ran; exit 7"))
    assert (result.returncode, result.stdout, result.stderr) == (7, "ran\n", ""), describe(result)

    cid = scope.detach(scope.sh("trap 'exit 0' TERM; while :; do :; done"), "--service-mode",
                       "production", "--rootfs", closure, "--verify-rootfs-attestation", *LIMITS)
    try:
        dirs = scope.container_cgroups(cid)
        assert dirs, f"no cgroup for {cid}"
        memory = [d for d in dirs if os.path.exists(os.path.join(d, "memory.limit_in_bytes"))
                  or os.path.exists(os.path.join(d, "memory.max"))]
        cpu = [d for d in dirs if os.path.exists(os.path.join(d, "cpu.cfs_quota_us"))
               or os.path.exists(os.path.join(d, "cpu.max"))]
        assert memory and cpu, dirs
        if os.path.exists(os.path.join(memory[0], "memory.limit_in_bytes")):
            assert read_file(os.path.join(memory[0], "memory.limit_in_bytes")) == str(64 << 20)
            quota = int(read_file(os.path.join(cpu[0], "cpu.cfs_quota_us")))
            period = int(read_file(os.path.join(cpu[0], "cpu.cfs_period_us")))
        else:
            assert read_file(os.path.join(memory[0], "memory.max")) == str(64 << 20)
            quota, period = map(int, read_file(os.path.join(cpu[0], "cpu.max")).split())
        assert quota == period  # one CPU
    finally:
        scope.nucleus("rm", "--force", cid)
    scope.assert_clean()


@pytest.mark.requires("root")
def test_production_refuses_degraded_security(scope, closure):
    result = scope.nucleus(*production(scope, closure, "--allow-degraded-security"), "--",
                           "/bin/sh", "-c", "echo ran")
    refused(result, 125,
            "error: --allow-degraded-security is forbidden in production mode (row \"Degraded "
            "security\": production forbids it)\n"
            "hint: drop --allow-degraded-security: in production mode a control that cannot be "
            "applied stops the run\n")


@SANDBOX
def test_production_needs_pinned_policies_without_dangerous_capabilities(scope, closure, tmp_path):
    policy = tmp_path / "chown.caps.toml"
    policy.write_text('[bounding]\nkeep = ["CHOWN"]\n')
    pin = hashlib.sha256(policy.read_bytes()).hexdigest()
    unpinned = scope.nucleus(*production(scope, closure, "--caps-policy", str(policy)), "--",
                             *scope.sh("echo ran"))
    refused(unpinned, 125,
            f"error: --caps-policy {str(policy)!r} is not pinned: production mode requires "
            '--caps-policy-sha256 (row "Security policies": production needs every policy file '
            "pinned by sha256)\n"
            f"hint: pin it: --caps-policy-sha256 $(sha256sum {policy} | cut -d' ' -f1)\n")

    pinned = scope.nucleus(*production(scope, closure, "--caps-policy", str(policy),
                                       "--caps-policy-sha256", pin), "--", *scope.sh("echo ran"))
    ok(pinned, "ran\n")

    admin = tmp_path / "admin.caps.toml"
    admin.write_text('[bounding]\nkeep = ["SYS_ADMIN"]\n')
    result = scope.nucleus(*production(scope, closure, "--caps-policy", str(admin),
                                       "--caps-policy-sha256",
                                       hashlib.sha256(admin.read_bytes()).hexdigest()),
                           "--", *scope.sh("echo ran"))
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr.splitlines()[0] == (
        f"error: --caps-policy {str(admin)!r} keeps CAP_SYS_ADMIN: refused in production mode "
        '(row "Capabilities": production refuses dangerous capabilities)'), describe(result)
    scope.assert_clean()


# --- strict-agent and untrusted refusals ------------------------------------------------------------

STRICT_REFUSALS = {
    "degraded": (["--allow-degraded-security"],
                 '--allow-degraded-security is forbidden in strict-agent mode (row "Degraded '
                 'security": strict-agent forbids it)',
                 "drop --allow-degraded-security: in strict-agent mode a control that cannot be "
                 "applied stops the run"),
    "chroot": (["--allow-chroot-fallback"],
               '--allow-chroot-fallback is forbidden in strict-agent mode (row "Chroot fallback": '
               'strict-agent forbids it)',
               "drop --allow-chroot-fallback: in strict-agent mode a pivot_root failure stops the "
               "run"),
    "trace": (["--seccomp-mode", "trace", "--seccomp-log", "/nonexistent/trace.ndjson"],
              "--seccomp-mode 'trace' is forbidden in strict-agent mode (row \"Seccomp trace "
              'mode": strict-agent forbids it)',
              "trace is a development tool: record the trace in agent mode, generate a profile "
              "with nucleus seccomp generate, then pass --seccomp-profile"),
}


@pytest.mark.parametrize("case", list(STRICT_REFUSALS))
def test_strict_agent_refuses_weakening(scope, case):
    options, message, hint = STRICT_REFUSALS[case]
    result = scope.nucleus(*scope.run_args("--service-mode", "strict-agent", *options), "--",
                           "/bin/echo", "ran")
    refused(result, 125, f"error: {message}\nhint: {hint}\n")
    scope.assert_clean()


@SANDBOX
def test_strict_agent_runs_without_weakening(scope):
    ok(scope.nucleus(*scope.run_args("--service-mode", "strict-agent"), "--", *scope.sh("echo ran")),
       "ran\n")
    scope.assert_clean()


VOUCH = "pass --trust-level trusted if you vouch for the workload"
UNTRUSTED_REFUSALS = {
    "degraded": (["--allow-degraded-security"], 125,
                 "--allow-degraded-security is forbidden with --trust-level untrusted: an "
                 "untrusted workload never runs with a security control missing",
                 f"drop --allow-degraded-security, or {VOUCH}"),
    "chroot": (["--allow-chroot-fallback"], 125,
               "--allow-chroot-fallback is forbidden with --trust-level untrusted: a chroot can "
               "be escaped where pivot_root cannot",
               f"drop --allow-chroot-fallback, or {VOUCH}"),
    "trace": (["--seccomp-mode", "trace", "--seccomp-log", "/nonexistent/trace.ndjson"], 125,
              "--seccomp-mode 'trace' is forbidden with --trust-level untrusted: trace mode runs "
              "the workload with no syscall filter",
              f"trace only programs you trust: {VOUCH}"),
    "rootless": (["--rootless"], 125,
                 "--rootless run as root would map container root to host root: refused with "
                 "--trust-level untrusted",
                 "drop --rootless: run as root, nucleus maps container root to an unprivileged "
                 "uid range"),
}


@pytest.mark.requires("root")
@pytest.mark.parametrize("case", list(UNTRUSTED_REFUSALS))
def test_untrusted_refuses_weakening(scope, case):
    options, code, message, hint = UNTRUSTED_REFUSALS[case]
    result = scope.nucleus(*scope.run_args("--trust-level", "untrusted", *options), "--",
                           "/bin/echo", "ran")
    refused(result, code, f"error: {message}\nhint: {hint}\n")
    scope.assert_clean()


def test_untrusted_refuses_dangerous_capabilities(scope, tmp_path):
    policy = tmp_path / "admin.caps.toml"
    policy.write_text('[bounding]\nkeep = ["SYS_ADMIN", "CHOWN"]\n')
    result = scope.nucleus(*scope.run_args("--trust-level", "untrusted", "--caps-policy", str(policy)),
                           "--", "/bin/echo", "ran")
    refused(result, 125, f"error: --caps-policy {str(policy)!r} keeps CAP_SYS_ADMIN: refused with "
                       f"--trust-level untrusted\nhint: keep none of CAP_SYS_ADMIN, or {VOUCH}\n")


@SANDBOX
def test_untrusted_runs_without_weakening(scope):
    ok(scope.nucleus(*scope.run_args("--trust-level", "untrusted"), "--", *scope.sh("echo ran")),
       "ran\n")
    scope.assert_clean()


# --- kernel lockdown ----------------------------------------------------------------------------------


def host_lockdown() -> str:
    """The kernel's lockdown mode, read through a securityfs mounted in a private mount
    namespace (the host may not mount it)."""
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount -t securityfs securityfs /sys/kernel/security && "
         "cat /sys/kernel/security/lockdown"],
        capture_output=True, text=True, timeout=30)
    found = re.search(r"\[(\w+)\]", result.stdout)
    if result.returncode != 0 or found is None:
        pytest.skip(f"cannot read the kernel's lockdown mode: {result.stderr.strip()}")
    return found.group(1)


@pytest.mark.requires("root", "userns", "seccomp", "landlock", "bin:unshare")
def test_require_kernel_lockdown(scope):
    mode = host_lockdown()
    if mode != "integrity":
        pytest.skip(f"this kernel's lockdown is {mode!r}; the test expects 'integrity'")
    ok(scope.nucleus(*scope.run_args("--require-kernel-lockdown", "integrity"), "--",
                     *scope.sh("echo ran")), "ran\n")
    result = scope.nucleus(*scope.run_args("--require-kernel-lockdown", "confidentiality"), "--",
                           *scope.sh("echo ran"))
    refused(result, 125, "error: --require-kernel-lockdown 'confidentiality': the kernel's lockdown "
                       "mode is 'integrity'\nhint: boot with lockdown=confidentiality (kernel "
                       "command line), or require less\n")
    scope.assert_clean()


# --- nucleus check ------------------------------------------------------------------------------------


def landlock_abi() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(abi, 0)


def cgroup_backend() -> str:
    """v2 when a cgroup2 mount offers memory, cpu and pids; else v1 when v1 hierarchies do."""
    v1: set[str] = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, options = right.split()[:3]
            point = left.split()[4]
            if fstype == "cgroup2":
                try:
                    with open(os.path.join(point, "cgroup.controllers")) as c:
                        if {"memory", "cpu", "pids"} <= set(c.read().split()):
                            return "v2"
                except OSError:
                    pass
            elif fstype == "cgroup":
                v1 |= set(options.split(","))
    return "v1" if {"memory", "cpu", "pids"} <= v1 else "none"


@pytest.mark.requires("root", "landlock", "bin:unshare")
def test_check_reports_this_host():
    lockdown, abi, backend = host_lockdown(), landlock_abi(), cgroup_backend()
    text = run_nucleus(["check"])
    assert (text.returncode, text.stderr) == (0, ""), describe(text)
    out = text.stdout
    assert re.search(rf"^  landlock ABI: +{abi}$", out, re.M), out
    assert re.search(rf"^  cgroups: +{backend}\b", out, re.M), out
    assert re.search(rf"^  lockdown: +{lockdown} ", out, re.M), out
    for mode in ("agent", "strict-agent", "production"):
        assert f"\n{mode} mode: runs on this host\n" in out, out
    assert re.search(r"^  rule +/proc: +hidepid=2", out, re.M), out

    result = run_nucleus(["check", "--format", "json"])
    assert (result.returncode, result.stderr) == (0, ""), describe(result)
    report = json.loads(result.stdout)
    assert set(report) == {"host", "modes", "not_enforced_yet"}
    host = report["host"]
    assert {"cgroups", "kernel", "landlock", "lockdown", "namespaces", "seccomp", "runsc",
            "criu"} <= set(host)
    assert host["landlock"]["abi"] == abi
    assert host["cgroups"]["backend"] == backend
    assert host["lockdown"]["mode"] == lockdown
    assert host["kernel"]["release"] == os.uname().release
    assert set(host["namespaces"]["available"]) >= {"user", "pid", "mnt", "net", "uts", "ipc", "cgroup"}
    assert host["seccomp"]["filter"] is True
    assert set(report["modes"]) == {"agent", "strict-agent", "production"}
    for mode, data in report["modes"].items():
        assert data["refuses"] == [], (mode, data)
        rows = {f["row"]: f for f in data["findings"]}
        assert rows["Landlock ABI"]["status"] == "ok", (mode, rows)
        assert rows["Cgroup limits"]["status"] == "ok", (mode, rows)
    production = {f["row"]: f for f in report["modes"]["production"]["findings"]}
    assert production["Landlock ABI"]["detail"] == f"ABI {abi} (needs 3 or later)"
    assert production["Cgroup limits"]["detail"] == f"required; cgroup {backend}"


# --- --verify-context-integrity ---------------------------------------------------------------------


@pytest.fixture
def context(tmp_path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "a.txt").write_text("a\n")
    (ctx / "sub" / "b.txt").write_text("b\n")
    (ctx / ".env").write_text("TOKEN=secret\n")  # never copied, so never verified
    return ctx


LIST_CONTEXT = "find /context | sort; cat /context/a.txt"
CLEAN_LISTING = "/context\n/context/a.txt\n/context/sub\n/context/sub/b.txt\na\n"
# What a run says of the .env it leaves out (nucleus.config.context.left_out_note).
NOTE = ("note: --context: left out 1 secret entry: '.env' (--show-excluded lists every entry left "
        "out, with its rule; --context-include keeps one)")


@SANDBOX
def test_verified_context_runs(scope, context):
    result = scope.nucleus(*scope.run_args("--context", str(context), "--verify-context-integrity"),
                           "--", *scope.sh(LIST_CONTEXT))
    ok(result, CLEAN_LISTING, NOTE + "\n")
    scope.assert_clean()


def test_verify_context_integrity_needs_a_copied_context(scope, context):
    result = scope.nucleus(*scope.run_args("--verify-context-integrity"), "--", "/bin/echo", "ran")
    refused(result, 125, "error: --verify-context-integrity needs --context\n"
                       "hint: give the directory to copy in: --context DIR\n")
    result = scope.nucleus(*scope.run_args("--verify-context-integrity", "--context", str(context),
                                           "--context-mode", "bind"), "--", "/bin/echo", "ran")
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr.startswith("error: --verify-context-integrity needs --context-mode copy, "
                                    "not 'bind'"), describe(result)


def run_paused_at_copy(scope: Scope, context: Path, tamper) -> tuple[int, str, str]:
    """Run with the supervisor stopped right before the copy (after the context was hashed),
    call ``tamper()``, let it go on; return its exit status, stdout and stderr."""
    proc = scope.popen(*scope.run_args("--context", str(context), "--verify-context-integrity"),
                       "--", *scope.sh(LIST_CONTEXT), extra_env={"NUCLEUS_PAUSE_AT": "CopyTree"},
                       text=False, bufsize=0)
    code, out, err = paused(proc, "CopyTree", tamper)
    assert err.decode().splitlines()[:2] == [NOTE, "paused CopyTree"], err
    return code, out.decode(), err.decode()


def _change(ctx: Path) -> None:
    (ctx / "a.txt").write_text("tampered\n")


def _add(ctx: Path) -> None:
    (ctx / "sub" / "new.txt").write_text("planted\n")


def _remove(ctx: Path) -> None:
    (ctx / "sub" / "b.txt").unlink()


TAMPERING = {
    "changed": ([_change], "1 changed ('a.txt')"),
    "extra": ([_add], "1 extra ('sub/new.txt')"),
    "missing": ([_remove], "1 missing ('sub/b.txt')"),
    "all": ([_change, _add, _remove],
            "1 missing ('sub/b.txt'), 1 changed ('a.txt'), 1 extra ('sub/new.txt')"),
}


@SANDBOX
@pytest.mark.parametrize("case", list(TAMPERING))
def test_context_changed_between_hash_and_copy_is_refused(scope, context, case):
    changes, found = TAMPERING[case]
    code, out, err = run_paused_at_copy(scope, context, lambda: [c(context) for c in changes])
    assert (code, out) == (125, ""), err
    assert err == (f"{NOTE}\npaused CopyTree\n"
                   "error: setup failed at fs.mount: /context does not match the context it was "
                   f"copied from: {found} (EBADMSG)\n")
    scope.assert_clean()


@SANDBOX
def test_change_to_an_excluded_file_is_not_tampering(scope, context):
    code, out, err = run_paused_at_copy(
        scope, context, lambda: (context / ".env").write_text("TOKEN=other\n"))
    assert (code, out, err) == (0, CLEAN_LISTING, f"{NOTE}\npaused CopyTree\n")
    scope.assert_clean()
