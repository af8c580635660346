"""The batched SQLite event log: a run's planned events written at once, stored exactly as
Dagster's own class stores them one by one (guards for the private `_connect` it relies on)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef

from cto_dagster.event_log_storage import BATCH_SIZE_VARIABLE, BatchedSqliteEventLogStorage
from cto_dagster.instance_home import prepare_home

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


def test_a_batch_that_reaches_another_database_is_stored_one_event_at_a_time(
    tmp_path, monkeypatch, capfd
):
    """Were a Dagster upgrade to write to the run's database after a planned check's row (as
    Dagster's own class may, its connections being one after another), the batch would wait on
    the lock it holds itself; instead it is rolled back and Dagster stores each event, once."""
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
    said = capfd.readouterr().err
    assert f"storing a planned event reached database '{run.run_id}' during a batch" in said
