"""`nucleus run` end to end, as root, in real namespaces: exit statuses, signals, environment,
host name, context, working directory, options, traces, failure injection at every setup step,
and what is left on the host afterwards (nothing)."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import pytest

from tests.helpers import (
    SANDBOX,
    SANDBOX_WITH_PYTHON,
    SUBUID_BASE,
    Scope,
    assert_host_unchanged,
    descendants,
    describe,
    find_processes,
    popen_nucleus,
    read_proc,
    run_json,
    run_nucleus,
    snapshot,
    wait_for,
)

pytestmark = SANDBOX

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --- exit statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,status", [
    (["true"], 0),
    (["false"], 1),
    (["/bin/sh", "-c", "exit 7"], 7),
    (["sh", "-c", "exit 255"], 255),
], ids=["true", "false", "exit-7", "exit-255"])
def test_exit_status_is_the_workloads(argv, status):
    result = run_nucleus(["run", "--", *argv])
    assert result.returncode == status, describe(result)
    assert result.stderr == ""


@pytest.mark.parametrize("command", ["nucleus-no-such-command", "/usr/bin/nucleus-no-such-command"])
def test_missing_command_exits_127(command):
    result = run_nucleus(["run", "--", command, "arg"])
    assert result.returncode == 127, describe(result)
    assert result.stderr == f"nucleus: cannot run {command!r}: No such file or directory\n"


@pytest.mark.parametrize("command,why", [
    ("/etc/passwd", "/etc/passwd is not executable (mode 0644, owner 65534); make it executable "
                    "(chmod +x) or run it through its interpreter"),
    ("/tmp", "/tmp is a directory"),
], ids=["not-executable", "directory"])
def test_command_that_cannot_be_executed_exits_126(command, why):
    result = run_nucleus(["run", "--", command])
    assert result.returncode == 126, describe(result)
    assert result.stderr == f"nucleus: cannot run {command!r}: {why}\n"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM, signal.SIGUSR1,
                                 signal.SIGABRT], ids=lambda s: s.name)
def test_workload_killed_by_a_signal_exits_128_plus_n(sig):
    result = run_nucleus(["run", "--", "/bin/sh", "-c", f"kill -{sig.name[3:]} $$; sleep 5"])
    assert result.returncode == 128 + sig, describe(result)


def test_command_is_found_on_path():
    result = run_nucleus(["run", "--", "sh", "-c", "command -v ls; command -v env"])
    assert result.returncode == 0, describe(result)
    assert result.stdout == "/usr/bin/ls\n/usr/bin/env\n"


# --- signals --------------------------------------------------------------------------------------

FORWARDED = ("TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH")


@pytest.mark.parametrize("name", FORWARDED)
def test_signal_to_nucleus_reaches_the_workload(name):
    script = (f'trap "echo got-{name}; exit 3" {name}; echo ready; '
              "while :; do sleep 0.05; done")
    proc = popen_nucleus(["run", "--", "/bin/sh", "-c", script])
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(getattr(signal, f"SIG{name}"))
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert out == f"got-{name}\n", err
    assert proc.returncode == 3, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1],
                         ids=lambda s: s.name)
def test_forwarded_signal_kills_an_untrapping_workload(sig):
    argv = ["sleep", f"30.{int(sig):03d}1"]
    proc = popen_nucleus(["run", "--", *argv])
    try:
        assert wait_for(lambda: find_processes(argv)), "the workload never started"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + sig, err
    assert not find_processes(argv)


# --- environment, host name, working directory ----------------------------------------------------


def _env_of(result) -> dict[str, str]:
    assert result.returncode == 0, describe(result)
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_environment_is_minimal():
    result = run_nucleus(["run", "--", "env"], extra_env={
        "NUCLEUS_TEST_MARKER": "leaked", "TERM": "vt100", "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "http_proxy": "http://127.0.0.1:9",
    })
    assert _env_of(result) == {"PATH": DEFAULT_PATH, "HOME": "/home/agent", "TERM": "vt100"}


def test_environment_adds_env_values():
    result = run_nucleus(["run", "-e", "A=1", "-e", "B=x y=z", "-e", "EMPTY=", "--", "env"],
                         extra_env={"NUCLEUS_TEST_MARKER": "leaked"})
    assert _env_of(result) == {
        "PATH": DEFAULT_PATH, "HOME": "/home/agent", "TERM": os.environ.get("TERM") or "xterm",
        "A": "1", "B": "x y=z", "EMPTY": "",
    }


def test_term_defaults_to_xterm():
    env = {k: v for k, v in os.environ.items() if k != "TERM" and not k.startswith("NUCLEUS_")}
    result = run_nucleus(["run", "--", "env"], env=env)
    assert _env_of(result)["TERM"] == "xterm"


@pytest.mark.parametrize("options,expected", [
    ([], "nucleus"),
    (["--name", "box-1"], "box-1"),
    (["--name", "box-1", "--hostname", "h2.example"], "h2.example"),
    (["--hostname", "agent"], "agent"),
], ids=["default", "name", "hostname-wins", "hostname"])
def test_host_name(options, expected):
    result = run_nucleus(["run", *options, "--", "sh", "-c",
                          "hostname; cat /etc/hostname; grep '^127.0.1.1' /etc/hosts"])
    assert result.returncode == 0, describe(result)
    assert result.stdout == f"{expected}\n{expected}\n127.0.1.1\t{expected}\n"


@pytest.mark.parametrize("options,expected", [
    ([], "/home/agent"),
    (["--workdir", "/tmp"], "/tmp"),
    (["--workdir", "/usr/share"], "/usr/share"),
], ids=["default", "tmp", "usr-share"])
def test_working_directory(options, expected):
    result = run_nucleus(["run", *options, "--", "pwd"])
    assert result.returncode == 0, describe(result)
    assert result.stdout == f"{expected}\n"


def test_working_directory_defaults_to_context(tmp_path):
    result = run_nucleus(["run", "--context", str(tmp_path), "--", "pwd"])
    assert result.returncode == 0, describe(result)
    assert result.stdout == "/context\n"


def test_missing_working_directory_exits_126():
    result = run_nucleus(["run", "--workdir", "/nonexistent", "--", "true"])
    assert result.returncode == 126, describe(result)
    assert result.stderr == "nucleus: cannot enter working directory '/nonexistent': No such file or directory\n"


def test_scratch_directories():
    out = run_json(textwrap.dedent("""\
        import json, os, stat
        r = {}
        for d in ("/tmp", "/home/agent", "/dev/shm"):
            st, vfs = os.stat(d), os.statvfs(d)
            r[d] = [oct(stat.S_IMODE(st.st_mode)), bool(vfs.f_flag & os.ST_NOEXEC),
                    bool(vfs.f_flag & os.ST_RDONLY)]
            with open(os.path.join(d, "probe"), "w") as f:
                f.write("x")
        r["HOME"] = os.environ["HOME"]
        print(json.dumps(r))
    """))
    assert out["/tmp"] == ["0o1777", True, False]
    assert out["/home/agent"] == ["0o700", False, False]  # agent mode runs what is built at home
    assert out["/dev/shm"] == ["0o1777", True, False]
    assert out["HOME"] == "/home/agent"


# --- the context ----------------------------------------------------------------------------------

CONTEXT_FILES = {
    "a.txt": "alpha\n",
    "sub/b.txt": "beta\n",
    "sub/deep/c.txt": "gamma\n",
    "README": "readme\n",
}
CONTEXT_EXCLUDED = {
    ".git/config": "[core]\n",
    ".env": "TOKEN=1\n",
    ".env.local": "TOKEN=2\n",
    "key.pem": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    "server.key": "k\n",
    "my_secret.txt": "s\n",
    "Credentials.json": "{}\n",
    ".ssh/id_ed25519": "k\n",
    ".aws/config": "c\n",
    "node_modules/x/index.js": "j\n",
    "sub/__pycache__/m.pyc": "p\n",
    "sub/deep/db_password_secret": "s\n",
}

# What a run with that context says it left out (nucleus.config.context.left_out_note).
CONTEXT_NOTE = (
    "note: --context: left out 9 secret entries: '.aws/', '.env', '.env.local', '.ssh/', "
    "'Credentials.json' and 4 more (--show-excluded lists every entry left out, with its rule; "
    "--context-include keeps one)\n")

LIST_CONTEXT = textwrap.dedent("""\
    import json, os
    tree = {}
    for top, dirs, files in os.walk("/context"):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, "/context")
            if os.path.islink(path):
                tree[rel] = ["link", os.readlink(path), os.path.exists(path)]
            elif os.path.isdir(path):
                tree[rel] = ["dir"]
            else:
                st = os.stat(path)
                tree[rel] = ["file", open(path).read(), oct(st.st_mode & 0o777), st.st_uid]
    print(json.dumps(tree))
