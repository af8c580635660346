"""Step start-up: the forkserver's warm-up, background priority for bookkeeping steps, and the
parent loop's polling. Their effect on latency is measured by benchmarks/schedule.py."""

import importlib
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pytest
from dagster._core.executor import child_process_executor

from cto_dagster.defs.step_priority import BACKGROUND_NICENESS, run_in_background
from cto_dagster.defs.step_processes import instance_modules
from cto_dagster.speedups import step_polling
from cto_dagster.speedups.step_polling import collective_polling

original_poll = child_process_executor._poll_for_event

WARM_UP_THEN_OPEN_INSTANCES = textwrap.dedent(
    """
    import sys
    from alembic.script import ScriptDirectory
    from dagster._core.storage.runs.sqlite import sqlite_run_storage
    from dagster._core.storage.sql import get_alembic_config

    from cto_dagster.speedups import step_warmup

    assert step_warmup.warm_up(step_warmup.STEP_MODULES) == [], "warm-up missed something"
    config = get_alembic_config(sqlite_run_storage.__file__)
    assert ScriptDirectory.from_config(config) is ScriptDirectory.from_config(config)

    import dagster as dg
    # a new home (tables created and stamped) and the same home again (revision checked)
    with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
        run = instance.create_run_for_job(dg.JobDefinition(graph_def=dg.GraphDefinition("g")))
    with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
        assert instance.get_run_by_id(run.run_id) is not None
        instance.report_engine_event("still writable", run)
    print("ok")
    """
)


