"""TaskMaster as it is written today: tags that depend on tags, statuses as TaskMaster means them,
the complexity report, the Mermaid chart, status write-back and long ids. On fixtures the project
writes, and on the real corpus when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cto_dagster.cli import main
from cto_dagster.core.planning.mermaid import parse_edges, render_mermaid
from cto_dagster.core.planning.planner import build_plan, plan_tasks_file
from cto_dagster.core.support.names import (
    asset_name_for,
    canonical_id,
    check_branch_name,
    label_value,
    task_branch,
)
from cto_dagster.core.taskmaster import TasksFileError, read_tasks
from cto_dagster.core.taskmaster.complexity import parse_report, report_path
from cto_dagster.core.taskmaster.write_back import set_statuses
from tests.helpers import FIXTURES, corpus_files, tagged, task, write_tasks

TWO_TAGS = FIXTURES.parent / "projects" / "two_tags"


# ---------------------------------------------------------------------------------------------
# Tags that depend on tags


def test_a_tag_waits_for_every_task_of_the_tag_it_depends_on():
    plan = plan_tasks_file(TWO_TAGS, all_tags=True, environ={})
    assert plan.planned_tags == ("database", "api")
    database = [t for t in plan.task_ids if t.startswith("database.")]
    api = [t for t in plan.task_ids if t.startswith("api.")]
    assert sorted(database) == ["database.1", "database.2", "database.3"]
    assert sorted(api) == ["api.1", "api.2", "api.3"]
    # every api task is after every database task, through the dependencies themselves
    assert min(plan.level_of[t] for t in api) > max(plan.level_of[t] for t in database)
    assert set(plan.cross_tag_dependencies) == {
        (first, last) for first in ("api.1", "api.2") for last in ("database.2", "database.3")
    }
    for first in ("api.1", "api.2"):
        assert set(plan.dependencies_to_run(first)) == {"database.2", "database.3"}


def test_tags_on_the_command_line_and_the_json_plan(capsys):
    assert main(["plan", str(TWO_TAGS), "--tag", "database", "--tag", "api", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tags"] == ["database", "api"]
    assert data["levels"][0] == ["database.1"] and data["levels"][-1] == ["api.3"]
    assert {"task": "api.1", "dependency": "database.2"} in data["cross_tag_dependencies"]
    assert main(["plan", str(TWO_TAGS), "--all-tags"]) == 0
    text = capsys.readouterr().out
    assert "Tags: database, api (api waits for database)" in text
    assert "Task api.3: Wire the router (complexity 9)" in text


def test_one_tag_alone_is_planned_with_advice_about_the_tag_it_waits_for():
    plan = plan_tasks_file(TWO_TAGS, tag="api", environ={})
    assert plan.task_ids == ["1", "2", "3"] and not plan.cross_tag_dependencies
    assert any("--tag database --tag api" in line for line in plan.advice)


def test_tag_cycles_and_missing_tags_are_reported_together(capsys):
    path = FIXTURES / "tag_cycle.json"
    assert main(["plan", str(path), "--all-tags"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("❌ ")
    assert "tag cycle: a -> b -> a" in err
    assert "tag c depends on tag nowhere, which does not exist" in err


def test_a_needed_tag_left_out_of_a_plan_of_several_is_a_problem(tmp_path):
    data = {
        "db": {"tasks": [task(1)]},
        "api": {"tasks": [task(1)], "metadata": {"dependsOn": ["db"]}},
        "web": {"tasks": [task(1)], "metadata": {"dependsOn": ["api"]}},
    }
    path = write_tasks(tmp_path, data)
    with pytest.raises(TasksFileError) as failure:
        plan_tasks_file(path, tags=["api", "web"], environ={})
    assert "tag api depends on tag db, which is not planned and not done" in failure.value.render()
    data["db"]["tasks"][0]["status"] = "done"  # a finished tag need not be planned
    path = write_tasks(tmp_path, data)
    plan = plan_tasks_file(path, tags=["api", "web"], environ={})
    assert plan.levels == [["api.1"], ["web.1"]]


def test_unknown_tags_on_the_command_line_name_the_tags_present(capsys):
    assert main(["plan", str(TWO_TAGS), "--tag", "database", "--tag", "nope"]) == 1
    err = capsys.readouterr().err
    assert "'nope'" in err and "tags present: database, api" in err


def test_task_problems_of_every_tag_come_together(tmp_path):
    data = {
        "a": {"tasks": [task(1, [1]), task(2, [9])]},
        "b": {"tasks": [task(1, [2]), task(2, [1])]},
    }
    with pytest.raises(TasksFileError) as failure:
        plan_tasks_file(write_tasks(tmp_path, data), all_tags=True, environ={})
    text = failure.value.render()
    assert "tag a: task 1 depends on itself" in text
    assert "tag a: task 2 depends on 9, which does not exist" in text
    assert "dependency cycle: b.1 -> b.2 -> b.1" in text


@pytest.mark.parametrize("path", corpus_files()[:97], ids=lambda p: p.name)
def test_corpus_plans_all_its_tags_or_names_why(path, capsys):
    code = main(["plan", str(path), "--all-tags", "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code == 1:
        assert err.startswith("❌ ")
        return
    data = json.loads(out)
    plan = plan_tasks_file(path, all_tags=True, environ={})
    _, edges = parse_edges(render_mermaid(plan, max_nodes=10_000))
    assert edges == {(t, d) for t in plan.task_ids for d in plan.dependencies[t]}
    assert sum(map(len, data["levels"])) == len(plan.task_ids)


# ---------------------------------------------------------------------------------------------
# Statuses


def _plan(tmp_path: Path, *tasks: dict, include_all: bool = False):
    return plan_tasks_file(write_tasks(tmp_path, tagged(*tasks)), include_all=include_all)


def test_review_is_not_run_again_and_its_dependents_build_on_its_branch(tmp_path):
    plan = _plan(tmp_path, task(1), task(2, [1], status="review"), task(3, [2]), task(4, [3]))
    assert plan.task_ids == ["1", "3", "4"]
    # 3 builds on 2's branch, and waits for what 2 waits for (1 runs again in this plan)
    assert plan.review_dependencies("3") == ["2"]
    assert plan.dependencies_to_run("3") == ["1"]
    assert {"id": "2", "status": "review", "group": "review"} in plan.skipped
    again = _plan(tmp_path, task(1), task(2, [1], status="review"), task(3, [2]), include_all=True)
    assert again.task_ids == ["1", "2", "3"] and not again.reviewed


def test_blocked_holds_like_deferred_and_in_progress_runs(tmp_path):
    plan = _plan(
        tmp_path,
        task(1, status="blocked"),
        task(2, [1]),
        task(3, status="in-progress"),
        task(4, status="deferred"),
        task(5, [4]),
    )
    assert plan.task_ids == ["3"]
    assert [b["id"] for b in plan.blocked] == ["2", "5"]
    assert plan.blocked[0]["reason"] == "depends on blocked task 1"


def test_plan_shows_each_status_group(tmp_path, capsys):
    path = write_tasks(
        tmp_path,
        tagged(
            task(1, status="done"),
            task(2, status="review"),
            task(3, status="cancelled"),
            task(4, [3]),
            task(5, [2]),
        ),
    )
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    for heading, line in (
        ("🔍 In review", "Task 2: Task 2 [review]"),
        ("⏭️  Done (not run)", "Task 1: Task 1 [done]"),
        ("⏸️  Held", "Task 3: Task 3 [cancelled]"),
        ("⛔ Blocked", "Task 4: depends on cancelled task 3"),
    ):
        assert heading in out and line in out


# ---------------------------------------------------------------------------------------------
# Complexity


def test_the_complexity_report_is_read_for_each_tag_and_weighs_the_critical_path(tmp_path):
    assert report_path("master") == ".taskmaster/reports/task-complexity-report.json"
    assert (
        report_path("Feature Auth")
        == ".taskmaster/reports/task-complexity-report_feature-auth.json"
    )
    listed = read_tasks(TWO_TAGS, all_tags=True, environ={})
    assert listed.tasks["database.2"].complexity == 8.0 and listed.tasks["api.3"].complexity == 9
    # two branches of equal length: the complexity decides which is critical
    path = write_tasks(tmp_path, tagged(task(1), task(2), task(3, [1]), task(4, [2])))
    assert plan_tasks_file(path, environ={}).critical_path == ["1", "3"]
    report = {
        "complexityAnalysis": [
            {"taskId": 2, "complexityScore": 9},
            {"taskId": "4", "complexityScore": 7},
        ]
    }
    (tmp_path / ".taskmaster" / "reports").mkdir(parents=True)
    (tmp_path / report_path("master")).write_text(json.dumps(report), encoding="utf-8")
    plan = plan_tasks_file(path, environ={})
    assert plan.critical_path == ["2", "4"]
    assert plan.to_json()["complexity"] == {"2": 9.0, "4": 7.0}


@pytest.mark.parametrize("text", ["", "{", "[]", '{"complexityAnalysis": 3}', b"\xff"])
def test_an_unreadable_report_reads_as_no_report(text):
    assert parse_report(text) == {}


# ---------------------------------------------------------------------------------------------
# Mermaid


def _check_round_trip(plan) -> str:
    chart = render_mermaid(plan)
    nodes, edges = parse_edges(chart)
    assert edges == {(t, d) for t in plan.task_ids for d in plan.dependencies[t]}
    assert set(plan.task_ids) <= set(nodes.values())
    return chart


def test_mermaid_reads_back_as_the_same_graph_with_levels_and_styles(capsys):
    plan = plan_tasks_file(TWO_TAGS, all_tags=True, environ={})
    chart = _check_round_trip(plan)
    assert chart.startswith("flowchart TD")
    assert chart.count("subgraph L") == len(plan.levels)
    assert "class t0,t1,t4,t5 critical" in chart  # database.1 -> .2 -> api.2 -> api.3
    statuses = plan_tasks_file(FIXTURES / "statuses.json", environ={})
    chart = _check_round_trip(statuses)
    assert 'subgraph NR["Not run"]' in chart and " review" in chart and " blocked" in chart
    assert main(["plan", str(TWO_TAGS), "--all-tags", "--format", "mermaid"]) == 0
    assert capsys.readouterr().out.strip() == render_mermaid(plan)


def test_mermaid_labels_are_escaped_task_text(tmp_path):
    hostile = 'x"] --> t0\nclick t0 "javascript:alert(1)" <script>`'
    plan = _plan(tmp_path, task(1, title=hostile), task(2, [1]))
    chart = _check_round_trip(plan)
    assert "<script>" not in chart and 'javascript:alert(1)"' not in chart
    assert all(line.count('"') % 2 == 0 for line in chart.splitlines())
    assert len(chart.splitlines()) == len(
        render_mermaid(_plan(tmp_path, task(1), task(2, [1]))).splitlines()
    )


def test_a_big_plan_is_drawn_as_its_levels():
    plan = plan_tasks_file(FIXTURES.parent / "projects" / "hundred_tasks.json", environ={})
    chart = render_mermaid(plan, max_nodes=50)
    assert chart.count("-->") == len(plan.levels) - 1
    assert f"Level 0: {len(plan.levels[0])} tasks" in chart


# ---------------------------------------------------------------------------------------------
# Status write-back


def test_write_back_changes_only_the_statuses_asked_for():
    data = {
        "master": {
            "tasks": [task(1), task(2), {**task(3), "status": "done"}],
            "metadata": {"created": "2026-01-01T00:00:00.000Z"},
        },
        "api": {"tasks": [task(1)]},
    }
    original = (json.dumps(data, indent=2) + "\n").encode()
    updated = set_statuses(
        original, {"master": {"1": "review", "3": "review"}, "api": {"1": "done"}}
    )
    assert updated is not None and updated.endswith(b"}\n")
    after = json.loads(updated)
    assert [t["status"] for t in after["master"]["tasks"]] == ["review", "pending", "review"]
    assert after["api"]["tasks"][0]["status"] == "done"
    after["master"]["tasks"][0]["status"] = "pending"
    after["master"]["tasks"][2]["status"] = "done"
    after["api"]["tasks"][0]["status"] = "pending"
    assert after == data  # nothing else changed
    # TaskMaster's layout (two spaces) is kept: a one-line diff per task
    changed = [
        (a, b) for a, b in zip(original.splitlines(), updated.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 3


def test_write_back_keeps_a_hand_written_layout_and_adds_a_missing_status():
    from cto_dagster.core.demo.sample_repository import guide_tasks_json

    original = guide_tasks_json().encode()
    updated = set_statuses(original, {"master": {"1": "review", "4": "done"}})
    changed = [
        (a, b) for a, b in zip(original.splitlines(), updated.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 2
    assert all(
        a.replace(b'"pending"', b"") == b.replace(b'"review"', b"").replace(b'"done"', b"")
        for a, b in changed
    )
    no_status = b'{"master": {"tasks": [{"id": 3, "title": "t \\" \\u00e9"}]}}'
    done = set_statuses(no_status, {"master": {"3": "review"}})
    assert json.loads(done)["master"]["tasks"][0] == {"id": 3, "status": "review", "title": 't " é'}


def test_write_back_reads_every_shape_and_leaves_what_it_cannot():
    legacy = json.dumps({"tasks": [task(1)]}, indent=4).encode()
    assert b'\n    "tasks"' in set_statuses(legacy, {"master": {"1": "review"}})
    bare = json.dumps([task("7")]).encode()
    assert json.loads(set_statuses(bare, {"master": {"7": "done"}}))[0]["status"] == "done"
    assert set_statuses(b"{not json", {"master": {"1": "review"}}) is None
    assert set_statuses(legacy, {"master": {"99": "review"}}) is None  # nothing to change


# ---------------------------------------------------------------------------------------------
# Long ids


def test_long_slug_ids_and_tags_make_valid_names(tmp_path):
    long_id = "a" + "-very-long-task-id" * 5 + "x" * 9  # 100 characters, TaskMaster's longest
    assert len(long_id) == 100
    long_tag = "t" * 64
    data = {
        long_tag: {"tasks": [task(long_id), task("next", [long_id])]},
        "other": {"tasks": [task(1)]},
    }
    plan = plan_tasks_file(write_tasks(tmp_path, data), all_tags=True, environ={})
    name = f"{long_tag}.{long_id}"
    assert name in plan.task_ids and plan.dependencies_to_run(f"{long_tag}.next") == [name]
    assert check_branch_name(task_branch(name)) == f"feature/task-{name}-implementation"
    label = label_value(name)
    assert len(label) <= 63 and label != label_value(f"{long_tag}.{long_id[:-1]}y")
    assert asset_name_for(name).startswith("task_" + "t" * 64 + "_a_very_long")


def test_plans_of_the_same_file_are_the_same_whatever_the_tag_order(tmp_path):
    one = plan_tasks_file(TWO_TAGS, tags=["api", "database"], environ={})
    two = plan_tasks_file(TWO_TAGS, tags=["database", "api"], environ={})
    assert one.levels == two.levels and one.dependencies == two.dependencies


def test_build_plan_of_a_combined_list_keeps_problems_first(tmp_path):
    listed = read_tasks(FIXTURES / "tag_cycle.json", all_tags=True, environ={})
    assert any("tag cycle" in p for p in listed.problems)
    with pytest.raises(TasksFileError):
        build_plan(listed)


def test_long_ids_load_as_definitions_with_short_tags_and_labels(tmp_path):
    """Dagster tag values and Kubernetes labels hold 63 characters: long ids are cut there with
    a stable hash, and the whole id stays in the step's op tag and the asset's metadata."""
    import dagster as dg

    from cto_dagster.core.settings import ProjectSettings
    from cto_dagster.defs.k8s_tags import step_labels
    from cto_dagster.defs.project import build_project_definitions

    long_id = "b" * 100
    long_tag = "c" * 64
    data = {long_tag: {"tasks": [task(long_id), task(2, [long_id])]}, "x": {"tasks": [task(1)]}}
    plan = plan_tasks_file(write_tasks(tmp_path, data), all_tags=True, environ={})
    project = ProjectSettings(name="p", repository=str(tmp_path), all_tags=True)
    defs = build_project_definitions(project, plan, single=True)
    specs = {spec.key.path[-1]: spec for asset in defs.assets for spec in asset.specs}
    name = f"{long_tag}.{long_id}"
    spec = specs[asset_name_for(name)]
    assert spec.metadata["task_id"] == name
    assert all(len(value) <= 63 for value in spec.tags.values())
    assert {d.asset_key for d in specs[asset_name_for(f"{long_tag}.2")].deps} == {
        dg.AssetKey(["p", asset_name_for(name)])
    }
    labels = step_labels(project, plan.tasks[name], 0)
    assert all(len(value) <= 63 for value in labels.values())
    assert labels["task-id"] != step_labels(project, plan.tasks[f"{long_tag}.2"], 1)["task-id"]


@pytest.mark.parametrize(
    "path",
    [*sorted(FIXTURES.glob("*.json")), *corpus_files()],
    ids=lambda p: p.name,
)
def test_write_back_on_every_file_changes_exactly_the_statuses(path):
    """On every fixture and corpus file: the text edit and a JSON rewrite agree."""
    from cto_dagster.core.taskmaster import find_tags

    content = path.read_bytes()
    try:
        data = json.loads(content.decode("utf-8-sig"))
        _, tags = find_tags(data)
    except (ValueError, TasksFileError):
        assert set_statuses(content, {"master": {"1": "review"}}) is None
        return
    wanted = {
        tag: {canonical_id(t.get("id")): "review" for t in items if isinstance(t, dict)}
        for tag, items in tags.items()
    }
    updated = set_statuses(content, wanted)
    before = json.dumps(data, sort_keys=True)
    for items in tags.values():
        for raw in items:
            if isinstance(raw, dict) and canonical_id(raw.get("id")) is not None:
                raw["status"] = "review"
    if updated is None:  # only when there was nothing to change
        assert json.dumps(data, sort_keys=True) == before
        return
    assert json.loads(updated.decode("utf-8-sig")) == data
