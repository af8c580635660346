"""From project settings to what a step needs at run time (credentials read when the step runs)."""

import os

from cto_dagster.core.credentials import credential_environment
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.task_run import Repository


def project_token(project: ProjectSettings) -> str | None:
    return os.environ.get(project.git.token_env) if project.git.token_env else None


def repository_for(project: ProjectSettings) -> Repository:
    secret_names = (project.git.token_env,) if project.git.token_env else ()
    return Repository(
        url=project.repository,
        base_branch=project.base_branch,
        identity=project.identity,
        git_env=credential_environment(project_token(project)),
        secret_env_names=secret_names,
        workspace_root=project.workspace_root,
        commit_exclude=tuple(project.commit_exclude),
    )


def git_env_for(project: ProjectSettings) -> dict[str, str]:
    return credential_environment(project_token(project))
