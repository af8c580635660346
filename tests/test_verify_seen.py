"""Verified work seen everywhere (issue 28, items 5 and 6): the verified line, each task's time
split (setup, agent, checks, repairs) in the metrics and the Gantt chart, check time across runs;
and the demo's scripted story, run for real on the sample's files with the interpreter alone: a
task whose first attempt fails its checks and is repaired, and two tasks that pass alone and fail
together, repaired on the integration branch by the demo agent."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cto_dagster.core.demo.sample_repository import demo_repository_files, demo_tasks_json
from cto_dagster.core.metrics.speedup import TaskTiming, check_time_svg, compute_metrics, gantt_svg
from cto_dagster.core.metrics.speedup import telemetry_lines as lines_of
from cto_dagster.core.metrics.verify_summary import (
    count_verified,
    level_verdict,
    task_verdict,
    verified_line,
)
from cto_dagster.core.settings.loading import demo_checks, demo_settings

DEPS = {"1": [], "2": ["1"]}


def test_the_verified_line_counts_tasks_repairs_and_levels():
    counts = count_verified(
        {"1": "passed", "2": "repaired", "3": "repaired"},
        {0: "passed", 1: "repaired", 2: "passed"},
        levels_planned=3,
    )
    line = verified_line(counts)
    assert line == "✅ Verified: 3/3 tasks (2 after repair), 3/3 levels (1 repaired by an agent)"


def test_the_verified_line_names_what_failed_and_counts_what_never_got_checked():
    counts = count_verified({"1": "passed", "2": "failed"}, {0: "failed"}, ["1", "2", "3"], 2)
    assert verified_line(counts) == (
        "❌ Verified: 1/3 tasks, 0/2 levels; checks failed: task 2, level 0"
    )


def test_nothing_is_said_without_checks_and_levels_only_where_checked():
    assert verified_line(count_verified({"1": None}, {0: None}, ["1"], 1)) is None
    # `verify.integration: false`: the tasks' checks ran, no integration branch's did
    only_tasks = count_verified({"1": "passed"}, {0: None}, ["1"], 1)
    assert verified_line(only_tasks) == "✅ Verified: 1/1 tasks"


def test_verdicts_are_read_from_what_the_steps_recorded():
    assert task_verdict("materialized", {"verified": "passed", "repair_attempts": 0}) == "passed"
    assert task_verdict("materialized", {"verified": "passed", "repair_attempts": 1}) == "repaired"
    assert task_verdict("materialized", {"verified": "failed"}) == "failed"
    # a baseline failure fails the step; its failure metadata holds the verification
    assert task_verdict("failed", {"verification": "failed: ..."}) == "failed"
    assert task_verdict("failed", {"agent_exit_code": 1}) is None
    assert task_verdict("materialized", {}) is None
    assert level_verdict({"verified": "passed", "repaired_by_agent": True}) == "repaired"
    assert level_verdict({"verified": "passed", "repaired_by_agent": False}) == "passed"
    assert level_verdict({}) is None


def split_timings():
    return [
        TaskTiming(
            "1",
            0,
            100.0,
            110.0,
            split={"agent_s": 5.0, "check_s": 2.0, "setup_s": 1.0},
            verified="passed",
        ),
        TaskTiming(
            "2",
            1,
            110.0,
            120.0,
            split={"agent_s": 3.0, "check_s": 3.0, "setup_s": 0.0, "repair_s": 2.0},
            verified="repaired",
        ),
    ]


def test_each_tasks_time_is_split_and_summed_per_run():
    counts = count_verified({"1": "passed", "2": "repaired"}, {})
    m = compute_metrics("run1", split_timings(), DEPS, ["1", "2"], 2, verified=counts)
    row = m.tasks.set_index("task").loc["2"]
    assert (row["agent_s"], row["check_s"], row["repair_s"]) == (3.0, 3.0, 2.0)
    assert row["verified"] == "repaired"
    s = m.summary
    assert (s["check_time_s"], s["setup_time_s"], s["repair_time_s"]) == (5.0, 1.0, 2.0)
    assert (s["tasks_verified"], s["tasks_repaired"]) == (2, 1)
    text = "\n".join(lines_of(m))
    assert "✅ Verified: 2/2 tasks (1 after repair)" in text
    assert "🧪 Checks 5.0 s, setup 1.0 s, repairs 2.0 s" in text


def test_without_checks_the_report_is_as_before():
    plain = [TaskTiming("1", 0, 100.0, 101.0), TaskTiming("2", 1, 101.0, 103.0)]
    m = compute_metrics("run1", plain, DEPS, ["1", "2"], 2)
    text = "\n".join(lines_of(m))
    assert "Verified" not in text and "check_s" not in text and "check_time_s" not in m.summary
    assert "legend" not in gantt_svg(m) and "checks" not in gantt_svg(m)


def test_the_gantt_chart_shows_where_each_tasks_time_went():
    m = compute_metrics("run1", split_timings(), DEPS, ["1", "2"], 2)
    svg = gantt_svg(m)
    # task 2: agent 3 s (its level's colour), checks 3 s, repairs 2 s, git the rest (2 s)
    assert "task 2: checks 3.0 s" in svg and "task 2: repairs 2.0 s" in svg
    assert "task 2: git 2.0 s" in svg and "task 1: setup 1.0 s" in svg
    assert svg.count('fill="#1a7f37"') == 3  # two tasks' checks, and the legend
    assert ">repairs</text>" in svg  # the legend


def test_check_time_per_task_is_drawn_across_runs():
    svg = check_time_svg([("run-a", {"1": 1.0, "2": 2.0}), ("run-b", {"1": 4.0})])
    assert svg.count("<polyline") == 2
    assert ">run-a</text>" in svg and ">run-b</text>" in svg and ">task 2</text>" in svg


# the demo's story, on the sample's real files


def demo_tasks() -> dict[int, dict]:
    return {t["id"]: t for t in json.loads(demo_tasks_json())["master"]["tasks"]}


def write(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content, encoding="utf-8")


def checks_pass(root: Path) -> tuple[bool, str]:
    (argv,) = demo_checks()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, env=env, timeout=60)
    return done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def sample(tmp_path) -> Path:
    root = tmp_path / "sample"
    write(root, demo_repository_files())
    write(root, {".taskmaster/tasks/tasks.json": demo_tasks_json()})
    return root


def demo_agent(root: Path, task: dict | None, **env: str) -> subprocess.CompletedProcess:
    """The demo agent as a repair runs it (CTO_REPAIR_ATTEMPT, CTO_CHECK_OUTPUT_FILE)."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("CTO_")}
    if task is not None:
        task_file = root.parent / "task.json"
        task_file.write_text(json.dumps(task), encoding="utf-8")
        variables.update(CTO_TASK_FILE=str(task_file), CTO_TASK_ID=str(task["id"]))
    variables.update(env)
    return subprocess.run(
        [sys.executable, "-m", "cto_dagster.core.demo.agent"],
        cwd=root,
        capture_output=True,
        text=True,
        env=variables,
        timeout=60,
    )


