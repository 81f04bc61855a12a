"""The flags and the command that let results out (-v/--volume, --changes, nucleus cp): bad
input gets one error naming the flag or argument and the value, exit 125, and nothing is made
on the host (no state directory, no output). No kernel feature is needed: each is refused
before anything runs."""

from __future__ import annotations

import os

import pytest

from tests.helpers import describe, run_nucleus


def fails(result, stderr: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (125, "", stderr), describe(result)


@pytest.mark.parametrize(("args", "stderr"), [
    (["-v", "/srv"], "error: -v/--volume '/srv': expected HOST:CONTAINER[:ro|rw]\n"
     "hint: for example -v ./out:/out or -v ./data:/data:ro (a path may hold no ':')\n"),
    (["-v", "/srv:out"], "error: -v/--volume '/srv:out': the container path 'out' is not absolute\n"
     "hint: for example /srv:/out\n"),
    (["-v", "/srv:/proc/x:ro"], "error: -v/--volume '/srv:/proc/x:ro': /proc/x is below /proc, which "
     "nucleus mounts itself\nhint: choose a path of its own, such as /out\n"),
    (["--changes", "review"], "error: --changes 'review': needs --context: the changes are those of "
     "/context\nhint: add --context DIR\n"),
    (["--changes-max-size", "1M"], "error: --changes-max-size needs --changes\n"
     "hint: give where the changes go: --changes OUT\n"),
])
def test_bad_run_flags_are_refused_before_anything(tmp_path, args, stderr):
    state = tmp_path / "state"
    fails(run_nucleus(["--root", str(state), "run", *args, "--", "true"], cwd=tmp_path), stderr)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("args", "stderr"), [
    (["a", "b"], "error: nucleus cp: name a container on exactly one side, as CONTAINER:PATH\n"
     "hint: nucleus cp box:/context/out.txt . or nucleus cp ./in.txt box:/tmp/in.txt; a host path "
     "holding ':' is written ./a:b\n"),
    (["box:tmp/x", "."], "error: 'box:tmp/x': the container's path 'tmp/x' is not absolute\n"
     "hint: name it from the container's root, e.g. box:/context/out.txt\n"),
    (["--max-size", "lots", "box:/x", "."], "error: --max-size 'lots': not a size\n"
     "hint: use a number with an optional K, M, G or T suffix, e.g. 512M\n"),
])
def test_bad_copies_are_refused_before_anything(tmp_path, args, stderr):
    fails(run_nucleus(["--root", str(tmp_path / "state"), "cp", *args], cwd=tmp_path), stderr)
    assert os.listdir(tmp_path) == []


def test_a_copy_from_a_container_that_does_not_exist(tmp_path):
    result = run_nucleus(["--root", str(tmp_path / "state"), "cp", "ghost:/x", "."], cwd=tmp_path)
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr.startswith("error: no container 'ghost'\n")