""")


def _make_context(root) -> None:
    for rel, text in {**CONTEXT_FILES, **CONTEXT_EXCLUDED}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.chmod(root / "a.txt", 0o640)
    os.symlink("/etc/shadow", root / "shadow-link")


def _host_tree(root) -> dict[str, object]:
    out: dict[str, object] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir",)
            else:
                with open(path) as f:
                    out[rel] = ("file", f.read(), os.stat(path).st_mode)
    return out


@pytest.fixture
def context(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    _make_context(root)
    return root


@SANDBOX_WITH_PYTHON
def test_context_copy_leaves_out_secrets_and_junk(context):
    tree = run_json(LIST_CONTEXT, options=["--context", str(context)])
    expected = {"sub": ["dir"], "sub/deep": ["dir"]}
    for rel, text in CONTEXT_FILES.items():
        expected[rel] = ["file", text, "0o640" if rel == "a.txt" else "0o644", 0]
    # A symlink stays a link; it resolves inside the sandbox, where there is no /etc/shadow.
    expected["shadow-link"] = ["link", "/etc/shadow", False]
    assert tree == expected


@SANDBOX_WITH_PYTHON
def test_context_copy_is_writable_and_private(context):
    before = _host_tree(context)
    out = run_json(textwrap.dedent("""\
        import errno, json, os
        def attempt(f):
            try:
                f()
                return "0"
            except OSError as e:
                return errno.errorcode[e.errno]
        def write(path, text):
            with open(path, "w") as f:
                f.write(text)
        r = {
            "modify": attempt(lambda: write("/context/a.txt", "changed\\n")),
            "create": attempt(lambda: write("/context/new.txt", "new\\n")),
            "mkdir": attempt(lambda: os.mkdir("/context/newdir")),
            "remove": attempt(lambda: os.unlink("/context/sub/b.txt")),
        }
        r["a.txt"] = open("/context/a.txt").read()
        print(json.dumps(r))
    """), options=["--context", str(context)])
    assert out == {"modify": "0", "create": "0", "mkdir": "0", "remove": "0", "a.txt": "changed\n"}
    assert _host_tree(context) == before


@SANDBOX_WITH_PYTHON
def test_context_bind_is_the_host_tree_read_only(context):
    # Bound, files keep their host owner (unmapped inside): make the one private file readable.
    os.chmod(context / "a.txt", 0o644)
    before = _host_tree(context)
    tree = run_json(LIST_CONTEXT, options=["--context", str(context), "--context-mode", "bind"])
    assert set(tree) == set(before)  # nothing left out: it is the host tree itself
    for rel, text in {**CONTEXT_FILES, **CONTEXT_EXCLUDED}.items():
        assert tree[rel][:2] == ["file", text]
    assert tree["shadow-link"] == ["link", "/etc/shadow", False]
    result = run_nucleus(["run", "--context", str(context), "--context-mode", "bind", "--",
                          "sh", "-c", "echo changed > /context/a.txt"])
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr, describe(result)
    assert _host_tree(context) == before


# --- options --------------------------------------------------------------------------------------


def test_time_namespace():
    host = os.readlink("/proc/self/ns/time")
    own = run_nucleus(["run", "--time-namespace", "--", "readlink", "/proc/self/ns/time"])
    shared = run_nucleus(["run", "--", "readlink", "/proc/self/ns/time"])
    assert own.returncode == 0 and shared.returncode == 0, describe(own) + describe(shared)
    assert own.stdout.startswith("time:[") and own.stdout.strip() != host
    assert shared.stdout.strip() == host


def test_rootless_maps_root_to_the_caller():
    result = run_nucleus(["run", "--rootless", "--", "sh", "-c",
                          "cat /proc/self/uid_map /proc/self/gid_map; id -u"])
    assert result.returncode == 0, describe(result)
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [["0", str(os.geteuid()), "1"], ["0", str(os.getegid()), "1"], ["0"]]


def test_default_maps_root_to_the_unprivileged_range():
    result = run_nucleus(["run", "--", "cat", "/proc/self/uid_map"])
    assert result.stdout.split() == ["0", str(SUBUID_BASE), "65536"], describe(result)


def test_an_id_range_asked_for_is_the_containers(context):
    """Container root and the owner of what it creates on the host are the range's first id."""
    result = run_nucleus(["run", "--id-range", "327680", "--context", str(context), "--",
                          "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; stat -c %u /context/README"])
    assert result.returncode == 0, describe(result)
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [["0", "327680", "65536"], ["0", "327680", "65536"], ["0"]], describe(result)


