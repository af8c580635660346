"""The processes of a run started by a code server: they plan what the code server planned, and
the run's process starts its steps' forkserver while it builds its own definitions.

A run started from the UI or by `cto-dagster launch` goes through the code server's `StartRun`:
Dagster spawns a run process, which builds the definitions again (4-5 s at 500 tasks), resolves
the job and only then starts the executor, whose forkserver builds them a third time before the
first step can fork (6.4 s more at 500 tasks). Two things change that:

- the code server puts the commits it planned from, and the durations it learned, in its own
  environment (`export_pins_for_runs`): the run processes it spawns inherit them, plan the very
  tasks the run was created from (the UI's graph, the run's snapshot) without fetching again;
- the run's process starts the forkserver as soon as its projects are planned
  (`start_forkserver_early`), with the pins, the run's job to resolve and the executor's preload
  list, so both build their definitions side by side (2 cores) instead of one after the other.
  The executor then finds the forkserver running and forks its steps from it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._grpc.types import ExecuteExternalJobArgs
from dagster_shared.serdes import deserialize_value

from cto_dagster.core.predictions import LEARNED_ENV, learned_pin
from cto_dagster.core.settings import PINNED_COMMITS_ENV, planned_commits_pin
from cto_dagster.defs.executor import (
    WARM_JOB_ENV,
    instance_modules,
    job_for_steps,
    pin_planned_commits,
    preload_modules,
    start_forkserver,
)
from cto_dagster.defs.start_notes import EARLY_ENV


def is_code_server() -> bool:
    """`dagster api grpc`: the process Dagster's workspace, `dagster dev` and the Helm chart's
    user deployments start for a code location, and whose `StartRun` spawns run processes."""
    return sys.argv[1:3] == ["api", "grpc"]


def export_pins_for_runs() -> None:
    """In a code server, once its definitions are built: the run processes it spawns inherit the
    commits and durations it planned from (a run then runs the plan it was created from, even if
    the tasks branch moved since the location loaded; reload the location to plan anew)."""
    if not is_code_server():
        return
    for name, value in ((PINNED_COMMITS_ENV, planned_commits_pin()), (LEARNED_ENV, learned_pin())):
        if value:
            os.environ[name] = value


def code_server_run() -> tuple[ReconstructableJob, dg.DagsterRun, list[str]] | None:
    """(the job as Dagster will hand it to the executor, the run, the instance's storage modules)
    when this process is a run a code server's `StartRun` spawned; else None. Read from the
    spawned process's own arguments (Dagster's `start_run_in_subprocess(serialized_args,
    recon_job, ...)`)."""
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
    run_args = deserialize_value(serialized, ExecuteExternalJobArgs)
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
    try:
        found = code_server_run()
    except Exception:  # a speed-up only: never stop the run's load
        return False
    if found is None:
        return False
    job, run, modules = found
    config = ((run.run_config or {}).get("execution") or {}).get("config") or {}
    if not isinstance(config, dict) or config.get("start_method", "forkserver") != "forkserver":
        return False
    extra = config.get("preload_modules") or []
    pin_planned_commits()
    start_forkserver(
        preload_modules(job.get_module(), modules, list(extra)),
        {WARM_JOB_ENV: job_for_steps(job), EARLY_ENV: "1"},
    )
    return True
