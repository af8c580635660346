"""The batched SQLite event log (a speed-up): a run's planned events written at once, stored
exactly as Dagster's own class stores them one by one, never twice when a batch fails; with the
speed-ups off, the configured name loads Dagster's own class."""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from sqlalchemy.engine import Engine

from cto_dagster.commands.runs.instance_home import prepare_home
from cto_dagster.event_log_storage import BATCH_SIZE_VARIABLE, BatchedSqliteEventLogStorage
from cto_dagster.speedups import SWITCH_ENV

ASSETS = 12


def _job() -> dg.JobDefinition:
    """A job of `ASSETS` chained assets, each with a check: what creating a run plans."""

    def make(index: int) -> dg.AssetsDefinition:
        deps = [f"a{index - 1}"] if index else []

        @dg.asset(
            name=f"a{index}", deps=deps, check_specs=[dg.AssetCheckSpec("ok", asset=f"a{index}")]
        )
        def _asset():
            yield dg.MaterializeResult()
            yield dg.AssetCheckResult(passed=True)

        return _asset

    defs = dg.Definitions(
        assets=[make(i) for i in range(ASSETS)], jobs=[dg.define_asset_job("all")]
    )
    return defs.resolve_job_def("all")


def _instance(home: Path, batched: bool) -> dg.DagsterInstance:
    if batched:
        prepare_home(home)
    else:
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}}))
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _index_rows(home: Path, run_id: str) -> dict[str, list]:
    """What the index database holds for the run, without ids and times."""
    with sqlite3.connect(home / "history" / "runs" / "index.db") as db:
        events = db.execute(
            "select dagster_event_type, asset_key, step_key from event_logs where run_id = ? "
            "order by asset_key, dagster_event_type",
            (run_id,),
        ).fetchall()
        assets = db.execute("select asset_key from asset_keys order by asset_key").fetchall()
        checks = db.execute(
            "select asset_key, check_name, execution_status from asset_check_executions "
            "where run_id = ? order by asset_key",
            (run_id,),
        ).fetchall()
    return {"events": events, "assets": assets, "checks": checks}


def _planned(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    records = instance.get_records_for_run(run_id).records
    return sorted(
        (r.event_log_entry.dagster_event_type.value, r.event_log_entry.step_key or "")
        for r in records
        if r.event_log_entry.dagster_event_type
        in (
            dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        )
    )


@pytest.mark.speedups
def test_a_run_is_created_with_its_planned_events_in_one_batch(tmp_path, monkeypatch):
    """Guard: fails if Dagster stops handing a new run's planned events to the storage as one
    batch, or this storage stops writing them in one transaction per database."""
    monkeypatch.delenv(BATCH_SIZE_VARIABLE, raising=False)
    job = _job()
    with _instance(tmp_path / "batched", batched=True) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, BatchedSqliteEventLogStorage)
        batches, connections = [], []
        store_batch, connect = storage.store_event_batch, type(storage).__mro__[1]._connect

        def counting_batch(events):
            batches.append(len(events))
            store_batch(events)

        def counting_connect(self, shard):
            connections.append(shard)
            return connect(self, shard)

        monkeypatch.setattr(storage, "store_event_batch", counting_batch)
        monkeypatch.setattr(type(storage).__mro__[1], "_connect", counting_connect)
        run = instance.create_run_for_job(job)
        assert batches == [2 * ASSETS]
        planned_connections = len(connections)
    # one connection to the run's database and one to the index for all the planned events
    # (plus the run's own start-up writes: a handful, not two per event)
    assert planned_connections <= 4, planned_connections
    assert len(_planned_after(tmp_path / "batched", run.run_id)) == 2 * ASSETS


def _planned_after(home: Path, run_id: str) -> list[tuple[str, str]]:
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return _planned(instance, run_id)


@pytest.mark.speedups
def test_batched_planned_events_are_stored_as_dagsters_class_stores_them(tmp_path):
    """Guard: fails if Dagster's SQLite class starts writing something more for a planned event
    (the batch would then leave it out)."""
    job = _job()
    stored = {}
    for batched in (True, False):
        home = tmp_path / ("batched" if batched else "dagster")
        with _instance(home, batched) as instance:
            run = instance.create_run_for_job(job)
            stored[batched] = (_planned(instance, run.run_id), _index_rows(home, run.run_id))
            records = instance.get_asset_records([dg.AssetKey("a3")])
            assert records[0].asset_entry.last_run_id == run.run_id
            check = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("a3"), "ok"), limit=1
            )
            assert check[0].run_id == run.run_id
    assert stored[True] == stored[False]
    assert len(stored[True][0]) == 2 * ASSETS


def test_other_batches_and_single_events_are_stored_as_before(tmp_path):
    """A run's events after its creation (step starts, materializations) go one by one, and a
    run executed on the instance reads back whole."""
    with _instance(tmp_path / "home", batched=True) as instance:
        result = dg.execute_job(
            dg.reconstructable(_reconstructable_job),
            instance=instance,
            run_config={"execution": {"config": {"in_process": {}}}},
        )
        assert result.success
        materialized = instance.fetch_materializations(dg.AssetKey("a5"), limit=1).records
        assert materialized and materialized[0].run_id == result.run_id


