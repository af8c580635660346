"""A tiny job on `play_multiprocess`, for the guards of the executor's hooks: its op reports, from
inside a step process, what the forkserver did before the step was forked."""

import sys

import dagster as dg

from cto_dagster.defs.executor import play_multiprocess_executor


@dg.op
def what_the_step_inherited() -> dict:
    from alembic.script import ScriptDirectory

    return {
        "warm_up_preloaded": "cto_dagster.defs.step_warmup" in sys.modules,
        "migrations_shared": bool(getattr(ScriptDirectory.from_config, "_cto_shared", False)),
    }


@dg.job(executor_def=play_multiprocess_executor)
def guard_job():
    what_the_step_inherited()
