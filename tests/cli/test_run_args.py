"""`nucleus run` parses its arguments without click (nucleus.cli.run_args), from the same table:
both parsers accept exactly the same command lines with the same values, and every line the
fast parser does not take is one click refuses or answers with help, with click's own message
and exit code (the entry point hands it to click)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nucleus.cli import main as cli_main
from nucleus.cli import run_args
from nucleus.cli.run_options import RUN_FLAGS
from tests.helpers import describe, nucleus_env


def click_verdict(args: list[str]) -> tuple[str, object]:
    """("ok", (command, options)) or ("refused", message) or ("help", None), as click's `run` has it."""
    command = cli_main.cli.commands["run"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            ctx = command.make_context("run", list(args))
    except click.exceptions.Exit:
        return "help", None
    except click.UsageError as e:
        return "refused", e.format_message()
    params = dict(ctx.params)
    return "ok", (tuple(params.pop("command")), params)


def fast_verdict(args: list[str]) -> tuple[str, object]:
    try:
        return "ok", run_args.parse(list(args))
    except run_args.Unparsed:
        return "unparsed", None


def assert_same(args: list[str]) -> None:
    clicks, fast = click_verdict(args), fast_verdict(args)
    if fast[0] == "ok":
        assert clicks == fast, f"run {args}: click {clicks}, run_args {fast}"
    else:
        assert clicks[0] in ("refused", "help"), f"run {args}: click accepts {clicks[1]}, run_args does not"


def value_for(flag) -> str:
    return flag.choices[-1] if flag.choices else "v=1:x"


def accepted_lines(flag) -> list[list[str]]:
    """The ways to give `flag`: each name, with the value separate, after `=`, or attached."""
    lines = []
    for name in flag.names:
        if flag.switch:
            lines += [[name], [name, name]]
            continue
        value = value_for(flag)
        lines += [[name, value], [name, "--"], [name, "-x"], [name, ""]]
        lines.append([f"{name}={value}"] if name.startswith("--") else [f"{name}{value}"])
        if flag.multiple:
            lines.append([name, value, name, value + "2"])
        else:
            lines.append([name, value, name, value])
    return [[*line, "--", "cmd", "-a"] for line in lines] + [[*line, "cmd", "--x"] for line in lines]


@pytest.mark.parametrize("flag", RUN_FLAGS, ids=lambda f: f.names[-1])
def test_every_flag_is_parsed_as_click_parses_it(flag):
    for line in accepted_lines(flag):
        assert_same(line)
    for name in flag.names:
        if flag.switch:
            assert_same([f"{name}=yes", "--", "true"])  # a switch takes no value
        else:
            assert_same([name])  # the value is missing
        if flag.choices:
            assert_same([name, "no-such-choice", "--", "true"])
            assert_same([f"{name}={flag.choices[0].upper()}", "--", "true"])
    assert fast_verdict([*accepted_lines(flag)[0]])[0] == "ok"


MALFORMED = [
    ["--no-such-flag", "--", "true"], ["-X", "true"], ["-tX", "true"], ["--name"], ["-e"],
    ["-te"], ["--tty=1"], ["-t=1"], ["--network", "bogus"], ["--network=", "true"], ["--help"],
    ["-h"], ["-th"], ["--name", "x", "--help"], ["--help=1"], ["--nam", "x"], ["---name", "x"],
    ["--", "--help"], ["-", "x"], [], ["--"], ["true", "--name", "x"], ["-ti", "sh"],
    ["-eA=1", "-vA:B", "-uroot", "true"], ["-e", "-t"], ["--name=a=b", "true"],
    ["--network=nope", "--network=bridge", "true"], ["--network=bridge", "--network=nope", "true"],
]


@pytest.mark.parametrize("args", MALFORMED, ids=lambda a: " ".join(a) or "nothing")
def test_malformed_and_odd_lines_get_the_same_verdict(args):
    assert_same(args)


TOKENS = sorted({name for f in RUN_FLAGS for name in f.names} | {
    "--", "-", "-ti", "-it", "-te", "-eK=V", "-h", "--help", "--nope", "-Z", "x", "", "true",
    "--tty=1", "--name=n", "--network=bridge", "--network=nope", "production", "copy", "bind",
    "--memory=1G", "-vA:B:ro", "-uroot",
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=8))
def test_any_line_of_run_tokens_gets_the_same_verdict(args):
    assert_same(args)


def entry(args: list[str], module: str) -> subprocess.CompletedProcess:
    """`nucleus ARGS` through `module`'s main, under the program name nucleus."""
    code = f"import sys; sys.argv[0] = 'nucleus'; from {module} import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, env=nucleus_env())


@pytest.mark.parametrize("args", [
    ["run", "--no-such-flag", "--", "true"], ["run", "--network", "bogus", "--", "true"],
    ["run", "--name"], ["run", "--help"], ["--debug", "run", "-X"], ["--root"],
    ["run", "--memory", "lots", "--", "true"], ["run", "-e", "=x", "--", "true"],
], ids=lambda a: " ".join(a))
def test_the_entry_point_says_what_click_says(args, tmp_path):
    env_root = ["--root", str(tmp_path / "state")]
    fast = entry([*env_root, *args], "nucleus.cli.entry")
    slow = entry([*env_root, *args], "nucleus.cli.main")
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), \
        describe(fast) + "\n---- click:\n" + describe(slow)
    assert fast.returncode in (0, 125), describe(fast)
    assert not (tmp_path / "state").exists()


def test_a_refused_run_never_imports_click():
    """A run the configuration refuses went the fast way: click was never imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "nucleus", "run", "--memory",
                             "lots", "--", "true"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, env=nucleus_env())
    assert result.returncode == 125
    assert "error: --memory" in result.stderr or "'lots'" in result.stderr, describe(result)
    assert "nucleus.cli.run_args" in result.stderr
    assert " click" not in result.stderr and "nucleus.cli.main" not in result.stderr
