"""Levels, statistics, critical path, statuses and advice."""

import pytest

from cto_dagster.core.planning.planner import build_plan, plan_tasks_file
from cto_dagster.core.taskmaster import TasksFileError, read_task_list
from tests.helpers import GUIDE_EXAMPLE, tagged, task, write_tasks


def plan(tmp_path, *tasks, include_all=False):
    path = write_tasks(tmp_path, tagged(*tasks))
    return build_plan(read_task_list(path, environ={}), include_all=include_all)


def test_guide_example():
    result = plan_tasks_file(GUIDE_EXAMPLE, environ={})
    assert result.levels == [["1", "3", "5"], ["2", "6"], ["4"]]
    assert result.stats == {
        "total_tasks": 6,
        "total_levels": 3,
        "max_parallelism": 3,
        "avg_parallelism": 2.0,
        "theoretical_speedup": 2.0,
    }
    # durations are known in the example: 3 (6 s) then 4 (2 s) beats 1 -> 2 -> 4 (7 s)
    assert result.critical_path == ["3", "4"]
    assert result.critical_path_seconds == 8.0


def test_quick_start_example(tmp_path):
    result = plan(tmp_path, task(1), task(2, [1]), task(3), task(4, [2, 3]))
    assert result.levels == [["1", "3"], ["2"], ["4"]]
    assert result.critical_path == ["1", "2", "4"]
    assert result.critical_path_seconds is None


def test_level_is_one_more_than_deepest_dependency(tmp_path):
    result = plan(tmp_path, task(1), task(2, [1]), task(3, [2]), task(4, [1]), task(5, [4, 3]))
    assert result.level_of == {"1": 0, "2": 1, "4": 1, "3": 2, "5": 3}


def test_mixed_ids_sort_numeric_then_slug(tmp_path):
    result = plan(tmp_path, task("zeta"), task(10), task(2), task("alpha"))
    assert result.levels == [["2", "10", "alpha", "zeta"]]


def test_done_tasks_are_skipped_and_satisfy_dependents(tmp_path):
    result = plan(
        tmp_path,
        task(1, status="done"),
        task(2, [1]),
        task(3, [2], status="completed"),
        task(4, [3]),
    )
    assert result.levels == [["2", "4"]]
    assert result.skipped == [
        {"id": "1", "status": "done", "group": "done"},
        {"id": "3", "status": "completed", "group": "done"},
    ]


def test_cancelled_and_deferred_block_everything_downstream(tmp_path):
    result = plan(
        tmp_path,
        task(1, status="cancelled"),
        task(2, [1]),
        task(3, [2]),
        task(4, status="deferred"),
        task(5, [4, 6]),
        task(6),
        task(7, status="todo"),
    )
    assert result.levels == [["6", "7"]]
    assert result.blocked == [
        {"id": "2", "reason": "depends on cancelled task 1"},
        {"id": "3", "reason": "waits for blocked task 2"},
        {"id": "5", "reason": "depends on deferred task 4"},
    ]
    assert {s["id"] for s in result.skipped} == {"1", "4"}


def test_all_plans_every_task(tmp_path):
    result = plan(
        tmp_path,
        task(1, status="done"),
        task(2, [1], status="cancelled"),
        task(3, [2]),
        include_all=True,
    )
    assert result.levels == [["1"], ["2"], ["3"]]
    assert result.skipped == [] and result.blocked == []


def test_redundant_dependencies_and_no_parallelism_advice(tmp_path):
    result = plan(tmp_path, task(1), task(2, [1]), task(3, [2, 1]))
    assert result.redundant_dependencies == [("3", "1")]
    assert any("No parallelism detected" in line for line in result.advice)
    assert any("3 -> 1" in line for line in result.advice)


def test_empty_and_all_done(tmp_path):
    assert plan(tmp_path).stats["total_tasks"] == 0
    result = plan(tmp_path, task(1, status="done"))
    assert result.levels == [] and result.stats["theoretical_speedup"] == 0.0


def test_cycles_are_printed_as_chains(tmp_path):
    with pytest.raises(TasksFileError) as info:
        plan(tmp_path, task(5, [16]), task(16, [5]), task(1, [2]), task(2, [3]), task(3, [1]))
    problems = info.value.problems
    assert "dependency cycle: 1 -> 2 -> 3 -> 1" in problems
    assert "dependency cycle: 5 -> 16 -> 5" in problems


def test_colliding_asset_names_are_refused(tmp_path):
    with pytest.raises(TasksFileError, match="both become asset task_a_b"):
        plan(tmp_path, task("a-b"), task("a_b"))
