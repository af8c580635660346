"""A tiny job on `play_multiprocess`, for the guards of the executor's hooks: its op reports, from
inside a step process, what the forkserver did before the step was forked."""

import gc
import sys

import dagster as dg

from cto_dagster.defs.executor import play_multiprocess_executor


@dg.op
def what_the_step_inherited(context: dg.OpExecutionContext) -> dict:
    from alembic.script import ScriptDirectory

    warmup = sys.modules.get("cto_dagster.speedups.step_warmup")
    return {
        "warm_up_preloaded": warmup is not None,
        "migrations_shared": bool(getattr(ScriptDirectory.from_config, "_cto_shared", False)),
        # the job this step runs is the very object the forkserver resolved before the fork
        "job_resolved_before_fork": getattr(warmup, "WARMED_JOB", None) is context.job_def,
        # what the forkserver holds stays out of the step's collections (gc.freeze)
        "heap_frozen": gc.get_freeze_count() > 0,
    }


@dg.job(executor_def=play_multiprocess_executor)
def guard_job():
    what_the_step_inherited()


# loaded like the code location (a module's Definitions): no repository load data, so the job a
# step resolves is the run's, as the forkserver resolved it
defs = dg.Definitions(jobs=[guard_job])
