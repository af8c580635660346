"""A code server's runs, and their steps, fork from one warm forkserver the server starts.

Dagster's code server (`dagster api grpc`) spawns a fresh Python for every run it starts
(`StartRun`), which imports Dagster, builds the definitions and resolves the job again, and then
its executor starts a forkserver that does the same a third time before the first step can fork:
at 500 tasks that is ~12 s between the run's creation and its first task. Here the code server,
once its own definitions are built, starts Python's forkserver with the location built and the
job resolved (`step_warmup`), and hands it to its `StartRun`: a run's process is forked from it
ready to execute, and its executor forks the steps from the same server instead of starting one
(a run selecting many steps of another job starts its own, with that job resolved once).

Private hooks, each with a guard (tests/test_run_processes.py): the server's multiprocessing
context (`DagsterApiServer._mp_ctx`, the server found through `sys._getframe` as the object
loading the definitions), and, in a run's process, the standard library's forkserver state it
inherited (`forkservers.adopt_inherited_forkserver`). Off (`switch.enabled()`, or
`CTO_DAGSTER_WARM_RUNS=0`): the server spawns its runs as Dagster does.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from typing import Any

from cto_dagster.defs.step_processes import instance_modules, preload_modules
from cto_dagster.speedups.forkservers import (
    SERVER_FORKSERVER_ENV,
    WARM_JOB_ENV,
    WARMUP_MODULE,
    job_for_steps,
    start_forkserver,
)
from cto_dagster.speedups.switch import enabled

LOAD_WAIT_SECONDS = 600
WARM_RUNS_ENV = "CTO_DAGSTER_WARM_RUNS"  # "0": runs are spawned as Dagster does


def _api_server() -> object | None:
    """The `DagsterApiServer` whose constructor is loading the definitions (this call's stack)."""
    try:
        from dagster._grpc.server import DagsterApiServer
    except ImportError:
        return None
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, DagsterApiServer):
            return candidate
        frame = frame.f_back
    return None


def fork_runs_from_a_warm_server(is_code_server: bool) -> bool:
    """In a code server whose definitions were just built: once the server holds them, start a
    forkserver with them built and the main job resolved, and let the server fork its runs from
    it. Returns whether that was set up to happen."""
    if not is_code_server or os.environ.get(WARM_RUNS_ENV, "1") == "0" or not enabled():
        return False
    server = _api_server()
    if server is None or not hasattr(server, "_mp_ctx"):
        return False
    threading.Thread(
        target=_start_when_loaded, args=(server,), daemon=True, name="cto-warm-runs"
    ).start()
    return True


def _start_when_loaded(server: Any) -> None:
    deadline = time.monotonic() + LOAD_WAIT_SECONDS
    while getattr(server, "_loaded_repositories", None) is None:
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)
    try:
        loaded = server._loaded_repositories
        recon_repo = next(iter(loaded.reconstructables_by_name.values()))
        definition = next(iter(loaded.definitions_by_name.values()))
        names = sorted(job.name for job in definition.get_all_jobs())
        played = [name for name in names if not name.startswith("__")]
        if not played:
            return
        # the play job (what the launchpad and `cto-dagster launch` run), then the implicit asset
        # job that the asset graph's launches narrow: resolved once here, a one-asset selection
        # takes its step 0.02 s instead of 0.85 s at 500 tasks
        wanted = [played[0], *(name for name in names if name == "__ASSET_JOB")]
        jobs = [recon_repo.get_reconstructable_job(name) for name in wanted]
        instance = getattr(server, "_instance", None)
        storages = instance_modules(instance) if instance is not None else []
        start_forkserver(  # with the pins this server exported, and the jobs to resolve
            preload_modules(jobs[0].get_module(), storages, [], [WARMUP_MODULE]),
            {WARM_JOB_ENV: job_for_steps(jobs), SERVER_FORKSERVER_ENV: "1"},
        )
        server._mp_ctx = multiprocessing.get_context("forkserver")
    except Exception:  # a speed-up only: runs are spawned as Dagster does
        return