def test_trace_of_a_run_replays(tmp_path):
    trace = tmp_path / "run.itf.json"
    result = run_nucleus(["run", "--trace", str(trace), "--", "sh", "-c", "exit 4"])
    assert result.returncode == 4, describe(result)
    data = json.loads(trace.read_text())
    assert data["states"][-1]["lc_status"] == "removed"
    replay = run_nucleus(["trace", "replay", str(trace)])
    assert replay.returncode == 0, describe(replay)
    assert replay.stdout == f"ok {trace}\n1 of 1 traces agree with the machines\n"


@pytest.mark.parametrize("intent", ["LoadSeccomp", "ApplyLandlock"])
def test_degraded_security_is_a_warning_when_allowed(intent):
    control = {"LoadSeccomp": "seccomp", "ApplyLandlock": "landlock"}[intent]
    result = run_nucleus(["run", "--allow-degraded-security", "--", "echo", "ran"],
                         extra_env={"NUCLEUS_FAIL_AT": intent})
    assert result.returncode == 0, describe(result)
    assert result.stdout == "ran\n"
    assert result.stderr == (
        f"warning: {control} could not be applied (injected failure of {intent} #1); "
        "continuing with degraded security because --allow-degraded-security was given\n"
    )


def test_capabilities_are_never_degraded():
    result = run_nucleus(["run", "--allow-degraded-security", "--", "echo", "ran"],
                         extra_env={"NUCLEUS_FAIL_AT": "DropCapabilities"})
    assert result.returncode == 125, describe(result)
    assert result.stdout == ""
    assert result.stderr == "error: setup failed at sec.caps: injected failure of DropCapabilities #1\n"


