"""Dagster resources: the guide's run parameters (`play`), and each project's git repository,
GitHub and agent, configured from its settings and shown in the UI's resource view.

The project resources are keyed `<project>_git`, `<project>_github` and `<project>_agent`. Their
defaults come from the project's settings (`cto-dagster.yaml`, the environment variables, or a
Component); a run may override any field in its run config, e.g. another agent for one run:

    resources:
      shop_agent:
        config: {preset: codex, timeout_seconds: 1800}

Secrets never appear in their configuration: tokens and keys are named (`token_env`,
`env_from`), read when a step needs them, and redacted everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pydantic import Field

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.forge import PullRequest, open_or_reuse_pull_request
from cto_dagster.core.forge import supersede_older_pull_requests as _supersede
from cto_dagster.core.git.command import Identity
from cto_dagster.core.git.credentials import credential_environment
from cto_dagster.core.repository import Repository
from cto_dagster.core.secrets import SecretNames
from cto_dagster.core.settings import AgentSettings, ProjectSettings, planned_commits, tasks_source


class PlayParameters(dg.ConfigurableResource):
    """Set in the launchpad or `cto-dagster launch -c run.yaml` under `resources: play: config:`.
    (`parallel_execution` lives in the executor's config: it decides how steps are scheduled.)"""

    integration_pr_enabled: bool = Field(
        default=True,
        description="Build an integration branch per level (stacked on the previous level's) "
        "and open its pull request on GitHub. false: only check overlaps and conflicts.",
    )
    integration_base_branch: str | None = Field(
        default=None,
        description="Where level 0's integration branch starts, and the base of its pull "
        "request. Empty: the project's base branch.",
    )
    conflict_detection: bool = Field(
        default=True,
        description="Warn about files changed by two or more tasks of a level, and predict "
        "conflicts between their branches before merging.",
    )


def read_token(token_env: str | None, token_file: str | None) -> str | None:
    """The token, read now: from the file (a mounted Secret) or the named variable."""
    if token_file:
        try:
            return Path(token_file).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    return os.environ.get(token_env) if token_env else None


class GitRepositoryResource(dg.ConfigurableResource):
    """The project's repository: where task and integration branches are pushed, by whom, and
    which names hold secrets (every project's, kept from agents and redacted)."""

    url: str = Field(description="the remote (https, ssh, or a local path)")
    base_branch: str = "main"
    token_env: str | None = Field(None, description="NAME of the variable holding the token")
    token_file: str | None = Field(None, description="a file holding the token")
    author_name: str = "cto-dagster"
    author_email: str = "cto-dagster@users.noreply.localhost"
    workspace_root: str | None = None
    commit_exclude: list[str] = Field(default_factory=list)
    adopt_existing_branches: bool = False
    tag: str | None = None
    git_token_names: list[str] = Field(
        default_factory=list, description="every project's token variable: never given to agents"
    )
    secret_names: list[str] = Field(default_factory=list, description="other secret variables")
    secret_files: list[str] = Field(default_factory=list, description="every project's token file")

    @classmethod
    def for_project(cls, project: ProjectSettings, secrets: SecretNames) -> GitRepositoryResource:
        return cls(
            url=project.repository,
            base_branch=project.base_branch,
            token_env=project.git.token_env,
            token_file=project.git.token_file,
            author_name=project.git.author_name,
            author_email=project.git.author_email,
            workspace_root=project.workspace_root,
            commit_exclude=list(project.commit_exclude),
            adopt_existing_branches=project.adopt_existing_branches,
            tag=project.tag,
            git_token_names=sorted(secrets.git_tokens),
            secret_names=sorted(secrets.others),
            secret_files=sorted(secrets.files),
        )

    def token(self) -> str | None:
        return read_token(self.token_env, self.token_file)

    def repository(self) -> Repository:
        """What the core's git work needs, credentials read now (a step, a pod)."""
        token = self.token()
        secrets = SecretNames.of(self.git_token_names, self.secret_names, self.secret_files)
        return Repository(
            url=self.url,
            base_branch=self.base_branch,
            base_commit=planned_commits().get(tasks_source(self.url, self.base_branch)),
            identity=Identity(self.author_name, self.author_email),
            git_env=credential_environment(token, self.url),
            denied_env=tuple(sorted(secrets.git_tokens)),
            secrets=tuple(sorted({*secrets.values(), *([token] if token else [])})),
            secret_files=tuple(sorted(secrets.files)),
            workspace_root=self.workspace_root,
            commit_exclude=tuple(self.commit_exclude),
            adopt_existing_branches=self.adopt_existing_branches,
            tag=self.tag,
        )


class GitHubResource(dg.ConfigurableResource):
    """Where integration pull requests are opened, and older runs' closed as superseded."""

    repository: str | None = Field(None, description="owner/name (none: no pull requests)")
    api_url: str = "https://api.github.com"
    token_env: str | None = Field(None, description="NAME of the variable holding the token")
    token_file: str | None = Field(None, description="a file holding the token")

    @classmethod
    def for_project(cls, project: ProjectSettings) -> GitHubResource:
        return cls(
            repository=project.github_repository,
            api_url=project.github.api_url,
            token_env=project.git.token_env,
            token_file=project.git.token_file,
        )

    def token(self) -> str | None:
        return read_token(self.token_env, self.token_file)

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        token = self.token()
        assert self.repository and token, "check repository and token() first"
        return open_or_reuse_pull_request(
            self.api_url, token, self.repository, head, base, title, body
        )

    def supersede(self, newer: PullRequest, same_stage: Callable[[str], bool]) -> list[int]:
        token = self.token()
        assert self.repository and token, "check repository and token() first"
        return _supersede(self.api_url, token, self.repository, newer, same_stage)


class AgentResource(dg.ConfigurableResource):
    """The coding agent of the project's tasks (and, by default, of its conflict resolutions).
    Its fields are the project's `agent:` settings, validated by them."""

    preset: str | None = "demo"
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    env_from: dict[str, str] = Field(default_factory=dict)
    pass_env: list[str] = Field(default_factory=list)
    timeout_seconds: float = 3600.0
    heartbeat_seconds: float = 300.0
    sandbox: str = "auto"
    sandbox_user: str | None = None
    sandbox_read_only: list[str] = Field(default_factory=list)
    allow_no_changes: bool = False
    limits: dict[str, int] = Field(default_factory=dict)  # agent.limits (LimitsSettings)

    @classmethod
    def for_project(cls, project: ProjectSettings) -> AgentResource:
        return cls(**project.agent.model_dump())

    def settings(self) -> AgentSettings:
        return AgentSettings(**{name: getattr(self, name) for name in AgentSettings.model_fields})

    def spec(self) -> AgentSpec:
        return self.settings().spec()


def git_key(project: ProjectSettings) -> str:
    return f"{project.name}_git"


def github_key(project: ProjectSettings) -> str:
    return f"{project.name}_github"


def agent_key(project: ProjectSettings) -> str:
    return f"{project.name}_agent"


def project_resources(project: ProjectSettings, secrets: SecretNames) -> dict[str, object]:
    return {
        git_key(project): GitRepositoryResource.for_project(project, secrets),
        github_key(project): GitHubResource.for_project(project),
        agent_key(project): AgentResource.for_project(project),
    }
