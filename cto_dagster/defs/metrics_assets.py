"""The metrics asset: actual against theoretical speedup, read from the event log."""

import base64
from typing import TYPE_CHECKING

import dagster as dg

from cto_dagster.core.integration.level_stages import IntegrationStage
from cto_dagster.core.metrics.verify_summary import verified_line
from cto_dagster.core.planning.planner import ExecutionPlan
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.defs.integration_assets import integration_key
from cto_dagster.defs.k8s_tags import K8S_CONFIG_TAG, bookkeeping_k8s_config
from cto_dagster.defs.run_records import (
    agent_slots,
    conflict_counts,
    run_chain,
    step_launches,
    task_records,
    verified_counts,
)
from cto_dagster.defs.step_priority import run_in_background
from cto_dagster.defs.translator import TAG_PREDICTED, TAG_PROJECT, TaskTranslator, project_op_tags

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as AssetJob,
    )

HISTORY_RUNS = 30
# The picture of the run: Markdown over 1,000 characters opens from "[Show Markdown]" in the UI,
# so the entry's name says what is behind it; `timeline` shows the same as text bars.
GANTT_CHART = "Gantt chart (image)"
# where checks are configured: each task's check seconds over the project's recent runs
CHECK_TIME_CHART = "Check time per task across runs (image)"
# On a metrics run: the play run to report (set by the failure sensor, or by hand with --tags).
METRICS_FOR_RUN_TAG = "cto/metrics_for_run"


def metrics_key(project: ProjectSettings) -> dg.AssetKey:
    return dg.AssetKey([project.name, "run_metrics"])


def _agent_slots(run: dg.DagsterRun, plan: ExecutionPlan) -> int:
    width = max((len(level) for level in plan.levels), default=1)
    return max(1, min(agent_slots(run), width))


def _run_part(instance: dg.DagsterInstance, run: dg.DagsterRun, record_start: float | None):
    """One run's task timings (each from the attempt that materialized)."""
    from cto_dagster.core.metrics.speedup import SPLIT_METADATA, USAGE_FIELDS, RunPart, TaskTiming
    from cto_dagster.core.metrics.verify_summary import task_verdict

    launches = step_launches(instance, run.run_id)
    timings = []
    for r in task_records(instance, run.run_id):
        start, finish = r.number("started_at"), r.number("finished_at")
        if r.status == "materialized" and start is not None and finish is not None:
            level = r.metadata.get("execution_level")
            # the attempt that materialized: its last launch before the task started
            attempts = launches.get(r.step_key or "", ())
            launched = max((t for t in attempts if t <= start), default=None)
            usage = {k: float(r.metadata[k]) for k in USAGE_FIELDS if r.number(k) is not None}
            split = {
                column: float(r.metadata[name])
                for column, name in SPLIT_METADATA.items()
                if r.number(name) is not None
            }
            timings.append(
                TaskTiming(
                    r.task_id,
                    int(level) if level is not None else 0,
                    start,
                    finish,
                    launched,
                    usage=usage,
                    split=split,
                    verified=task_verdict(r.status, r.metadata),
                )
            )
    return RunPart(run.run_id, record_start, timings)


def run_parts(instance: dg.DagsterInstance, run_id: str) -> list:
    """What each run of the re-execution chain ending at `run_id` did, oldest first."""
    parts = []
    for run in run_chain(instance, run_id):
        record = instance.get_run_record_by_id(run.run_id)
        parts.append(_run_part(instance, run, record.start_time if record else None))
    return parts


def metrics_for_run(instance: dg.DagsterInstance, run_id: str, plan: ExecutionPlan):
    """The run's `RunMetrics`, or None for an unknown run. A re-executed run includes what the
    runs it re-executed finished (their tasks marked with their run). (pandas is imported here,
    not when the code location loads: it costs 2 s of every start-up.)"""
    from cto_dagster.core.metrics.speedup import compute_metrics, join_runs

    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return None
    timings, started = join_runs(run_parts(instance, run_id))
    finished = {t.task_id for t in timings}
    failed = [
        r.task_id
        for r in task_records(instance, run_id)
        if r.status == "failed" and r.task_id not in finished
    ]
    return compute_metrics(
        run_id=run_id,
        timings=timings,
        dependencies=plan.dependencies,
        planned=plan.task_ids,
        planned_levels=len(plan.levels),
        run_started_at=started,
        agent_slots=_agent_slots(record.dagster_run, plan),
        failed=failed,
        conflicts=conflict_counts(instance, run_id),
        predicted_makespan=_predicted(record.dagster_run),
        verified=verified_counts(instance, run_id, plan.task_ids),
    )


