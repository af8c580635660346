"""`cto-dagster report`: a run's performance telemetry in the terminal, from the event log."""

from __future__ import annotations

import argparse
import sys


def run_report(project: str | None, run_id: str | None) -> int:
    from cto_dagster.commands.runs.instance_home import NoInstance, open_instance, resolve_home
    from cto_dagster.core.metrics.speedup import telemetry_lines
    from cto_dagster.core.settings import SettingsError, load_settings, plan_project
    from cto_dagster.defs.metrics_assets import metrics_for_run, play_runs
    from cto_dagster.defs.project_credentials import git_env_for

    try:
        home = resolve_home()
    except NoInstance as exc:
        print(str(exc), file=sys.stderr)
        return 1
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    names = [p.name for p in settings.projects]
    if project is None and len(names) > 1:
        print(f"❌ several projects ({', '.join(names)}): pass --project", file=sys.stderr)
        return 1
    chosen = next((p for p in settings.projects if project in (None, p.name)), None)
    if chosen is None:
        print(f"❌ no project {project!r}; projects: {', '.join(names)}", file=sys.stderr)
        return 1
    plan = plan_project(chosen, git_env_for(chosen))
    with open_instance(home) as instance:
        if run_id is None:
            runs = play_runs(instance, chosen, 1)
            if not runs:
                print(f"❌ no run of project {chosen.name} yet", file=sys.stderr)
                return 1
            run_id = runs[0].dagster_run.run_id
        metrics = metrics_for_run(instance, run_id, plan)
    if metrics is None:
        print(f"❌ no run {run_id} in this instance", file=sys.stderr)
        return 1
    print("\n".join(telemetry_lines(metrics)))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report", help="print the performance telemetry of a finished run"
    )
    report.add_argument("--project", default=None, help="project name (default: the only one)")
    report.add_argument("--run-id", default=None, help="run id (default: the latest run)")
    report.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_report(project=args.project, run_id=args.run_id)
