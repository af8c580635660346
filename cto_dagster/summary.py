"""A finished run in the terminal: each task's level, start, duration and branch, and speedup."""

from __future__ import annotations

from pathlib import Path


def open_instance(home: str | Path | None = None):
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    if home is None:
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def print_run_summary(
    home: str | Path | None, job_name: str, theoretical: float | None, run_id: str | None = None
) -> None:
    import dagster as dg

    from cto_dagster.defs.run_records import integration_records, task_records

    with open_instance(home) as instance:
        if run_id:
            run = instance.get_run_record_by_id(run_id)
        else:
            runs = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
            run = runs[0] if runs else None
        if run is None:
            print("No run was recorded.")
            return
        records = task_records(instance, run.dagster_run.run_id)
        integrations = integration_records(instance, run.dagster_run.run_id)
    done = [r for r in records if r.status == "materialized"]
    print(f"\nRun {run.dagster_run.run_id} ({run.dagster_run.status.value})")
    for r in records:
        if r.status == "failed":
            print(f"❌ Task {r.task_id} failed: {r.error}")
    if not done:
        return
    t0 = min(r.number("started_at") or 0 for r in done)
    end = max(r.number("finished_at") or 0 for r in done)
    print(f"{'Task':<8}{'Level':>6}{'Start':>9}{'Duration':>10}  {'Branch':<36}Head")
    for r in sorted(done, key=lambda r: r.number("started_at") or 0):
        start = (r.number("started_at") or 0) - t0
        print(
            f"{r.task_id:<8}{r.metadata.get('execution_level', ''):>6}{start:>8.1f}s"
            f"{r.number('duration_seconds') or 0:>9.1f}s  {r.metadata.get('branch', ''):<36}"
            f"{str(r.metadata.get('head_commit', ''))[:10]}"
        )
    for level, meta in sorted(integrations.items()):
        state = "complete" if meta.get("complete") else "INCOMPLETE"
        print(
            f"🔗 Level {level}: {meta.get('integration_branch')} ({state}; merged "
            f"{meta.get('merged_branches')}; PR: {meta.get('pull_request')})"
        )
    sequential = sum(r.number("duration_seconds") or 0 for r in done)
    makespan = end - t0
    print(f"\n📊 Sequential time (sum of task durations): {sequential:.1f} s")
    print(f"📊 Parallel time (first start to last finish): {makespan:.1f} s")
    if makespan > 0:
        speedup = f"📊 Actual speedup: {sequential / makespan:.1f}x"
        if theoretical:
            speedup += f" (theoretical: {theoretical:.1f}x)"
        print(speedup)
