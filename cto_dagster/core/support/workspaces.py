"""Workspace folders that clean up after steps that could not clean up themselves.

A step killed with SIGKILL leaves its folder and, since agents run in their own session, possibly
a running agent. Every folder records who owns it and which process leads its agent's process
group, each with its boot and start time (`ProcessIdentity`: a pid alone may have been given to
another process since); each new step reaps the folders whose owner is gone, ending their agents
first. Reaping survives whatever a dead step left (a tree of any depth, links, names that are
not UTF-8, folders no one may read): one bad folder never stops a step.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import tempfile
from pathlib import Path

from cto_dagster.core.support.processes import ProcessIdentity, pid_exists, started_at
from cto_dagster.core.support.safe_fs import read_untrusted, remove_tree

_FOLDER = re.compile(r"^cto-(?:task|integration|resolve)-.+-p(\d+)-[^-]+$")
OWNER_FILE = "owner.json"
AGENT_FILE = "agent.json"


def write_identity(folder: Path, name: str, pid: int) -> None:
    """Record process `pid` (its boot and start time too) in `folder`, the step's own."""
    (folder / name).write_text(json.dumps(ProcessIdentity.of(pid).as_metadata()))


def _identity(folder: Path, name: str) -> ProcessIdentity | None:
    raw = read_untrusted(folder, [name])
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return None
    return ProcessIdentity.from_metadata(data)


# how far /proc's start times (whole-second boot time) may stray from the clock
_CLOCK_SLACK_SECONDS = 2.0


def _owner_gone(entry: Path, pid: int) -> bool:
    owner = _identity(entry, OWNER_FILE)
    if owner is not None and owner.started:
        return owner.verdict() == "dead"
    # an old folder, a step killed before it wrote its owner, or no /proc: only the pid in the
    # folder's name is known. Its owner made the folder, so a process holding that pid that
    # started after the folder was last changed is someone else (the pid was recycled).
    if not pid_exists(pid):
        return True
    started = started_at(pid)
    return started is not None and started > entry.lstat().st_mtime + _CLOCK_SLACK_SECONDS


def _end_agent(entry: Path) -> None:
    """Kill the agent's process group, only while its leader is the very process recorded (a
    recycled pid or group id belongs to someone else). A record with this kind of machine's
    boot id but no start time was made after the agent had ended (its /proc entry was gone):
    nothing to kill. Only a record made without /proc at all (no boot id, e.g. macOS) of this
    host is judged by its pid alone, for want of anything else."""
    agent = _identity(entry, AGENT_FILE)
    if agent is None:
        return
    without_proc = not agent.boot and not agent.started and agent.host == socket.gethostname()
    if agent.verdict() == "alive" or (without_proc and pid_exists(agent.pid)):
        try:
            os.killpg(agent.pid, signal.SIGKILL)
        except OSError:
            pass


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
        try:
            if not match or not stat.S_ISDIR(entry.lstat().st_mode):
                continue
            if not _owner_gone(entry, int(match.group(1))):
                continue
            _end_agent(entry)
        except (OSError, ValueError):
            continue
        remove_tree(entry)
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
    folder = Path(tempfile.mkdtemp(prefix=f"cto-{kind}-{name}-p{os.getpid()}-", dir=base))
    write_identity(folder, OWNER_FILE, os.getpid())
    return folder
