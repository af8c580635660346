"""`cto-dagster`: plan a TaskMaster project, run the demo, report a run's metrics.

Dagster is imported only by the commands that run something, so `plan` answers instantly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cto_dagster.core.taskmaster import TasksFileError


def _write_json(data: dict, destination: str) -> None:
    path = Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def cmd_plan(args: argparse.Namespace) -> int:
    from cto_dagster.core.planner import plan_tasks_file

    plan = plan_tasks_file(args.path, tags=args.tag, all_tags=args.all_tags, include_all=args.all)
    data = plan.to_json()
    if args.output:
        _write_json(data, args.output)
    output_format = "json" if args.json else args.format
    if output_format == "json":
        print(json.dumps(data, ensure_ascii=False))
    elif output_format == "mermaid":
        from cto_dagster.core.mermaid import render_mermaid

        print(render_mermaid(plan))
    else:
        from cto_dagster.core.plan_text import render_plan

        print(render_plan(plan))
        if args.output:
            print(f"\n📝 Plan written to {args.output}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from cto_dagster.init_command import run_init

    return run_init(args.path, args.agent, args.tag, yes=args.yes, force=args.force)


def cmd_demo(args: argparse.Namespace) -> int:
    from cto_dagster.demo import run_demo

    return run_demo(workdir=args.workdir, fresh=args.fresh)


def cmd_launch(args: argparse.Namespace) -> int:
    from cto_dagster.launch_command import run_launch

    return run_launch(
        job_name=args.job, config_files=args.config, tags_json=args.tags, url=args.url
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    from cto_dagster.doctor import run_doctor

    return run_doctor()


def cmd_resume(args: argparse.Namespace) -> int:
    from cto_dagster.resume import run_resume

    return run_resume(run_id=args.run_id, job_name=args.job)


def cmd_report(args: argparse.Namespace) -> int:
    from cto_dagster.report import run_report

    return run_report(project=args.project, run_id=args.run_id)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cto-dagster",
        description="Run a TaskMaster project's tasks in parallel with coding agents, on Dagster.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="show the execution plan of a tasks file")
    plan.add_argument(
        "path",
        nargs="?",
        default=None,
        help="tasks.json, or a project folder (default: the current folder)",
    )
    plan.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="TaskMaster tag (default: the project's current tag); repeat to plan several tags "
        "together, in the order their `dependsOn` gives",
    )
    plan.add_argument("--all-tags", action="store_true", help="plan every tag of the file")
    plan.add_argument(
        "--all", action="store_true", help="plan every task, whatever its status (review too)"
    )
    plan.add_argument(
        "--format",
        choices=("text", "json", "mermaid"),
        default="text",
        help="text (default), json (one object), or mermaid (a flowchart: levels as subgraphs, "
        "critical path highlighted)",
    )
    plan.add_argument("--json", action="store_true", help="same as --format json")
    plan.add_argument("--output", metavar="FILE", help="also write the JSON plan to FILE")
    plan.set_defaults(func=cmd_plan)

    init = sub.add_parser(
        "init",
        help="set up a repository: write cto-dagster.yaml and a DAGSTER_HOME, show the plan",
    )
    init.add_argument("path", nargs="?", default=None, help="the repository (default: .)")
    init.add_argument(
        "--agent",
        choices=("claude", "codex", "gemini", "aider", "demo"),
        help="the agent preset (default: the first CLI found on PATH)",
    )
    init.add_argument(
        "--tag", action="append", default=[], metavar="TAG", help="TaskMaster tag(s) to run"
    )
    init.add_argument("--yes", action="store_true", help="ask nothing: take the defaults")
    init.add_argument("--force", action="store_true", help="overwrite an existing config")
    init.set_defaults(func=cmd_init)

    demo = sub.add_parser("demo", help="run the main job on a sample repository and demo agent")
    demo.add_argument(
        "--workdir",
        default=".cto-dagster/demo",
        help="where the sample repository and DAGSTER_HOME live (default: .cto-dagster/demo)",
    )
    demo.add_argument("--fresh", action="store_true", help="start again from a new sample repo")
    demo.set_defaults(func=cmd_demo)

    launch = sub.add_parser(
        "launch",
        help="launch a job as a run of the code location (listed in the UI, re-executable there) "
        "and follow it",
    )
    launch.add_argument("--job", default="play_project", help="job name (default: play_project)")
    launch.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="run config YAML (the launchpad's), may repeat",
    )
    launch.add_argument("--tags", default=None, help='run tags as JSON, e.g. \'{"team": "a"}\'')
    launch.add_argument(
        "--url",
        default=None,
        help="submit to the Dagster webserver at URL (the local UI, or the chart's) instead of "
        "starting a code server; default: the local UI at http://127.0.0.1:3000 when it serves "
        "this DAGSTER_HOME (--url local: never)",
    )
    launch.set_defaults(func=cmd_launch)

    resume = sub.add_parser(
        "resume", help="re-execute a failed run from failure (DAGSTER_HOME, or the demo's)"
    )
    resume.add_argument("--run-id", default=None, help="run id (default: the latest failed run)")
    resume.add_argument("--job", default="play_project", help="job name (default: play_project)")
    resume.set_defaults(func=cmd_resume)

    doctor = sub.add_parser(
        "doctor",
        help="check the configured projects (agent, credentials by name, remote, tasks file, "
        "instance) before a run",
    )
    doctor.set_defaults(func=cmd_doctor)

    report = sub.add_parser("report", help="print the performance telemetry of a finished run")
    report.add_argument("--project", default=None, help="project name (default: the only one)")
    report.add_argument("--run-id", default=None, help="run id (default: the latest run)")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TasksFileError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