def _predicted(run: dg.DagsterRun) -> float | None:
    """The makespan the plan predicted when the run was created (its job's tag)."""
    try:
        return float(run.tags.get(TAG_PREDICTED) or "") or None
    except ValueError:
        return None


def play_runs(instance: dg.DagsterInstance, project: ProjectSettings, limit: int):
    return instance.get_run_records(dg.RunsFilter(tags={TAG_PROJECT: project.name}), limit=limit)


def _table(frame) -> dg.TableMetadataValue:
    from cto_dagster.core.metrics.speedup import is_nan  # with pandas: not at code-location load

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


def _run_to_report(context: dg.AssetExecutionContext, project: ProjectSettings) -> str | None:
    """The run this materialization reports: the one named by the tag, else this run, else (a
    materialization of the metrics alone) the latest run of the tasks."""
    instance = context.instance
    run_id = context.run.tags.get(METRICS_FOR_RUN_TAG) or context.run.run_id
    if run_id != context.run.run_id:
        if instance.get_run_record_by_id(run_id) is None:
            raise dg.Failure(f"no run {run_id} in this instance", allow_retries=False)
        return run_id
    if task_records(instance, run_id):
        return run_id
    earlier = [
        r.dagster_run.run_id
        for r in play_runs(instance, project, 20)
        if r.dagster_run.run_id != run_id and task_records(instance, r.dagster_run.run_id)
    ]
    return earlier[0] if earlier else None


def _history(
    instance, project: ProjectSettings, plan: ExecutionPlan, current: str
) -> tuple[list[dict], list[tuple[str, dict[str, float]]]]:
    """The figures of the project's recent runs (newest first), and each run's check seconds per
    task (oldest first: the chart reads left to right)."""
    rows, checks = [], []
    for record in play_runs(instance, project, HISTORY_RUNS):
        run = record.dagster_run
        metrics = metrics_for_run(instance, run.run_id, plan)
        if metrics is None or metrics.tasks.empty:
            continue
        s = metrics.summary
        rows.append(
            {
                "run": run.run_id[:8],
                "status": "this run" if run.run_id == current else run.status.value,
                "tasks_finished": int(s["tasks_finished"]),
                "parallel_time_s": float(s["parallel_time_s"]),
                "actual_speedup": float(s["actual_speedup"]),
                "theoretical_speedup": float(s["theoretical_speedup"]),
                "dataflow_gain": float(s["dataflow_gain"]),
            }
        )
        seconds = metrics.tasks.set_index("task")["check_s"].dropna()
        if len(seconds):
            checks.append((run.run_id[:8], {str(t): float(v) for t, v in seconds.items()}))
    return rows, checks[::-1]


def _reported_before(instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str) -> bool:
    """Whether a materialization of the metrics already reported this run (its figures are then
    kept as text: a second point of the same run in the UI's plots would be a duplicate)."""
    records = instance.fetch_materializations(key, limit=HISTORY_RUNS).records
    for record in records:
        materialization = record.asset_materialization
        value = materialization.metadata.get("run_id") if materialization else None
        if value is not None and getattr(value, "value", value) == run_id:
            return True
    return False


def _image(svg: str, alt: str) -> dg.MarkdownMetadataValue:
    encoded = base64.b64encode(svg.encode()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/svg+xml;base64,{encoded})")


def _metrics_metadata(
    metrics, history: list[dict], plotted: bool, checks: list | None = None
) -> dict[str, object]:
    import pandas as pd

    from cto_dagster.core.metrics.speedup import check_time_svg, gantt_svg, is_nan, timeline_text

    # NaN (a figure no step recorded) is left out: JSON, and so the UI, has no NaN
    figures = {k: v for k, v in metrics.summary.items() if not is_nan(v)}
    if not plotted:
        figures = {k: (v if isinstance(v, str) else f"{v:g}") for k, v in figures.items()}
    metadata: dict[str, object] = {
        "run_id": metrics.run_id,
        "complete": metrics.complete,
        "missing_tasks": ", ".join(metrics.missing) or "(none)",
        "failed_tasks": ", ".join(metrics.failed) or "(none)",
        "critical_path": " -> ".join(metrics.critical_path) or "(none)",
        **figures,
        "timeline": dg.MetadataValue.md(timeline_text(metrics)),
        GANTT_CHART: _image(gantt_svg(metrics), "Gantt chart of the run"),
        "tasks": _table(metrics.tasks),
        "levels": _table(metrics.levels),
    }
    if history:
        metadata["history"] = _table(pd.DataFrame(history))
    if checks:
        metadata[CHECK_TIME_CHART] = _image(check_time_svg(checks), "Check time per task")
    line = verified_line(metrics.verified)
    if line:
        metadata["verified"] = line
    return metadata


