"""`cto-dagster resume`: re-execute a failed run from failure, the CLI twin of the UI's
"Re-execute from failure" button: finished tasks are not redone, their branches are reused."""

from __future__ import annotations

import os
import sys


def run_resume(run_id: str | None, job_name: str) -> int:
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from cto_dagster.summary import open_instance, print_run_summary

    if not os.environ.get("DAGSTER_HOME"):
        print(
            "❌ DAGSTER_HOME is not set: point it at the instance the failed run used.",
            file=sys.stderr,
        )
        return 1
    with open_instance() as instance:
        if run_id is None:
            failed = instance.get_run_records(
                dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.FAILURE]), limit=1
            )
            if not failed:
                print(f"❌ no failed run of {job_name} to resume", file=sys.stderr)
                return 1
            run_id = failed[0].dagster_run.run_id
        parent = instance.get_run_by_id(run_id)
        if parent is None:
            print(f"❌ no run {run_id} in this instance", file=sys.stderr)
            return 1
        if parent.status != dg.DagsterRunStatus.FAILURE:
            print(f"❌ run {run_id} is {parent.status.value}, not failed", file=sys.stderr)
            return 1
        print(f"▶️  Re-executing {parent.job_name} run {run_id} from failure...", flush=True)
        job = ReconstructableRepository.for_module(
            "cto_dagster.definitions", "defs", os.getcwd()
        ).get_reconstructable_job(parent.job_name)
        result = dg.execute_job(
            job,
            instance,
            run_config=parent.run_config,
            reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
        )
    print_run_summary(None, parent.job_name, None, run_id=result.run_id)
    return 0 if result.success else 1
