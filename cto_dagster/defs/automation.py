"""`automation: on`: a project's backlog runs itself (docs/automation.md).

Dagster's declarative automation, evaluated by the daemon's asset daemon through one
`AutomationConditionSensorDefinition` per project that asks for it (declared RUNNING): a project
without automation has no automation condition and no such sensor, so Dagster adds no default
automation sensor for it and the daemon starts nothing of it.

- A task asset runs when it has never materialized (`missing`), its dependencies are
  materialized (or requested in the same tick) with their blocking checks (`verified`,
  `merge_conflicts`, `integration_verified`) passed, neither it nor a dependency is in a queued
  or running run, and its latest execution did not fail (an agent run costs money: a failed task
  waits for a person, who fixes it and re-materializes it; its dependents, which Dagster counts
  as failed too when their step was skipped, then follow: `waits_for_a_person`). A task
  that is done never re-runs by itself: not when a dependency re-ran, not when its text was
  edited (Dagster shows it as "code version changed"; a person decides).
- Integration and metrics assets follow their inputs (Dagster's `eager`, with the dependencies'
  blocking checks passed): merging again is cheap and shows the branches as they are.
- Runs the sensor starts carry the project's `cto/project` tag: the instance's one-run-per-project
  queue limit (dagster.yaml, helm-values) holds them as it holds launches, so a task branch is
  never worked on by two runs at once; pools still bound the agents.

A second sensor watches the base branch: when the files a plan reads there (the tasks file,
TaskMaster's state and config) change, it asks the webserver to reload the code location through
Dagster's public GraphQL client (`reloadRepositoryLocation`), after checking that the new tasks
file plans; the reloaded location plans from the new commit and new tasks become assets (which
automation then starts).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse

import dagster as dg

from cto_dagster.core.settings import (
    ProjectSettings,
    SettingsError,
    plan_project,
    planned_commit,
    tasks_files_at,
    tasks_source,
)
from cto_dagster.core.settings.tasks_source import PINNED_COMMITS_ENV
from cto_dagster.core.taskmaster import TasksFileError
from cto_dagster.defs.translator import TAG_PROJECT

# where the reload sensor reaches the webserver: the UI's URL (`./scripts/ui`'s port locally;
# the chart's webserver Service on Kubernetes, set in helm-values/values.yaml)
UI_URL_ENV = "CTO_DAGSTER_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:3000"
AUTOMATION_SECONDS = 15  # how often the daemon evaluates a project's conditions
RELOAD_SECONDS = 20  # how often the base branch is checked for a changed tasks file


def waits_for_a_person() -> dg.AutomationCondition:
    """Its latest execution failed, and no dependency materialized again since it was last
    requested or failed. Dagster counts a step skipped because its dependency failed as a failed
    execution too: such a task follows by itself once a person fixes and re-materializes the
    dependency, while a task whose own agent failed waits (unless a dependency is re-run)."""
    automation = dg.AutomationCondition
    failed = automation.execution_failed()
    dependency_rerun = automation.any_deps_updated().since(
        automation.newly_requested() | failed.newly_true()
    )
    return (failed & ~dependency_rerun).with_label("failed_waits_for_a_person")


def task_condition() -> dg.AutomationCondition:
    """Ready: never materialized, nor failed last; dependencies done, verified, not running."""
    return (
        dg.AutomationCondition.missing()
        & ~waits_for_a_person()
        & ~dg.AutomationCondition.any_deps_missing()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("task_ready")


def follow_condition() -> dg.AutomationCondition:
    """Integration and metrics: Dagster's eager, once the inputs' blocking checks passed."""
    return (
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("follows_inputs")


def with_condition(asset: dg.AssetsDefinition, condition: dg.AutomationCondition):
    return asset.map_asset_specs(
        lambda spec: spec.replace_attributes(automation_condition=condition)
    )


def automation_sensor_name(project: ProjectSettings) -> str:
    return f"automation_{project.name}"


def reload_sensor_name(project: ProjectSettings) -> str:
    return f"tasks_reload_{project.name}"


def automation_sensor(
    project: ProjectSettings, assets: list[dg.AssetsDefinition]
) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        automation_sensor_name(project),
        target=dg.AssetSelection.assets(*assets),
        run_tags={TAG_PROJECT: project.name},
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=AUTOMATION_SECONDS,
        description=f"automation: on for project {project.name}: starts its ready tasks, and "
        "integrates and measures what they produce (docs/automation.md)",
    )


def ui_url() -> str:
    return os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL


def reload_location(url: str, location: str) -> str:
    """Ask the webserver at `url` to reload `location`; the status it answered."""
    from dagster_graphql import DagsterGraphQLClient

    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{UI_URL_ENV} must be the http(s) URL of the Dagster webserver: {url!r}")
    client = DagsterGraphQLClient(
        parsed.hostname,
        port_number=parsed.port,
        use_https=parsed.scheme == "https",
        timeout=120,
        path_prefix=parsed.path.rstrip("/"),
    )
    info = client.reload_repository_location(location)
    status = getattr(info.status, "value", str(info.status))
    if status != "SUCCESS":
        raise RuntimeError(f"the webserver did not reload {location}: {info.message or status}")
    return status


def _ask_reload(url: str, location: str, wait: float = 5.0) -> str | None:
    """Ask for the reload from a thread: the reload replaces the code server this sensor runs in,
    which may wait for this evaluation to end. None: asked (or still being answered after
    `wait` seconds); else why it failed."""
    outcome: list[str | None] = []

    def ask() -> None:
        try:
            reload_location(url, location)
            outcome.append(None)
        except Exception as exc:
            outcome.append(str(exc) or type(exc).__name__)

    thread = threading.Thread(target=ask, name="cto-reload", daemon=True)
    thread.start()
    thread.join(wait)
    return outcome[0] if outcome else None


def tasks_reload_sensor(project: ProjectSettings) -> dg.SensorDefinition:
    """Reloads the code location when the tasks the base branch holds are not the planned ones."""
    source = tasks_source(project.repository, project.base_branch)

    @dg.sensor(
        name=reload_sensor_name(project),
        minimum_interval_seconds=RELOAD_SECONDS,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if project.automation else dg.DefaultSensorStatus.STOPPED
        ),
        description=f"Reloads the code location when the tasks file of project {project.name} "
        f"changes on {project.base_branch} (through the webserver at ${UI_URL_ENV})",
    )
    def _reload(context: dg.SensorEvaluationContext):
        from cto_dagster.defs.project_credentials import git_env_for  # the token as it is now

        git_env = git_env_for(project)
        planned = planned_commit(project)
        if planned is None:
            return dg.SkipReason("this code server planned the project from no commit")
        try:
            head, digest = tasks_files_at(project, git_env)
            if head == planned:
                return dg.SkipReason(f"the tasks are the planned ones ({planned[:12]})")
            _, planned_digest = tasks_files_at(project, git_env, commit=planned)
        except SettingsError as exc:
            return dg.SkipReason(f"cannot read {project.base_branch}: {exc}")
        if digest == planned_digest:
            return dg.SkipReason(f"{head[:12]} holds the planned tasks ({planned[:12]})")
        if context.cursor == head:
            return dg.SkipReason(f"a reload for {head[:12]} was asked already")
        pin = {**os.environ, PINNED_COMMITS_ENV: json.dumps({source: head})}
        try:  # a tasks file that does not plan would break the whole location: not reloaded
            plan_project(project, git_env, pin, record=False)
        except (SettingsError, TasksFileError) as exc:
            context.update_cursor(head)
            return dg.SkipReason(
                f"the tasks file at {head[:12]} does not plan, not reloaded: {exc}"
            )
        origin = context.code_location_origin
        location = origin.location_name if origin is not None else "cto_dagster"
        url = ui_url()
        asked = _ask_reload(url, location)
        if asked is not None:  # the webserver unreachable or refusing: asked again next tick
            return dg.SkipReason(f"could not reload {location} through {url}: {asked}")
        context.update_cursor(head)
        return dg.SkipReason(f"tasks changed at {head[:12]}: reloading code location {location}")

    return _reload