def assert_script_says_ok(script: str, home) -> None:
    """Run `script` in a fresh interpreter (argument and DAGSTER_HOME: `home`); it prints ok."""
    result = subprocess.run(
        [sys.executable, "-c", script, str(home)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DAGSTER_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_warm_up_imports_what_steps_need_and_instances_still_open(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert_script_says_ok(WARM_UP_THEN_OPEN_INSTANCES, home)


def test_instance_modules_are_the_storages_steps_open(tmp_path):
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        modules = instance_modules(instance)
        for storage in (instance.run_storage, instance.event_log_storage):
            assert any(type(storage).__module__.startswith(m) for m in modules), modules
    assert len(modules) == len(set(modules))
    for module in modules:
        importlib.import_module(module)


def _niceness_after_background(queue) -> None:
    before = os.nice(0)
    run_in_background()
    queue.put((before, os.nice(0)))


def test_bookkeeping_steps_yield_the_cpu_only_in_their_own_process():
    before = os.nice(0)
    run_in_background()  # a caller materializing in-process keeps its priority
    assert os.nice(0) == before

    context = multiprocessing.get_context("forkserver")
    queue = context.Queue()
    child = context.Process(target=_niceness_after_background, args=(queue,))
    child.start()
    child_before, child_after = queue.get(timeout=60)
    child.join(timeout=60)
    assert child_after == min(19, child_before + BACKGROUND_NICENESS)


def _send_after(event_queue, release, events) -> None:
    release.wait(60)
    for event in events:
        event_queue.put(event)


def _start_steps(names, context):
    steps = []
    for name in names:
        event_queue, release = context.Queue(), context.Event()
        process = context.Process(target=_send_after, args=(event_queue, release, [name, "done"]))
        process.start()
        steps.append((process, event_queue, release))
    return steps


def _round(poll, steps) -> list:
    """One pass of Dagster's loop: every running step polled once, in order."""
    return [poll(process, event_queue) for process, event_queue, _ in steps]


@pytest.mark.speedups
def test_collective_poll_keeps_dagsters_contract_and_wakes_on_any_step(monkeypatch):
    context = multiprocessing.get_context("forkserver")
    steps = _start_steps(["a", "b"], context)
    a_release, b_release = steps[0][2], steps[1][2]
    with collective_polling():
        poll = child_process_executor._poll_for_event
        assert poll is not original_poll
        assert _round(poll, steps) == [None, None]  # nothing yet
        # a quiet round waits on every running step: b's news ends the wait long before its
        # 60 s timeout
        monkeypatch.setattr(step_polling, "IDLE_WAIT_SECONDS", 60.0)
        b_release.set()
        started = time.monotonic()
        received = [e for e in _round(poll, steps) if e is not None]
        assert time.monotonic() - started < 30
        monkeypatch.setattr(step_polling, "IDLE_WAIT_SECONDS", 0.05)
        a_release.set()
        dead = child_process_executor.PROCESS_DEAD_AND_QUEUE_EMPTY
        running, deadline = list(steps), time.monotonic() + 30
        while running and time.monotonic() < deadline:  # as Dagster's loop: until each is dead
            events = _round(poll, running)
            received += [e for e in events if e not in (None, dead)]
            running = [step for step, e in zip(running, events, strict=True) if e != dead]
        assert sorted(received) == ["a", "b", "done", "done"]
        assert not running
    assert child_process_executor._poll_for_event is original_poll


@pytest.mark.speedups
def test_a_quiet_round_waits_once_not_once_per_running_step(monkeypatch):
    """The loop starts a new step's process only after polling every running step: one idle
    wait per round keeps that under IDLE_WAIT_SECONDS, whatever the number of steps running
    (a wait per poll made it 0.4 s with 8 steps)."""
    context = multiprocessing.get_context("forkserver")
    steps = _start_steps(["a", "b", "c", "d"], context)
    monkeypatch.setattr(step_polling, "IDLE_WAIT_SECONDS", 0.5)
    try:
        with collective_polling():
            poll = child_process_executor._poll_for_event
            _round(poll, steps)  # each step seen once
            started = time.monotonic()
            for _ in range(3):
                assert _round(poll, steps) == [None] * 4
            elapsed = time.monotonic() - started
        assert 3 * 0.5 <= elapsed < 3 * 0.5 * 3, elapsed  # one wait a round, not four (6 s)
    finally:
        for process, _, release in steps:
            release.set()
            process.join(30)


WARM_JOB_THEN_FORK = textwrap.dedent(
    """
    import os, pickle, sys
    sys.path.insert(0, sys.argv[1])
    from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository

    from cto_dagster.speedups.forkservers import WARM_JOB_ENV, job_for_steps

    job = ReconstructableJob(
        ReconstructableRepository.for_module("tiny_defs", "defs", working_directory=sys.argv[1]),
        "tiny",
    )
    os.environ[WARM_JOB_ENV] = job_for_steps(job)
    from cto_dagster.speedups import step_warmup  # what the forkserver imports: it resolves the job

    cache = ReconstructableJob.get_definition
    before = cache.cache_info()
    assert before.misses == 1, before  # resolved once, by the warm-up
    # a step receives the executor's job pickled; Dagster's cache must answer it
    received = pickle.loads(pickle.dumps(job))
    assert received.get_definition().name == "tiny"
    after = cache.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses, after
    print("ok")
    """
)


def test_the_forkserver_resolves_the_job_steps_then_find_cached(tmp_path):
    """Guard for `step_warmup.warm_job`: fails if Dagster stops caching a resolved job per
    `ReconstructableJob` (each step would resolve it again: 1.1 s of CPU at 500 tasks)."""
    (tmp_path / "tiny_defs.py").write_text(
        "import dagster as dg\n"
        "@dg.op\ndef one():\n    return 1\n"
        "@dg.job\ndef tiny():\n    one()\n"
        "defs = dg.Definitions(jobs=[tiny])\n"
    )
    assert_script_says_ok(WARM_JOB_THEN_FORK, tmp_path)


def test_the_forkserver_preloads_only_modules_the_product_imports():
    """Each preloaded module costs every run's forkserver its import time: the list holds only
    what a step imports anyway (GitPython, `git`, was preloaded though nothing imports it)."""
    script = textwrap.dedent(
        """
        import importlib, sys
        from cto_dagster.defs.step_processes import PRELOAD
        import cto_dagster.defs.loader
        for name in PRELOAD:
            if name.startswith(("cto_dagster.", "dagster.", "dagster._")):
                importlib.import_module(name)
        print(" ".join(name for name in PRELOAD if name not in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == [], "preloaded, though nothing in the product imports it"