@pytest.mark.parametrize("options", [[], ["--rootless"]], ids=["privileged", "rootless"])
def test_chroot_fallback_when_pivot_root_fails(options):
    before = snapshot()
    result = run_nucleus(
        ["run", "--allow-chroot-fallback", *options, "--", "sh", "-c",
         "ls /work /root 2>/dev/null; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"],
        extra_env={"NUCLEUS_FAIL_AT": "PivotRoot"},
    )
    assert result.returncode == 0, describe(result)
    assert result.stderr == (
        "warning: pivot_root failed (injected failure of PivotRoot #1); falling back to chroot\n"
    )
    assert result.stdout.split() == ["CapEff:", "0000000000000000", "NoNewPrivs:", "1",
                                     "Seccomp:", "2"]
    assert_host_unchanged(before)


# --- nothing left behind --------------------------------------------------------------------------


def test_sequential_runs_leave_nothing_behind(context):
    before = snapshot()
    for _ in range(2):
        result = run_nucleus(["run", "--context", str(context), "--", "sh", "-c",
                              "echo x > /tmp/x; ls /context >/dev/null"])
        assert result.returncode == 0, describe(result)
    assert_host_unchanged(before)


def test_background_processes_die_with_the_workload():
    argv = ["sleep", "1234.5678"]
    before = snapshot()
    result = run_nucleus(["run", "--", "sh", "-c", f"{' '.join(argv)} & echo started"])
    assert result.returncode == 0, describe(result)
    assert result.stdout == "started\n"
    assert wait_for(lambda: not find_processes(argv), timeout=3)
    assert_host_unchanged(before)


