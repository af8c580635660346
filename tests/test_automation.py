"""`automation: on` (cto_dagster/defs/automation.py): with a real daemon (`dg dev`, as
`./scripts/ui` starts it) a project's backlog runs itself to the end with no launch, a task pushed
to the base branch is picked up by a reload and runs by itself, a failed task fixed and
re-materialized lets its dependents continue; a project without automation runs nothing."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest

from cto_dagster.defs.automation import AUTOMATION_SECONDS
from cto_dagster.defs.loader import build_definitions
from tests.conftest import demo_task
from tests.dagster_ui import Server, free_port
from tests.helpers import push_to_main

THREE_LEVELS = [demo_task(1), demo_task(2, deps=[1]), demo_task(3), demo_task(4, deps=[2, 3])]


def _defs(monkeypatch, project) -> dg.Definitions:
    for name, value in project.env().items():
        if name.startswith(("CTO_", "DAGSTER_")):
            monkeypatch.setenv(name, value)
    return build_definitions()


def test_automation_is_declared_only_for_projects_that_ask(monkeypatch, make_project):
    on = _defs(monkeypatch, make_project(THREE_LEVELS, settings={"automation": True}, name="on"))
    graph = on.resolve_asset_graph()
    sensors = {s.name: s for s in on.get_repository_def().sensor_defs}
    automation = sensors["automation_proj"]
    assert isinstance(automation, dg.AutomationConditionSensorDefinition)
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    assert automation.run_tags == {"cto/project": "proj"}  # the one-run-per-project queue limit
    assert sensors["tasks_reload_proj"].default_status == dg.DefaultSensorStatus.RUNNING
    labels = {
        key.to_user_string(): graph.get(key).automation_condition.get_label()
        for key in graph.get_all_asset_keys()
    }
    assert labels == {
        "proj/task_001": "task_ready",
        "proj/task_002": "task_ready",
        "proj/task_003": "task_ready",
        "proj/task_004": "task_ready",
        "proj/integration_level_0": "follows_inputs",
        "proj/integration_level_1": "follows_inputs",
        "proj/integration_level_2": "follows_inputs",
        "proj/run_metrics": "follows_inputs",
    }
    # every automated asset is the project sensor's: Dagster adds no default sensor
    assert "default_automation_condition_sensor" not in sensors
    assert on.resolve_all_job_defs()  # the definitions resolve

    off = _defs(monkeypatch, make_project(THREE_LEVELS, name="off"))
    graph = off.resolve_asset_graph()
    assert all(graph.get(k).automation_condition is None for k in graph.get_all_asset_keys())
    names = {s.name: s for s in off.get_repository_def().sensor_defs}
    assert "automation_proj" not in names and "default_automation_condition_sensor" not in names
    assert names["tasks_reload_proj"].default_status == dg.DefaultSensorStatus.STOPPED


def test_a_task_runs_once_its_dependencies_are_done_and_never_again_by_itself(
    monkeypatch, make_project
):
    project = make_project(THREE_LEVELS, settings={"automation": True})
    defs = _defs(monkeypatch, project)
    key = dg.AssetKey
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs, instance)
        # every task in one tick (one run, as a launch): dependents ride on requests
        for name in ("task_001", "task_002", "task_003", "task_004"):
            assert first.get_num_requested(key(["proj", name])) == 1, name
        # integration follows its inputs' updates (eager): not before they exist
        assert first.get_num_requested(key(["proj", "integration_level_0"])) == 0
        # task 1 and 2 done, 3 and 4 not (no run holds them here): 3 again, 4 rides on it
        for name in ("task_001", "task_002"):
            instance.report_runless_asset_event(dg.AssetMaterialization(key(["proj", name])))
        second = dg.evaluate_automation_conditions(defs, instance, cursor=first.cursor)
        for name in ("task_001", "task_002"):
            assert second.get_num_requested(key(["proj", name])) == 0, name
        assert second.get_num_requested(key(["proj", "task_003"])) == 1  # never ran yet
        assert second.get_num_requested(key(["proj", "task_004"])) == 1
        instance.report_runless_asset_event(dg.AssetMaterialization(key(["proj", "task_001"])))
        instance.report_runless_asset_event(dg.AssetMaterialization(key(["proj", "task_003"])))
        third = dg.evaluate_automation_conditions(defs, instance, cursor=second.cursor)
        assert third.get_num_requested(key(["proj", "task_002"])) == 0  # a dependency re-ran
        assert third.get_num_requested(key(["proj", "task_004"])) == 1


def _materialized(project, keys: list[dg.AssetKey]) -> set[dg.AssetKey]:
    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(project.home) as instance:
        events = instance.get_latest_materialization_events(keys)
    return {k for k, e in events.items() if e is not None}


def _wait_for(project, keys, timeout: float, ui: Server) -> float:
    start = time.monotonic()
    while _materialized(project, keys) != set(keys):
        assert time.monotonic() - start < timeout, (
            f"materialized {_materialized(project, keys)} of {keys} after {timeout} s; "
            f"runs: {[(r.job_name, r.status.value) for r in project.runs()]}\n"
            + ui.log.read_text()[-3000:]
        )
        time.sleep(1)
    return time.monotonic() - start


def _wait_until_runs_end(project, timeout: float = 120) -> None:
    """A run ends a moment after its last materialization: its status is read once it has."""
    deadline = time.monotonic() + timeout
    while any(not r.is_finished for r in project.runs()):
        assert time.monotonic() < deadline, [(r.job_name, r.status) for r in project.runs()]
        time.sleep(0.5)


def _keys(*names: str) -> list[dg.AssetKey]:
    return [dg.AssetKey(["proj", n]) for n in names]


def _tasks_text(tasks, indent: int | None = None) -> str:
    return json.dumps({"master": {"tasks": tasks}}, indent=indent) + ("\n" if indent else "")


@pytest.mark.slow
def test_a_project_with_automation_runs_itself_and_picks_up_a_pushed_task(make_project, tmp_path):
    project = make_project(THREE_LEVELS, settings={"automation": True})
    port = free_port()
    ui = Server(project.env(CTO_DAGSTER_UI_URL=f"http://127.0.0.1:{port}"), True, port=port)
    try:
        ui.wait_ready()
        every = _keys("task_001", "task_002", "task_003", "task_004", "integration_level_2")
        _wait_for(project, [*every, *_keys("run_metrics")], 240, ui)
        _wait_until_runs_end(project)
        runs = project.runs()
        assert all(r.tags.get("cto/project") == "proj" for r in runs)
        assert all(r.job_name != "play_project" for r in runs)  # nobody launched anything
        assert all(r.status.value == "SUCCESS" for r in runs), [r.status for r in runs]
        count = len(runs)

        push_to_main(
            project.remote,
            tmp_path / "push",
            {".taskmaster/tasks/tasks.json": _tasks_text([*THREE_LEVELS, demo_task(5, deps=[4])])},
            "a new task",
        )
        took = _wait_for(project, _keys("task_005"), 150, ui)
        print(f"pushed task 5 materialized {took:.1f} s after the push")
        runs = project.runs()  # newest first
        assert len(runs) > count
        for run in runs[: len(runs) - count]:  # the done tasks did not run again
            assert not set(_keys("task_001", "task_004")) & set(run.asset_selection or ())
    finally:
        ui.stop()


@pytest.mark.slow
def test_a_project_without_automation_runs_nothing_by_itself(make_project):
    project = make_project(THREE_LEVELS)
    ui = Server(project.env(), with_daemon=True)
    try:
        ui.wait_ready()
        time.sleep(45)  # more than one evaluation of every sensor
        assert project.runs() == []
    finally:
        ui.stop()


def test_the_kubernetes_values_point_the_reload_sensor_at_the_webserver():
    """The chart's code server reaches the chart's webserver Service (release cto-dagster), and
    runs `dagster code-server start`, the server whose code a reload loads again."""
    import subprocess
    import sys

    import yaml

    from tests.helpers import REPO_ROOT

    VALUES = REPO_ROOT / "helm-values" / "values.yaml"
    values = yaml.safe_load(VALUES.read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert env["CTO_DAGSTER_UI_URL"] == "http://cto-dagster-webserver:80"
    assert "codeServerArgs" in deployment and "dagsterApiGrpcArgs" not in deployment
    script, values_file = REPO_ROOT / "scripts" / "validate_helm_values.py", VALUES
    checked = subprocess.run(
        [sys.executable, str(script), str(values_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


_CODE_VERSION = """query CtoCodeVersion($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode { opVersion } }
}"""
_REPOSITORIES = """query CtoRepositories {
  repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } }
}"""
_MATERIALIZE = """mutation CtoMaterialize($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId tags { key value } } }
    ... on PythonError { message }
  }
}"""


def _code_version(base: str, name: str) -> str | None:
    from cto_dagster.commands.runs.webserver_launch import graphql

    node = graphql(base, _CODE_VERSION, {"key": {"path": ["proj", name]}})["assetNodeOrError"]
    return node.get("opVersion")


def _materialize_from_the_job_page(base: str, name: str) -> dict[str, str]:
    """What a person's "Materialize selected" on play_project's lineage in the UI sends: the
    job with one asset selected. The run's tags (the job's `cto/project` among them)."""
    from cto_dagster.commands.runs.webserver_launch import graphql

    [repository] = graphql(base, _REPOSITORIES, {})["repositoriesOrError"]["nodes"]
    selector = {
        "repositoryLocationName": repository["location"]["name"],
        "repositoryName": repository["name"],
        "pipelineName": "play_project",
        "assetSelection": [{"path": ["proj", name]}],
    }
    launched = graphql(base, _MATERIALIZE, {"params": {"selector": selector, "mode": "default"}})
    answer = launched["launchPipelineExecution"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return {t["key"]: t["value"] for t in answer["run"]["tags"]}


def _runs_of(project, name: str) -> list:
    key = dg.AssetKey(["proj", name])
    return [r for r in project.runs() if key in (r.asset_selection or ())]


@pytest.mark.slow
def test_a_failed_task_waits_for_a_person_then_its_dependents_continue_by_themselves(
    make_project, tmp_path
):
    """Task 2 fails (its agent exits 3): automation neither retries it nor starts task 4, which
    needs it. A person fixes the task on the base branch (the reload sensor picks the edit up:
    its code version changes) and re-materializes it from the job's page; task 4, the
    integration of its level and the metrics then run by themselves."""
    tasks = [*THREE_LEVELS]
    tasks[1] = demo_task(2, deps=[1], exit_code=3)
    # as TaskMaster writes it (one task field a line): the person's edit and the integration's
    # status write-back then touch different lines and merge cleanly
    project = make_project(_tasks_text(tasks, indent=2), settings={"automation": True})
    port = free_port()
    ui = Server(project.env(CTO_DAGSTER_UI_URL=f"http://127.0.0.1:{port}"), True, port=port)
    try:
        ui.wait_ready()
        _wait_for(project, _keys("task_001", "task_003"), 240, ui)
        deadline = time.monotonic() + 180
        while not any(r.status.value == "FAILURE" for r in _runs_of(project, "task_002")):
            assert time.monotonic() < deadline, [(r.job_name, r.status) for r in project.runs()]
            time.sleep(1)
        _wait_until_runs_end(project)
        time.sleep(2 * AUTOMATION_SECONDS)  # two evaluations: nothing more starts by itself
        assert len(_runs_of(project, "task_002")) == 1  # not retried by automation
        # task 4 rode along in the failed run's selection (skipped there); no run of its own
        waiting = _runs_of(project, "task_004")
        assert all(dg.AssetKey(["proj", "task_002"]) in r.asset_selection for r in waiting)
        assert _materialized(project, _keys("task_002", "task_004")) == set()
        # the failure sensor reported the failed automated run: its metrics, in a run of its own
        [failed] = [r for r in _runs_of(project, "task_002") if r.status.value == "FAILURE"]
        deadline = time.monotonic() + 90  # the sensor looks every 30 s
        while not (reports := [r for r in project.runs() if r.job_name == "run_metrics_job"]):
            assert time.monotonic() < deadline, "no metrics of the failed automated run"
            time.sleep(1)
        assert [r.tags.get("cto/metrics_for_run") for r in reports] == [failed.run_id]

        before = _code_version(ui.base, "task_002")
        push_to_main(
            project.remote,
            tmp_path / "fix",
            {".taskmaster/tasks/tasks.json": _tasks_text(THREE_LEVELS, indent=2)},
            "task 2: what made its agent fail, fixed",
        )
        deadline = time.monotonic() + 120
        while _code_version(ui.base, "task_002") == before:  # the location reloaded by itself
            assert time.monotonic() < deadline, ui.log.read_text()[-3000:]
            time.sleep(1)

        tags = _materialize_from_the_job_page(ui.base, "task_002")
        assert tags.get("cto/project") == "proj"  # the one-run-per-project limit holds it too
        rest = _keys("task_002", "task_004", "integration_level_2", "run_metrics")
        took = _wait_for(project, rest, 240, ui)
        print(f"task 2 re-materialized; its dependents done {took:.1f} s later")
        _wait_until_runs_end(project)
        [after_fix] = [r for r in _runs_of(project, "task_004") if r not in waiting]  # once
        assert after_fix.job_name != "play_project" and after_fix.status.value == "SUCCESS"
        assert after_fix.tags.get("cto/project") == "proj"
        assert len(_runs_of(project, "task_002")) == 2  # the failed run and the person's
    finally:
        ui.stop()
