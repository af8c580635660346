"""A finished run in the terminal: each task's level, start, duration and branch, and speedup.

A re-executed run is shown with what the runs it re-executed finished (marked with their run), on
the same timeline as the metrics asset: idle time between runs is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def _levels_word(meta: dict[str, object], level: int) -> str:
    span = str(meta.get("integrated_levels") or level)
    return f"Levels {span}" if "-" in span else f"Level {span}"


@dataclass
class _RunRead:
    """What the summary shows of a run, read from the instance."""

    run_id: str
    status: str
    timings: list  # TaskTiming of the run and the runs it re-executed
    records: dict  # task id -> its latest record in the chain
    integrations: dict[int, dict[str, object]]
    conflicts: dict[str, int]
    verified: str


def print_run_summary(
    home: str | Path | None, job_name: str, theoretical: float | None, run_id: str | None = None
) -> None:
    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(home) as instance:
        read = _read_run(instance, job_name, run_id)
    if read is None:
        print("No run was recorded.")
        return
    print(f"\nRun {read.run_id} ({read.status})")
    for record in read.records.values():
        if record.status == "failed":
            print(f"❌ Task {record.task_id} failed: {record.error}")
    if not read.timings:
        return
    _print_tasks(read)
    _print_integrations(read.integrations)
    conflicts = read.conflicts
    if any(conflicts.values()):
        print(
            f"🔀 Merge conflicts: {conflicts['conflicts_predicted']} predicted, "
            f"{conflicts['conflicts_resolved']} resolved by an agent (review them: the "
            f"resolved_conflicts checks), {conflicts['conflicts_left']} left for a person"
        )
    if read.verified:
        print(read.verified)
    _print_speedup(read.timings, theoretical)


def _read_run(instance, job_name: str, run_id: str | None) -> _RunRead | None:
    """The run (`run_id`, else the job's latest) and what it and the runs it re-executed did."""
    import dagster as dg

    from cto_dagster.core.metrics.speedup import join_runs
    from cto_dagster.core.metrics.verify_summary import verified_line
    from cto_dagster.defs.metrics_assets import run_parts
    from cto_dagster.defs.run_records import (
        count_conflicts,
        integration_records,
        keep_latest_outcome,
        run_chain,
        task_records,
        verified_counts,
    )

    if run_id:
        run = instance.get_run_record_by_id(run_id)
    else:
        runs = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
        run = runs[0] if runs else None
    if run is None:
        return None
    run_id = run.dagster_run.run_id
    timings, _ = join_runs(run_parts(instance, run_id))
    records = {}
    outcomes: dict = {}  # every task's latest outcome in the chain, for the conflict counts
    integrations: dict[int, dict[str, object]] = {}
    for earlier in run_chain(instance, run_id):
        found = task_records(instance, earlier.run_id)
        for record in found:
            if record.status == "materialized" or earlier.run_id == run_id:
                records[record.task_id] = record
        keep_latest_outcome(outcomes, found)
        integrations.update(integration_records(instance, earlier.run_id))
    return _RunRead(
        run_id=run_id,
        status=run.dagster_run.status.value,
        timings=timings,
        records=records,
        integrations=integrations,
        conflicts=count_conflicts(integrations, outcomes),
        verified=verified_line(verified_counts(instance, run_id)),
    )


def _print_tasks(read: _RunRead) -> None:
    """Each task's level, start, duration, branch and head, in the order they started."""
    origin = min(t.started_at for t in read.timings)
    print(f"{'Task':<8}{'Level':>6}{'Start':>9}{'Duration':>10}  {'Branch':<36}Head")
    for timing in sorted(read.timings, key=lambda t: t.started_at):
        meta = read.records[timing.task_id].metadata
        print(
            f"{timing.task_id:<8}{timing.level:>6}{timing.started_at - origin:>8.1f}s"
            f"{timing.finished_at - timing.started_at:>9.1f}s  {meta.get('branch', ''):<36}"
            f"{str(meta.get('head_commit', ''))[:10]}"
            + (f"  (run {timing.from_run[:8]})" if timing.from_run else "")
        )


def _print_integrations(integrations: dict[int, dict[str, object]]) -> None:
    for level, meta in sorted(integrations.items()):
        state = "complete" if meta.get("complete") else "INCOMPLETE"
        print(
            f"🔗 {_levels_word(meta, level)}: {meta.get('integration_branch')} ({state}; merged "
            f"{meta.get('merged_branches')}; PR: {meta.get('pull_request')})"
        )


def _print_speedup(timings: list, theoretical: float | None) -> None:
    from cto_dagster.core.metrics.speedup import speedup_figures

    sequential, makespan, speedup = speedup_figures(timings)
    print(f"\n📊 Sequential time (sum of task durations): {sequential:.1f} s")
    print(f"📊 Parallel time (first start to last finish): {makespan:.1f} s")
    if makespan > 0:
        line = f"📊 Actual speedup: {speedup:.1f}x"
        if theoretical:
            line += f" (theoretical: {theoretical:.1f}x)"
        print(line)
