"""Run progress: done/total, what runs, and an estimate of the time left."""

import pytest

from cto_dagster.core.metrics.progress import RunProgress, format_duration

DEPS = {"1": [], "2": [], "3": ["1"], "4": ["2", "3"]}


def test_no_estimate_until_something_says_how_long_a_task_takes():
    progress = RunProgress(DEPS, slots=2)
    progress.start("1", 0.0)
    progress.start("2", 0.0)
    assert progress.seconds_left(1.0) is None
    assert progress.line(1.0) == "[0/4 tasks done · running 1, 2]"


def test_estimate_from_tasks_finished_so_far_follows_the_remaining_chain():
    progress = RunProgress(DEPS, slots=2)
    progress.start("1", 0.0)
    progress.start("2", 0.0)
    progress.finish("1", 10.0)  # mean 10 s a task
    progress.start("3", 10.0)
    # at 12: 2 has ~0 s left (10 - 12 < 0), 3 has 8 s left, then 4 (10 s): chain 18 s
    assert progress.seconds_left(12.0) == pytest.approx(18.0)
    assert progress.line(12.0) == "[1/4 tasks done · running 2, 3 · about 18 s left]"


def test_predictions_win_over_the_mean_and_slots_bound_the_work():
    progress = RunProgress(DEPS, slots=1, predicted={"1": 5, "2": 5, "3": 5, "4": 5})
    # nothing started: one slot does 20 s of work; the chain alone would say 15 s
    assert progress.seconds_left(0.0) == pytest.approx(20.0)


def test_failed_tasks_and_their_dependents_are_not_waited_for():
    progress = RunProgress(DEPS, slots=2)
    for task in ("1", "2"):
        progress.start(task, 0.0)
    progress.finish("2", 4.0)
    progress.fail("1")
    assert progress.seconds_left(5.0) == 0.0  # 3 and 4 cannot run any more
    assert progress.line(5.0) == "[1/4 tasks done · 1 failed]"
    progress.start("1", 6.0)  # a retry
    assert "running 1" in progress.line(6.0) and "failed" not in progress.line(6.0)


def test_durations_read_at_a_glance():
    assert format_duration(42.4) == "42 s"
    assert format_duration(185) == "3 min 5 s"
    assert format_duration(7800) == "2 h 10 min"
    assert format_duration(3600) == "1 h"
