"""`cto-dagster resume`: re-execute a failed run from failure, the command-line twin of the UI's
"Re-execute from failure": finished tasks are not redone, their branches are reused, and the new
run is a run of the code location like the UI's."""

from __future__ import annotations

import argparse
import sys


def run_resume(run_id: str | None, job_name: str) -> int:
    import dagster as dg

    from cto_dagster.commands.runs.code_server_launch import (
        LaunchError,
        create_reexecution_from_failure,
        start_and_follow,
    )
    from cto_dagster.commands.runs.dead_runs import ACTIVE, run_process, settle_if_dead
    from cto_dagster.commands.runs.instance_home import NoInstance, open_instance, resolve_home
    from cto_dagster.commands.runs.run_summary import print_run_summary

    try:
        home = resolve_home()
    except NoInstance as exc:
        print(str(exc), file=sys.stderr)
        return 1
    with open_instance(home) as instance:
        # a run whose process died (SIGKILL, a crash) is still STARTED: settle it first
        for record in instance.get_run_records(
            dg.RunsFilter(
                job_name=job_name, run_ids=[run_id] if run_id else None, statuses=list(ACTIVE)
            )
        ):
            settled = settle_if_dead(instance, record.dagster_run)
            if settled:
                print(f"🪦 Run {record.dagster_run.run_id}: {settled}")
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
        if parent.status in ACTIVE:
            process = run_process(instance, run_id)
            where = f" (pid {process.pid} on {process.host})" if process else ""
            print(
                f"❌ run {run_id} is {parent.status.value} and its process{where} is not known "
                "to be gone: stop it first (Ctrl-C, or Terminate in the UI)",
                file=sys.stderr,
            )
            return 1
        if parent.status != dg.DagsterRunStatus.FAILURE:
            print(f"❌ run {run_id} is {parent.status.value}, not failed", file=sys.stderr)
            return 1
        print(f"↩️  Re-executing {parent.job_name} run {run_id} from failure...", flush=True)
        try:
            outcome = start_and_follow(
                instance,
                lambda workspace: create_reexecution_from_failure(instance, workspace, parent),
            )
        except LaunchError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    print_run_summary(home, parent.job_name, None, run_id=outcome.run_id)
    return 0 if outcome.success else 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    resume = subparsers.add_parser(
        "resume", help="re-execute a failed run from failure (DAGSTER_HOME, or the demo's)"
    )
    resume.add_argument("--run-id", default=None, help="run id (default: the latest failed run)")
    resume.add_argument("--job", default="play_project", help="job name (default: play_project)")
    resume.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_resume(run_id=args.run_id, job_name=args.job)
