"""The metrics asset: actual against theoretical speedup, read from the event log."""

import base64
from typing import TYPE_CHECKING

import dagster as dg

from cto_dagster.core.planner import ExecutionPlan
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.defs.background import run_in_background
from cto_dagster.defs.executor import DEFAULT_AGENT_SLOTS
from cto_dagster.defs.run_records import step_launches, task_records
from cto_dagster.defs.translator import TAG_PROJECT, TaskTranslator

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as AssetJob,
    )

HISTORY_RUNS = 30
# On a metrics run: the play run to report (set by the failure sensor, or by hand with --tags).
METRICS_FOR_RUN_TAG = "cto/metrics_for_run"


def metrics_key(project: ProjectSettings) -> dg.AssetKey:
    return dg.AssetKey([project.name, "run_metrics"])


def _agent_slots(run: dg.DagsterRun, plan: ExecutionPlan) -> int:
    config = ((run.run_config or {}).get("execution") or {}).get("config") or {}
    width = max((len(level) for level in plan.levels), default=1)
    if config.get("parallel_execution") is False:
        return 1
    return max(1, min(int(config.get("max_concurrent") or DEFAULT_AGENT_SLOTS), width))


def metrics_for_run(instance: dg.DagsterInstance, run_id: str, plan: ExecutionPlan):
    """The run's `RunMetrics`, or None for an unknown run. (pandas is imported here, not when the
    code location loads: it costs 2 s of every start-up.)"""
    from cto_dagster.core.metrics import TaskTiming, compute_metrics

    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return None
    records = task_records(instance, run_id)
    launches = step_launches(instance, run_id)
    timings = []
    for r in records:
        start, finish = r.number("started_at"), r.number("finished_at")
        if r.status == "materialized" and start is not None and finish is not None:
            level = r.metadata.get("execution_level")
            # the attempt that materialized: its last launch before the task started
            attempts = launches.get(r.step_key or "", ())
            launched = max((t for t in attempts if t <= start), default=None)
            timings.append(
                TaskTiming(
                    r.task_id, int(level) if level is not None else 0, start, finish, launched
                )
            )
    return compute_metrics(
        run_id=run_id,
        timings=timings,
        dependencies=plan.dependencies,
        planned=plan.task_ids,
        planned_levels=len(plan.levels),
        run_started_at=record.start_time,
        agent_slots=_agent_slots(record.dagster_run, plan),
        failed=[r.task_id for r in records if r.status == "failed"],
    )


def play_runs(instance: dg.DagsterInstance, project: ProjectSettings, limit: int):
    return instance.get_run_records(dg.RunsFilter(tags={TAG_PROJECT: project.name}), limit=limit)


def _table(frame) -> dg.TableMetadataValue:
    from cto_dagster.core.metrics import is_nan  # with pandas: not at code-location load

    columns = [
        dg.TableColumn(
            name,
            "float"
            if frame[name].dtype.kind == "f"
            else "int"
            if frame[name].dtype.kind in "iu"
            else "string",
        )
        for name in frame.columns
    ]
    records = [
        dg.TableRecord(
            {
                k: None if is_nan(v) else (v.item() if hasattr(v, "item") else v)
                for k, v in row.items()
            }
        )
        for row in frame.to_dict(orient="records")
    ]
    return dg.MetadataValue.table(records, dg.TableSchema(columns))


