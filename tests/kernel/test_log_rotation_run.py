"""A detached container's log on the real kernel: capped with rotation (--log-max-size,
--log-max-files; by default two files of 10 MiB), its size shown by `ps --all`, read oldest file
first by `nucleus logs` and followed across rotations by `logs -f`, and removed, every file of
it, with the container."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, wait_for
from tests.kernel.manage_support import ok, ps_json, row_of

pytestmark = SANDBOX_WITH_PYTHON

MIB = 1 << 20


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def log_files(scope: Scope, cid: str) -> dict[str, int]:
    """The container's log files and their sizes (one renamed between the listing and its
    size, as a rotation under way does, is read again)."""
    while True:
        try:
            return {name: os.path.getsize(os.path.join(scope.containers_dir, name))
                    for name in os.listdir(scope.containers_dir) if name.startswith(f"{cid}.log")}
        except FileNotFoundError:
            continue


def test_a_flood_is_capped_at_20_mib_by_default(scope):
    """The container of the report wrote 300 MB in 6 s; its log now stays at two files of at
    most 10 MiB."""
    cid = scope.detach(scope.sh("exec yes 'a line of output, repeated as fast as it goes'"), "--name", "flood")
    assert wait_for(lambda: f"{cid}.log.1" in log_files(scope, cid), timeout=30), log_files(scope, cid)
    ok(scope.nucleus("stop", "-t", "1", "flood"), "flood\n")
    files = log_files(scope, cid)
    assert set(files) == {f"{cid}.log", f"{cid}.log.1"}, files
    assert all(size <= 10 * MIB for size in files.values()), files
    assert files[f"{cid}.log.1"] > 10 * MIB - 100, files  # cut at a line end, near the cap
    row, = ps_json(scope, "--all")
    assert row["log_size"] == sum(files.values()) <= 20 * MIB
    table = scope.nucleus("ps", "--all")
    ok(table)
    header = re.split(r"\s{2,}", table.stdout.splitlines()[0])
    assert header == ["ID", "NAME", "STATUS", "CREATED", "LOG", "COMMAND"], table.stdout
    cells = row_of(table.stdout, cid)
    assert re.fullmatch(r"1\d\.\dMiB|20\.0MiB", cells[4]), cells
    tail = scope.nucleus("logs", "-n", "2", "flood")
    assert (tail.returncode, tail.stdout) == (0, "a line of output, repeated as fast as it goes\n" * 2), describe(tail)
    ok(scope.nucleus("rm", "flood"), "flood\n")
    assert log_files(scope, cid) == {}
    scope.assert_clean()


COUNT = """\
import sys, time
for i in range(int(sys.argv[2])):
    print(f"{i:06d}", flush=True)
print("done", flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_logs_reads_the_kept_files_oldest_first(scope):
    cid = scope.detach([*scope.python(COUNT), "5000", "0"], "--name", "count",
                       "--log-max-size", "8K", "--log-max-files", "3")
    record = scope.wait_finished(cid)
    assert record["exit_code"] == 0 and record["log"] == {"max_size": 8192, "max_files": 3}
    files = log_files(scope, cid)
    assert sorted(files) == [f"{cid}.log", f"{cid}.log.1", f"{cid}.log.2"], files
    assert all(size <= 8192 for size in files.values()), files
    result = scope.nucleus("logs", "count")
    assert result.returncode == 0, describe(result)
    lines = result.stdout.splitlines()
    assert lines[-1] == "done"
    numbers = [int(x) for x in lines[:-1]]
    assert numbers == list(range(numbers[0], 5000)) and numbers[0] > 0  # the oldest were dropped
    assert sum(len(line) + 1 for line in lines) == sum(files.values())
    ok(scope.nucleus("logs", "-n", "3", "count"), "004998\n004999\ndone\n")
    ok(scope.nucleus("rm", "count"), "count\n")
    assert log_files(scope, cid) == {}
    scope.assert_clean()


def test_logs_follow_goes_across_rotations(scope):
    cid = scope.detach([*scope.python(COUNT.replace("print(f", "time.sleep(0.0005); print(f")), "20000", "0"],
                       "--name", "count", "--log-max-size", "16K", "--log-max-files", "2")
    scope.wait_log(cid, lambda text: "000100\n" in text)
    follower = scope.popen("logs", "-f", "count")
    try:
        out, err = follower.communicate(timeout=120)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0 and err == "", (follower.returncode, err)
    lines = out.splitlines()
    assert lines[-1] == "done"
    numbers = [int(x) for x in lines[:-1]]
    assert numbers == list(range(numbers[0], 20000)), "a line was lost or repeated across a rotation"
    ok(scope.nucleus("rm", "count"), "count\n")
    scope.assert_clean()


def test_one_file_is_emptied_when_full(scope):
    cid = scope.detach([*scope.python(COUNT), "3000", "30"], "--name", "count",
                       "--log-max-size", "4K", "--log-max-files", "1")
    scope.wait_log(cid, lambda text: text.endswith("done\n"))
    files = log_files(scope, cid)
    assert list(files) == [f"{cid}.log"] and files[f"{cid}.log"] <= 4096, files
    result = scope.nucleus("logs", "count")
    assert result.stdout.endswith("002999\ndone\n") and not result.stdout.startswith("000000"), describe(result)
    ok(scope.nucleus("rm", "--force", "count"), "count\n")
    scope.assert_clean()


def test_the_record_says_how_the_log_is_kept(scope):
    cid = scope.detach(scope.sh("echo hi"), "--name", "small")
    record = scope.wait_finished(cid)
    assert record["log"] == {"max_size": 10 * MIB, "max_files": 2} and "log_path" not in record
    rows = json.loads(scope.nucleus("ps", "--all", "--format", "json").stdout)
    assert [(r["name"], r["log_size"]) for r in rows] == [("small", 3)]
    ok(scope.nucleus("rm", "small"), "small\n")
    scope.assert_clean()
