"""A run's pod on Kubernetes plans the commits its run was created from.

On a cluster, K8sRunLauncher starts each run as a pod running `dagster api execute_run` (or
`resume_run`), which builds the definitions again. Locally, a run process inherits the commits its
code server planned from (`code_server_pins.export_pins_for_runs`); a run pod inherits nothing, so
it planned from a fresh fetch of the tasks branch: once a task was pushed (or marked done) after the
location loaded, the run ran another graph than the one the UI showed and the run was created from.
Every op of a project carries the commit it was planned from (`TAG_TASKS_COMMIT`, in the job
snapshot the run stores); the run pod reads it back from the run's own snapshot before planning, and
its step pods get it from the executor as before.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence

from cto_dagster.core.settings import PINNED_COMMITS_ENV, ProjectSettings, tasks_source
from cto_dagster.defs.translator import TAG_PROJECT, TAG_TASKS_COMMIT

RUN_WORKER_COMMANDS = ("execute_run", "resume_run")


def run_worker_run_id(argv: Sequence[str]) -> str | None:
    """The run id when this process is `dagster api execute_run|resume_run <args>` (how
    K8sRunLauncher, and Dagster's other container launchers, start a run); else None."""
    if len(argv) < 4 or argv[1] != "api" or argv[2] not in RUN_WORKER_COMMANDS:
        return None
    from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
    from dagster_shared.serdes import deserialize_value

    try:
        args = deserialize_value(argv[3], (ExecuteRunArgs, ResumeRunArgs))
    except Exception:  # not arguments this Dagster writes: plan as any other process does
        return None
    return args.run_id


def commits_of_run(run_id: str) -> dict[str, str]:
    """Project name -> the tasks commit its steps were planned from, read from the run's job
    snapshot (empty when the run or its snapshot cannot be read)."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is None or not run.job_snapshot_id:
            return {}
        snapshot = instance.get_job_snapshot(run.job_snapshot_id)
    commits: dict[str, str] = {}
    for op in snapshot.node_defs_snapshot.op_def_snaps:
        tags = op.tags or {}
        if TAG_PROJECT in tags and TAG_TASKS_COMMIT in tags:
            commits[tags[TAG_PROJECT]] = tags[TAG_TASKS_COMMIT]
    return commits


def pin_commits_of_run_pod(projects: Iterable[ProjectSettings]) -> dict[str, str]:
    """In a run pod, before planning: plan each project from the commit its run's snapshot was
    planned from (PINNED_COMMITS_ENV). Returns the pins set (none outside a run pod, or when
    this process was already given pins)."""
    if PINNED_COMMITS_ENV in os.environ:
        return {}
    run_id = run_worker_run_id(sys.argv)
    if run_id is None:
        return {}
    try:
        commits = commits_of_run(run_id)
    except Exception:  # no instance here, or an unreadable run: plan as any other process does
        return {}
    pins = {
        tasks_source(project.repository, project.base_branch): commits[project.name]
        for project in projects
        if project.name in commits and not project.tasks_path
    }
    if pins:
        os.environ[PINNED_COMMITS_ENV] = json.dumps(pins, sort_keys=True)
    return pins
