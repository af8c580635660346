"""From project settings to what a step needs at run time: credentials are read when the step
runs (from the token variable, or the token file at the moment git needs it), and every project's
secret names travel with it, so that no agent gets them and no message shows them. The steps
themselves get these through the project's resources (`defs/resources.py`); the commands
(`doctor`, `report`, the loader) through these helpers."""

from cto_dagster.core.git.credentials import credential_environment
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.defs.resources import read_token


def project_token(project: ProjectSettings) -> str | None:
    return read_token(project.git.token_env, project.git.token_file)


def git_env_for(project: ProjectSettings) -> dict[str, str]:
    return credential_environment(project_token(project), project.repository)
