"""The command line: exit codes and the exact messages a user reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nucleus import __version__
from tests.helpers import SANDBOX, describe, nucleus_env, run_nucleus

HINT_ENV_LOADER = "hint: bake libraries into the context or rootfs instead\n"


def usage_error(result, usage: str, message: str) -> None:
    """A click usage error: the usage line, where to get help, the error; exit status 2."""
    assert result.returncode == 125, describe(result)
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"Usage: {usage} "), describe(result)
    assert lines[-1] == f"Error: {message}", describe(result)
    assert result.stdout == ""


# --- version and help -----------------------------------------------------------------------------


def test_version():
    result = run_nucleus(["--version"])
    assert result.returncode == 0
    assert result.stdout == f"nucleus {__version__}\n"
    assert result.stderr == ""


def test_version_through_python_m():
    result = subprocess.run([sys.executable, "-m", "nucleus", "--version"], capture_output=True,
                            text=True, timeout=30, env=nucleus_env())
    assert result.returncode == 0, describe(result)
    assert result.stdout == f"nucleus {__version__}\n"


RUN_OPTIONS = ("--name", "--hostname", "--context", "--context-mode", "-e, --env", "--workdir",
               "--rootless", "--time-namespace", "--allow-degraded-security",
               "--allow-chroot-fallback", "--trace", "--debug", "-h, --help")


@pytest.mark.parametrize("args,usage,mentions", [
    ([], "nucleus [OPTIONS] COMMAND [ARGS]...", ("run", "trace", "--version", "--debug")),
    (["run"], "nucleus run [OPTIONS] COMMAND...", RUN_OPTIONS),
    (["trace"], "nucleus trace [OPTIONS] COMMAND [ARGS]...", ("replay",)),
    (["trace", "replay"], "nucleus trace replay [OPTIONS] FILES...", ("-h, --help",)),
], ids=["nucleus", "run", "trace", "trace-replay"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(args, usage, mentions, flag):
    result = run_nucleus([*args, flag])
    assert result.returncode == 0, describe(result)
    assert result.stderr == ""
    assert result.stdout.startswith(f"Usage: {usage}\n")
    for text in mentions:
        assert text in result.stdout, f"{text!r} missing from\n{result.stdout}"


def test_unknown_command():
    usage_error(run_nucleus(["frobnicate"]), "nucleus", "No such command 'frobnicate'.")


# --- nucleus run: bad input is refused before anything happens -------------------------------------


def refused(args, message: str, hint: str | None = None):
    """`nucleus run ARGS -- echo ran` exits 125 with exactly this message, and runs nothing."""
    result = run_nucleus(["run", *args, "--", "echo", "ran"])
    assert result.returncode == 125, describe(result)
    expected = f"error: {message}\n" + (f"hint: {hint}\n" if hint else "")
    assert result.stderr == expected
    assert result.stdout == ""
    return result


def test_run_without_a_command():
    # The flag-level convention: the message, and a hint since the fix is known.
    result = run_nucleus(["run"])
    assert result.returncode == 125, describe(result)
    assert result.stderr == (
        "error: no command given\n"
        "hint: put the command after --, e.g. nucleus run -- /bin/sh -c 'id'\n"
    )


@pytest.mark.parametrize("args", [["run", "--"], ["run", "--name", "x", "--"]], ids=["dashdash", "options"])
def test_run_without_a_command_after_dashdash(args):
    result = run_nucleus(args)
    assert result.returncode == 125, describe(result)
    assert "no command given" in result.stderr or "Missing argument 'COMMAND...'" in result.stderr


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_ANYTHING",
                                  "GCONV_PATH", "GLIBC_TUNABLES"])
def test_env_refuses_loader_variables(name):
    refused(["-e", f"{name}=x"],
            f"--env '{name}=x': {name} is refused: it changes how the dynamic loader loads code",
            HINT_ENV_LOADER.removeprefix("hint: ").rstrip("\n"))


def test_env_long_flag_is_named_the_same():
    refused(["--env", "LD_PRELOAD=/tmp/x.so"],
            "--env 'LD_PRELOAD=/tmp/x.so': LD_PRELOAD is refused: it changes how the dynamic loader "
            "loads code", "bake libraries into the context or rootfs instead")


def test_env_without_equals():
    refused(["-e", "FOO"], "--env 'FOO': expected KEY=VALUE", "write --env FOO=value")


@pytest.mark.parametrize("raw,key", [("1A=b", "1A"), ("A-B=c", "A-B"), ("=v", "")])
def test_env_bad_name(raw, key):
    refused(["-e", raw], f"--env {raw!r}: {key!r} is not a valid variable name",
            "names start with a letter or underscore and hold letters, digits and underscores")


NAME_HINT = "use 1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit"


@pytest.mark.parametrize("name", ["-bad", "a b", "x" * 65, ".hidden", "a/b", ""])
def test_bad_name(name):
    refused(["--name", name], f"--name {name!r}: not a valid container name", NAME_HINT)


HOSTNAME_HINT = "use letters, digits and '-' in dot-separated labels, at most 64 characters"


@pytest.mark.parametrize("hostname", ["bad_host", "-lead", "trail-", "a..b", "a" * 65, "x." * 32 + "x", ""])
def test_bad_hostname(hostname):
    refused(["--hostname", hostname], f"--hostname {hostname!r}: not a valid host name", HOSTNAME_HINT)


@pytest.mark.parametrize("workdir", ["rel", "./x", "context"])
def test_relative_workdir(workdir):
    refused(["--workdir", workdir], f"--workdir {workdir!r}: must be an absolute path inside the container",
            "for example --workdir /context")


def test_context_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "nope")
    refused(["--context", missing], f"--context {missing!r}: no such directory",
            "pass an existing directory to populate /context from")


def test_context_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    refused(["--context", str(path)], f"--context {str(path)!r}: not a directory")


def test_context_empty():
    refused(["--context", ""], "--context '': not a usable path")


def test_bad_context_mode():
    result = run_nucleus(["run", "--context-mode", "bad", "--", "echo", "ran"])
    usage_error(result, "nucleus run",
                "Invalid value for '--context-mode': 'bad' is not one of 'copy', 'bind'.")


def test_unknown_run_option():
    result = run_nucleus(["run", "--no-such-flag", "--", "true"])
    usage_error(result, "nucleus run", "No such option '--no-such-flag'.")


def test_debug_as_an_argument_of_the_command_does_not_change_error_reporting():
    # Without "--", everything after COMMAND belongs to the command, "--debug" included: it must
    # not turn a plain error message into a traceback.
    result = run_nucleus(["run", "-e", "FOO", "echo", "--debug"])
    assert result.returncode == 125, describe(result)
    assert result.stderr == "error: --env 'FOO': expected KEY=VALUE\nhint: write --env FOO=value\n"


def test_debug_flag_shows_the_traceback():
    result = run_nucleus(["run", "--debug", "-e", "FOO", "--", "true"])
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "InvalidInput: --env 'FOO': expected KEY=VALUE" in result.stderr


@SANDBOX
def test_trace_into_a_missing_directory_is_refused_before_running(tmp_path):
    target = tmp_path / "no-such-dir" / "run.itf.json"
    result = run_nucleus(["run", "--trace", str(target), "--", "echo", "ran"])
    assert result.returncode == 125, describe(result)
    assert result.stdout == "", "the workload ran although its trace cannot be written"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: --trace {str(target)!r}"), describe(result)
    assert lines[1].startswith("hint: "), describe(result)


# --- nucleus trace replay -------------------------------------------------------------------------


def test_replay_of_a_missing_file(tmp_path):
    path = str(tmp_path / "none.itf.json")
    result = run_nucleus(["trace", "replay", path])
    assert result.returncode == 125, describe(result)
    assert result.stderr == f"error: trace {path!r}: [Errno 2] No such file or directory: {path!r}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("content", [{"a": 1}, [1, 2], "a string"], ids=["object", "list", "string"])
def test_replay_of_json_that_is_not_itf(tmp_path, content):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(content))
    result = run_nucleus(["trace", "replay", str(path)])
    assert result.returncode == 125, describe(result)
    assert result.stderr == f"error: trace {str(path)!r}: {path}: not an ITF trace (no 'states')\n"


def test_replay_of_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("not json{")
    result = run_nucleus(["trace", "replay", str(path)])
    assert result.returncode == 125, describe(result)
    assert result.stderr == f"error: trace {str(path)!r}: Expecting value: line 1 column 1 (char 0)\n"


def test_replay_without_files():
    usage_error(run_nucleus(["trace", "replay"]), "nucleus trace replay", "Missing argument 'FILES...'.")


@pytest.fixture
def recorded_trace(tmp_path):
    path = tmp_path / "run.itf.json"
    result = run_nucleus(["run", "--trace", str(path), "--", "true"])
    assert result.returncode == 0, describe(result)
    return path


@SANDBOX
def test_replay_of_a_recorded_run(recorded_trace):
    result = run_nucleus(["trace", "replay", str(recorded_trace)])
    assert result.returncode == 0, describe(result)
    assert result.stdout == f"ok {recorded_trace}\n1 of 1 traces agree with the machines\n"
    assert result.stderr == ""


@SANDBOX
def test_replay_of_a_tampered_trace(recorded_trace, tmp_path):
    data = json.loads(recorded_trace.read_text())
    index = next(i for i, s in enumerate(data["states"])
                 if s["event"] == {"m": "iso", "name": "Done", "arg": "fork_init"})
    data["states"][index]["iso_done"] += 1
    tampered = tmp_path / "tampered.itf.json"
    tampered.write_text(json.dumps(data))
    result = run_nucleus(["trace", "replay", str(recorded_trace), str(tampered)])
    assert result.returncode == 1, describe(result)
    done = data["states"][index]["iso_done"]
    assert result.stderr == (
        f"DIVERGED {tampered}: step {index} (iso.Done(fork_init)): "
        f"iso_done: code has {done - 1}, trace has {done}\n"
    )
    assert result.stdout == f"ok {recorded_trace}\n1 of 2 traces agree with the machines\n"


@SANDBOX
def test_replay_of_a_trace_with_an_unknown_action(recorded_trace, tmp_path):
    data = json.loads(recorded_trace.read_text())
    data["states"][3]["event"] = {"m": "lc", "name": "Explode", "arg": ""}
    tampered = tmp_path / "unknown.itf.json"
    tampered.write_text(json.dumps(data))
    result = run_nucleus(["trace", "replay", str(tampered)])
    assert result.returncode == 1, describe(result)
    assert result.stderr.startswith(f"DIVERGED {tampered}: step 3 (lc.Explode): unknown action: ")
