"""Dagster alone, for `dagster_floor.py`: the big-project graph's shape as plain assets (no
cto-dagster code): one asset per task with the same dependencies, a resolution-like check on
200 of them, one asset per level, one job on Dagster's multiprocess executor (forkserver)."""

import json
import os
from pathlib import Path

import dagster as dg

TASKS = json.loads(Path(os.environ["FLOOR_TASKS"]).read_text(encoding="utf-8"))
CHECKED = 200
WIDTH = 5


def _key(task_id: int) -> dg.AssetKey:
    return dg.AssetKey(["big", f"task_{task_id:03d}"])


def _task_asset(task: dict) -> dg.AssetsDefinition:
    key = _key(task["id"])
    checked = task["id"] <= CHECKED

    @dg.asset(
        key=key,
        deps=[_key(d) for d in task["dependencies"]],
        check_specs=[dg.AssetCheckSpec("resolved_conflicts", asset=key)] if checked else None,
    )
    def _asset() -> dg.MaterializeResult:
        checks = [dg.AssetCheckResult(passed=True)] if checked else None
        return dg.MaterializeResult(check_results=checks)

    return _asset


def _level_asset(level: int, ids: list[int]) -> dg.AssetsDefinition:
    @dg.asset(key=dg.AssetKey(["big", f"integration_level_{level}"]), deps=[_key(i) for i in ids])
    def _asset() -> None:
        return None

    return _asset


_levels: dict[int, list[int]] = {}
for _index, _task in enumerate(TASKS):
    _levels.setdefault(_index // WIDTH, []).append(_task["id"])
_executor = dg.multiprocess_executor.configured({"start_method": {"forkserver": {}}})
defs = dg.Definitions(
    assets=[_task_asset(t) for t in TASKS] + [_level_asset(lv, ids) for lv, ids in _levels.items()],
    jobs=[dg.define_asset_job("play_project", dg.AssetSelection.all(), executor_def=_executor)],
    executor=_executor,
)
