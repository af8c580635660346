#!/usr/bin/env python3
"""The original platform's analysis command, kept working:

    python3 scripts/build-dependency-graph.py .taskmaster/tasks/tasks.json [out.json]

It prints the guide's summary and, given a second argument, writes the plan as JSON there (a
superset of the original script's `{"levels", "stats"}`). Run it in the project's environment
(`uv run python scripts/build-dependency-graph.py ...`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cto_dagster.cli import main

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not arguments or arguments[0] in ("-h", "--help") or len(arguments) > 2:
        print("usage: build-dependency-graph.py TASKS_JSON [OUTPUT_JSON]", file=sys.stderr)
        sys.exit(0 if arguments and arguments[0] in ("-h", "--help") else 2)
    command = ["plan", arguments[0]]
    if len(arguments) == 2:
        command += ["--output", arguments[1]]
    sys.exit(main(command))
