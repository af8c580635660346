"""Which instance a command uses, and a new instance's storage created once."""

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from cto_dagster.commands.runs.instance_home import NoInstance, prepare_home, resolve_home


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


REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_top_level_dagster_yaml_is_the_local_instances_settings_everywhere(
    monkeypatch, tmp_path
):
    """One source: the repository's dagster.yaml is what the package carries, what `dg dev` from
    the root uses without DAGSTER_HOME (Dagster's temporary instance, no warning), and what a new
    DAGSTER_HOME gets, with the batched event log naming that home."""
    import logging

    import dagster as dg
    import yaml
    from dagster._cli.utils import get_possibly_temporary_instance_for_cli

    from cto_dagster.commands.runs.instance_home import local_settings

    top = (REPO_ROOT / "dagster.yaml").read_text()
    assert local_settings() == top, "cp dagster.yaml cto_dagster/sample_data/dagster.yaml"
    settings = yaml.safe_load(top)
    assert settings["nux"] == {"enabled": False} and "event_log_storage" not in settings

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(REPO_ROOT)  # as `dg dev` runs from the root: Dagster's own instance code
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("cto_dagster_test_dev")
    logger.addHandler(handler)
    with get_possibly_temporary_instance_for_cli("dagster dev", logger=logger) as instance:
        assert instance.is_ephemeral is False
        assert instance.root_directory.startswith(str(REPO_ROOT / ".tmp_dagster_home_"))
        assert instance.run_monitoring_enabled and not instance.nux_enabled
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
    assert not [r for r in records if r.levelno >= logging.WARNING]

    home = prepare_home(tmp_path / "home")
    written = (home / "dagster.yaml").read_text()
    assert written.endswith(top)
    config = yaml.safe_load(written)
    assert config["event_log_storage"]["config"] == {"home": str(home.resolve())}
    assert {k: v for k, v in config.items() if k != "event_log_storage"} == settings
    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(home) as instance:
        assert type(instance.event_log_storage).__name__ in {
            "BatchedSqliteEventLogStorage",
            "SqliteEventLogStorage",  # the speed-ups off: Dagster's own class, same files
        }
        assert instance.run_monitoring_enabled and not instance.nux_enabled
        assert isinstance(instance, dg.DagsterInstance)
