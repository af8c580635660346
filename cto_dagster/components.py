"""The Dagster way to add a project: a TaskMaster project as a Component, configured in YAML.

In a `dg` project (`uvx create-dagster project ...`, with cto-dagster installed):

    dg scaffold defs cto_dagster.components.TaskMasterProject shop

writes `defs/shop/defs.yaml`, filled in from the git repository it is run in (remote, base branch,
tasks file, tag). Its attributes are the project settings of `cto-dagster.yaml` (see
`examples/cto-dagster.yaml`): each component instance becomes that project's assets, its
`play_project_<name>` job, its metrics job and failure sensor. `CTO_DAGSTER_CONFIG` and the
environment-variable configuration keep working for the `cto_dagster.definitions` code location.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from dagster.components import Scaffolder, ScaffoldRequest
from pydantic import Field, ValidationError

from cto_dagster.core.settings import (
    ProjectSettings,
    Settings,
    SettingsError,
    format_validation,
    plan_project,
)
from cto_dagster.core.taskmaster import TasksFileError

__all__ = ["TaskMasterProject"]


class TaskMasterProjectScaffolder(Scaffolder):
    """`dg scaffold defs`: a commented defs.yaml, from what the current repository shows."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        from cto_dagster.commands.init import InitError, https_remote, inspect_repository

        try:
            found = inspect_repository(Path.cwd())
            repository = https_remote(found.remote) if found.remote else str(found.root)
            base, tasks_file = found.base_branch, found.tasks_file
            tag = found.current_tag or (found.tags[0] if found.tags else "master")
        except InitError:
            repository, base, tasks_file, tag = (
                "https://github.com/OWNER/REPO.git",
                "main",
                None,
                "master",
            )
        name = request.target_path.name.replace("-", "_")
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(
            f"type: {request.type_name}\n"
            "attributes:\n"
            f"  name: {name}                     # asset prefix and group\n"
            f"  repository: {repository}   # where task branches are pushed\n"
            f"  base_branch: {base}\n"
            f"  tasks_file: {tasks_file or '.taskmaster/tasks/tasks.json'}\n"
            f"  tag: {tag}\n"
            "  agent:\n"
            "    preset: claude                  # demo | claude | codex | gemini | aider\n"
            "    sandbox: auto\n"
            "  git:\n"
            "    token_env: GITHUB_TOKEN         # the NAME of the variable holding the token\n"
            "  # conflicts: {resolve: agent, verify: [npm, test]}\n"
            "  # more settings: examples/cto-dagster.yaml in cto-dagster\n",
            encoding="utf-8",
        )


@dg.scaffold_with(TaskMasterProjectScaffolder)
class TaskMasterProject(dg.Component, dg.Resolvable, dg.Model):
    """A TaskMaster project run by coding agents: one asset per task (its dependencies upstream),
    an integration asset per level, run metrics, and the project's `play_project_<name>` job."""

    name: str = Field(description="asset prefix and group; letters, digits, _")
    repository: str = Field(
        description="git URL or path of the repository agents push to (a path is relative to "
        "this defs.yaml)"
    )
    tasks_file: str = ".taskmaster/tasks/tasks.json"
    tag: str | None = None
    tags: list[str] = Field(default_factory=list)
    all_tags: bool = False
    base_branch: str = "main"
    agent: dict[str, Any] = Field(default_factory=dict, description="see AgentSettings")
    conflicts: dict[str, Any] = Field(default_factory=dict, description="see ConflictSettings")
    git: dict[str, Any] = Field(default_factory=dict, description="token_env, token_file, ...")
    github: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="any other project setting of cto-dagster.yaml (max_retries, pool, kind, "
        "status_write_back, commit_exclude, ...)",
    )

    def project_settings(self, base: Path | None = None) -> ProjectSettings:
        repository = self.repository
        if base is not None and "://" not in repository and not Path(repository).is_absolute():
            local = (base / repository).resolve()
            repository = str(local) if local.exists() else repository
        data = {
            **self.settings,
            "name": self.name,
            "repository": repository,
            "tasks_file": self.tasks_file,
            "tag": self.tag,
            "tags": self.tags,
            "all_tags": self.all_tags,
            "base_branch": self.base_branch,
            **{k: v for k, v in (("agent", self.agent), ("conflicts", self.conflicts)) if v},
            **{k: v for k, v in (("git", self.git), ("github", self.github)) if v},
        }
        try:
            return Settings.model_validate({"projects": [data]}).projects[0]
        except ValidationError as exc:
            raise format_validation(exc, f"component {self.name}") from None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from cto_dagster.defs.loader import ProjectLoadError, play_resource
        from cto_dagster.defs.project import build_project_definitions
        from cto_dagster.defs.project_credentials import git_env_for

        try:
            project = self.project_settings(Path(context.path))
            plan = plan_project(project, git_env_for(project))
        except (SettingsError, TasksFileError) as exc:
            raise ProjectLoadError(str(exc)) from None
        secrets = Settings(projects=[project]).secret_names()
        defs = build_project_definitions(project, plan, single=False, secrets=secrets)
        return dg.Definitions.merge(defs, dg.Definitions(resources={"play": play_resource()}))
