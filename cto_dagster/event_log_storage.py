"""The name `dagster.yaml` files give the batched SQLite event log (`module:
cto_dagster.event_log_storage`, `class: BatchedSqliteEventLogStorage`), kept for the homes that
already name it. The storage is one of the speed-ups: `cto_dagster.speedups.event_log`; with
them off, this configuration loads Dagster's own `SqliteEventLogStorage` over the same files."""

from cto_dagster.speedups.event_log import (
    BATCH_SIZE_VARIABLE,
    BatchedSqliteEventLogStorage,
    enable_batches,
)

__all__ = ["BATCH_SIZE_VARIABLE", "BatchedSqliteEventLogStorage", "enable_batches"]
