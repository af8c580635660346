"""The configuration's shape: projects, agents, git, conflicts, integration, Kubernetes, each
validated where it is read (names, URLs without secrets, known presets)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cto_dagster.core.agents import PRESETS, AgentSpec
from cto_dagster.core.git.command import Identity
from cto_dagster.core.git.credentials import has_embedded_credentials
from cto_dagster.core.integration.level_stages import (
    IntegrationStage,
    integration_stages,
    levels_per_stage,
)
from cto_dagster.core.settings.secrets import SECRET_NAME, SecretNames
from cto_dagster.core.support.limits import MIB, WorkLimits
from cto_dagster.core.support.names import (
    InvalidName,
    check_base_branch,
    check_project_name,
    valid_tag_name,
)
from cto_dagster.core.task_run.conflict_resolution import ConflictPolicy
from cto_dagster.core.task_run.verify import VerifyPolicy

DEFAULT_DEMO_DIR = ".cto-dagster/demo"


class SettingsError(Exception):
    """Configuration a person must fix; the message says what and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def yaml_off(value: object) -> object:
    """YAML reads a bare `off` as false: for settings whose choices include "off"."""
    return "off" if value is False else value


def _check_env_names(names) -> None:
    for name in names:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")


class AgentNetworkSettings(_Strict):
    """What the sandboxed agent's network reaches (cto_dagster/core/agents/network.py)."""

    mode: Literal["internet", "none", "host"] = Field(
        "internet",
        description="internet: its own network namespace (pasta): the internet, not this "
        "machine's services (the Dagster webserver's GraphQL) nor private addresses; none: only "
        "its own loopback; host: the machine's network as it is (said at every task start)",
    )
    allow_host_ports: list[int] = Field(
        default_factory=list,
        description="ports on this machine's 127.0.0.1 the agent may reach (a local model "
        "server or proxy), forwarded into its namespace; nothing else of the host is",
    )
    required: bool = Field(
        False,
        description="a task does not start when its agent cannot get the isolation `mode` asks "
        "for (default: it runs on the host's network, and every task start says so)",
    )

    @field_validator("allow_host_ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        if not all(0 < port < 65536 for port in value):
            raise ValueError("allow_host_ports are TCP port numbers (1-65535)")
        return sorted(set(value))


class LimitsSettings(_Strict):
    """What one task may add to the repository; checked while the agent's work is copied out
    of its work tree, before anything is hashed, and named in the task's failure."""

    max_file_bytes: int = Field(
        100 * MIB,
        gt=0,
        description="the biggest file a task may add or change (default 100 MiB)",
    )
    max_total_bytes: int = Field(
        1024 * MIB,
        gt=0,
        description="all files a task adds or changes, together (default 1 GiB); a file counts "
        "when it is new or its size changed",
    )
    max_files: int = Field(
        100_000, gt=0, description="files and links a task may add (default 100,000)"
    )

    def limits(self) -> WorkLimits:
        return WorkLimits(self.max_file_bytes, self.max_total_bytes, self.max_files)


class AgentSettings(_Strict):
    preset: str | None = Field("demo", description=f"one of {', '.join(PRESETS)}")
    command: list[str] | None = Field(None, description="argv list; overrides the preset")
    env: dict[str, str] = Field(
        default_factory=dict, description="literal values for the agent (never secrets)"
    )
    env_from: dict[str, str] = Field(
        default_factory=dict,
        description="NAME: OTHER_NAME - the agent gets NAME set to the value of the step's "
        "variable OTHER_NAME (a per-project API key, by name)",
    )
    pass_env: list[str] = Field(
        default_factory=list, description="names passed from the step's environment as they are"
    )
    timeout_seconds: float = Field(3600.0, gt=0, le=7 * 24 * 3600)
    heartbeat_seconds: float = Field(
        300.0,
        ge=0,
        description="a line in the run's log when the agent has been silent this long (0: never)",
    )
    sandbox: Literal["auto", "bwrap", "user", "container", "none"] = Field(
        "auto",
        description="auto: bubblewrap where it runs, else an unprivileged user when the step "
        "is root, else none (said at every task start); container: the agent in a container of "
        "`container_image` (Docker or Podman)",
    )
    container_image: str | None = Field(
        None, description="`container` sandbox: the image holding the agent's program"
    )
    container_network: Literal["bridge", "none"] = Field(
        "bridge",
        description="`container` sandbox: bridge (the internet, and the host's non-loopback "
        "addresses) or none",
    )
    sandbox_user: str | None = Field(None, description="`user` sandbox: who the agent runs as")
    sandbox_read_only: list[str] = Field(
        default_factory=list, description="extra folders the sandboxed agent may read"
    )
    allow_no_changes: bool = Field(
        False, description="a task whose agent changed nothing is green (default: it fails)"
    )
    limits: LimitsSettings = Field(
        default_factory=LimitsSettings,
        description="the biggest file, total size and number of files a task may add",
    )
    run_presets: list[str] | None = Field(
        None,
        description="presets a run may switch to in its run config (`<project>_agent: config: "
        "preset`); default: any built-in preset when the project uses a preset, none when it "
        "runs its own `command`",
    )
    network: AgentNetworkSettings = Field(
        default_factory=AgentNetworkSettings,
        description="what the sandboxed agent's network reaches (`mode`, `allow_host_ports`, "
        "`required`)",
    )

    @field_validator("pass_env")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        _check_env_names(value)
        return value

    @field_validator("env_from")
    @classmethod
    def _mapped_names(cls, value: dict[str, str]) -> dict[str, str]:
        _check_env_names([*value, *value.values()])
        return value

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; choose one of {', '.join(PRESETS)}")
        return value

    @field_validator("run_presets")
    @classmethod
    def _known_run_presets(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            cls._known_preset(name)
        return value

    @model_validator(mode="after")
    def _container_has_an_image(self) -> AgentSettings:
        if self.sandbox == "container" and not self.container_image:
            raise ValueError("agent.sandbox is container: name the image (agent.container_image)")
        return self

    def presets_a_run_may_choose(self) -> list[str]:
        if self.run_presets is not None:
            return list(self.run_presets)
        return [] if self.command else list(PRESETS)

    def spec(self) -> AgentSpec:
        return AgentSpec(
            preset=self.preset,
            command=tuple(self.command or ()),
            env=dict(self.env),
            env_from=dict(self.env_from),
            pass_env=tuple(self.pass_env),
            timeout_seconds=self.timeout_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
            sandbox=self.sandbox,
            sandbox_user=self.sandbox_user,
            sandbox_read_only=tuple(self.sandbox_read_only),
            allow_no_changes=self.allow_no_changes,
            limits=self.limits.limits(),
            container_image=self.container_image,
            container_network=self.container_network,
            network=self.network.mode,
            network_allow_host_ports=tuple(self.network.allow_host_ports),
            network_required=self.network.required,
        ).validate()


class ConflictSettings(_Strict):
    """What happens when a merge conflicts (a task's dependencies, or a task branch into its
    level's integration branch)."""

    resolve: Literal["off", "agent"] = Field(
        "off",
        description="off: the step fails and a person resolves (the guide's behaviour); agent: "
        "an agent resolves it in a work tree, checked (no marker left, `verify` passes) before "
        "anything is pushed",
    )
    agent: AgentSettings | None = Field(None, description="the resolver (default: the project's)")
    verify: list[str] = Field(
        default_factory=list,
        description="argv run on the resolved tree, in the resolver's sandbox (e.g. the test "
        "command); it must exit 0",
    )
    verify_timeout_seconds: float = Field(900.0, gt=0, le=24 * 3600)

    @field_validator("resolve", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return yaml_off(value)

    @field_validator("verify")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if any(not item for item in value):
            raise ValueError("verify is an argv list of non-empty strings (no shell)")
        return value

    def policy(self, project_checks: VerifyPolicy | None = None) -> ConflictPolicy:
        """`verify` unset: the project's `verify` checks (with its setup) check resolutions."""
        return ConflictPolicy(
            resolve=self.resolve,
            agent=self.agent.spec() if self.agent else None,
            verify=tuple(self.verify),
            verify_timeout_seconds=self.verify_timeout_seconds,
            project_checks=project_checks,
        )


def _argv_lists(value: list[list[str]], field: str) -> list[list[str]]:
    for argv in value:
        if not argv or any(not isinstance(item, str) or not item for item in argv):
            raise ValueError(
                f"verify.{field}: each command is an argv list of non-empty strings (no shell), "
                f"e.g. [[npm, test]]; got {argv!r}"
            )
    return value


class VerifySettings(_Strict):
    """The project's checks: a task, and every integration branch, is done when they pass
    (core/task_run/verify.py). A task's `metadata.verify` overrides any of these for that task."""

    setup: list[list[str]] = Field(
        default_factory=list,
        description="argv lists run in a work tree before the agent and before checks (install "
        "dependencies), e.g. [[npm, ci]]; package managers' caches are shared between setups",
    )
    checks: list[list[str]] = Field(
        default_factory=list,
        description="argv lists that must each exit 0, e.g. [[npm, test], [npm, run, lint]]; "
        "run in the agent's sandbox with no secret",
    )
    timeout_seconds: float = Field(1800.0, gt=0, le=24 * 3600, description="each command's")
    repair_attempts: int = Field(
        1, ge=0, le=10, description="times the agent runs again with the failing output"
    )
    integration: bool = Field(True, description="run the checks on every integration branch")
    integration_repair: Literal["off", "agent"] = Field(
        "off",
        description="agent: when an integration branch fails its checks, the resolver agent "
        "gets the failing output and fixes it there (verified again) before it is pushed",
    )
    baseline: Literal["fail", "repair", "ignore"] = Field(
        "fail",
        description="when the checks already fail before the agent starts (on the merged "
        "dependencies): fail (blamed on the dependencies, the agent does not run), repair (the "
        "agent gets the failure to fix too), ignore (those checks are not held against the task)",
    )

    @field_validator("integration_repair", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return yaml_off(value)

    @field_validator("setup")
    @classmethod
    def _setup(cls, value: list[list[str]]) -> list[list[str]]:
        return _argv_lists(value, "setup")

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: list[list[str]]) -> list[list[str]]:
        return _argv_lists(value, "checks")

    def policy(self) -> VerifyPolicy:
        return VerifyPolicy(
            setup=tuple(tuple(a) for a in self.setup),
            checks=tuple(tuple(a) for a in self.checks),
            timeout_seconds=self.timeout_seconds,
            repair_attempts=self.repair_attempts,
            integration=self.integration,
            integration_repair=self.integration_repair,
            baseline=self.baseline,
        )

    def for_task(self, metadata: object) -> VerifyPolicy:
        """This task's policy: its `metadata.verify` (a mapping) over the project's; raise
        ValueError naming what is wrong."""
        override = metadata.get("verify") if isinstance(metadata, dict) else None
        if override is None:
            return self.policy()
        if not isinstance(override, dict):
            raise ValueError("metadata.verify must be a mapping of verify settings")
        try:
            merged = VerifySettings.model_validate({**self.model_dump(), **override})
        except ValueError as exc:
            raise ValueError(f"metadata.verify: {exc}") from None
        return merged.policy()


class IntegrationSettings(_Strict):
    granularity: Literal["level", "run"] | int = Field(
        "level",
        description="`level`: a branch and PR per level (the guide's way); `run`: one for the "
        "whole run; a number N: one for every N levels",
    )
    keep_runs: int = Field(
        5,
        ge=0,
        description="integration branches of the last this many runs are kept; older runs' are "
        "deleted when still where their run left them (0: keep all)",
    )

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, value: str | int) -> str | int:
        levels_per_stage(value, 1)  # raises ValueError, as for any caller
        return value

    def stages(self, level_count: int) -> list[IntegrationStage]:
        return integration_stages(level_count, self.granularity)


class GitSettings(_Strict):
    token_env: str | None = Field(
        None, description="name of the environment variable holding the git/GitHub token"
    )
    token_file: str | None = Field(
        None,
        description="a file holding the token, read only when git needs it (a Kubernetes "
        "Secret mounted as a file keeps the token out of every process's environment)",
    )
    author_name: str = "cto-dagster"
    author_email: str = "cto-dagster@users.noreply.localhost"

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("token_env must be the NAME of an environment variable")
        return value


class GitHubSettings(_Strict):
    repository: str | None = Field(None, description="owner/name; guessed from a GitHub URL")
    api_url: str = "https://api.github.com"


class KubernetesSettings(_Strict):
    """How task step pods look on Kubernetes (k8s_job_executor: one pod per task step)."""

    resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"memory": "4Gi"},
        },
        description="container resources of every task step",
    )
    task_resources: dict[str, dict[str, dict[str, str]]] = Field(
        default_factory=dict, description="per task id: resources that replace the default"
    )
    deadline_margin_seconds: int = Field(
        600, ge=0, description="added to the agent timeout for clone, merge and push"
    )
    agent_secret: str = Field(
        "cto-dagster-agents",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="the Secret holding this project's agent keys (one Secret per project "
        "keeps them apart): its pods get only the keys the project's agents read",
    )


