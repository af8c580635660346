"""Each task's agent time in earlier runs, read from the instance when the code location loads
(one query for every task), to predict durations where the tasks file has none."""

import os

import dagster as dg

from cto_dagster.core.planning.planner import ExecutionPlan
from cto_dagster.core.planning.predictions import pinned_learned, record_learned
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.defs.translator import TaskTranslator

AGENT_SECONDS = "agent_seconds"


def _read(instance: dg.DagsterInstance, keys: dict[dg.AssetKey, str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for record in instance.get_asset_records(list(keys)):
        event = record.asset_entry.last_materialization
        materialization = event.asset_materialization if event else None
        value = materialization.metadata.get(AGENT_SECONDS) if materialization else None
        seconds = getattr(value, "value", None)
        if isinstance(seconds, int | float) and seconds > 0:
            found[keys[record.asset_entry.asset_key]] = float(seconds)
    return found


def learned_durations(
    project: ProjectSettings, plan: ExecutionPlan, translator: TaskTranslator
) -> dict[str, float]:
    """Task -> its agent seconds in the latest run that materialized it. In a run's step
    process: what the run's planning process read (pinned), so every process agrees."""
    pin_key = f"{project.name} {project.repository}"
    pinned = pinned_learned(os.environ, pin_key)
    if pinned is not None:
        return pinned
    learned: dict[str, float] = {}
    if os.environ.get("DAGSTER_HOME") and plan.task_ids:
        keys = {translator.asset_key(project, t): t for t in plan.task_ids}
        try:
            with dg.DagsterInstance.get() as instance:
                learned = _read(instance, keys)
        except Exception:
            learned = {}
    record_learned(pin_key, learned)
    return learned
