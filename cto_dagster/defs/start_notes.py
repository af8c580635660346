"""How a run's or a step's process started, in the run's log: at 500 tasks a step's start-up
depends on it (seconds), and the guards read it (tests/test_run_processes.py).

The forkserver a process came from says it through its environment, set only there:
- the code server's own forkserver (`warm_runs`), which forks the runs and their steps;
- one a run's process started while it loaded (`run_processes.start_forkserver_early`);
- otherwise the executor started it (or nothing did: spawned, or in process).
"""

from __future__ import annotations

import os
import sys

SERVER_FORKSERVER_ENV = "CTO_DAGSTER_FORKSERVER_OF_CODE_SERVER"
EARLY_ENV = "CTO_DAGSTER_FORKSERVER_STARTED_EARLY"


def resolved_before_fork(job_def: object | None) -> bool:
    """Whether `job_def` is the very job the forkserver this process came from resolved."""
    warmup = sys.modules.get("cto_dagster.defs.step_warmup")
    return job_def is not None and getattr(warmup, "WARMED_JOB", None) is job_def


def start_note(kind: str, job_def: object | None) -> str:
    """`<kind>: forkserver <which>; job <resolved before the fork | resolved in this process>`."""
    warmup = sys.modules.get("cto_dagster.defs.step_warmup")
    if os.environ.get(SERVER_FORKSERVER_ENV) == "1":
        server = "of the code server"
    elif os.environ.get(EARLY_ENV) == "1":
        server = "started while the run loaded"
    elif warmup is not None:
        server = "started by the executor"
    else:
        server = "none (spawned, or in process)"
    job = (
        "resolved before the fork" if resolved_before_fork(job_def) else "resolved in this process"
    )
    return f"{kind}: forkserver {server}; job {job}"