# What coding agents leave in a work tree for themselves: committed into task branches, these
# files conflict at every integration (the original's test repository: its most merged files).
AGENT_SCAFFOLDING = (
    ".aider.chat.history.md",
    ".aider.input.history",
    ".aider.tags.cache.v*/",
    ".claude/settings.local.json",
)


class ProjectSettings(_Strict):
    name: str
    repository: str = Field(description="git URL or local path of the repository agents push to")
    tasks_file: str = Field(
        ".taskmaster/tasks/tasks.json", description="path inside the repository (base branch)"
    )
    tasks_path: str | None = Field(None, description="a local tasks.json to plan from instead")
    tag: str | None = None
    tags: list[str] = Field(
        default_factory=list,
        description="several TaskMaster tags planned together (their `dependsOn` order kept); "
        "each becomes its own asset group",
    )
    all_tags: bool = Field(False, description="plan every tag of the tasks file together")
    status_write_back: Literal["review", "done", "off"] = Field(
        "review",
        description="each integration branch carries the tasks file with the status of the "
        "tasks it merged set to this, so merging its PR updates TaskMaster; `off`: untouched",
    )
    base_branch: str = "main"
    include_all: bool = False
    agent: AgentSettings = Field(default_factory=AgentSettings)
    conflicts: ConflictSettings = Field(default_factory=ConflictSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    integration: IntegrationSettings = Field(default_factory=IntegrationSettings)
    git: GitSettings = Field(default_factory=GitSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    max_retries: int = Field(1, ge=0, le=10)
    pool: str | None = Field(None, description="Dagster concurrency pool for the agent steps")
    automation: bool = Field(
        False,
        description="on: the daemon starts each task by itself once its dependencies are "
        "materialized and verified (declarative automation, docs/automation.md), and reloads "
        "the code location when the tasks file on the base branch changes; off: nothing runs "
        "unless launched",
    )
    workspace_root: str | None = None
    kind: Literal["local", "kubernetes"] = "local"
    adopt_existing_branches: bool = Field(
        False,
        description="replace task branches this instance has no record of (their heads are "
        "kept under refs/cto-dagster/replaced/ first)",
    )
    secret_env: list[str] = Field(
        default_factory=list, description="more variable names whose values are redacted"
    )
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    commit_exclude: list[str] = Field(
        default_factory=lambda: list(AGENT_SCAFFOLDING),
        description="gitignore patterns: files agents leave that are not committed to task "
        "branches (tracked files are never affected)",
    )

    @field_validator("commit_exclude")
    @classmethod
    def _one_line_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip() or "\n" in pattern or "\r" in pattern:
                raise ValueError(f"commit_exclude: {pattern!r} is not a one-line gitignore pattern")
        return value

    @field_validator("repository")
    @classmethod
    def _no_secret_in_url(cls, value: str) -> str:
        if has_embedded_credentials(value):
            raise ValueError(
                "the repository URL holds a password or token: give the URL without it and "
                "the NAME of the variable holding the token in `git.token_env`"
            )
        return value

    @field_validator("name", "base_branch")
    @classmethod
    def _safe_name(cls, value: str, info) -> str:
        check = check_project_name if info.field_name == "name" else check_base_branch
        try:
            return check(value)
        except InvalidName as exc:
            raise ValueError(str(exc)) from None

    @field_validator("tags")
    @classmethod
    def _tag_names(cls, value: list[str], info) -> list[str]:
        if info.data.get("tag") and value:
            raise ValueError("give `tag` or `tags`, not both")
        bad = [tag for tag in value if not valid_tag_name(tag)]
        if bad:
            raise ValueError(f"tags {bad} cannot name branches (letters, digits, `-`, `_`)")
        return list(dict.fromkeys(value))

    @property
    def planned_tags(self) -> list[str]:
        """The tags to plan: `tags`, else `tag` (else the project's current tag: empty)."""
        return list(self.tags) or ([self.tag] if self.tag else [])

    def conflict_policy(self) -> ConflictPolicy:
        return self.conflicts.policy(self.verify.policy())

    @property
    def identity(self) -> Identity:
        return Identity(self.git.author_name, self.git.author_email)

    @property
    def github_repository(self) -> str | None:
        if self.github.repository:
            return self.github.repository
        match = re.match(
            r"^(?:https://github\.com/|git@github\.com:)([\w.-]+/[\w.-]+?)(?:\.git)?/?$",
            self.repository,
        )
        return match.group(1) if match else None


class Settings(_Strict):
    projects: list[ProjectSettings]

    def secret_names(self) -> SecretNames:
        """Every variable that holds a secret, across all projects (see settings/secrets.py)."""
        others: list[str] = []
        for project in self.projects:
            others += project.agent.env_from.values()
            others += project.secret_env
            others += [n for n in project.agent.spec().preset_env_names if SECRET_NAME.search(n)]
        return SecretNames.of(
            [p.git.token_env for p in self.projects],
            others,
            [p.git.token_file for p in self.projects if p.git.token_file],
        )

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        names = [p.name for p in self.projects]
        if not names:
            raise ValueError("no projects configured")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"project names must be unique: {', '.join(duplicates)}")
        return self
