"""The run's process notices a step's event the moment it is sent, and sleeps while none is.

Dagster's multiprocess loop polls the running steps' queues one after another, blocking up to
`TICK` (20 ms) on each: with 8 steps running, an event waits ~0.1 s to be seen and a finished
step's dependents launch ~0.3 s late. Shorter ticks cut that but keep the parent busy (5 ms: 6%
of a core while 8 agents sleep). Here each poll waits on *every* running step's queue and process
at once: whichever step has news wakes the loop at once, and with no news the loop sleeps in
50 ms waits (1-2% of a core).

One wait per round of the loop, not one per running step: the loop starts a new step's process
only when it comes back to that step, after polling every running one; a wait on each poll
delayed every start by up to 50 ms per running step (0.4 s with 8 running).

Private hook: `child_process_executor._poll_for_event` replaced for the duration of a run (off:
Dagster's own poll). Guards: tests/test_guards.py (Dagster's loop still calls it),
tests/test_step_startup.py.
"""

import multiprocessing
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import Any

from dagster._core.executor import child_process_executor

from cto_dagster.speedups.switch import enabled

IDLE_WAIT_SECONDS = 0.05

_running: dict[int, tuple[Any, Any]] = {}  # id(queue) -> (queue, process)
_quiet_polls = 0  # polls without news since the last wait


def _poll_for_event(process: Any, event_queue: Any) -> Any:
    """Same contract as Dagster's `_poll_for_event`: an event, None (nothing yet), or
    PROCESS_DEAD_AND_QUEUE_EMPTY."""
    global _quiet_polls
    _running[id(event_queue)] = (event_queue, process)
    try:
        return event_queue.get(block=False)
    except queue.Empty:
        pass
    if process.is_alive():
        _quiet_polls += 1
        if _quiet_polls < len(_running):
            return None  # the others first: a wait comes once a round
        _quiet_polls = 0
        wait(_wake_ups(), timeout=IDLE_WAIT_SECONDS)
        try:
            return event_queue.get(block=False)
        except queue.Empty:
            if process.is_alive():
                return None
    try:  # the process died: drain what it sent before it went
        return event_queue.get(block=False)
    except queue.Empty:
        _running.pop(id(event_queue), None)
        return child_process_executor.PROCESS_DEAD_AND_QUEUE_EMPTY


def _wake_ups() -> list[Any]:
    """Every running step's queue (news) and process sentinel (exit); finished steps dropped
    (Dagster closes a step's queue only after joining its process)."""
    handles = []
    for key, (event_queue, process) in list(_running.items()):
        if not process.is_alive():
            _running.pop(key, None)
            continue
        handles += [event_queue._reader, process.sentinel]  # type: ignore[attr-defined]
    return handles


def _queues_expose_readers() -> bool:
    probe = multiprocessing.get_context("spawn").Queue()
    try:
        return hasattr(probe, "_reader") and hasattr(probe._reader, "fileno")
    finally:
        probe.close()


@contextmanager
def collective_polling() -> Iterator[None]:
    """Install the collective poll for the duration of one executor run (restored after).
    Off, or where queues do not expose their reader (another Python), Dagster's own poll stays."""
    if not enabled() or not _queues_expose_readers():
        yield
        return
    original = child_process_executor._poll_for_event
    child_process_executor._poll_for_event = _poll_for_event
    try:
        yield
    finally:
        child_process_executor._poll_for_event = original
        _running.clear()
