"""What a run did, read back from the Dagster event log (the only store: DESIGN principle 5)."""

from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg

from cto_dagster.core.metrics.verify_summary import (
    VerifiedCounts,
    count_verified,
    level_verdict,
    task_verdict,
)
from cto_dagster.core.planning.predictions import DEFAULT_AGENT_SLOTS
from cto_dagster.defs.translator import TAG_PROJECT

TASK_ID_TAG = "cto/task_id"  # the op tag every task step carries (translator.TAG_TASK_ID)


@dataclass
class TaskRecord:
    asset_key: dg.AssetKey
    step_key: str | None
    status: str  # materialized | failed
    task_id: str
    metadata: dict[str, object] = field(default_factory=dict)
    error: str | None = None

    def number(self, name: str) -> float | None:
        value = self.metadata.get(name)
        return float(value) if isinstance(value, int | float) else None


def executor_config(run: dg.DagsterRun) -> dict:
    """The executor's config in the run's config (`execution: config:`), empty if none."""
    config = ((run.run_config or {}).get("execution") or {}).get("config") or {}
    return config if isinstance(config, dict) else {}


def agent_slots(run: dg.DagsterRun) -> int:
    """How many task steps the run lets run at once: one without `parallel_execution`, else its
    `max_concurrent` (the executor's default when unset)."""
    config = executor_config(run)
    if config.get("parallel_execution") is False:
        return 1
    return max(1, int(config.get("max_concurrent") or DEFAULT_AGENT_SLOTS))


def _plain(value: object) -> object:
    return getattr(value, "value", value)


@dataclass(frozen=True)
class TaskStep:
    task_id: str
    upstream: tuple[str, ...]  # step keys this step waits for


def task_steps(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, TaskStep]:
    """step key -> its task, for every task step of the run's plan (read from the steps' tags,
    so asset keys may be anything a translator makes them)."""
    if not run.execution_plan_snapshot_id:
        return {}
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    steps = {}
    for step in snapshot.steps:
        task_id = (step.tags or {}).get(TASK_ID_TAG)
        if task_id is not None:
            upstream = {
                source.step_key
                for step_input in step.inputs
                for source in step_input.upstream_output_handles
            }
            steps[step.key] = TaskStep(task_id, tuple(sorted(upstream)))
    return steps


def _task_step_events(
    instance: dg.DagsterInstance, run_id: str, steps: dict[str, TaskStep], event_type: str
) -> Iterator[tuple[TaskStep, dg.DagsterEvent]]:
    """The run's events of one type (a `DagsterEventType` name) from its task steps, in order."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType[event_type], limit=100_000
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        step = steps.get(event.step_key or "") if event else None
        if step is not None:
            yield step, event


def task_records(instance: dg.DagsterInstance, run_id: str) -> list[TaskRecord]:
    """Task materializations and task step failures of one run."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return []
    steps = task_steps(instance, run)
    records: dict[str, TaskRecord] = {}
    for step, event in _task_step_events(instance, run_id, steps, "ASSET_MATERIALIZATION"):
        materialization = event.event_specific_data.materialization
        metadata = {name: _plain(value) for name, value in materialization.metadata.items()}
        records[step.task_id] = TaskRecord(
            materialization.asset_key, event.step_key, "materialized", step.task_id, metadata
        )
    for step, event in _task_step_events(instance, run_id, steps, "STEP_FAILURE"):
        if step.task_id in records:
            continue
        error = event.event_specific_data.error
        message = event.event_specific_data.user_failure_data
        text = message.description if message and message.description else None
        key = dg.AssetKey(event.step_key.split("__"))
        failure_metadata = {
            name: _plain(value)
            for name, value in ((message.metadata if message else None) or {}).items()
        }
        records[step.task_id] = TaskRecord(
            key,
            event.step_key,
            "failed",
            step.task_id,
            failure_metadata,
            text or (error.message.strip() if error else None),
        )
    return list(records.values())


def _integration_name(name: str) -> int | None:
    """The first level an integration asset's name (`integration_level_3`,
    `integration_levels_0_9`) integrates, or None for another asset."""
    if name.startswith("integration_level_"):
        return int(name.rsplit("_", 1)[1])
    if name.startswith("integration_levels_"):
        return int(name.split("_")[2])
    return None


def planned_integrations(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int:
    """How many integration branches the run's plan holds (its steps named so)."""
    if not run.execution_plan_snapshot_id:
        return 0
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return sum(
        1 for step in snapshot.steps if _integration_name(step.key.split("__")[-1]) is not None
    )


def integration_records(instance: dg.DagsterInstance, run_id: str) -> dict[int, dict[str, object]]:
    """First level integrated -> metadata of the integration materializations of one run (one a
    level, or one a stage of levels: its `integrated_levels` says which)."""
    found: dict[int, dict[str, object]] = {}
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
    ).records:
        materialization = record.event_log_entry.dagster_event.event_specific_data.materialization
        level = _integration_name(materialization.asset_key.path[-1])
        if level is None:
            continue
        found[level] = {k: _plain(v) for k, v in materialization.metadata.items()}
    return found


