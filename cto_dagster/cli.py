"""`cto-dagster`: the entry point. Each command adds its own options and runs from its module of
`cto_dagster/commands/` (`plan`, `init`, `demo`, `launch`, `resume`, `doctor`, `report`).

Dagster is imported only by the commands that run something, so `plan` answers instantly.
"""

from __future__ import annotations

import argparse
import sys

from cto_dagster.commands import demo, doctor, init, launch, plan, report, resume
from cto_dagster.core.taskmaster import TasksFileError

COMMANDS = (plan, init, demo, launch, resume, doctor, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cto-dagster",
        description="Run a TaskMaster project's tasks in parallel with coding agents, on Dagster.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
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
