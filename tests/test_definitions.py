"""The code location: what Dagster sees for a project, and that it loads like users load it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.defs.loader import ProjectLoadError, build_definitions
from tests.helpers import REPO_ROOT, tagged, task

SNAPSHOT = Path(__file__).parent / "snapshots" / "guide_asset_specs.json"


def configure(monkeypatch, tmp_path, projects: dict[str, dict]) -> Path:
    entries = []
    for name, tasks_data in projects.items():
        remote = create_sample_repository(tmp_path / name, json.dumps(tasks_data))
        entries.append({"name": name, "repository": str(remote)})
    config = tmp_path / "cto.yaml"
    config.write_text(yaml.safe_dump({"projects": entries}))
    monkeypatch.setenv("CTO_DAGSTER_CONFIG", str(config))
    monkeypatch.setenv("CTO_DAGSTER_CACHE", str(tmp_path / "cache"))
    return config


def spec_snapshot(defs: dg.Definitions) -> list[dict]:
    graph = defs.resolve_asset_graph()
    rows = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        rows.append(
            {
                "key": key.to_user_string(),
                "deps": sorted(k.to_user_string() for k in node.parent_keys),
                "group": node.group_name,
                "tags": dict(sorted(node.tags.items())),
                "description": (node.description or "").splitlines()[0],
                "code_version": node.code_version,
            }
        )
    return rows


def test_guide_example_asset_specs_match_snapshot(monkeypatch, tmp_path):
    """A change to the asset graph shows up in review (dagster-open-platform's habit).
    Regenerate with UPDATE_SNAPSHOTS=1."""
    from cto_dagster.core.demo.sample_repository import guide_tasks_json

    configure(monkeypatch, tmp_path, {"shop": json.loads(guide_tasks_json())})
    rows = spec_snapshot(build_definitions())
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    assert rows == json.loads(SNAPSHOT.read_text())


def test_assets_mirror_dependencies_with_tags_and_job(monkeypatch, tmp_path):
    configure(
        monkeypatch,
        tmp_path,
        {
            "shop": tagged(
                task(1),
                task(2, [1]),
                task(3, status="done"),
                task(4, [2, 3]),
                task("rust-data-models", [1], priority="high"),
            )
        },
    )
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "shop/task_001",
        "shop/task_002",
        "shop/task_004",
        "shop/task_rust_data_models",
        "shop/integration_level_0",
        "shop/integration_level_1",
        "shop/integration_level_2",
        "shop/run_metrics",
    }
    level1 = graph.get(dg.AssetKey(["shop", "integration_level_1"]))
    assert {k.to_user_string() for k in level1.parent_keys} == {
        "shop/task_002",
        "shop/task_rust_data_models",
        "shop/integration_level_0",
    }
    assert level1.group_name == "shop_level_1"
    node = graph.get(dg.AssetKey(["shop", "task_004"]))
    assert {k.to_user_string() for k in node.parent_keys} == {"shop/task_002"}  # 3 is done
    assert node.group_name == "shop_level_2"
    # one edge into the metrics: from the last level's integration, which follows every task
    metrics = graph.get(dg.AssetKey(["shop", "run_metrics"]))
    assert {k.to_user_string() for k in metrics.parent_keys} == {"shop/integration_level_2"}
    assert metrics.group_name == "shop_metrics"
    # a transient git or GitHub error is retried at integration as at a task
    integration = defs.resolve_assets_def(dg.AssetKey(["shop", "integration_level_1"]))
    task_def = defs.resolve_assets_def(dg.AssetKey(["shop", "task_004"]))
    for assets_def in (integration, task_def):
        policy = assets_def.node_def.retry_policy
        assert policy is not None and policy.max_retries >= 1, assets_def.key
    # badges tell the truth: no GitHub badge for a repository that is not on GitHub
    assert "dagster/kind/github" not in level1.tags and "dagster/kind/git" in level1.tags
    assert "dagster/kind/demo" in node.tags
    # the catalog shows plain text, title first
    assert node.description.startswith("Task 4: Task 4") and "**" not in node.description
    # the launchpad shows the base branch filled in, and every field described
    play = defs.resources["play"]
    assert play.integration_base_branch == "main"
    fields = type(play).model_fields
    assert all(field.description for field in fields.values())
    assert node.tags["cto/level"] == "2" and node.tags["cto/task_id"] == "4"
    slug = graph.get(dg.AssetKey(["shop", "task_rust_data_models"]))
    assert slug.tags["cto/priority"] == "high"
    assert [j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")] == [
        "play_project",
        "run_metrics_job",
    ]
    sensor = defs.resolve_sensor_def("run_metrics_after_failure_shop")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "run_metrics_job"


def test_editing_a_task_changes_only_its_code_version(monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path / "a", {"shop": tagged(task(1, details="x"), task(2))})
    before = build_definitions().resolve_asset_graph()
    configure(monkeypatch, tmp_path / "b", {"shop": tagged(task(1, details="y"), task(2))})
    after = build_definitions().resolve_asset_graph()

    def version(graph, name):
        return graph.get(dg.AssetKey(["shop", name])).code_version

    assert version(before, "task_001") != version(after, "task_001")
    assert version(before, "task_002") == version(after, "task_002")


def test_several_projects_in_one_code_location(monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path, {"alpha": tagged(task(1)), "beta": tagged(task(1), task(2))})
    defs = build_definitions()
    jobs = sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
    assert jobs == [
        "play_project_alpha",
        "play_project_beta",
        "run_metrics_job_alpha",
        "run_metrics_job_beta",
    ]
    sensors = sorted(s.name for s in defs.sensors or [])
    assert sensors == [
        "run_metrics_after_failure_alpha",
        "run_metrics_after_failure_beta",
        "tasks_reload_alpha",  # stopped: `automation: on` starts it (docs/automation.md)
        "tasks_reload_beta",
    ]


def test_broken_tasks_file_fails_the_load_with_the_planner_message(monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path, {"shop": tagged(task(5, [16]), task(16, [5]))})
    with pytest.raises(ProjectLoadError) as info:
        build_definitions()
    assert "dependency cycle: 5 -> 16 -> 5" in str(info.value)


LAZY_IMPORT = """
import sys, cto_dagster.definitions as d
from cto_dagster.defs.loader import ProjectLoadError
print("imported")
try:
    d.defs()
except ProjectLoadError as exc:
    print("load:", exc)
"""


def test_importing_the_code_location_builds_nothing_until_dagster_loads_it(tmp_path):
    """`@dg.definitions`: the import reads no repository (a broken configuration fails the load,
    not the import), and a load builds once per process."""
    config = tmp_path / "cto.yaml"
    config.write_text(yaml.safe_dump({"projects": [{"name": "x", "repository": "/nonexistent"}]}))
    env = {**os.environ, "CTO_DAGSTER_CONFIG": str(config), "CTO_DAGSTER_CACHE": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", LAZY_IMPORT], env=env, capture_output=True, text=True, check=False
    )
    assert result.stdout.splitlines()[0] == "imported", result.stderr[-2000:]
    assert result.stdout.splitlines()[1].startswith("load: "), result.stdout


def test_the_code_location_is_built_once_per_process(monkeypatch, tmp_path):
    import cto_dagster.definitions as code_location

    configure(monkeypatch, tmp_path, {"shop": tagged(task(1), task(2, [1]))})
    code_location._built.cache_clear()
    try:
        first = code_location.defs()
        assert code_location.defs() is first  # Dagster calls it for each load of the location
        assert first.resolve_job_def("play_project").name == "play_project"
    finally:
        code_location._built.cache_clear()


@pytest.mark.slow
def test_dg_check_defs_passes_on_the_demo(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTO_")}
    env.update(
        CTO_DAGSTER_DEMO_DIR=str(tmp_path / "demo"),
        CTO_DAGSTER_CACHE=str(tmp_path / "cache"),
        VIRTUAL_ENV=str(Path(sys.executable).parent.parent),
    )
    dg_cli = Path(sys.executable).parent / "dg"
    result = subprocess.run(
        [str(dg_cli), "check", "defs"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "All definitions loaded successfully" in result.stdout + result.stderr
