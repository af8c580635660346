"""Run metrics from timings: the numbers the asset and `cto-dagster report` show."""

import pytest

from cto_dagster.core.metrics.speedup import TaskTiming, compute_metrics, gantt_svg, telemetry_lines

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
    svg = gantt_svg(compute_metrics("run4", timings(), DEPS, list(DEPS), 3))
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(svg)  # well-formed
    assert root.tag.endswith("svg") and root.get("width") == "900"
    assert svg.count("<title>task ") == 4  # a bar a task
    assert svg.count('fill="url(#hatch)"') == 2  # 2 -> 4, the critical path
    assert "L0 · task 2" in svg and "1.33x theoretical" in svg


def test_a_re_executed_run_reads_complete_with_its_parent_runs_work():
    from cto_dagster.core.metrics.speedup import RunPart, join_runs

    # run A did 1 and 2 (0-1 s, 0-6 s) then 3 failed; an hour later run B re-executed 3 and 4
    first = RunPart("run-a", 99.0, [TaskTiming("1", 0, 100.0, 101.0), timings()[1]])
    later = 3600.0
    second = RunPart(
        "run-b",
        later + 106.0,
        [
            TaskTiming("3", 1, later + 106.5, later + 107.5),
            TaskTiming("4", 2, later + 108, later + 109),
        ],
    )
    joined, started = join_runs([first, second])
    assert started == 99.0
    by_task = {t.task_id: t for t in joined}
    assert by_task["1"].from_run == "run-a" and by_task["4"].from_run is None
    # the hour between the runs is cut out: run B starts where run A's work ended (106)
    assert by_task["3"].started_at == pytest.approx(106.5)
    m = compute_metrics("run-b", joined, DEPS, list(DEPS), 3, run_started_at=started)
    assert m.complete and m.missing == [] and m.summary["tasks_finished"] == 4
    assert m.summary["parallel_time_s"] == pytest.approx(9.0)  # 100 -> 109 on the joined line
    assert m.summary["actual_speedup"] == pytest.approx(9.0 / 9.0)
    runs = dict(zip(m.tasks["task"], m.tasks["run"], strict=True))
    assert runs == {"1": "run-a", "2": "run-a", "3": "this run", "4": "this run"}
    # 3 waited for its own run to start, not for the hour before it
    waits = dict(zip(m.tasks["task"], m.tasks["queue_wait_s"], strict=True))
    assert waits["3"] == pytest.approx(0.5)


def test_a_task_redone_by_the_re_execution_counts_once_from_the_newest_run():
    from cto_dagster.core.metrics.speedup import RunPart, join_runs

    first = RunPart("run-a", 0.0, [TaskTiming("1", 0, 1.0, 2.0)])
    second = RunPart("run-b", 10.0, [TaskTiming("1", 0, 11.0, 15.0)])
    joined, _ = join_runs([first, second])
    assert [(t.task_id, t.finished_at - t.started_at, t.from_run) for t in joined] == [
        ("1", 4.0, None)
    ]


def test_timeline_text_marks_the_critical_path():
    from cto_dagster.core.metrics.speedup import timeline_text

    text = timeline_text(compute_metrics("run1", timings(), DEPS, list(DEPS), 3))
    lines = text.splitlines()
    assert lines[0] == "```" and lines[-1] == "```" and len(text) < 1000
    line_2 = next(line for line in lines if line.startswith("L0      2"))
    assert "#" in line_2 and "6.0s" in line_2  # 2 -> 4 is the critical path
    assert "=" in next(line for line in lines if line.startswith("L0      1"))


def test_agent_usage_is_summed_per_run_where_reported():
    reported = [
        TaskTiming("1", 0, 100.0, 101.0, usage={"agent_cost_usd": 0.5, "agent_input_tokens": 10}),
        TaskTiming("2", 0, 100.0, 106.0, usage={"agent_cost_usd": 0.25, "agent_input_tokens": 5}),
        TaskTiming("3", 1, 101.5, 102.5),
    ]
    m = compute_metrics("run1", reported, DEPS, ["1", "2", "3"], 2)
    assert m.summary["agent_cost_usd"] == pytest.approx(0.75)
    assert m.summary["agent_input_tokens"] == 15
    import math

    assert math.isnan(m.summary["agent_output_tokens"])  # nobody reported it: n/a, not 0
    assert any(line.startswith("💰 Agents: $0.7500, 15 input") for line in telemetry_lines(m))
    quiet = compute_metrics("run2", timings(), DEPS, list(DEPS), 3)
    assert not any("💰" in line for line in telemetry_lines(quiet))
