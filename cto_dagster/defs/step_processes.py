"""What a run's step processes start with: the modules their forkserver imports once, and the
planned commits and learned durations in their environment.

Dagster's multiprocess executor takes the forkserver and its preload list through its own
constructor (public behaviour, used with the speed-ups on or off); the speed-ups' forkservers
(`cto_dagster.speedups`) import the same list plus their warm-up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import dagster as dg

from cto_dagster.core.planning.predictions import LEARNED_ENV, learned_pin
from cto_dagster.core.settings import PINNED_COMMITS_ENV, planned_commits_pin

PRELOAD = [
    "dagster._core.executor.multiprocess",
    "dagster._core.execution.api",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "sqlalchemy",
    "alembic",
    "cto_dagster.core.task_run.step",
]


def planned_pins() -> dict[str, str]:
    """The environment that makes another process plan what this one planned: the commits it
    planned from (PINNED_COMMITS_ENV) and the durations it learned (LEARNED_ENV), each only
    when there is one."""
    pins = ((PINNED_COMMITS_ENV, planned_commits_pin()), (LEARNED_ENV, learned_pin()))
    return {name: value for name, value in pins if value}


def pin_planned_commits() -> None:
    """Processes this one starts (steps forked by its forkserver, a code server's runs) plan
    from the commits this process planned from: no fetch per run, and the same tasks even if the
    branch moved meanwhile; and they predict from the durations it learned, so their priorities
    and tags are the run's."""
    os.environ.update(planned_pins())


def instance_modules(instance: dg.DagsterInstance) -> list[str]:
    """The modules of the storages, log manager, launcher... each step process will open."""
    ref = instance.get_ref()
    found = []
    for field in ref._fields:
        data = getattr(ref, field)
        module = getattr(data, "module_name", None)
        if field.endswith("_data") and isinstance(module, str) and module not in found:
            found.append(module)
    return found


def preload_modules(
    job_module: str | None,
    storages: list[str],
    extra: list[str],
    warmup: Sequence[str] = (),
) -> list[str]:
    """What the forkserver imports once for every step: Dagster's executor and storages, the
    speed-ups' warm-up when on (`warmup`), this code location, and the modules the config adds."""
    return [*PRELOAD, *warmup, *storages, *extra, *([job_module] if job_module else [])]