def step_launches(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[float]]:
    """When the executor launched each step's process or pod (once per attempt)."""
    launches: dict[str, list[float]] = {}
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTING, limit=100_000
    ).records
    for record in records:
        step_key = record.event_log_entry.dagster_event.step_key
        if step_key:
            launches.setdefault(step_key, []).append(record.event_log_entry.timestamp)
    return launches


def run_chain(instance: dg.DagsterInstance, run_id: str, limit: int = 50) -> list[dg.DagsterRun]:
    """The run and the runs it re-executes, oldest first (the first run, then each
    re-execution from failure)."""
    chain: list[dg.DagsterRun] = []
    current = instance.get_run_by_id(run_id)
    while current is not None and len(chain) < limit:
        chain.append(current)
        current = instance.get_run_by_id(current.parent_run_id) if current.parent_run_id else None
    return chain[::-1]


def conflict_counts(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """Merge conflicts of a run and the runs it re-executes: predicted between a level's branches,
    resolved by an agent (dependency merges and integrations), and left (steps they stopped)."""
    integrations: dict[int, dict[str, object]] = {}
    tasks: dict[str, TaskRecord] = {}
    for run in run_chain(instance, run_id):
        integrations.update(integration_records(instance, run.run_id))
        keep_latest_outcome(tasks, task_records(instance, run.run_id))
    return count_conflicts(integrations, tasks)


def keep_latest_outcome(tasks: dict[str, TaskRecord], records: list[TaskRecord]) -> None:
    """Add a run's task records, oldest run first: a materialization wins over a failure."""
    for record in records:
        if record.status == "materialized" or record.task_id not in tasks:
            tasks[record.task_id] = record


def count_conflicts(
    integrations: dict[int, dict[str, object]], tasks: dict[str, TaskRecord]
) -> dict[str, int]:
    def number(metadata: dict[str, object], name: str) -> int:
        value = metadata.get(name)
        return int(value) if isinstance(value, int | float) else 0

    levels = integrations.values()
    return {
        "conflicts_predicted": sum(number(m, "predicted_conflict_count") for m in levels),
        "conflicts_resolved": sum(number(m, "conflicts_resolved") for m in levels)
        + sum(number(r.metadata, "conflicts_resolved") for r in tasks.values()),
        "conflicts_left": sum(number(m, "conflicts_left") for m in levels)
        + sum(
            1
            for r in tasks.values()
            if r.status == "failed" and r.metadata.get("conflicting_paths")
        ),
    }


def older_integration_heads(
    instance: dg.DagsterInstance, project: str, current_token: str, keep_runs: int
) -> dict[str, str]:
    """Integration branch -> the head its run recorded, for the project's runs older than its
    last `keep_runs` (this run and its re-executions count as one)."""
    records = instance.get_run_records(dg.RunsFilter(tags={TAG_PROJECT: project}), limit=200)
    tokens: list[str] = [current_token]
    runs_of: dict[str, list[str]] = {}
    for record in records:  # newest first
        run = record.dagster_run
        token = (run.tags.get("dagster/root_run_id") or run.run_id)[:8]
        if token not in tokens:
            tokens.append(token)
        runs_of.setdefault(token, []).append(run.run_id)
    heads: dict[str, str] = {}
    for token in tokens[keep_runs:]:
        for run_id in reversed(runs_of.get(token, [])):  # oldest first: the newest head wins
            for meta in integration_records(instance, run_id).values():
                branch = str(meta.get("integration_branch") or "")
                head = str(meta.get("head_commit") or "")
                if branch.startswith("integration/") and " " not in branch and head:
                    heads[branch] = head
    return heads


def verified_counts(
    instance: dg.DagsterInstance, run_id: str, planned_tasks: list[str] | tuple[str, ...] = ()
) -> VerifiedCounts | None:
    """How many tasks and integration branches of a run (and the runs it re-executes) passed the
    project's checks; None when no check ran (none configured). The planned tasks default to
    the task steps of the first run's plan."""
    chain = run_chain(instance, run_id)
    if not planned_tasks and chain:
        planned_tasks = tuple(step.task_id for step in task_steps(instance, chain[0]).values())
    tasks: dict[str, TaskRecord] = {}
    integrations: dict[int, dict[str, object]] = {}
    for run in chain:
        keep_latest_outcome(tasks, task_records(instance, run.run_id))
        integrations.update(integration_records(instance, run.run_id))
    return count_verified(
        {t: task_verdict(r.status, r.metadata) for t, r in tasks.items()},
        {level: level_verdict(meta) for level, meta in integrations.items()},
        tasks_planned=planned_tasks,
        levels_planned=planned_integrations(instance, chain[0]) if chain else 0,
    )
