"""Building the code location's definitions from the configured projects (no side effects on
import: `cto_dagster.definitions` calls `build_definitions()` once).

Projects come from `CTO_DAGSTER_CONFIG` (YAML), `CTO_DAGSTER_REPOSITORY` (env), or the embedded
demo; see `cto_dagster.core.settings`. A tasks file that cannot be planned stops the load with
the planner's message.
"""

import dagster as dg

from cto_dagster.core.settings import SettingsError, load_settings, plan_project
from cto_dagster.core.taskmaster import TasksFileError
from cto_dagster.defs.executor import executor_for
from cto_dagster.defs.project import build_project_definitions
from cto_dagster.defs.project_credentials import git_env_for
from cto_dagster.defs.resources import PlayParameters
from cto_dagster.defs.run_pods import pin_commits_of_run_pod
from cto_dagster.speedups.early_forkserver import start_forkserver_early


class ProjectLoadError(Exception):
    """Raised (without a chained traceback) when the configuration or a tasks file is invalid."""


_PLAY = PlayParameters()


def play_resource() -> PlayParameters:
    """The run parameters' resource, one object for every component of a code location."""
    return _PLAY


def _play_parameters(settings) -> PlayParameters:
    """The launchpad shows the base branch filled in when every project shares one."""
    bases = {project.base_branch for project in settings.projects}
    return PlayParameters(integration_base_branch=bases.pop() if len(bases) == 1 else None)


def build_definitions() -> dg.Definitions:
    try:
        settings = load_settings()
        single = len(settings.projects) == 1
        secrets = settings.secret_names()
        pin_commits_of_run_pod(settings.projects)  # a run pod plans what its run was created from
        plans = [
            (project, plan_project(project, git_env_for(project))) for project in settings.projects
        ]
        every_kind = {project.kind for project in settings.projects}
        if every_kind == {"local"}:
            start_forkserver_early()  # in a run's process: its steps' server loads meanwhile
        parts = [
            build_project_definitions(project, plan, single, secrets=secrets)
            for project, plan in plans
        ]
    except (SettingsError, TasksFileError) as exc:
        raise ProjectLoadError(str(exc)) from None
    executor = executor_for(every_kind.pop() if len(every_kind) == 1 else "local")
    return dg.Definitions.merge(
        *parts,
        dg.Definitions(
            resources={"play": _play_parameters(settings)},
            # also the executor of materializations started from the asset graph
            executor=executor,
        ),
    )
