"""Plumbing of the benchmarks (benches/): each runner starts its runtime and cleans up after it,
the report renders a fixed synthetic result, and results follow the JSON schema.

No measured number is asserted here: the benchmarks report, they never judge."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

from benches import breakdown, cold, memory, pgbench, report, runtimes, schema, throughput, workload
from benches.procs import LIBEXEC
from benches.session import Session

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runtime name -> the host features it needs.
NEEDS = {
    "nucleus": ("root", "userns"),
    "runc": ("root", "bin:runc", "bin:unshare"),
    "crun": ("root", "bin:crun", "bin:unshare"),
    "bwrap": ("root", "bin:bwrap"),
    "runsc": ("root", "bin:runsc"),
    "nspawn": ("root", "bin:systemd-nspawn"),
    "unshare": ("root", "bin:unshare"),
    "python": (),
}
MEMORY_NEEDS = {**NEEDS, "runc-detached": NEEDS["runc"]}


def _param(name: str, needs: dict):
    return pytest.param(name, marks=pytest.mark.requires(*needs[name]), id=name)


def _assert_clean(session: Session) -> None:
    state_before = os.path.exists(runtimes.NSPAWN_STATE) and runtimes.NSPAWN_STATE not in runtimes.CREATED
    runtimes.stop_servers()
    assert os.path.exists(runtimes.NSPAWN_STATE) == state_before
    left = session.leftovers()
    assert left["clean"], f"left behind: {json.dumps(left)}"


# --- runners ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [_param(n, NEEDS) for n in NEEDS])
def test_cold_start_runner_runs_once_and_leaves_nothing(name):
    session = Session()
    with session as ctx:
        rt = runtimes.ALL[name](ctx)
        rt.check()
        ms, err = cold.run_once(rt)
        assert err is None, f"{name}: {err}"
        assert ms > 0
    _assert_clean(session)


@pytest.mark.parametrize("name", [_param(n, MEMORY_NEEDS) for n in
                                  ("nucleus", "runc", "runc-detached", "crun", "nspawn", "bwrap", "runsc")])
def test_memory_runner_finds_the_kept_processes_and_stops_them(name):
    session = Session()
    with session as ctx:
        rt = runtimes.ALL[name](ctx)
        rt.check()
        got = memory.measure_once(rt)
        comms = [p["comm"] for p in got["processes"]]
        assert "sleep" not in comms  # the workload itself is not the runtime's
        if name == "runc-detached":
            assert comms == []  # runc has exited: nothing of it is kept
        else:
            assert comms, f"{name}: no process of the runtime found while the container sleeps"
    _assert_clean(session)


@pytest.mark.requires("root", "userns", "bin:runc", "bin:unshare", "bin:bwrap")
def test_throughput_runner_concurrent_batches_clean_up():
    session = Session()
    with session as ctx:
        rts = [runtimes.ALL[n](ctx) for n in ("nucleus", "runc", "bwrap")]
        for rt in rts:
            rt.check()
        for rt in rts:
            seconds, failures, err = throughput.batch(rt, 2, 2)
            assert failures == 0, f"{rt.name}: {err}"
        result = throughput.measure(rts, total=2, batch_size=2, levels=[1, 2], log=lambda m: None)
        problems: list[str] = []
        schema._check(result, schema.THROUGHPUT, "$.throughput", problems)
        assert problems == []
    _assert_clean(session)


@pytest.mark.requires("root", "userns", "landlock", "bin:gcc", "bin:bwrap")
def test_workload_helper_runs_inside_nucleus_and_is_removed():
    existed = os.path.exists(LIBEXEC)
    session = Session(need_mntns=False)
    with session as ctx:
        targets = [runtimes.ALL[n](ctx) for n in ("host", "nucleus", "bwrap")]
        with workload.Helper() as helper:
            assert helper.binary is not None and helper.binary.startswith(LIBEXEC + "/")
            result = workload.micro(targets, helper.binary, reps=1, scale=0.01, log=lambda m: None)
        for mode, entry in result.items():
            for name, t in entry["targets"].items():
                assert t["status"] == "ok", f"{mode} in {name}: {t.get('error')}"
        problems: list[str] = []
        schema._check(result, schema.WORKLOAD["micro"], "$.workload.micro", problems)
        assert problems == []
    assert os.path.exists(LIBEXEC) == existed
    _assert_clean(session)


@pytest.mark.requires("root", "userns", "bin:runuser", "postgres")
def test_pgbench_runs_bare_and_inside_nucleus_as_postgres_and_stops_every_server():
    session = Session(need_mntns=False)
    with session as ctx:
        entry = pgbench.measure(runtimes.ALL["nucleus"](ctx), ctx.workdir, reps=1, seconds=1)
        assert entry["status"] == "ok", entry.get("error")
        assert entry["bare"]["n"] == entry["nucleus"]["n"] == 1
        assert entry["ratio"] == round(entry["nucleus"]["median"] / entry["bare"]["median"], 4)
        assert "--user postgres" in entry["command"]
        assert entry["bare_cpus"] == ctx.limits.get("cpus")  # the bare run's cgroup is gone: _assert_clean
        problems: list[str] = []
        schema._check(entry, schema.WORKLOAD["pgbench"], "$.workload.pgbench", problems)
        assert problems == []
        assert not [p for p in os.listdir(ctx.workdir) if p.startswith("pg-")]
    _assert_clean(session)


@pytest.mark.requires("root", "userns")
def test_breakdown_phases_cover_the_run():
    session = Session(need_mntns=False)
    with session as ctx:
        phases, raw = breakdown.run_phases(ctx.limit_flags, ctx.workdir)
        assert set(phases) == {key for key, _ in breakdown.PHASES} | {"total"}
        assert raw["exit_code"] == 0
        assert raw["child"], "no timing came back from the setup process"
    _assert_clean(session)


@pytest.mark.requires("root", "userns")
def test_make_bench_entry_point_writes_json_markdown_and_doc(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nwritten by hand\n\n" + report.BEGIN + "\nold\n" + report.END + "\ntail\n")
    r = subprocess.run(
        [sys.executable, "-m", "benches", "--quick", "--reps", "1", "--only", "cold",
         "--out", str(tmp_path / "out"), "--doc", str(doc)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert schema.validate(result) == []
    assert result["leftovers"]["clean"]
    assert "| nucleus run |" in (tmp_path / "out" / "latest.md").read_text()
    text = doc.read_text()
    assert "written by hand" in text and text.endswith(report.END + "\ntail\n")
    assert "\nold\n" not in text


@pytest.mark.requires("root")
def test_leftover_check_sees_a_process_a_mount_and_the_helper_directory():
    session = Session(need_mntns=False)
    with session as ctx:
        proc = subprocess.Popen(["sleep", "60"])
        point = os.path.join(ctx.workdir, "mnt")
        os.mkdir(point)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", point], check=True)
        parent_existed = os.path.isdir(os.path.dirname(LIBEXEC))
        os.makedirs(LIBEXEC)
        try:
            left = session.leftovers()
            assert any(p.startswith(f"{proc.pid} sleep") for p in left["processes"]), left
            assert point in left["mounts"] and LIBEXEC in left["paths"] and not left["clean"]
        finally:
            proc.kill()
            proc.wait()
            subprocess.run(["umount", point], check=True)
            os.rmdir(LIBEXEC)
            if not parent_existed:
                os.rmdir(os.path.dirname(LIBEXEC))
    _assert_clean(session)


# --- report and schema ----------------------------------------------------------------------------------


def _summary(*xs):
    xs = list(xs)
    return {"n": len(xs), "median": sorted(xs)[len(xs) // 2] if xs else None,
            "min": min(xs) if xs else None, "max": max(xs) if xs else None, "samples": xs}


def synthetic() -> dict:
    """A complete result with made-up values, including runtimes that could not run."""
    na = {"n": 0, "median": None, "min": None, "max": None, "samples": []}
    return {
        "schema": schema.SCHEMA, "date": "2000-01-01T00:00:00+00:00", "duration_s": 1.0,
        "machine": {"kernel": "6.0", "cpu_model": "Test CPU", "cores": 2, "os": "Test OS",
                    "python": "3.11", "cgroups": "hybrid", "hostname": "test", "mem_total_mib": 1024},
        "config": {"quick": True, "cold_reps": 3},
        "tools": {"runc": {"path": "/usr/sbin/runc", "version": "runc version 1", "package": "runc"},
                  "runsc": {"path": None, "version": None, "package": "runsc"}},
        "nucleus": {"command": ["nucleus"], "limit_flags": [], "version": "nucleus 0"},
        "runtimes": {"nucleus": {"status": "ok"}, "runsc": {"status": "n/a", "error": "runsc: boom"}},
        "notes": ["a note"],
        "cold_start": {
            "reps": 3, "unit": "ms", "baseline": "runc", "command": "/bin/true",
            "results": {
                "nucleus": {"label": "nucleus run", "command": "nucleus run -- CMD", "status": "ok",
                            **_summary(3.0, 4.0, 5.0), "ratio_to_baseline": 4.0},
                "nucleus-warm": {"label": "nucleus run --server (warm)", "command": "nucleus run --server SOCK -- CMD",
                                 "status": "ok", **_summary(1.0, 1.5, 2.0), "ratio_to_baseline": 1.5},
                "runc": {"label": "runc run", "command": "runc run", "status": "ok",
                         **_summary(1.0, 1.0, 1.0), "ratio_to_baseline": 1.0},
                "crun": {"label": "crun run", "command": "crun run", "status": "ok",
                         **_summary(0.5, 0.5, 0.5), "ratio_to_baseline": 0.5},
                "runsc": {"label": "runsc run (ptrace)", "command": "runsc run", "status": "n/a",
                          "error": "runsc: boom", **na},
            },
        },
        "breakdown": {
            "reps": 1, "command": "nucleus run -- /bin/true", "method": "m", "total_ms": _summary(4.0),
            "phases": [{"phase": k, "what": w, **_summary(0.5)} for k, w in breakdown.PHASES],
            "setup_steps_ms": {"Unshare": 0.1}, "host_steps_ms": {"SpawnChild": 0.2}, "late_imports": [],
            "python_floor_ms": _summary(1.0), "python_venv_site_ms": _summary(2.0),
            "importtime": {"runs": 1, "total_ms": _summary(2.0), "by_group_ms": {"nucleus": 1.0},
                           "top_self_ms": [{"module": "nucleus.vocab", "ms": 1.0}],
                           "top_level_cumulative_ms": [{"module": "nucleus.runner", "ms": 1.5}]},
            "cprofile": {"runs": 1, "dataclass_processing_ms": 1.0, "compile_ms": 0.5},
        },
        "memory": {
            "reps": 1, "command": "sleep 30", "baseline": "runc",
            "results": {
                "nucleus": {"label": "nucleus run", "unit": "MiB", "status": "ok", "rss": _summary(30.0),
                            "pss": _summary(20.0), "pss_ratio_to_baseline": 2.0,
                            "processes": [{"comm": "nucleus", "cmdline": "x", "rss_kib": 1, "pss_kib": 1}]},
                "runc": {"label": "runc run", "unit": "MiB", "status": "ok", "rss": _summary(10.0),
                         "pss": _summary(10.0), "pss_ratio_to_baseline": 1.0, "processes": []},
                "runsc": {"label": "runsc run (ptrace)", "unit": "MiB", "status": "n/a",
                          "error": "runsc: boom", "rss": na, "pss": na},
            },
        },
        "workload": {
            "micro": {"cpu": {"what": "CPU-bound", "iterations": 10, "unit": "ms", "baseline": "host",
                              "targets": {
                                  "host": {"label": "host (bare)", "status": "ok", **_summary(1.0),
                                           "cpu": _summary(0.9), "ratio": 1.0, "overhead_pct": 0.0,
                                           "cpu_ratio": 1.0, "cpu_overhead_pct": 0.0},
                                  "nucleus": {"label": "nucleus run", "status": "ok", **_summary(1.1),
                                              "cpu": _summary(1.0), "ratio": 1.1, "overhead_pct": 10.0,
                                              "cpu_ratio": 1.11, "cpu_overhead_pct": 11.1},
                                  "bwrap": {"label": "bwrap", "status": "n/a", "error": "no bwrap",
                                            **_summary(), "cpu": _summary()}}}},
            "pgbench": {"what": "pgbench -S", "status": "n/a", "error": "initdb: error: cannot be run as root",
                        "unit": "tps", "bare": _summary(100.0), "nucleus": na},
        },
        "throughput": {
            "total_runs": 2, "batch": 2, "levels": [1, 2], "command": "/bin/true", "baseline": "runc",
            "results": {
                "nucleus": {"label": "nucleus run", "levels": {
                    "1": {"status": "ok", "runs": 2, "runs_per_s": _summary(5.0), "overall_runs_per_s": 5.0,
                          "ratio_to_baseline": 0.5},
                    "2": {"status": "n/a", "error": "1 of 2 runs failed: x", "runs": 0,
                          "runs_per_s": na, "overall_runs_per_s": None, "ratio_to_baseline": None}}},
                "runc": {"label": "runc run", "levels": {
                    "1": {"status": "ok", "runs": 2, "runs_per_s": _summary(10.0), "overall_runs_per_s": 10.0,
                          "ratio_to_baseline": 1.0},
                    "2": {"status": "ok", "runs": 2, "runs_per_s": _summary(15.0), "overall_runs_per_s": 15.0,
                          "ratio_to_baseline": 1.0}}},
            },
        },
        "targets": [],
        "leftovers": {"clean": True, "processes": [], "mounts": [], "cgroups": [], "state_dirs": [],
                      "paths": []},
    }


def test_synthetic_result_follows_the_schema():
    result = synthetic()
    result["targets"] = report.targets(result)
    assert schema.validate(result) == []


def test_report_renders_every_table_from_a_fixed_result():
    result = synthetic()
    result["targets"] = report.targets(result)
    md = report.render(result)
    for heading in ("### Cold start", "### Where nucleus's cold start goes", "### Memory kept",
                    "### Workload overhead", "### Throughput", "### Targets", "### Notes"):
        assert heading in md
    assert "| runsc run (ptrace) | n/a: runsc: boom |" in md
    assert "n/a: initdb: error: cannot be run as root" in md
    assert "n/a: 1 of 2 runs failed: x" in md
    assert "n/a: no bwrap" in md
    assert "Test CPU, 2 cores" in md and "kernel 6.0" in md
    assert "no process, mount, cgroup" in md
    # every table row has as many cells as its header
    for block in md.split("\n\n"):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if rows:
            width = rows[0].replace("\\|", "").count("|")
            assert all(r.replace("\\|", "").count("|") == width for r in rows), block


def test_report_names_the_targets_and_whether_they_are_met():
    result = synthetic()
    rows = {t["target"].split(" ")[0]: t for t in report.targets(result)}
    assert rows["cold"]["met"] is False and rows["cold"]["measured"] == "4.00× runc"
    assert "3.0 ms over" in rows["cold"]["detail"]
    assert rows["warm"]["met"] is False and rows["warm"]["measured"] == "3.00× crun"
    assert rows["throughput"]["met"] is None and "8 callers not measured" in rows["throughput"]["detail"]
    assert rows["memory"]["met"] is False
    assert rows["CPU-bound"]["met"] is False and "wall time" in rows["CPU-bound"]["detail"]
    assert rows["pgbench"]["met"] is None and "cannot be run as root" in rows["pgbench"]["detail"]


def _at_8_callers(result: dict, rates: dict[str, float]) -> dict:
    """`result` with only 8 callers measured, at these rates (runc's: 10); the throughput target."""
    tp = result["throughput"]
    tp["levels"] = [8]
    tp["results"] = {name: {"label": name, "levels": {"8": {
        "status": "ok", "runs": 2, "runs_per_s": _summary(rate), "overall_runs_per_s": rate,
        "ratio_to_baseline": rate / 10.0}}} for name, rate in {**rates, "runc": 10.0}.items()}
    return next(t for t in report.targets(result) if t["target"].startswith("throughput"))


def test_throughput_target_is_the_warm_server_with_8_callers_against_runc():
    result = synthetic()
    row = _at_8_callers(result, {"nucleus": 5.0, "nucleus-warm": 25.0})
    assert row["met"] is True and row["measured"] == "2.50× runc"
    assert "warm 25.0 vs runc 10.0" in row["detail"] and "cold nucleus 5.0" in row["detail"]
    result["targets"] = report.targets(result)
    assert schema.validate(result) == []


def test_the_warm_targets_are_a_resident_callers_where_it_was_measured():
    result = synthetic()
    results = result["cold_start"]["results"]
    results["nucleus-served"] = {**results["nucleus-warm"], "label": "resident", **_summary(0.25, 0.25, 0.25)}
    row = next(t for t in report.targets(result) if t["target"].startswith("warm"))
    assert row["met"] is True and row["measured"] == "0.50× crun"
    assert "warm 0.2 ms vs crun 0.5 ms" in row["detail"] and "through `nucleus run --server` 1.5 ms" in row["detail"]
    row = _at_8_callers(result, {"nucleus-warm": 5.0, "nucleus-served": 30.0})
    assert row["met"] is True and row["measured"] == "3.00× runc"


def test_pgbench_row_reports_tps_inside_against_bare():
    result = synthetic()
    result["workload"]["pgbench"] = {"what": "pgbench -S", "status": "ok", "unit": "tps", "user": "postgres",
                                     "bare": _summary(1000.0), "nucleus": _summary(990.0),
                                     "ratio": 0.99, "overhead_pct": 1.0}
    row = next(t for t in report.targets(result) if t["target"].startswith("pgbench"))
    assert row["met"] is True and row["measured"] == "-1.0% (0.99× bare)"
    assert "--user postgres" in row["detail"]
    assert "bare 1000.0 tps, nucleus (`--user postgres`) 990.0 tps" in report.render({**result, "targets": [row]})


def test_report_shows_leftovers():
    result = synthetic()
    result["leftovers"] = {**result["leftovers"], "clean": False, "mounts": ["/tmp/x"]}
    assert "**Leftovers after the run**: mounts: /tmp/x" in report.render(result)


def test_a_skipped_section_renders_and_validates():
    result = synthetic()
    result["memory"] = {"status": "skipped", "error": "not selected (--only)"}
    assert schema.validate(result) == []
    assert "skipped: not selected (--only)" in report.render(result)


@pytest.mark.parametrize("mutate, path", [
    (lambda r: r.pop("machine"), "$.machine: missing"),
    (lambda r: r["cold_start"]["results"]["runc"].__setitem__("median", "fast"), "$.cold_start.results.runc.median"),
    (lambda r: r["cold_start"]["results"]["runsc"].pop("error"), "$.cold_start.results.runsc.error"),
    (lambda r: r["memory"].__setitem__("status", "error"), "$.memory.error"),
    (lambda r: r.__setitem__("schema", "other/9"), "$.schema"),
    (lambda r: r["leftovers"].__setitem__("clean", "yes"), "$.leftovers.clean"),
])
def test_schema_names_what_is_wrong(mutate, path):
    result = copy.deepcopy(synthetic())
    mutate(result)
    problems = schema.validate(result)
    assert any(p.startswith(path) for p in problems), problems


def test_update_doc_replaces_only_the_generated_part(tmp_path):
    doc = tmp_path / "B.md"
    doc.write_text(f"# B\n\nby hand\n\n{report.BEGIN}\nold table\n{report.END}\n\n## Analysis\n")
    report.update_doc(str(doc), "new table\n", "# template\n")
    text = doc.read_text()
    assert text == f"# B\n\nby hand\n\n{report.BEGIN}\nnew table\n{report.END}\n\n## Analysis\n"
    fresh = tmp_path / "new.md"
    report.update_doc(str(fresh), "t\n", "# template\n")
    assert fresh.read_text() == f"# template\n\n{report.BEGIN}\nt\n{report.END}\n"
