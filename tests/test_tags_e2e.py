"""Several tags, statuses and write-back through a real run: `dagster job execute`, a real git
remote, the demo agent, and a GitHub stand-in for the PRs."""

from __future__ import annotations

import json
import subprocess

import pytest

from cto_dagster.core.planning.mermaid import parse_edges
from cto_dagster.core.taskmaster.complexity import report_path
from tests.conftest import demo_task
from tests.fake_github import FakeGitHub

pytestmark = pytest.mark.slow


def _tags() -> dict:
    return {
        "database": {
            "tasks": [
                demo_task(1, duration=0.5),
                demo_task(2, deps=[1], duration=0.5),
                demo_task(3, deps=[1], duration=1.5),
            ],
            "metadata": {"description": "Database layer"},
        },
        "api": {
            "tasks": [demo_task(1), demo_task(2, deps=[1])],
            "metadata": {"description": "HTTP API", "dependsOn": ["database"]},
        },
    }


def _tasks_file_on(project, branch: str) -> dict:
    return json.loads(project.git("show", f"{branch}:.taskmaster/tasks/tasks.json"))


def test_two_tags_run_in_order_and_the_integration_branch_says_review(make_project):
    report = {"complexityAnalysis": [{"taskId": 3, "complexityScore": 8}]}
    with FakeGitHub() as github:
        project = make_project(
            _tags(),
            settings={
                "all_tags": True,
                **github.settings(),
            },
            files={report_path("database"): json.dumps(report)},
        )
        original = project.git("show", "main:.taskmaster/tasks/tasks.json")
        result = project.execute(CTO_TEST_TOKEN="ghp_tagsTestToken1234567890")
        pulls = list(github.pulls)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    records = project.records()
    assert set(records) == {"database.1", "database.2", "database.3", "api.1", "api.2"}
    finished = {t: r.number("finished_at") for t, r in records.items()}
    started = {t: r.number("started_at") for t, r in records.items()}
    # the api tag waits for every database task
    assert min(started["api.1"], started["api.2"]) >= max(
        finished[t] for t in ("database.1", "database.2", "database.3")
    )
    # api.1 builds on the database's work
    files = project.git("ls-tree", "-r", "--name-only", "feature/task-api.1-implementation")
    assert "tasks/task-database.2.md" in files and "tasks/task-database.3.md" in files

    # the last integration branch carries every task that ran as `review`; main is untouched
    branches = project.git("branch", "--list", "integration/*").split()
    last = max(branches, key=lambda b: int(b.split("-")[1]))
    data = _tasks_file_on(project, last)
    statuses = {(tag, str(t["id"])): t["status"] for tag in data for t in data[tag]["tasks"]}
    assert set(statuses.values()) == {"review"}, statuses
    assert project.git("show", "main:.taskmaster/tasks/tasks.json") == original
    # written as TaskMaster writes it: only the status lines differ from main's file
    diff = project.git("diff", "main", last, "--", ".taskmaster/tasks/tasks.json")
    changed = [
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert len(changed) == 2 * len(records) and all('"status"' in line for line in changed)
    # task branches never touch the tasks file: no conflict when the PRs merge
    for task_id in records:
        assert "tasks.json" not in project.git(
            "diff", "--name-only", "main", f"feature/task-{task_id}-implementation"
        )

    # each PR says what its merge records, and shows the plan
    assert pulls and all("```mermaid" in p["body"] for p in pulls)
    assert "to `review` in `.taskmaster/tasks/tasks.json`" in pulls[0]["body"]

    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(project.home) as instance:
        keys = {key.path[-1] for key in instance.get_asset_keys()}
    assert {"task_database_001", "task_api_002"} <= keys


def test_review_tasks_are_built_on_and_write_back_can_be_turned_off(make_project, tmp_path):
    tasks = [
        demo_task(1, status="review"),
        demo_task(2, deps=[1]),
        demo_task(3, status="blocked"),
        demo_task(4, deps=[3]),
        demo_task(5, status="in-progress"),
    ]
    project = make_project(tasks, settings={"status_write_back": "off"})
    # task 1 was implemented earlier and reviewed: its branch holds a reviewer's fix-up
    clone = tmp_path / "clone"
    git = ["git", "-C", str(clone), "-c", "user.name=r", "-c", "user.email=r@example.com"]
    subprocess.run(["git", "clone", "-q", str(project.remote), str(clone)], check=True)
    subprocess.run([*git, "checkout", "-q", "-b", "feature/task-1-implementation"], check=True)
    (clone / "reviewed.txt").write_text("fixed in review\n", encoding="utf-8")
    subprocess.run([*git, "add", "reviewed.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Task 1, reviewed"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "feature/task-1-implementation"], check=True)
    review_head = project.git("rev-parse", "feature/task-1-implementation").strip()

    result = project.execute()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = project.records()
    assert set(records) == {"2", "5"}  # 1 in review, 3 blocked, 4 behind it
    # 2 was cut from the base with the review branch merged in, as the branch stands now
    project.git("merge-base", "--is-ancestor", review_head, "feature/task-2-implementation")
    files = project.git("ls-tree", "-r", "--name-only", "feature/task-2-implementation")
    assert "reviewed.txt" in files.split()
    assert project.git("rev-parse", "feature/task-1-implementation").strip() == review_head
    branches = project.git("branch", "--list", "integration/*").split()
    for branch in branches:  # write-back off: the tasks file as on main
        assert {t["status"] for t in _tasks_file_on(project, branch)["master"]["tasks"]} == {
            "review",
            "pending",
            "blocked",
            "in-progress",
        }


def test_tag_groups_complexity_and_the_chart_in_the_job_description(make_project):
    report = {"complexityAnalysis": [{"taskId": 3, "complexityScore": 8}]}
    project = make_project(
        _tags(), settings={"all_tags": True}, files={report_path("database"): json.dumps(report)}
    )
    from cto_dagster.core.settings import load_settings, plan_project
    from cto_dagster.defs.project import job_description

    env = project.env()
    settings = load_settings(env)
    plan = plan_project(settings.projects[0], environ=env)
    text = job_description(settings.projects[0], plan)
    assert "(tags database, api)" in text
    chart = text.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    _, edges = parse_edges(chart)
    assert edges == {(t, d) for t in plan.task_ids for d in plan.dependencies[t]}

    import dagster as dg

    from cto_dagster.defs.project import build_project_definitions

    defs = build_project_definitions(settings.projects[0], plan, single=True)
    specs = {spec.key.path[-1]: spec for asset in defs.assets for spec in asset.specs}
    assert specs["task_database_003"].metadata["complexity"] == 8
    assert specs["task_database_001"].metadata["complexity"] == "(no report)"
    assert specs["task_api_001"].group_name == "proj_api"
    assert specs["task_database_002"].group_name == "proj_database"
    assert specs["integration_level_0"].group_name == "proj_integration"
    assert specs["task_api_001"].tags["cto/tag"] == "api"
    deps = {d.asset_key for d in specs["task_api_001"].deps}
    assert deps == {
        dg.AssetKey(["proj", "task_database_002"]),
        dg.AssetKey(["proj", "task_database_003"]),
    }
