"""The processes of a run started by a code server plan what the code server planned.

A run started from the UI or by `cto-dagster launch` goes through the code server's `StartRun`:
the code server puts the commits it planned from, and the durations it learned, in its own
environment (`export_pins_for_runs`), so the run processes it starts inherit them and plan the
very tasks the run was created from (the UI's graph, the run's snapshot) without fetching again.
(How those processes start sooner is the speed-ups' part: `cto_dagster.speedups`.)
"""

from __future__ import annotations

import sys

from cto_dagster.defs.step_processes import pin_planned_commits


def is_code_server() -> bool:
    """`dagster api grpc`: the process Dagster's workspace, `dagster dev` and the Helm chart's
    user deployments start for a code location, and whose `StartRun` spawns run processes."""
    return sys.argv[1:3] == ["api", "grpc"]


def export_pins_for_runs() -> None:
    """In a code server, once its definitions are built: the run processes it spawns inherit the
    commits and durations it planned from (a run then runs the plan it was created from, even if
    the tasks branch moved since the location loaded; reload the location to plan anew)."""
    if is_code_server():
        pin_planned_commits()
