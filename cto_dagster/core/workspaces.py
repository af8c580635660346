"""Workspace folders that clean up after steps that could not clean up themselves.

A step killed with SIGKILL leaves its folder and, since agents run in their own session, possibly
a running agent. Every folder is named with its owner's pid and records the agent's process group;
each new step reaps the folders whose owner is gone, ending their agents first.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

_FOLDER = re.compile(r"^cto-(?:task|integration)-.+-p(\d+)-[^-]+$")
AGENT_PGID_FILE = "agent.pgid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale(root: Path | None) -> list[Path]:
    """Remove workspaces of dead steps (and kill what their agents left running)."""
    base = root or default_workspace_root()
    reaped: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return reaped
    for entry in entries:
        match = _FOLDER.match(entry.name)
        if not match or not entry.is_dir() or _alive(int(match.group(1))):
            continue
        pgid_file = entry / AGENT_PGID_FILE
        try:
            pgid = int(pgid_file.read_text().strip())
            os.killpg(pgid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(entry, ignore_errors=True)
        reaped.append(entry)
    return reaped


def default_cache_root() -> Path:
    """Per machine and user: `CTO_DAGSTER_CACHE`, else a folder in the system's temp folder."""
    configured = os.environ.get("CTO_DAGSTER_CACHE")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"cto-dagster-cache-{os.getuid()}"


def default_workspace_root() -> Path:
    """`CTO_DAGSTER_WORKSPACES`, else a folder under /var/tmp (not /tmp: some agents' own
    sandboxes put an empty /tmp over everything below it, the work tree included)."""
    configured = os.environ.get("CTO_DAGSTER_WORKSPACES")
    if configured:
        return Path(configured)
    base = Path("/var/tmp")  # noqa: S108 - a per-user folder below, traversable, not listable
    if not (base.is_dir() and os.access(base, os.W_OK)):
        base = Path(tempfile.gettempdir())
    return base / f"cto-dagster-workspaces-{os.getuid()}"


def new_workspace(kind: str, name: str, root: str | None) -> Path:
    base = Path(root) if root else default_workspace_root()
    base.mkdir(mode=0o711, parents=True, exist_ok=True)  # another user may pass, not list
    reap_stale(base)
    return Path(tempfile.mkdtemp(prefix=f"cto-{kind}-{name}-p{os.getpid()}-", dir=base))
