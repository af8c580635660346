"""A tiny job on `play_multiprocess`, for the guards of the executor's hooks: its op reports, from
inside a step process, what the forkserver did before the step was forked."""

import sys

import dagster as dg

from cto_dagster.defs.executor import play_multiprocess_executor


@dg.op
def what_the_step_inherited() -> dict:
    from alembic.script import ScriptDirectory
    from dagster._core.definitions.reconstruct import ReconstructableJob

    warmup = sys.modules.get("cto_dagster.defs.step_warmup")
    resolved = ReconstructableJob.get_definition.cache_info()
    return {
        "warm_up_preloaded": warmup is not None,
        "migrations_shared": bool(getattr(ScriptDirectory.from_config, "_cto_shared", False)),
        # resolved once, in the forkserver; the step itself only hit Dagster's cache
        "job_resolved_before_fork": bool(getattr(warmup, "JOB_WARMED", False))
        and resolved.misses == 1
        and resolved.hits >= 1,
    }


@dg.job(executor_def=play_multiprocess_executor)
def guard_job():
    what_the_step_inherited()
