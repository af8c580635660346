"""Which Dagster instance a command uses, and making a new one safely.

`DAGSTER_HOME` when it is set; else, when the demo has run in this folder, the demo's instance
(the command says so). A new instance's storage is created once, under a lock, before anything
else touches it: two first commands racing on an empty folder otherwise left SQLite storage with
two migration heads, and every later command failed.
"""

from __future__ import annotations

import fcntl
import json
import os
from importlib import resources
from pathlib import Path

from cto_dagster.core.settings import DEFAULT_DEMO_DIR

LOCK_FILE = ".cto-dagster.lock"
READY_MARKER = ".cto-dagster-storage-ready"


class NoInstance(Exception):
    """No DAGSTER_HOME and no demo instance: the message says what to set."""


def demo_home(demo_dir: str | os.PathLike[str] = DEFAULT_DEMO_DIR) -> Path:
    return Path(demo_dir).resolve() / "dagster_home"


def resolve_home(say=print) -> Path:
    """The instance a command reads: DAGSTER_HOME, else the demo's (exported for Dagster)."""
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        return Path(configured)
    demo_dir = os.environ.get("CTO_DAGSTER_DEMO_DIR", DEFAULT_DEMO_DIR)
    home = demo_home(demo_dir)
    if (home / "dagster.yaml").is_file():
        say(f"ℹ️  DAGSTER_HOME is not set: using the demo's instance at {home}")
        os.environ["DAGSTER_HOME"] = str(home)
        os.environ.setdefault("CTO_DAGSTER_DEMO_DIR", str(Path(demo_dir).resolve()))
        return home
    raise NoInstance(
        "❌ DAGSTER_HOME is not set and there is no demo instance here "
        f"({home}): point DAGSTER_HOME at the instance your runs used."
    )


# Dagster's SQLite event log, writing the events a new run plans (one per asset and check) in one
# transaction instead of two per event (801 events for 500 tasks: ~2 s instead of ~12 s): one of
# the speed-ups (cto_dagster/speedups/event_log.py; with them off, Dagster's own class over the
# same files). It names the home's own folder, so it is added to a home's copy of the settings, not
# kept in the repository's `dagster.yaml`, which `dg dev` also reads without DAGSTER_HOME.
EVENT_LOG_STORAGE = """\
# Dagster's SQLite event log, a new run's planned events in one transaction (a speed-up:
# cto_dagster/speedups/event_log.py; with the speed-ups off, Dagster's own class, same files).
# Remove this block when you set `storage:` (Postgres, for example): Dagster takes one or the other.
event_log_storage:
  module: cto_dagster.event_log_storage
  class: BatchedSqliteEventLogStorage
  config:
    home: {home}

"""


def local_settings() -> str:
    """The local instance's settings: the repository's top-level `dagster.yaml`, which the
    package carries as `sample_data/dagster.yaml` (an installed wheel has no repository)."""
    return resources.files("cto_dagster.sample_data").joinpath("dagster.yaml").read_text()


def local_instance_config(home: Path) -> str:
    """The `dagster.yaml` of a new DAGSTER_HOME: the local settings, with the batched event log
    naming the home's own folder (commands that open an instance by its folder, not through
    DAGSTER_HOME, then find its events too)."""
    return EVENT_LOG_STORAGE.format(home=json.dumps(str(home.resolve()))) + local_settings()


def prepare_home(home: Path) -> Path:
    """A DAGSTER_HOME with the local `dagster.yaml` and its storage created, exactly once."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(local_instance_config(home), encoding="utf-8")
    if (home / READY_MARKER).exists():
        return home
    with (home / LOCK_FILE).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / READY_MARKER).exists():
            _create_storage(home)
            (home / READY_MARKER).write_text("storage created by cto-dagster\n")
    return home


def open_instance(home: str | os.PathLike[str] | None = None):
    """The instance of the folder `home` (its `dagster.yaml`), else DAGSTER_HOME's."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    if home is None:
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _create_storage(home: Path) -> None:
    import dagster as dg

    with open_instance(home) as instance:
        # touching each storage creates its tables and stamps its migration head
        instance.get_run_records(limit=1)
        instance.fetch_materializations(dg.AssetKey("cto_dagster_storage_check"), limit=1)
        instance.all_instigator_state()
