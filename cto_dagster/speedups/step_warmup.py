"""What every step process would otherwise redo at start-up, done once in the forkserver.

`play_multiprocess` names this module in the forkserver's preload list when the speed-ups are on
(`forkservers.warmup_preload`), so it runs once per run,
before the first step is forked; each step inherits the result. Measured on a 2-core machine with
8 agents, a task step spent ~0.75 s of CPU in Dagster before this (alembic re-reading its 90
migration scripts for each of the 4 storages it opens, and ~80 modules imported late) and that
CPU is exactly what delays the next ready task's start.

The run's job is resolved here too (`warm_job`): Dagster keeps the last resolved job of a
`ReconstructableJob` (an `lru_cache` on `get_definition`), so a step forked from here finds its
job built. Resolving it took each step 1.1 s of CPU at 500 tasks, 0.1 s at 15
(benchmarks/big_project.py).

Private hook: alembic's `ScriptDirectory.from_config` replaced in the forkserver (and so in every
step it forks). Guard: tests/test_guards.py (the step finds the shared parser; Dagster's
storages still call `from_config`).
"""

import base64
import gc
import importlib
import os
import pickle
from typing import Any

from cto_dagster.speedups.forkservers import WARM_JOB_ENV

# Imported by a step process between fork and the task's function (found by diffing sys.modules
# in a step); the storages' own modules are added from the instance ref by the executor.
STEP_MODULES = [
    "dagster._core.instance.factory",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.secrets.loader",
    "dagster._core.secrets.env_file",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dagster._core.definitions.external_asset",
    "dagster._core.system_config.composite_descent",
    "dagster._core.utility_ops",
    "dagster._core.workspace.autodiscovery",
    "dagster._utils.test.definitions",
]


def share_migration_scripts() -> None:
    """Parse alembic's migration scripts once per process instead of once per storage opened.

    Dagster's SQLite storages check their schema revision each time an instance is created, and
    alembic builds a new `ScriptDirectory` (executing every migration script) for each check. The
    scripts do not change while a run is going, so one parsed directory per location serves all.
    """
    from alembic.script import ScriptDirectory

    if getattr(ScriptDirectory.from_config, "_cto_shared", False):
        return
    original = ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]
    parsed: dict[str, ScriptDirectory] = {}

    def from_config(cls, config):
        location = config.get_main_option("script_location")
        if not location:
            return original(cls, config)
        if location not in parsed:
            parsed[location] = original(cls, config)
        return parsed[location]

    from_config._cto_shared = True  # type: ignore[attr-defined]
    ScriptDirectory.from_config = classmethod(from_config)  # type: ignore[method-assign]

    from dagster._core.storage.runs.sqlite import sqlite_run_storage
    from dagster._core.storage.sql import get_alembic_config

    ScriptDirectory.from_config(get_alembic_config(sqlite_run_storage.__file__)).as_revision_number(
        "head"
    )


def warm_up(modules: list[str]) -> list[str]:
    """Import what steps need and share the migration scripts; returns what could not be done
    (a speed-up only: a module a future Dagster moved must not stop the forkserver)."""
    missed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # anything raised here would stop the forkserver
            missed.append(name)
    try:
        share_migration_scripts()
    except Exception as exc:  # the steps then parse the scripts themselves
        missed.append(f"alembic: {exc}")
    return missed


def warm_job() -> Any:
    """Resolve the job the executor named (or the jobs a code server named, the first being the
    one its runs mostly run), so steps and runs forked from here find them built (the
    repository and each job stay cached under Dagster's `ReconstructableJob.get_definition`).
    Returns the first job, or None when none was named or it could not be resolved (each step
    then builds it, as without this)."""
    raw = os.environ.get(WARM_JOB_ENV)
    if not raw:
        return None
    try:
        named = pickle.loads(base64.b64decode(raw))  # noqa: S301 - written by our own process
        jobs = named if isinstance(named, list) else [named]
        resolved = [job.get_definition() for job in jobs]
    except Exception:  # a speed-up only: never stop the forkserver
        return None
    return resolved[0] if resolved else None


warm_up(STEP_MODULES)
WARMED_JOB = warm_job()  # what steps inherit; the guard checks it (tests/test_guards.py)
gc.freeze()  # what the forkserver holds stays out of every forked child's collections
