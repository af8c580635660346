"""Bookkeeping steps yield the CPU to the agents' steps."""

import multiprocessing
import os

BACKGROUND_NICENESS = 10


def run_in_background() -> None:
    """Lower the CPU priority of an integration or metrics step, so that on a busy machine the
    next task's step starts first (tasks never wait on these steps). Only in a step's own
    process: never in a caller that materializes in-process."""
    if multiprocessing.parent_process() is None:
        return
    try:
        os.nice(BACKGROUND_NICENESS)
    except OSError:
        pass
