"""A run's process that a code server spawned starts its steps' forkserver while it loads.

Dagster's code server spawns a run process (when its own forkserver is not up, or
`CTO_DAGSTER_WARM_RUNS=0`), which builds the definitions again (4-5 s at 500 tasks), resolves the
job and only then starts the executor, whose forkserver builds them a third time before the
first step can fork (6.4 s more at 500 tasks). Here the run's process starts the forkserver as
soon as its projects are planned, with the pins, the run's job to resolve and the executor's
preload list, so both build their definitions side by side (2 cores) instead of one after the
other. The executor then finds the forkserver running and forks its steps from it.

Private hook: the run is recognised by the spawned process's own target and arguments
(Dagster's `start_run_in_subprocess(serialized_args, recon_job, ...)`, read through
`multiprocessing.current_process()._target/_args`). Guard: tests/test_run_processes.py
(`[spawned]`).
"""

from __future__ import annotations

import multiprocessing

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._grpc.types import ExecuteExternalJobArgs

from cto_dagster.defs.run_records import executor_config
from cto_dagster.defs.step_processes import instance_modules, pin_planned_commits, preload_modules
from cto_dagster.speedups.forkservers import (
    EARLY_ENV,
    WARM_JOB_ENV,
    WARMUP_MODULE,
    job_for_steps,
    start_forkserver,
)
from cto_dagster.speedups.switch import enabled


def code_server_run() -> tuple[ReconstructableJob, dg.DagsterRun, list[str]] | None:
    """(the job as Dagster will hand it to the executor, the run, the instance's storage modules)
    when this process is a run a code server's `StartRun` spawned; else None."""
    process = multiprocessing.current_process()
    target = getattr(process, "_target", None)
    if getattr(target, "__name__", None) != "start_run_in_subprocess":
        return None
    args = getattr(process, "_args", None) or ()
    if len(args) < 2:
        return None
    serialized, job = args[0], args[1]
    if not isinstance(job, ReconstructableJob):
        return None
    run_args = dg.deserialize_value(serialized, ExecuteExternalJobArgs)
    if run_args.instance_ref is None:
        return None
    with dg.DagsterInstance.from_ref(run_args.instance_ref) as instance:
        run = instance.get_run_by_id(run_args.run_id)
        if run is None:
            return None
        modules = instance_modules(instance)
        if run.resolved_op_selection or run.asset_selection or run.asset_check_selection:
            job = _narrowed(job, run, instance)
    return job, run, modules


def _narrowed(
    job: ReconstructableJob, run: dg.DagsterRun, instance: dg.DagsterInstance
) -> ReconstructableJob:
    """The job of a run of a selection, exactly as Dagster's `execute_run_iterator` narrows it
    and `_get_execution_plan_from_run` gives it the repository load data of the run's plan (a
    step finds its job resolved only under an equal key; a whole job is found through the
    repository's own cache). The selection's plan snapshot is as small as the selection."""
    job = job.get_subset(
        op_selection=list(run.resolved_op_selection) if run.resolved_op_selection else None,
        asset_selection=run.asset_selection,
        asset_check_selection=run.asset_check_selection,
    )
    if run.execution_plan_snapshot_id:
        snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        if snapshot is not None and snapshot.repository_load_data is not None:
            job = job.with_repository_load_data(snapshot.repository_load_data)
    return job


def start_forkserver_early() -> bool:
    """In a code server's run process whose projects all run here: start the forkserver the
    executor would start later, now (call once the projects are planned, so the pins are set).
    Returns whether it started. Anything unexpected leaves the executor to start it, as before."""
    if not enabled():
        return False
    try:
        found = code_server_run()
    except Exception:  # a speed-up only: never stop the run's load
        return False
    if found is None:
        return False
    job, run, modules = found
    config = executor_config(run)
    if config.get("start_method", "forkserver") != "forkserver":
        return False
    extra = config.get("preload_modules") or []
    pin_planned_commits()
    start_forkserver(
        preload_modules(job.get_module(), modules, list(extra), [WARMUP_MODULE]),
        {WARM_JOB_ENV: job_for_steps(job), EARLY_ENV: "1"},
    )
    return True
