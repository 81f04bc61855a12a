"""Container management on the real kernel, under concurrency: commands racing each other for a
name, or managing containers while others start, stop and are listed, never corrupt the state
directory and never end in a traceback (each test in a Scope of its own, as test_manage.py
explains)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import CONTAINER_ID, SANDBOX_WITH_PYTHON, Scope, describe
from tests.kernel.manage_support import POLITE, ok, started

pytestmark = SANDBOX_WITH_PYTHON


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


NAME_TAKEN = re.compile(
    r"error: --name 'same': a container with this name exists \([0-9a-f]{12}, "
    r"(creating|created|running)\)\n"
    r"hint: pick another name, or remove it first: nucleus rm --force same\n")


def test_concurrent_runs_with_the_same_name(scope):
    for _ in range(3):
        argv = [*scope.run_args("-d", "--name", "same"), "--", *scope.sh(POLITE)]
        racers = [scope.popen(*argv) for _ in range(2)]
        results = [(p.wait(timeout=60), *p.communicate()) for p in racers]
        winners = [r for r in results if r[0] == 0]
        losers = [r for r in results if r[0] != 0]
        assert len(winners) == 1 and len(losers) == 1, results
        assert CONTAINER_ID.fullmatch(winners[0][1].strip()), results
        code, out, err = losers[0]
        assert out == "" and NAME_TAKEN.fullmatch(err), results
        assert code == 125, results  # the same status as a refused foreground run
        assert [r["name"] for r in scope.records().values()] == ["same"]
        ok(scope.nucleus("rm", "--force", "same"), "same\n")
        scope.assert_clean()


def test_a_refused_detached_run_leaves_nothing(scope):
    started(scope, POLITE, name="same")
    refused = scope.nucleus(*scope.run_args("-d", "--name", "same"), "--", *scope.sh(POLITE))
    assert refused.returncode != 0 and NAME_TAKEN.fullmatch(refused.stderr), describe(refused)
    assert len(scope.records()) == 1
    ok(scope.nucleus("rm", "--force", "same"), "same\n")
    scope.assert_clean()


def test_parallel_runs_and_management_never_corrupt_records(scope):
    n = 10
    problems: list[str] = []

    def run(i: int) -> subprocess.CompletedProcess:
        return scope.nucleus(*scope.run_args("-d", "--name", f"c{i}"), "--", *scope.sh(POLITE),
                             timeout=120)

    def listing() -> subprocess.CompletedProcess:
        return scope.nucleus("ps", "--all", "--format", "json", timeout=120)

    with ThreadPoolExecutor(max_workers=24) as pool:
        runs = [pool.submit(run, i) for i in range(n)]
        lists = [pool.submit(listing) for _ in range(n)]
        managed: dict[int, list] = {}
        while len(managed) < n or not all(f.done() for fs in managed.values() for f in fs):
            scope.records()  # every record parses, whenever it is read
            for i, f in enumerate(runs):
                if i in managed or not f.done():
                    continue
                name = f"c{i}"
                if i % 3 == 0:
                    managed[i] = [pool.submit(scope.nucleus, "stop", name, timeout=120)]
                elif i % 3 == 1:
                    managed[i] = [pool.submit(scope.nucleus, "rm", "--force", name, timeout=120)]
                else:
                    managed[i] = [pool.submit(scope.nucleus, "kill", "-s", "TERM", name, timeout=120),
                                  pool.submit(listing)]
            time.sleep(0.01)
        for i, f in enumerate(runs):
            result = f.result()
            if result.returncode != 0 or not CONTAINER_ID.fullmatch(result.stdout.strip()):
                problems.append(f"run c{i}: {describe(result)}")
        for f in lists + [f for fs in managed.values() for f in fs]:
            result = f.result()
            if result.returncode != 0:
                problems.append(describe(result))
            elif result.args[1] == "ps":
                try:
                    json.loads(result.stdout)
                except ValueError:
                    problems.append(f"ps printed no JSON: {describe(result)}")
    assert not problems, "\n".join(problems)
    ids = {f.result().stdout.strip() for f in runs}
    assert len(ids) == n
    records = scope.records()
    assert set(records) <= ids
    for cid, record in records.items():
        assert record["status"] in ("running", "stopped"), record
        ok(scope.nucleus("rm", "--force", cid), f"{record['name']}\n")
    scope.assert_clean()


def test_kill_while_the_container_exits(scope):
    for _ in range(8):
        started(scope, POLITE)
        stopper = scope.popen("stop", "web")
        result = scope.nucleus("kill", "-s", "TERM", "web")
        stopper.communicate(timeout=60)
        # Either it reached the container, or the container had already stopped: a message,
        # never a traceback.
        assert result.returncode in (0, 125) and "Traceback" not in result.stderr, describe(result)
        if result.returncode == 0:
            assert result.stdout == "web\n", describe(result)
        else:
            assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, \
                describe(result)
        ok(scope.nucleus("rm", "--force", "web"), "web\n")
        scope.assert_clean()


def test_rm_force_while_the_container_stops(scope):
    for _ in range(5):
        started(scope, POLITE)
        stopper = scope.popen("stop", "web")
        ok(scope.nucleus("rm", "--force", "web"), "web\n")
        stopper.communicate(timeout=60)
        scope.assert_clean()

