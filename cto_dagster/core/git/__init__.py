"""Git as the data plane, in two worlds that never meet.

The orchestrator's side (`core/task_run/repository.py`, `cache.py`, `credentials.py`) holds the
credentials: it fetches, merges, records trees and pushes from git directories the agent never
had, with a configuration built from nothing. The agent's side (`worktree.py`) is a plain
checkout with a credential-less repository of its own; what the agent leaves there is read as
data (`agent_work.py`) and recorded by the orchestrator, never by running git inside the agent's
repository.
"""

from cto_dagster.core.git.command import GitError, Identity, MergeConflict

__all__ = ["GitError", "Identity", "MergeConflict"]