def build_metrics_asset(
    project: ProjectSettings,
    plan: ExecutionPlan,
    translator: TaskTranslator,
    last_stage: IntegrationStage,
    other_tokens: tuple[str, ...] = (),
) -> dg.AssetsDefinition:
    # after the last integration, which comes after every task: one edge, not one a task
    last_integration = integration_key(project, last_stage)
    key = metrics_key(project)

    @dg.asset(
        key=key,
        deps=[last_integration],
        group_name=translator.group_name(project, None),
        description=(
            "Actual against theoretical speedup of the latest run of the project's tasks, with "
            "per-task and per-level timing, the critical path with real durations, what level "
            "barriers would have cost, and a Gantt chart. After a failed run, a sensor "
            "materializes it for that run, saying what is missing (or materialize it alone)."
        ),
        kinds={"pandas"},
        op_tags={
            **project_op_tags(project),
            K8S_CONFIG_TAG: bookkeeping_k8s_config(project, "metrics", other_tokens),
        },
    )
    def _metrics(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        run_in_background()
        instance = context.instance
        run_id = _run_to_report(context, project)
        if run_id is None:
            return dg.MaterializeResult(metadata={"status": "no run of the tasks yet"})
        metrics = metrics_for_run(instance, run_id, plan)
        assert metrics is not None
        history, checks = _history(instance, project, plan, context.run.run_id)
        plotted = not _reported_before(instance, key, run_id)
        if not metrics.complete:
            context.log.warning(
                f"Run {run_id[:8]} is incomplete: failed {metrics.failed or 'none'}, "
                f"missing {metrics.missing or 'none'}"
            )
        return dg.MaterializeResult(metadata=_metrics_metadata(metrics, history, plotted, checks))

    return _metrics


def metrics_run_exists(instance: dg.DagsterInstance, run_id: str) -> bool:
    """A metrics run for `run_id` was launched already (by this sensor or a command)."""
    runs = instance.get_run_records(dg.RunsFilter(tags={METRICS_FOR_RUN_TAG: run_id}), limit=1)
    return bool(runs)


def metrics_job_name(project_name: str, single: bool) -> str:
    return "run_metrics_job" if single else f"run_metrics_job_{project_name}"


def build_metrics_job(project: ProjectSettings, single: bool) -> "AssetJob":
    return dg.define_asset_job(
        name=metrics_job_name(project.name, single),
        selection=dg.AssetSelection.assets(metrics_key(project)),
        description=f"The metrics of one run of project {project.name} ({METRICS_FOR_RUN_TAG}).",
    )


# the tag Dagster's automation sensors put on the runs they start
FROM_AUTOMATION_TAG = "dagster/from_automation_condition"


def build_failure_sensor(
    project: ProjectSettings,
    play_job: "AssetJob",
    metrics_job: "AssetJob",
) -> dg.SensorDefinition:
    """In a failed run Dagster skips everything downstream of the failed task, the metrics
    included: this sensor (needs the daemon: `dagster dev` runs it) reports that run anyway, a
    run of the play job or one the project's automation started."""
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
        automated = run.tags.get(FROM_AUTOMATION_TAG) == "true"
        if run.tags.get(TAG_PROJECT) != project.name or not (
            run.job_name == play_job.name or automated
        ):
            return dg.SkipReason(f"run {run.run_id[:8]} is not a run of {play_job.name}")
        run_id = run.run_id
        materialized = context.instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
        ).records
        if any(r.asset_key == key for r in materialized) or metrics_run_exists(
            context.instance, run_id
        ):
            return dg.SkipReason(f"run {run_id[:8]} already has its metrics")
        return dg.RunRequest(run_key=run_id, tags={METRICS_FOR_RUN_TAG: run_id})

    return _after_failure
