"""Runs whose process died (SIGKILL, a crashed machine) stay STARTED forever and keep their pool
slots: this finds them from the process identity the executor records at start, marks them failed
and frees their slots, so that `cto-dagster resume` completes them and new runs are not blocked."""

from __future__ import annotations

import dagster as dg

from cto_dagster.core.support.processes import ProcessIdentity

ACTIVE = (
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.CANCELING,
)


def run_process(instance: dg.DagsterInstance, run_id: str) -> ProcessIdentity | None:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
    ).records
    for record in records:
        data = record.event_log_entry.dagster_event.event_specific_data
        metadata = {k: getattr(v, "value", v) for k, v in (data.metadata or {}).items()}
        identity = ProcessIdentity.from_metadata(metadata)
        if identity is not None:
            return identity
    return None


def settle_if_dead(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Mark `run` failed when its process is gone; returns what was done (None: nothing)."""
    if run.status not in ACTIVE:
        return None
    identity = run_process(instance, run.run_id)
    if identity is None or identity.verdict() != "dead":
        return None
    message = (
        f"the run's process (pid {identity.pid} on {identity.host}) is gone: marked failed, "
        "its pool slots freed"
    )
    instance.report_run_failed(run, message=f"cto-dagster: {message}")
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return message


def settle_dead_runs(instance: dg.DagsterInstance, job_name: str | None = None) -> list[str]:
    """Every dead run of this machine (of one job, if given), settled."""
    done = []
    for record in instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=list(ACTIVE))):
        message = settle_if_dead(instance, record.dagster_run)
        if message:
            done.append(f"{record.dagster_run.run_id[:8]}: {message}")
    return done
