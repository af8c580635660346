"""The engine end to end: `dagster job execute` with the multiprocess executor, a temp
DAGSTER_HOME, a real git remote and the demo agent."""

import itertools
import json

import pytest

from cto_dagster.defs.metrics_assets import GANTT_CHART
from tests.conftest import demo_task
from tests.helpers import push_to_main

pytestmark = pytest.mark.slow


def test_dataflow_parallel_run_and_merged_dependencies(make_project):
    project = make_project(
        [
            demo_task(1, duration=1),
            demo_task(2, duration=10),  # wide margin: CI may run the load test beside it
            demo_task(3, deps=[1], duration=1),
            demo_task(4, deps=[2, 3]),
        ]
    )
    result = project.execute()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "📊 LEVEL 0" in log and "  → Task 1" in log and "  → Task 2" in log
    assert "🚀 Task 3 started" in log and "✅ Task 3 finished" in log

    records = project.records()
    assert set(records) == {"1", "2", "3", "4"}
    t = {k: (r.number("started_at"), r.number("finished_at")) for k, r in records.items()}
    # independent tasks overlap in time
    assert t["1"][0] < t["2"][1] and t["2"][0] < t["1"][1]
    # dataflow, not level barriers: 3 (after 1) starts before the long task 2 ends
    assert t["3"][0] < t["2"][1]
    # 4 waits for both of its dependencies
    assert t["4"][0] >= max(t["2"][1], t["3"][1])

    meta = records["4"].metadata
    for key in (
        "branch",
        "base_commit",
        "head_commit",
        "files_changed",
        "insertions",
        "deletions",
        "started_at",
        "finished_at",
        "duration_seconds",
        "execution_level",
        "agent_exit_code",
        "agent_log_tail",
    ):
        assert key in meta, key
    assert meta["branch"] == "feature/task-4-implementation"
    assert meta["execution_level"] == 2 and meta["agent_exit_code"] == 0
    # the branch of a task with two dependencies holds both dependencies' work (and theirs)
    files = project.git("ls-tree", "-r", "--name-only", "feature/task-4-implementation").split()
    assert {"tasks/task-1.md", "tasks/task-2.md", "tasks/task-3.md", "tasks/task-4.md"} <= set(
        files
    )
    assert project.git("rev-parse", "feature/task-4-implementation").strip() == meta["head_commit"]

    # the metrics asset of the same run, and the same numbers in the terminal
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(project.home) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["proj", "run_metrics"]))
    metrics = event.asset_materialization.metadata
    assert metrics["run_id"].value == project.runs()[0].run_id
    assert metrics["tasks_finished"].value == 4 and metrics["complete"].value is True
    assert metrics["theoretical_speedup"].value == pytest.approx(4 / 3, abs=1e-3)
    assert metrics["actual_speedup"].value > 1.0
    assert metrics["critical_path"].value == "2 -> 4"
    assert metrics[GANTT_CHART].value.startswith(
        "![Gantt chart of the run](data:image/svg+xml;base64,"
    )
    assert len(metrics["tasks"].value.records) == 4
    # queue wait split in two from the steps' launch events: slot wait + start-up
    for row in metrics["tasks"].value.records:
        assert 0 < row.data["start_up_s"] < 60 and row.data["slot_wait_s"] >= 0
    assert 0 < metrics["median_start_up_s"].value < 60
    report = project.cli("report")
    assert report.returncode == 0, report.stderr
    assert "📊 PERFORMANCE TELEMETRY" in report.stdout
    assert "Theoretical speedup: 1.33x" in report.stdout


