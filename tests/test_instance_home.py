"""Which instance a command uses, and a new instance's storage created once."""

import multiprocessing
import sqlite3

import pytest

from cto_dagster.instance_home import NoInstance, prepare_home, resolve_home


def test_dagster_home_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mine"))
    assert resolve_home(say=pytest.fail) == tmp_path / "mine"


def test_the_demos_instance_when_dagster_home_is_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("CTO_DAGSTER_DEMO_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NoInstance) as missing:
        resolve_home()
    assert "DAGSTER_HOME is not set" in str(missing.value)
    prepare_home(tmp_path / ".cto-dagster" / "demo" / "dagster_home")
    said = []
    home = resolve_home(say=said.append)
    assert home == tmp_path / ".cto-dagster" / "demo" / "dagster_home"
    assert said and "using the demo's instance at" in said[0] and str(home) in said[0]
    import os

    assert os.environ["DAGSTER_HOME"] == str(home)


def _prepare(path: str) -> None:
    from pathlib import Path

    prepare_home(Path(path))


def test_concurrent_first_commands_create_the_storage_once(tmp_path):
    home = tmp_path / "home"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_prepare, args=(str(home),)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    databases = {path.name: path for path in home.rglob("*.db")}
    assert {"runs.db", "schedules.db", "index.db"} <= set(databases)
    for name, path in databases.items():  # racing creators left two migration heads (issue 13)
        with sqlite3.connect(path) as connection:
            heads = connection.execute("select version_num from alembic_version").fetchall()
        assert len(heads) == 1, (name, heads)
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert instance.get_run_records(limit=1) == []
        assert list(instance.all_instigator_state()) == []