def _reconstructable_job() -> dg.JobDefinition:
    return _job()


def test_a_new_home_names_its_own_folder_for_the_event_log(tmp_path, monkeypatch):
    """`prepare_home` writes the home's path (commands opening an instance by its folder, with
    DAGSTER_HOME unset or elsewhere, read the same events); the sample keeps the variable."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    home = prepare_home(tmp_path / "home")
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["event_log_storage"]["config"] == {"home": str(home.resolve())}
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        run = instance.create_run_for_job(_job())
    assert (home / "history" / "runs" / f"{run.run_id}.db").is_file()
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.speedups
def test_a_batch_that_opens_another_connection_does_not_wait_on_itself(tmp_path, monkeypatch):
    """Were a Dagster upgrade to open a connection of its own while storing a planned event (its
    lock is held by the batch), the batch would wait on itself: the lock is reentrant."""
    home = tmp_path / "home"
    with _instance(home, batched=True) as instance:
        cls = type(instance.event_log_storage)
        store_check = cls.store_asset_check_event

        def reaching_elsewhere(self, event, event_id):
            store_check(self, event, event_id)
            with self._connect(event.run_id):
                pass

        monkeypatch.setattr(cls, "store_asset_check_event", reaching_elsewhere)
        run = instance.create_run_for_job(_job())
        assert len(_planned(instance, run.run_id)) == 2 * ASSETS
    assert len(_index_rows(home, run.run_id)["events"]) == 2 * ASSETS


@contextmanager
def _failing_once(storage, kind: str, database: str):
    """During the storage's next batch, the first `kind` ("insert" into event_logs, or "commit")
    on `database` ("run": a run's file, "index") fails, as a full disk or a broken file would."""
    armed = []
    store_batch = storage.store_event_batch

    def batch(events):
        armed.append(True)
        try:
            store_batch(events)
        finally:
            armed.clear()

    def on(url: str) -> bool:
        index = url.endswith("index.db")
        return index if database == "index" else not index

    def before_execute(conn, cursor, statement, *args):
        if armed and kind == "insert" and statement.startswith("INSERT INTO event_logs"):
            if on(str(conn.engine.url)):
                armed.clear()
                raise OSError("disk full (test)")

    def before_commit(conn):
        if armed and kind == "commit" and on(str(conn.engine.url)):
            armed.clear()
            raise OSError("disk full (test)")

    storage.store_event_batch = batch
    sqlalchemy.event.listen(Engine, "before_cursor_execute", before_execute)
    sqlalchemy.event.listen(Engine, "commit", before_commit)
    try:
        yield
    finally:
        sqlalchemy.event.remove(Engine, "before_cursor_execute", before_execute)
        sqlalchemy.event.remove(Engine, "commit", before_commit)
        del storage.store_event_batch


def _run_rows(home: Path, run_id: str) -> int:
    with sqlite3.connect(home / "history" / "runs" / f"{run_id}.db") as db:
        return db.execute(
            "select count(*) from event_logs where dagster_event_type in (?, ?)",
            ("ASSET_MATERIALIZATION_PLANNED", "ASSET_CHECK_EVALUATION_PLANNED"),
        ).fetchone()[0]


@pytest.mark.speedups
@pytest.mark.parametrize(
    "fails", [("insert", "run"), ("commit", "index"), ("commit", "run"), ("insert", "index")]
)
def test_a_batch_that_fails_anywhere_is_stored_once(tmp_path, fails, capfd):
    """Dagster stores a failed batch again, one event at a time: whatever failed (the run's
    database after the index was written, the index's commit after the run's database
    committed), no planned event is stored twice in either database. Fails on a batch that
    commits the index before writing the run's database (duplicated index rows)."""
    home = tmp_path / "home"
    with _instance(home, batched=True) as instance:
        with _failing_once(instance.event_log_storage, *fails):
            run = instance.create_run_for_job(_job())
        assert "Falling back to storing multiple single-event" in capfd.readouterr().err
        assert len(_planned(instance, run.run_id)) == 2 * ASSETS
    assert len(_index_rows(home, run.run_id)["events"]) == 2 * ASSETS
    assert len(_index_rows(home, run.run_id)["checks"]) == ASSETS
    assert _run_rows(home, run.run_id) == 2 * ASSETS


def test_with_the_speedups_off_the_configured_storage_is_dagsters_own(tmp_path, monkeypatch):
    """The local `dagster.yaml` names this storage; with `CTO_DAGSTER_SPEEDUPS=off` it loads
    Dagster's own class over the same files, and batches are not enabled."""
    monkeypatch.setenv(SWITCH_ENV, "off")
    monkeypatch.delenv(BATCH_SIZE_VARIABLE, raising=False)
    home = tmp_path / "home"
    with _instance(home, batched=True) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        run = instance.create_run_for_job(_job())
        assert len(_planned(instance, run.run_id)) == 2 * ASSETS
    assert BATCH_SIZE_VARIABLE not in os.environ
    assert _run_rows(home, run.run_id) == 2 * ASSETS
    monkeypatch.delenv(SWITCH_ENV)
    with _instance(home, batched=True) as instance:  # and back: the same events
        assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
        assert len(_planned(instance, run.run_id)) == 2 * ASSETS