def test_failure_keeps_siblings_and_resume_finishes_the_rest(make_project, monkeypatch):
    project = make_project(
        [demo_task(1), demo_task(2), demo_task(3, deps=[1]), demo_task(4, deps=[2])]
    )
    failed = project.execute(CTO_DEMO_FAIL_TASKS="1")
    assert failed.returncode != 0
    first = project.runs()[0]
    records = project.records(first.run_id)
    assert records["1"].status == "failed"
    assert "the agent exited with code 1" in (records["1"].error or "")
    assert records["2"].status == "materialized" and records["4"].status == "materialized"
    assert "3" not in records  # a dependent of a failed task does not run
    heads_before = {k: records[k].metadata["head_commit"] for k in ("2", "4")}

    # metrics work for a failed run, saying what is missing: materialize them alone
    report = project.cli("report")
    assert report.returncode == 0, report.stderr
    assert "❌ Failed: tasks 1" in report.stdout
    assert "⚠️ Missing (did not run): tasks 3" in report.stdout
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance
    from cto_dagster.defs.loader import build_definitions

    for name, value in project.env().items():
        if name.startswith(("CTO_", "DAGSTER_HOME")):
            monkeypatch.setenv(name, value)
    key = dg.AssetKey(["proj", "run_metrics"])
    metrics_asset = build_definitions().resolve_assets_def(key)
    with open_instance(project.home) as instance:
        assert dg.materialize([metrics_asset], instance=instance).success
        meta = instance.get_latest_materialization_event(key).asset_materialization.metadata
    assert meta["run_id"].value == first.run_id
    assert meta["complete"].value is False
    assert meta["failed_tasks"].value == "1" and meta["missing_tasks"].value == "3"

    # with the daemon, the failure sensor asks for the metrics of exactly that run
    defs = build_definitions()
    sensor = defs.resolve_sensor_def("run_metrics_after_failure_proj")
    with open_instance(project.home) as instance:
        failure = instance.get_records_for_run(
            first.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records[0]
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=failure.event_log_entry.dagster_event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(first.run_id),
        ).for_run_failure()
        request = sensor(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == first.run_id
    tags = request.tags
    assert tags == {"cto/metrics_for_run": first.run_id}
    launched = project.execute("--tags", json.dumps(tags), job="run_metrics_job")
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    with open_instance(project.home) as instance:
        meta = instance.get_latest_materialization_event(key).asset_materialization.metadata
    assert meta["run_id"].value == first.run_id and meta["missing_tasks"].value == "3"
    unknown = project.execute("--tags", '{"cto/metrics_for_run": "nope"}', job="run_metrics_job")
    assert unknown.returncode != 0
    assert "no run nope in this instance" in unknown.stdout + unknown.stderr
    # a failed metrics run is not a play run: no metrics of metrics, no loop
    with open_instance(project.home) as instance:
        metrics_run = instance.get_run_records(dg.RunsFilter(job_name="run_metrics_job"))[0]
        failure = instance.get_records_for_run(
            metrics_run.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records[0]
        skipped = sensor(
            dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_event=failure.event_log_entry.dagster_event,
                dagster_instance=instance,
                dagster_run=metrics_run.dagster_run,
            ).for_run_failure()
        )
    assert isinstance(skipped, dg.SkipReason)
    assert "not a run of play_project" in skipped.skip_message

    resumed = project.cli("resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    second = project.runs()[0]
    assert second.run_id != first.run_id and second.parent_run_id == first.run_id
    # resumed through the code location: the UI lists it and can re-execute it
    assert second.remote_job_origin is not None
    assert second.remote_job_origin.location_name == "cto_dagster"
    # its metrics include what the failed run finished, marked with that run: complete
    report = project.cli("report", "--run-id", second.run_id)
    assert report.returncode == 0, report.stderr
    assert "Missing" not in report.stdout and "Failed" not in report.stdout
    assert first.run_id[:8] in report.stdout  # tasks 2 and 4, from the first run
    assert "(run " + first.run_id[:8] + ")" in resumed.stdout  # the summary marks them too
    again = project.records(second.run_id)
    assert set(again) == {"1", "3"}  # finished tasks are not redone
    assert all(r.status == "materialized" for r in again.values())
    files = project.git("ls-tree", "-r", "--name-only", "feature/task-3-implementation").split()
    assert "tasks/task-1.md" in files
    for task_id, head in heads_before.items():
        assert project.git("rev-parse", f"feature/task-{task_id}-implementation").strip() == head


def test_parallel_execution_false_runs_one_task_at_a_time(make_project):
    project = make_project(
        [demo_task(1, duration=1), demo_task(2, duration=1), demo_task(3, deps=[1], duration=1)]
    )
    result = project.execute(
        run_config={
            "execution": {"config": {"parallel_execution": False}},
            "resources": {"play": {"config": {"integration_pr_enabled": False}}},
        }
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sequential (parallel_execution: false)" in result.stdout + result.stderr
    spans = sorted(
        (r.number("started_at"), r.number("finished_at")) for r in project.records().values()
    )
    assert len(spans) == 3
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end
    # integration_pr_enabled: false builds no integration branch, and the UI says why
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(project.home) as instance:
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["proj", "integration_level_0"])
        )
    why = event.asset_materialization.metadata["pull_request"].value
    assert why == "integration disabled: integration_pr_enabled is false, no branch was built"
    assert "integration/" not in project.git("branch", "--list")


def test_steps_keep_the_plan_their_run_started_with(make_project, tmp_path):
    """Spawned steps re-load the code location; a tasks file pushed during the run (task 2
    removed) must not change the run: they plan from the commit the run planned from."""
    import subprocess

    from cto_dagster.commands.demo import job_execute_command

    project = make_project([demo_task(1, duration=4), demo_task(2, deps=[1], duration=0.5)])
    config_file = project.root / "spawn.yaml"
    config_file.write_text('{"execution": {"config": {"start_method": "spawn"}}}')
    run = subprocess.Popen(
        job_execute_command("-c", str(config_file)),
        env=project.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in run.stdout:
        seen.append(line)
        if "🚀 Task 1 started" in line:
            break
    data = json.loads(project.git("show", "main:.taskmaster/tasks/tasks.json"))
    data["master"]["tasks"] = [t for t in data["master"]["tasks"] if t["id"] == 1]
    tasks = {".taskmaster/tasks/tasks.json": json.dumps(data)}
    push_to_main(project.remote, tmp_path / "clone", tasks, "drop 2")
    rest, _ = run.communicate(timeout=300)
    assert run.returncode == 0, ("".join(seen) + rest)[-4000:]
    records = project.records()
    assert set(records) == {"1", "2"} and records["2"].status == "materialized"
