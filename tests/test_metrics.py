"""Run metrics from timings: the numbers the asset and `cto-dagster report` show."""

import pytest

from cto_dagster.core.metrics import TaskTiming, compute_metrics, gantt_png, telemetry_lines

DEPS = {"1": [], "2": [], "3": ["1"], "4": ["2", "3"]}


def timings():
    # 1: 0-1, 2: 0-6 (long), 3 (after 1): 1.5-2.5, 4 (after 2, 3): 6.5-7.5
    return [
        TaskTiming("1", 0, 100.0, 101.0),
        TaskTiming("2", 0, 100.0, 106.0),
        TaskTiming("3", 1, 101.5, 102.5),
        TaskTiming("4", 2, 106.5, 107.5),
    ]


def test_summary_numbers():
    m = compute_metrics(
        "run1", timings(), DEPS, ["1", "2", "3", "4"], 3, run_started_at=99.0, agent_slots=2
    )
    s = m.summary
    assert s["sequential_time_s"] == pytest.approx(9.0)
    assert s["parallel_time_s"] == pytest.approx(7.5)
    assert s["actual_speedup"] == pytest.approx(1.2)
    assert s["theoretical_speedup"] == pytest.approx(4 / 3, abs=1e-3)
    assert m.critical_path == ["2", "4"] and s["critical_path_s"] == pytest.approx(7.0)
    assert s["best_speedup"] == pytest.approx(9.0 / 7.0, abs=1e-3)
    # barriers: level 0 waits for its longest task (6), then 1 (1) and 1: 8 s against 7.5
    assert s["level_barrier_time_s"] == pytest.approx(8.0)
    assert s["dataflow_gain"] == pytest.approx(8.0 / 7.5, abs=1e-3)
    assert s["agent_utilization"] == pytest.approx(9.0 / (2 * 7.5), abs=1e-3)
    assert s["scheduling_overhead_s"] == pytest.approx(0.5)
    waits = dict(zip(m.tasks["task"], m.tasks["queue_wait_s"], strict=True))
    assert waits == {"1": 1.0, "2": 1.0, "3": 0.5, "4": 0.5}
    assert list(m.levels["wall_s"]) == [6.0, 1.0, 1.0]
    assert m.complete


def test_queue_wait_splits_into_slot_wait_and_start_up():
    # 3 became ready at 101.0 (1 finished); its step was launched at 101.2, ran at 101.5
    launched = {"1": 99.5, "2": 99.6, "3": 101.2, "4": 106.1}
    with_launches = [
        TaskTiming(t.task_id, t.level, t.started_at, t.finished_at, launched[t.task_id])
        for t in timings()
    ]
    m = compute_metrics("run1", with_launches, DEPS, list(DEPS), 3, run_started_at=99.0)
    row = m.tasks.set_index("task").loc["3"]
    assert row["slot_wait_s"] == pytest.approx(0.2) and row["start_up_s"] == pytest.approx(0.3)
    assert row["slot_wait_s"] + row["start_up_s"] == pytest.approx(row["queue_wait_s"])
    assert m.summary["median_start_up_s"] == pytest.approx(0.4)  # 0.5, 0.4, 0.3, 0.4
    assert any("starting the step 0.40 s" in line for line in telemetry_lines(m))

    unknown = compute_metrics("run2", timings(), DEPS, list(DEPS), 3, run_started_at=99.0)
    assert unknown.tasks["start_up_s"].isna().all()
    lines = telemetry_lines(unknown)
    assert any("waiting for an agent slot n/a" in line for line in lines)
    assert "NaN" not in "\n".join(lines)


def test_partial_run_says_what_is_missing():
    partial = [t for t in timings() if t.task_id in ("1", "2")]
    m = compute_metrics("run2", partial, DEPS, ["1", "2", "3", "4"], 3, failed=["3"])
    assert m.failed == ["3"] and m.missing == ["4"] and not m.complete
    lines = telemetry_lines(m)
    assert "📊 PERFORMANCE TELEMETRY" in lines[0]
    assert any("Missing (did not run): tasks 4" in line for line in lines)
    assert any("Failed: tasks 3" in line for line in lines)


def test_empty_run_and_chart():
    empty = compute_metrics("run3", [], DEPS, ["1"], 1)
    assert empty.summary["actual_speedup"] == 0.0 and empty.missing == ["1"]
    png = gantt_png(compute_metrics("run4", timings(), DEPS, list(DEPS), 3))
    assert png.startswith(b"\x89PNG") and len(png) > 5000
