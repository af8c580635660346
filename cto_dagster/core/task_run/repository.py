"""Where a project's work lives, how git reaches it, and what must never leak: what every step
(task, resolution, integration) needs to know about the repository."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import Identity, git_environment
from cto_dagster.core.git.credentials import redact
from cto_dagster.core.support.workspaces import default_cache_root


@dataclass(frozen=True)
class Repository:
    url: str
    base_branch: str = "main"
    base_commit: str | None = None  # the commit the run planned from (None: the branch now)
    identity: Identity = field(default_factory=Identity)
    git_env: Mapping[str, str] = field(default_factory=dict)  # credentials, from credentials.py
    denied_env: tuple[str, ...] = ()  # every project's secret variable names: never to agents
    secrets: tuple[str, ...] = ()  # secret values, redacted from every message and log
    secret_files: tuple[str, ...] = ()  # token files: hidden from agents
    workspace_root: str | None = None
    cache_root: str | None = None
    commit_exclude: tuple[str, ...] = ()  # gitignore patterns the agent's leftovers are held to
    adopt_existing_branches: bool = False  # replace branches this instance has no record of
    tag: str | None = None  # the TaskMaster tag (to read a status the agent set)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def cache(self) -> ObjectCache:
        root = Path(self.cache_root) if self.cache_root else default_cache_root()
        return ObjectCache(root / "objects", self.url, git_environment(self.identity, self.git_env))