def build_metrics_asset(
    project: ProjectSettings, plan: ExecutionPlan, translator: TaskTranslator
) -> dg.AssetsDefinition:
    task_keys = [translator.asset_key(project, t) for t in plan.task_ids]

    @dg.asset(
        key=metrics_key(project),
        deps=task_keys,
        group_name=translator.group_name(project),
        description=(
            "Actual against theoretical speedup of the latest run of the project's tasks, with "
            "per-task and per-level timing, the critical path with real durations, what level "
            "barriers would have cost, and a Gantt chart. After a failed run, a sensor "
            "materializes it for that run, saying what is missing (or materialize it alone)."
        ),
        kinds={"pandas"},
        op_tags={TAG_PROJECT: project.name},
    )
    def _metrics(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        run_in_background()
        instance = context.instance
        run_id = context.run.tags.get(METRICS_FOR_RUN_TAG) or context.run.run_id
        if run_id != context.run.run_id:
            if instance.get_run_record_by_id(run_id) is None:
                raise dg.Failure(f"no run {run_id} in this instance", allow_retries=False)
        elif not task_records(instance, run_id):
            earlier = [
                r
                for r in play_runs(instance, project, 20)
                if r.dagster_run.run_id != run_id and task_records(instance, r.dagster_run.run_id)
            ]
            if not earlier:
                return dg.MaterializeResult(metadata={"status": "no run of the tasks yet"})
            run_id = earlier[0].dagster_run.run_id
        metrics = metrics_for_run(instance, run_id, plan)
        assert metrics is not None
        history = []
        for record in play_runs(instance, project, HISTORY_RUNS):
            earlier_metrics = metrics_for_run(instance, record.dagster_run.run_id, plan)
            if earlier_metrics is None or earlier_metrics.tasks.empty:
                continue
            s = earlier_metrics.summary
            history.append(
                {
                    "run": record.dagster_run.run_id[:8],
                    "status": record.dagster_run.status.value,
                    "tasks_finished": int(s["tasks_finished"]),
                    "parallel_time_s": float(s["parallel_time_s"]),
                    "actual_speedup": float(s["actual_speedup"]),
                    "theoretical_speedup": float(s["theoretical_speedup"]),
                    "dataflow_gain": float(s["dataflow_gain"]),
                }
            )
        import pandas as pd

        from cto_dagster.core.metrics import gantt_png, is_nan

        chart = base64.b64encode(gantt_png(metrics)).decode()
        metadata: dict[str, object] = {
            "run_id": metrics.run_id,
            "complete": metrics.complete,
            "missing_tasks": ", ".join(metrics.missing) or "(none)",
            "failed_tasks": ", ".join(metrics.failed) or "(none)",
            "critical_path": " -> ".join(metrics.critical_path) or "(none)",
            # NaN (a figure no step recorded) is left out: JSON, and so the UI, has no NaN
            **{k: v for k, v in metrics.summary.items() if not is_nan(v)},
            "gantt_chart": dg.MetadataValue.md(
                f"![Gantt chart of the run](data:image/png;base64,{chart})"
            ),
            "tasks": _table(metrics.tasks),
            "levels": _table(metrics.levels),
        }
        if history:
            metadata["history"] = _table(pd.DataFrame(history))
        if not metrics.complete:
            context.log.warning(
                f"Run {run_id[:8]} is incomplete: failed {metrics.failed or 'none'}, "
                f"missing {metrics.missing or 'none'}"
            )
        return dg.MaterializeResult(metadata=metadata)

    return _metrics


def build_metrics_job(project: ProjectSettings, single: bool) -> "AssetJob":
    return dg.define_asset_job(
        name="run_metrics_job" if single else f"run_metrics_job_{project.name}",
        selection=dg.AssetSelection.assets(metrics_key(project)),
        description=f"The metrics of one run of project {project.name} ({METRICS_FOR_RUN_TAG}).",
    )


def build_failure_sensor(
    project: ProjectSettings,
    play_job: "AssetJob",
    metrics_job: "AssetJob",
) -> dg.SensorDefinition:
    """In a failed run Dagster skips everything downstream of the failed task, the metrics
    included: this sensor (needs the daemon: `dagster dev` runs it) reports that run anyway."""
    key = metrics_key(project)

    @dg.run_failure_sensor(
        name=f"run_metrics_after_failure_{project.name}",
        # runs started by `dagster job execute` carry no code location, and Dagster matches
        # them to no sensor of a location: watch every run, keep this project's play runs
        monitor_all_code_locations=True,
        request_job=metrics_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Materializes {key.to_user_string()} for each failed run of {play_job.name}.",
    )
    def _after_failure(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        if run.job_name != play_job.name or run.tags.get(TAG_PROJECT) != project.name:
            return dg.SkipReason(f"run {run.run_id[:8]} is not a run of {play_job.name}")
        run_id = run.run_id
        materialized = context.instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
        ).records
        if any(r.asset_key == key for r in materialized):
            return dg.SkipReason(f"run {run_id[:8]} already has its metrics")
        return dg.RunRequest(run_key=run_id, tags={METRICS_FOR_RUN_TAG: run_id})

    return _after_failure
