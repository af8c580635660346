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


HOME_FROM_ENVIRONMENT = "home:\n      env: DAGSTER_HOME"


def local_instance_config(home: Path) -> str:
    """The sample `dagster.yaml` for `home`, naming its own folder for the event log: commands
    that open an instance by its folder (not through DAGSTER_HOME) then find its events too."""
    template = resources.files("cto_dagster.sample_data").joinpath("dagster.yaml").read_text()
    if HOME_FROM_ENVIRONMENT not in template:
        raise RuntimeError("sample dagster.yaml: the event log's home entry has changed")
    return template.replace(HOME_FROM_ENVIRONMENT, f"home: {json.dumps(str(home.resolve()))}")


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
