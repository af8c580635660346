"""`cto-dagster plan`: the execution plan of a tasks file, as text, JSON or a Mermaid flowchart."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    plan = subparsers.add_parser("plan", help="show the execution plan of a tasks file")
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
    plan.set_defaults(func=run)


def _write_json(data: dict, destination: str) -> None:
    path = Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from cto_dagster.core.planning.planner import plan_tasks_file

    plan = plan_tasks_file(args.path, tags=args.tag, all_tags=args.all_tags, include_all=args.all)
    data = plan.to_json()
    if args.output:
        _write_json(data, args.output)
    output_format = "json" if args.json else args.format
    if output_format == "json":
        print(json.dumps(data, ensure_ascii=False))
    elif output_format == "mermaid":
        from cto_dagster.core.planning.mermaid import render_mermaid

        print(render_mermaid(plan))
    else:
        from cto_dagster.core.planning.plan_text import render_plan

        print(render_plan(plan))
        if args.output:
            print(f"\n📝 Plan written to {args.output}")
    return 0
