"""What Dagster alone takes to start the first task of the 500-task graph, launched as
`cto-dagster launch` launches (a fresh `dagster api grpc`, the run created from its snapshot as
the launchpad does, the instance's run launcher): the floor under issue 15's goal 3.

    uv run python benchmarks/dagster_floor.py [--tasks 500] [--instance dagster|cto]

`floor_defs.py` holds the same graph as `big_project.py` as plain assets (no cto-dagster code);
`--instance dagster` uses Dagster's default SQLite instance, `--instance cto` the one
`cto-dagster` sets up (planned events in one batch). Prints when the location was ready, when
the run was created and when its first step started, in seconds from the server's start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--instance", choices=["dagster", "cto"], default="dagster")
    args = parser.parse_args()

    import big_project

    home = Path(tempfile.mkdtemp(prefix="cto-floor-"))
    tasks_file = home / "tasks.json"
    tasks_file.write_text(json.dumps(big_project.layered(args.tasks, seed=args.tasks)))
    os.environ.update(DAGSTER_HOME=str(home), FLOOR_TASKS=str(tasks_file))
    if args.instance == "cto":
        from cto_dagster.commands.runs.instance_home import prepare_home

        prepare_home(home)
    else:
        (home / "dagster.yaml").write_text("{}\n")
    import dagster as dg

    dg.DagsterInstance.get().dispose()  # storage created once, before two processes race for it

    from cto_dagster.commands.runs import code_server_launch as launch
    from cto_dagster.commands.runs.code_server import LOCATION_NAME, CodeServer

    folder = tempfile.mkdtemp(prefix="cto-floor-server-")
    log = home / "server.log"
    started = time.time()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "dagster", "api", "grpc"),
                *("--socket", os.path.join(folder, "grpc.sock"), "--lazy-load-user-code"),
                *("--location-name", LOCATION_NAME, "--module-name", "floor_defs"),
                *("--working-directory", str(HERE)),
            ],
            stdout=out,
            stderr=out,
        )
    instance = dg.DagsterInstance.get()
    server = CodeServer(process, folder, log)
    try:
        with launch.code_location(instance, log, server=server) as workspace:
            ready = time.time()
            created, first = big_project.first_step_after_launch(instance, workspace, timeout=600)
    finally:
        server.stop()
    if first is None:
        print("no step started in 600 s")
        return 1
    print(
        f"Dagster alone, {args.tasks} tasks, {args.instance} instance: location ready "
        f"{ready - started:.1f} s, run created {created - started:.1f} s, first step "
        f"{first - started:.1f} s ({first - created:.1f} s after the run was created)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
