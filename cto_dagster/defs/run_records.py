"""What a run did, read back from the Dagster event log (the only store: DESIGN principle 5)."""

from dataclasses import dataclass, field

import dagster as dg

TASK_PREFIX = "task_"


@dataclass
class TaskRecord:
    asset_key: dg.AssetKey
    step_key: str | None
    status: str  # materialized | failed
    metadata: dict[str, object] = field(default_factory=dict)
    error: str | None = None

    @property
    def task_id(self) -> str:
        value = self.metadata.get("task_id")
        return str(value) if value is not None else self.asset_key.path[-1][len(TASK_PREFIX) :]

    def number(self, name: str) -> float | None:
        value = self.metadata.get(name)
        return float(value) if isinstance(value, int | float) else None


def _plain(value: object) -> object:
    return getattr(value, "value", value)


def task_records(instance: dg.DagsterInstance, run_id: str) -> list[TaskRecord]:
    """Task materializations and task step failures of one run."""
    records: dict[str, TaskRecord] = {}
    materializations = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
    ).records
    for record in materializations:
        event = record.event_log_entry.dagster_event
        materialization = event.event_specific_data.materialization
        key = materialization.asset_key
        if not key.path[-1].startswith(TASK_PREFIX):
            continue
        metadata = {name: _plain(value) for name, value in materialization.metadata.items()}
        records[key.to_user_string()] = TaskRecord(key, event.step_key, "materialized", metadata)
    failures = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=100_000
    ).records
    for record in failures:
        event = record.event_log_entry.dagster_event
        step_key = event.step_key or ""
        project, _, name = step_key.partition("__")
        if not name.startswith(TASK_PREFIX):
            continue
        key = dg.AssetKey([project, name])
        if key.to_user_string() in records:
            continue
        error = event.event_specific_data.error
        message = event.event_specific_data.user_failure_data
        text = message.description if message and message.description else None
        records[key.to_user_string()] = TaskRecord(
            key, step_key, "failed", {}, text or (error.message.strip() if error else None)
        )
    return list(records.values())


def integration_records(instance: dg.DagsterInstance, run_id: str) -> dict[int, dict[str, object]]:
    """Level -> metadata of the integration materializations of one run."""
    found: dict[int, dict[str, object]] = {}
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
    ).records:
        materialization = record.event_log_entry.dagster_event.event_specific_data.materialization
        name = materialization.asset_key.path[-1]
        if name.startswith("integration_level_"):
            level = int(name.rsplit("_", 1)[1])
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
