"""Run creation that writes its planned events at once, not one SQLite transaction each.

Creating a run writes one "planned" event per asset and per asset check before the run starts:
801 events for a 500-task project. Dagster's SQLite event log opens a new engine and commits a
transaction in two databases (the run's and the index) for every one of them, ~14-17 ms each on
this project's machines, so run creation alone took 16 s. Dagster hands these events to the
storage as one batch when `DAGSTER_EVENT_BATCH_SIZE` is set, but its SQLite storage then still
stores them one by one. This storage stores such a batch through Dagster's own `store_event`,
each event in turn, with the run's database and the index each held open in one transaction for
the whole batch (`run_connection` and `index_connection`, the connections Dagster's SQL storage
asks its subclasses for): what is stored is what Dagster's class stores, nothing copied.

All or nothing, so Dagster's fallback (which stores every event of a failed batch again, one by
one) never duplicates a row: the run's database commits first, inside the index's transaction.
A failure before that commit rolls both back; if the index then fails to commit, the rows the
run's database just committed are deleted again before the error reaches Dagster.

Private: Dagster's SQLite storage serialises its connections with a non-reentrant lock
(`_db_lock`); a batch holds two connections at once, so its lock is made reentrant (other
threads still wait for the batch). Guards: tests/test_event_log_storage.py.

Configured in `dagster.yaml` as `cto_dagster.event_log_storage.BatchedSqliteEventLogStorage`
(a stable name for existing homes). With the speed-ups off, loading that configuration gives
Dagster's own `SqliteEventLogStorage` over the same files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData

from cto_dagster.speedups.switch import enabled

BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
# Large enough that a run's planned events are one batch; only Dagster's own batches use it.
BATCH_SIZE = "10000"


def enable_batches() -> None:
    """Let this process hand a run's planned events to the storage as one batch."""
    os.environ.setdefault(BATCH_SIZE_VARIABLE, BATCH_SIZE)


def events_folder(home: str) -> str:
    """Where Dagster's default SQLite event log keeps a home's events (`<home>/history/runs`):
    an existing instance can switch to this storage and back."""
    return os.path.join(home, "history", "runs")


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log; a batch of one run's events is one transaction per database
    instead of two per event."""

    def __init__(self, home: str, inst_data: ConfigurableClassData | None = None):
        self._held = threading.local()  # shard -> the open connection of this thread's batch
        super().__init__(events_folder(home), inst_data=inst_data)
        self._db_lock = threading.RLock()  # type: ignore[assignment] - a batch nests two
        enable_batches()

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"home": dg.StringSource}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> SqliteEventLogStorage:
        """This storage; with the speed-ups off, Dagster's own class over the same files."""
        if not enabled():
            return SqliteEventLogStorage(events_folder(config_value["home"]), inst_data=inst_data)
        return cls(inst_data=inst_data, **config_value)

    def _holding(self) -> dict[str, Any]:
        return self._held.__dict__.setdefault("connections", {})

    def run_connection(self, run_id: str | None = None) -> Any:
        held = self._holding().get(run_id) if run_id else None
        return _in_batch(held) if held is not None else super().run_connection(run_id)

    def index_connection(self) -> AbstractContextManager[Any]:
        held = self._holding().get(INDEX_SHARD_NAME)
        return _in_batch(held) if held is not None else super().index_connection()

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        run_ids = {event.run_id for event in events}
        if not events or len(run_ids) != 1 or self._holding():
            super().store_event_batch(events)
            return
        (run_id,) = run_ids
        index = super().index_connection()
        held = self._holding()
        held[INDEX_SHARD_NAME] = index.__enter__()
        try:
            with super().run_connection(run_id) as conn:
                held[run_id] = conn
                last = conn.execute(db.select(db.func.max(SqlEventLogStorageTable.c.id))).scalar()
                for event in events:
                    SqliteEventLogStorage.store_event(self, event)
                del held[run_id]  # the run's database commits here
        except BaseException as exc:
            held.clear()
            index.__exit__(type(exc), exc, exc.__traceback__)  # the index rolls back
            raise
        held.clear()
        try:
            index.__exit__(None, None, None)  # the index commits here
        except Exception:
            self._forget(run_id, last or 0)  # Dagster stores the batch again: once, not twice
            raise

    def _forget(self, run_id: str, last: int) -> None:
        """Delete what a batch committed to the run's database (its rows come after `last`)."""
        table = SqlEventLogStorageTable
        with super().run_connection(run_id) as conn:
            conn.execute(table.delete().where(table.c.id > last, table.c.run_id == run_id))


@contextmanager
def _in_batch(conn: Any) -> Iterator[Any]:
    """The batch's open connection: its transaction commits when the batch ends."""
    yield conn