def test_the_samples_suite_passes_on_the_base(sample):
    ok, output = checks_pass(sample)
    assert ok, output
    assert "Ran 2 tests" in output


def test_the_demo_task_fails_its_checks_then_its_repair_passes(sample, tmp_path):
    catalog = demo_tasks()[6]
    write(sample, catalog["metadata"]["demo"]["files"])
    ok, output = checks_pass(sample)
    assert not ok and "test_products_are_listed_by_category" in output
    failure = tmp_path / "failure.txt"
    failure.write_text(output, encoding="utf-8")
    catalog["metadata"]["demo"]["repair"]["duration"] = 0
    repaired = demo_agent(
        sample, catalog, CTO_REPAIR_ATTEMPT="1", CTO_CHECK_OUTPUT_FILE=str(failure)
    )
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repair 1: the checks failed: AssertionError" in repaired.stdout
    ok, output = checks_pass(sample)
    assert ok, output


def test_two_demo_tasks_pass_alone_fail_together_and_the_integration_repair_fixes_it(
    sample, tmp_path
):
    tasks = demo_tasks()
    renames, calls = tasks[2]["metadata"]["demo"]["files"], tasks[9]["metadata"]["demo"]["files"]
    routes = tasks[7]["metadata"]["demo"]["files"]  # task 9 builds on 7 (and 8)
    for number, alone in enumerate((renames, {**routes, **calls})):
        tree = tmp_path / f"alone-{number}"
        shutil.copytree(sample, tree)
        write(tree, alone)
        ok, output = checks_pass(tree)
        assert ok, output
    write(sample, {**routes, **renames, **calls})
    ok, output = checks_pass(sample)
    assert not ok and "has no attribute 'link'" in output
    failure = tmp_path / "failure.txt"
    failure.write_text(output, encoding="utf-8")
    env = {"CTO_REPAIR_ATTEMPT": "1", "CTO_CHECK_OUTPUT_FILE": str(failure)}
    fixed = demo_agent(sample, None, CTO_MERGE_INTO="integration/level-1-abc", **env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "the checks fail after merging" in fixed.stdout
    assert "task 9's code meets the failure" in fixed.stdout
    ok, output = checks_pass(sample)
    assert ok, output
    # a failure it knows no fix for: it says so and fails (nothing is pushed then)
    failure.write_text("AssertionError: something else", encoding="utf-8")
    unknown = demo_agent(sample, None, CTO_MERGE_INTO="integration/level-1-abc", **env)
    assert unknown.returncode == 1 and "no fix known" in unknown.stdout


def test_the_demo_project_checks_its_tasks_and_integration_branches(tmp_path):
    project = demo_settings(tmp_path / "demo").projects[0]
    assert [list(c) for c in project.verify.checks] == demo_checks()
    assert project.verify.integration and project.verify.integration_repair == "agent"
    assert project.verify.repair_attempts == 1
