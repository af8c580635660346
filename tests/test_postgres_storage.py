"""The cluster's storage, for real: play_project end to end on an instance whose run, event-log
and schedule storage is a real PostgreSQL server (Debian's `postgresql`, started by `.ci/run`),
configured the way the Helm chart renders the instance's `dagster.yaml`.

`CTO_TEST_POSTGRES=host:port:user:password` names a server where the user may create databases;
without it the test says SKIPPED with the reason.
"""

import os
import uuid

import pytest
import yaml

from tests.conftest import demo_task

pytestmark = pytest.mark.slow
SERVER = os.environ.get("CTO_TEST_POSTGRES")


@pytest.fixture
def database(monkeypatch):
    if not SERVER:
        pytest.skip("no PostgreSQL server: .ci/run starts Debian's and sets CTO_TEST_POSTGRES")
    import psycopg2

    host, port, user, password = SERVER.split(":", 3)
    name = f"cto_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=host, port=port, user=user, password=password, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", password)
    try:
        yield {"hostname": host, "port": int(port), "username": user, "db_name": name}
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def chart_instance_yaml(db: dict) -> dict:
    """The storage part of the instance the chart renders (`postgresql` values, the password
    from the secret as DAGSTER_PG_PASSWORD), with this repository's local settings beside it
    (all but the local SQLite event log, which a `storage:` entry replaces)."""
    local = yaml.safe_load(
        open(
            os.path.join(
                os.path.dirname(__file__), "..", "cto_dagster", "sample_data", "dagster.yaml"
            )
        )
    )
    storage = {
        "postgres": {
            "postgres_db": {
                "username": db["username"],
                "password": {"env": "DAGSTER_PG_PASSWORD"},
                "hostname": db["hostname"],
                "db_name": db["db_name"],
                "port": db["port"],
                "params": {},
            }
        }
    }
    # the SQLite event log (added to a new home by prepare_home) gives way to the chart's storage
    local.pop("event_log_storage", None)
    return {**local, "storage": storage}


def test_play_project_end_to_end_on_postgres_storage(make_project, database):
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    project = make_project(
        [demo_task(1, duration=1), demo_task(2), demo_task(3, deps=[1, 2])],
        settings={"pool": "cto_agents"},
    )
    (project.home / "dagster.yaml").write_text(yaml.safe_dump(chart_instance_yaml(database)))
    with open_instance(project.home) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.get_run_records(limit=1)  # creates the tables once, before the run
    launched = project.cli("launch", DAGSTER_PG_PASSWORD=os.environ["DAGSTER_PG_PASSWORD"])
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    records = project.records()
    assert set(records) == {"1", "2", "3"}
    assert all(r.status == "materialized" for r in records.values())
    with open_instance(project.home) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        metrics = instance.get_latest_materialization_event(dg.AssetKey(["proj", "run_metrics"]))
        assert metrics.asset_materialization.metadata["complete"].value is True
        # the pool's slots were taken and given back through Postgres
        assert instance.event_log_storage.get_concurrency_info("cto_agents").active_slot_count == 0