SETUP_INTENTS = {
    "SpawnChild": "iso.spawn", "Unshare": "iso.unshare", "ForkInit": "iso.fork_init",
    "SetHostname": "iso.hostname", "LoopbackUp": "iso.loopback",
    "EnterUserNamespace": "iso.enter_user", "WriteIdMaps": "iso.map_ids",
    "BecomeRoot": "iso.become_root", "SetPropagation": "fs.mount", "MountFs": "fs.mount",
    "BindMount": "fs.mount", "RemountFs": "fs.mount", "MakeDirs": "fs.mount",
    "MakeSymlinks": "fs.mount", "CopyTree": "fs.mount", "MaskPaths": "fs.mount",
    "WriteFile": "fs.mount", "PivotRoot": "fs.pivot", "DetachOldRoot": "fs.detach",
    "DropCapabilities": "sec.caps", "LoadSeccomp": "sec.seccomp", "ApplyLandlock": "sec.landlock",
    # Later occurrences: a failure after some mounts already exist.
    "MountFs#4": "fs.mount", "BindMount#3": "fs.mount", "WriteFile#6": "fs.mount",
    "RemountFs#3": "fs.mount",
}


@pytest.mark.parametrize("fault", list(SETUP_INTENTS))
def test_setup_failure_leaves_nothing_behind(fault, context, tmp_path):
    intent, _, nth = fault.partition("#")
    trace = tmp_path / "failed.itf.json"
    before = snapshot()
    result = run_nucleus(["run", "--context", str(context), "--trace", str(trace), "--",
                          "echo", "ran"], extra_env={"NUCLEUS_FAIL_AT": fault})
    assert result.returncode == 125, describe(result)
    assert result.stdout == ""
    assert result.stderr == CONTEXT_NOTE + (
        f"error: setup failed at {SETUP_INTENTS[fault]}: injected failure of {intent} #{nth or 1}\n"
    )
    assert_host_unchanged(before)
    replay = run_nucleus(["trace", "replay", str(trace)])
    assert replay.returncode == 0, describe(replay)
    assert json.loads(trace.read_text())["states"][-1]["lc_status"] == "removed"


def test_killed_supervisor_takes_the_container_with_it():
    """The container dies with its supervisor; what is left (its record, its cgroup) is shown
    as lost and reclaimed by rm --force."""
    with Scope() as scope:
        argv = scope.sh("sleep 1234.4321")
        proc = scope.popen(*scope.run_args(), "--", *argv)
        try:
            workload = wait_for(lambda: find_processes(argv))
            assert workload, "the workload never started"
            container = descendants(proc.pid)
            assert {p.pid for p in workload} <= set(container)
            proc.kill()
            proc.wait(timeout=10)
            gone = wait_for(lambda: all((p := read_proc(pid)) is None or not p.alive for pid in container))
            alive = [read_proc(pid) for pid in container]
            assert gone, f"still running after the supervisor was killed: {[p for p in alive if p and p.alive]}"
        finally:
            proc.kill()
            proc.communicate()  # closes its pipes too
        assert not find_processes(argv)
        (cid, record), = scope.records().items()
        listed = scope.nucleus("ps", "--format", "json")
        assert [(r["id"], r["status"]) for r in json.loads(listed.stdout)] == [(cid, "lost")], describe(listed)
        removed = scope.nucleus("rm", "--force", cid)
        assert (removed.returncode, removed.stderr) == (0, ""), describe(removed)
        scope.assert_clean()
