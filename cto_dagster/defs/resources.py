"""Dagster resources: the guide's run parameters (`play`), and each project's git repository,
GitHub and agent, shown in the UI's resource view.

The project resources are keyed `<project>_git`, `<project>_github` and `<project>_agent`. What
decides where code is pushed and with which credentials, what the agent runs and what it may reach
(the repository URL, the token's source, the secret names, the agent's command, environment and
sandbox) comes from the code location's settings only (`cto-dagster.yaml`, the environment
variables, or a Component): `<project>_git` and `<project>_github` take no run configuration at
all, and `<project>_agent` takes only the per-run choices that change none of that:

    resources:
      shop_agent:
        config: {preset: codex, timeout_seconds: 1800}

A run config that names anything else is refused when the run is launched (Dagster's config
check names the field); a preset the project does not allow fails the step before any agent runs.
Secrets never appear in any of it: tokens and keys are named (`token_env`, `env_from`), read when a
step needs them, and redacted everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.git.command import Identity
from cto_dagster.core.git.credentials import credential_environment
from cto_dagster.core.integration.pull_requests import PullRequest, open_or_reuse_pull_request
from cto_dagster.core.integration.pull_requests import supersede_older_pull_requests as _supersede
from cto_dagster.core.settings import AgentSettings, ProjectSettings, planned_commits, tasks_source
from cto_dagster.core.settings.secrets import SecretNames
from cto_dagster.core.task_run.repository import Repository

# The agent settings a run may choose in its run config; every other one is the code location's.
RUN_AGENT_CHOICES = ("preset", "timeout_seconds", "heartbeat_seconds", "allow_no_changes")


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


class _CodeLocationSettings(BaseModel):
    """Settings held by a resource that takes no run configuration (see `locked_resource`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class GitRepositoryResource(_CodeLocationSettings):
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


class GitHubResource(_CodeLocationSettings):
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
    """The per-run choices of the project's agent (and, by default, of its conflict resolutions):
    another preset among those the project allows (`agent.run_presets`), its timeouts, and
    whether a task that changes nothing is green. Its command, environment, secrets, sandbox and
    limits are the project's `agent:` settings, from the code location only."""

    preset: str | None = Field(
        "demo", description="the agent preset; another one only if agent.run_presets allows it"
    )
    timeout_seconds: float = 3600.0
    heartbeat_seconds: float = 300.0
    allow_no_changes: bool = False

    @classmethod
    def for_project(cls, project: ProjectSettings) -> AgentResource:
        return cls(**{name: getattr(project.agent, name) for name in RUN_AGENT_CHOICES})

    def settings(self, project: ProjectSettings) -> AgentSettings:
        """The project's agent settings with this run's choices; a preset the project does not
        allow a run to choose fails the step before anything runs."""
        choices = {name: getattr(self, name) for name in RUN_AGENT_CHOICES}
        if self.preset != project.agent.preset:
            allowed = project.agent.presets_a_run_may_choose()
            if self.preset not in allowed:
                raise dg.Failure(
                    f"refused: the run config sets {agent_key(project)}.preset to "
                    f"{self.preset!r}, which project {project.name} does not allow (its "
                    f"agent.run_presets: {', '.join(allowed) or 'none'}); the agent's command, "
                    "environment and sandbox come from the code location's settings only",
                    allow_retries=False,
                )
            choices["command"] = None  # the chosen preset builds its own command
        try:
            return AgentSettings(**{**project.agent.model_dump(), **choices})
        except ValueError as exc:
            raise dg.Failure(
                f"the run's agent choices are invalid: {exc}", allow_retries=False
            ) from None

    def spec(self, project: ProjectSettings) -> AgentSpec:
        return self.settings(project).spec()


def locked_resource(value: _CodeLocationSettings, description: str) -> dg.ResourceDefinition:
    """A resource whose value is the code location's and takes no run configuration: Dagster
    refuses a run config that names any field of it when the run is launched."""
    return dg.ResourceDefinition(
        resource_fn=lambda _context: value, config_schema={}, description=description
    )


def git_key(project: ProjectSettings) -> str:
    return f"{project.name}_git"


def github_key(project: ProjectSettings) -> str:
    return f"{project.name}_github"


def agent_key(project: ProjectSettings) -> str:
    return f"{project.name}_agent"


def project_resources(project: ProjectSettings, secrets: SecretNames) -> dict[str, object]:
    git = project.git
    token = f"token from ${git.token_env}" if git.token_env else "token from a file"
    token = token if git.token_env or git.token_file else "no token"
    fixed = "From the code location's settings; a run cannot change it."
    return {
        git_key(project): locked_resource(
            GitRepositoryResource.for_project(project, secrets),
            f"{project.name}'s repository {project.repository} (base {project.base_branch}; "
            f"{token}). {fixed}",
        ),
        github_key(project): locked_resource(
            GitHubResource.for_project(project),
            f"{project.name}'s pull requests on "
            f"{project.github_repository or '(not GitHub: no pull requests)'} "
            f"({project.github.api_url}; {token}). {fixed}",
        ),
        agent_key(project): AgentResource.for_project(project),
    }
