"""A finished run in the terminal: each task's level, start, duration and branch, and speedup.

A re-executed run is shown with what the runs it re-executed finished (marked with their run), on
the same timeline as the metrics asset: idle time between runs is left out.
"""

from __future__ import annotations

from pathlib import Path


def _levels_word(meta: dict[str, object], level: int) -> str:
    span = str(meta.get("integrated_levels") or level)
    return f"Levels {span}" if "-" in span else f"Level {span}"


def print_run_summary(
    home: str | Path | None, job_name: str, theoretical: float | None, run_id: str | None = None
) -> None:
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance
    from cto_dagster.core.metrics.speedup import join_runs, speedup_figures
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

    with open_instance(home) as instance:
        if run_id:
            run = instance.get_run_record_by_id(run_id)
        else:
            runs = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
            run = runs[0] if runs else None
        if run is None:
            print("No run was recorded.")
            return
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
        conflicts = count_conflicts(integrations, outcomes)
        verified = verified_line(verified_counts(instance, run_id))
    print(f"\nRun {run_id} ({run.dagster_run.status.value})")
    for record in records.values():
        if record.status == "failed":
            print(f"❌ Task {record.task_id} failed: {record.error}")
    if not timings:
        return
    origin = min(t.started_at for t in timings)
    print(f"{'Task':<8}{'Level':>6}{'Start':>9}{'Duration':>10}  {'Branch':<36}Head")
    for timing in sorted(timings, key=lambda t: t.started_at):
        meta = records[timing.task_id].metadata
        print(
            f"{timing.task_id:<8}{timing.level:>6}{timing.started_at - origin:>8.1f}s"
            f"{timing.finished_at - timing.started_at:>9.1f}s  {meta.get('branch', ''):<36}"
            f"{str(meta.get('head_commit', ''))[:10]}"
            + (f"  (run {timing.from_run[:8]})" if timing.from_run else "")
        )
    for level, meta in sorted(integrations.items()):
        state = "complete" if meta.get("complete") else "INCOMPLETE"
        print(
            f"🔗 {_levels_word(meta, level)}: {meta.get('integration_branch')} ({state}; merged "
            f"{meta.get('merged_branches')}; PR: {meta.get('pull_request')})"
        )
    if any(conflicts.values()):
        print(
            f"🔀 Merge conflicts: {conflicts['conflicts_predicted']} predicted, "
            f"{conflicts['conflicts_resolved']} resolved by an agent (review them: the "
            f"resolved_conflicts checks), {conflicts['conflicts_left']} left for a person"
        )
    if verified:
        print(verified)
    sequential, makespan, speedup = speedup_figures(timings)
    print(f"\n📊 Sequential time (sum of task durations): {sequential:.1f} s")
    print(f"📊 Parallel time (first start to last finish): {makespan:.1f} s")
    if makespan > 0:
        line = f"📊 Actual speedup: {speedup:.1f}x"
        if theoretical:
            line += f" (theoretical: {theoretical:.1f}x)"
        print(line)
