"""Python's forkserver, started by us with a run's job resolved in it, and adopted by a run
that a code server's forkserver forked.

Starting a forkserver and naming its preload list is public (`multiprocessing`); two things
here are not: in a run's process that the code server's forkserver forked, the standard
library's forkserver state it inherited is read (`forkserver._forkserver._forkserver_pid`,
`_forkserver_address`, `_forkserver_alive_fd`) and its `ensure_running` replaced, so the steps
fork from that server instead of a new one (a forked child knows the server's address and holds
its "alive" pipe, not its process id, so `ensure_running` would start another). CPython 3.14
reworks this module: the switch's version gate keeps the hook to the versions it was verified
with (`switch.VERIFIED_PYTHON`).
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import pickle
import sys
from collections.abc import Mapping
from multiprocessing import forkserver, resource_tracker

from cto_dagster.speedups.switch import enabled

WARM_JOB_ENV = "CTO_DAGSTER_WARM_JOB"
# set only in the environment of the forkserver that forks a process (read by
# `defs/process_origin.py`)
SERVER_FORKSERVER_ENV = "CTO_DAGSTER_FORKSERVER_OF_CODE_SERVER"
EARLY_ENV = "CTO_DAGSTER_FORKSERVER_STARTED_EARLY"
WARMUP_MODULE = "cto_dagster.speedups.step_warmup"

# A selection of up to this many steps forks them from the code server's forkserver, each
# narrowing the job it finds resolved there (0.02 s at 500 tasks); a larger one starts a
# forkserver of its own with the narrowed job resolved once (0.9 s a step at 500 tasks).
SMALL_SELECTION_STEPS = 20


def resolved_before_fork(job_def: object | None) -> bool:
    """Whether `job_def` is the very job the forkserver this process came from resolved."""
    warmup = sys.modules.get(WARMUP_MODULE)
    return job_def is not None and getattr(warmup, "WARMED_JOB", None) is job_def


def warmup_preload() -> list[str]:
    """The warm-up module for the executor's forkserver preload list, when the layer is on."""
    return [WARMUP_MODULE] if enabled() else []


def job_for_steps(job: object) -> str:
    """The run's `ReconstructableJob` (or a list of them) for the forkserver's
    `step_warmup.warm_job` (an environment variable: the forkserver starts with the environment
    of the process that starts it)."""
    return base64.b64encode(pickle.dumps(job)).decode("ascii")


def start_forkserver(preload: list[str], environment: Mapping[str, str]) -> None:
    """Start Python's forkserver (one per process) importing `preload`, with `environment` added
    to its environment only (its children read it: the job to resolve, where it came from)."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        forkserver.ensure_running()  # the server starts with this process's environment
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def adopt_inherited_forkserver(steps: int, job_def: object | None = None) -> bool:
    """In a run's process that the code server's forkserver forked: fork the steps from that
    forkserver rather than start another, when the run's job is the one resolved there or the
    run selects a few steps. Here `ensure_running` only checks the resource tracker."""
    if not enabled() or os.environ.get(SERVER_FORKSERVER_ENV) != "1":
        return False
    if not resolved_before_fork(job_def) and steps > SMALL_SELECTION_STEPS:
        return False
    server = forkserver._forkserver  # type: ignore[attr-defined]
    if server._forkserver_pid is not None:  # this process started a forkserver itself
        return False
    if not server._forkserver_address or server._forkserver_alive_fd is None:
        return False
    server.ensure_running = resource_tracker.ensure_running
    return True


def prepare_steps_forkserver(recon_job: object, job_def: object, steps: int) -> None:
    """Before Dagster's executor starts its forkserver: adopt the code server's (see above), or
    name the run's job for the new forkserver's warm-up to resolve. Off: nothing (Dagster's own
    forkserver, with the preload list its constructor was given)."""
    if not enabled() or adopt_inherited_forkserver(steps, job_def):
        return
    os.environ[WARM_JOB_ENV] = job_for_steps(recon_job)
    os.environ.pop(SERVER_FORKSERVER_ENV, None)  # its steps come from another forkserver
