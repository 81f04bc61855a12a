"""Bad input that used to crash or to be silently ignored: each gets one clear error, exit 125 for a
refused flag or argument (also for a state directory that cannot be used), and nothing changes on
the host (no state directory, record or log is made). No kernel feature is needed: each is
refused before anything runs."""

from __future__ import annotations

import os

import pytest

from tests.helpers import describe, run_nucleus

STATE_HINT = "hint: use a state directory of your own (--root DIR); a user's containers are managed as that user\n"


def fails(result, code: int, stderr: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (code, "", stderr), describe(result)


@pytest.mark.parametrize("args", [["--", ""], ["", "x"], ["-d", "--", ""]], ids=["empty", "empty-with-args", "detached"])
def test_an_empty_command_is_refused(tmp_path, args):
    state = tmp_path / "state"
    fails(run_nucleus(["--root", str(state), "run", *args]), 125,
          "error: the command '' is empty: there is no program to run\n"
          "hint: name the program after --, e.g. nucleus run -- /bin/sh -c 'id'\n")
    assert not state.exists()


@pytest.mark.parametrize("args", [["--context-mode", "bind"], ["-d", "--context-mode", "bind"]],
                         ids=["foreground", "detached"])
def test_context_mode_bind_without_a_context_is_refused(tmp_path, args):
    state = tmp_path / "state"
    fails(run_nucleus(["--root", str(state), "run", *args, "--", "true"]), 125,
          "error: --context-mode bind needs --context DIR: there is no context to bind\n"
          "hint: add --context DIR, or drop --context-mode\n")
    assert not state.exists()


@pytest.mark.parametrize("verb", [["ps"], ["ps", "--all"], ["stats"], ["logs", "web"], ["rm", "web"],
                                  ["kill", "web"], ["stop", "web"], ["attach", "web"],
                                  ["run", "--", "true"], ["run", "-d", "--", "true"]],
                         ids=" ".join)
def test_a_file_as_the_state_directory_is_refused(tmp_path, verb):
    state = tmp_path / "a-file"
    state.write_text("not a directory\n")
    fails(run_nucleus(["--root", str(state), *verb]), 125,
          f"error: the state directory {str(state)!r} is not a directory\n{STATE_HINT}")
    fails(run_nucleus(["--root", str(state / "below"), *verb]), 125,
          f"error: the state directory {str(state / 'below')!r} is not a directory (a part of its path "
          f"is a file)\n{STATE_HINT}")
    assert state.read_text() == "not a directory\n" and os.listdir(tmp_path) == ["a-file"]


LOG_ERRORS = [
    (["-d", "--log-max-size", "12Q"], "error: --log-max-size '12Q': not a size\n"
     "hint: use a number with an optional K, M, G or T suffix, e.g. 512M\n"),
    (["-d", "--log-max-size", "1K"], "error: --log-max-size '1K': must be at least 4K\n"),
    (["-d", "--log-max-files", "0"], "error: --log-max-files '0': must be between 1 and 100\n"
     "hint: 1 keeps one file, emptied when it is full\n"),
    (["-d", "--log-max-files", "many"], "error: --log-max-files 'many': not a whole number\n"),
    (["-d", "--log-max-files", "101"], "error: --log-max-files '101': must be between 1 and 100\n"
     "hint: 1 keeps one file, emptied when it is full\n"),
    (["--log-max-size", "1M"], "error: --log-max-size '1M': only with --detach\n"
     "hint: a foreground run's output goes to the terminal, not to a log\n"),
    (["--log-max-files", "3"], "error: --log-max-files '3': only with --detach\n"
     "hint: a foreground run's output goes to the terminal, not to a log\n"),
]


@pytest.mark.parametrize("flags,stderr", LOG_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_log_flags(tmp_path, flags, stderr):
    state = tmp_path / "state"
    fails(run_nucleus(["--root", str(state), "run", *flags, "--", "true"]), 125, stderr)
    assert not state.exists()


def test_the_log_flags_are_in_the_help():
    result = run_nucleus(["run", "--help"])
    assert result.returncode == 0, describe(result)
    text = " ".join(result.stdout.split())
    assert "--log-max-size SIZE With --detach: start a new log file past this size [default: 10M]." in text
    assert "--log-max-files N With --detach: log files kept, the current one included [default: 2]." in text
