"""Run creation that writes its planned events at once, not one SQLite transaction each.

Creating a run writes one "planned" event per asset and per asset check before the run starts:
801 events for a 500-task project. Dagster's SQLite event log opens a new engine and commits a
transaction in two databases (the run's and the index) for every one of them, ~14-17 ms each on
this project's machines, so run creation alone took 16 s. Dagster hands these events to the
storage as one batch when `DAGSTER_EVENT_BATCH_SIZE` is set, but its SQLite storage then still
stores them one by one. This storage writes such a batch in one transaction per database.

It is Dagster's SQLite event log with that one change, configured in `dagster.yaml` (the file
`cto-dagster` writes into a new DAGSTER_HOME carries it):

    event_log_storage:
      module: cto_dagster.event_log_storage
      class: BatchedSqliteEventLogStorage
      config:
        home: {env: DAGSTER_HOME}

Its files are where Dagster's default storage keeps them (`<home>/history/runs`), so an existing
instance can switch to it and back. Loading it sets `DAGSTER_EVENT_BATCH_SIZE` in that process
(unless set), so every process of the instance (webserver, daemon, `cto-dagster launch`) creates
runs with batches. It relies on Dagster's private `_connect`; the guard tests
(tests/test_event_log_storage.py) fail if an upgrade stops batching planned events or changes
what storing one writes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData

BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
# Large enough that a run's planned events are one batch; only Dagster's own batches use it.
BATCH_SIZE = "10000"

PLANNED = frozenset(
    {
        dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    }
)


def enable_batches() -> None:
    """Let this process hand a run's planned events to the storage as one batch."""
    os.environ.setdefault(BATCH_SIZE_VARIABLE, BATCH_SIZE)


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log; a batch of one run's planned events is one transaction per
    database instead of two per event."""

    def __init__(self, home: str, inst_data: ConfigurableClassData | None = None):
        self._open = threading.local()  # shard -> connection of the batch this thread writes
        enable_batches()
        super().__init__(os.path.join(home, "history", "runs"), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"home": dg.StringSource}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        connections = getattr(self._open, "connections", {})
        if shard in connections:
            yield connections[shard]
            return
        if connections:  # Dagster's lock is held by this thread's batch: waiting would deadlock
            raise BatchTouchedAnotherDatabase(
                f"storing a planned event reached database {shard!r} during a batch; "
                "it is stored again one event at a time"
            )
        with super()._connect(shard) as conn:
            yield conn

    @contextmanager
    def _sharing(self, shard: str) -> Iterator[Any]:
        """One transaction on `shard` that every write of this thread to it joins."""
        with super()._connect(shard) as conn:
            connections = self._open.__dict__.setdefault("connections", {})
            connections[shard] = conn
            try:
                yield conn
            finally:
                del connections[shard]

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """The index first: if anything there fails, its transaction is rolled back, nothing is
        written, and Dagster stores the batch again one event at a time."""
        run_ids = {event.run_id for event in events}
        if not events or len(run_ids) != 1 or not all(_is_planned(e) for e in events):
            super().store_event_batch(events)
            return
        (run_id,) = run_ids
        with self._sharing(INDEX_SHARD_NAME):
            for event in events:
                self._mirror_in_index(event)
        with self._sharing(run_id) as conn:
            conn.execute(self.prepare_insert_event_batch(events))

    def _mirror_in_index(self, event: EventLogEntry) -> None:
        """What `SqliteEventLogStorage.store_event` writes to the index for a planned event."""
        with self.index_connection() as conn:
            event_id = conn.execute(self.prepare_insert_event(event)).inserted_primary_key[0]
            if event.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
                self._store_asset_event_tags(conn, [event], [event_id])
                self._store_asset_event(conn, event, event_id)
        if event.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
            self.store_asset_check_event(event, event_id)


class BatchTouchedAnotherDatabase(RuntimeError):
    """Storing a planned event reached a database other than the batch's (a Dagster upgrade
    changed what it writes); the batch is rolled back and stored one event at a time."""


def _is_planned(event: EventLogEntry) -> bool:
    return event.is_dagster_event and event.dagster_event_type in PLANNED
