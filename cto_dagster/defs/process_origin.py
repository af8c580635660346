"""How a run's or a step's process started, in the run's log: at 500 tasks a step's start-up
depends on it (seconds), and the guards read it (tests/test_run_processes.py).

The forkserver a process came from says it through its environment, set only there:
- the code server's own forkserver (`speedups.code_server_forkserver`), which forks the runs
  and their steps;
- one a run's process started while it loaded (`speedups.early_forkserver`);
- otherwise the executor started it (or nothing did: spawned, or in process);
- with the speed-ups off, none of ours: Dagster's own start-up.
"""

from __future__ import annotations

import os
import sys

from cto_dagster.speedups.forkservers import (
    EARLY_ENV,
    SERVER_FORKSERVER_ENV,
    WARMUP_MODULE,
    resolved_before_fork,
)
from cto_dagster.speedups.switch import enabled

OFF_NOTE = "speed-ups off (Dagster's own start)"


def start_note(kind: str, job_def: object | None) -> str:
    """`<kind>: forkserver <which>; job <resolved before the fork | resolved in this process>`,
    or `<kind>: speed-ups off ...; job resolved in this process` with the layer off."""
    if os.environ.get(SERVER_FORKSERVER_ENV) == "1":
        server = "forkserver of the code server"
    elif os.environ.get(EARLY_ENV) == "1":
        server = "forkserver started while the run loaded"
    elif sys.modules.get(WARMUP_MODULE) is not None:
        server = "forkserver started by the executor"
    elif not enabled():
        server = OFF_NOTE
    else:
        server = "forkserver none (spawned, or in process)"
    job = (
        "resolved before the fork" if resolved_before_fork(job_def) else "resolved in this process"
    )
    return f"{kind}: {server}; job {job}"
