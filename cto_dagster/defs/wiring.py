"""From project settings to what a step needs at run time: credentials are read when the step
runs (from the token variable, or the token file at the moment git needs it), and every project's
secret names travel with it, so that no agent gets them and no message shows them."""

import os
from pathlib import Path

from cto_dagster.core.git.credentials import credential_environment
from cto_dagster.core.secrets import SecretNames
from cto_dagster.core.settings import ProjectSettings, planned_commits
from cto_dagster.core.task_run import Repository


def project_token(project: ProjectSettings) -> str | None:
    if project.git.token_file:
        try:
            return Path(project.git.token_file).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    return os.environ.get(project.git.token_env) if project.git.token_env else None


def git_env_for(project: ProjectSettings) -> dict[str, str]:
    return credential_environment(project_token(project), project.repository)


def repository_for(project: ProjectSettings, secrets: SecretNames) -> Repository:
    token = project_token(project)
    values = secrets.values()
    return Repository(
        url=project.repository,
        base_branch=project.base_branch,
        base_commit=planned_commits().get(f"{project.repository} {project.base_branch}"),
        identity=project.identity,
        git_env=credential_environment(token, project.repository),
        denied_env=tuple(sorted(secrets.git_tokens)),
        secrets=tuple(sorted({*values, *([token] if token else [])})),
        secret_files=tuple(sorted(secrets.files)),
        workspace_root=project.workspace_root,
        commit_exclude=tuple(project.commit_exclude),
        adopt_existing_branches=project.adopt_existing_branches,
        tag=project.tag,
    )
