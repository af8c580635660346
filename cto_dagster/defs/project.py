"""One configured project as Dagster definitions: task assets, and its `play_project` job."""

import dagster as dg

from cto_dagster.core.planning.mermaid import mermaid_block
from cto_dagster.core.planning.planner import ExecutionPlan
from cto_dagster.core.planning.predictions import Prediction, default_slots, predict
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.settings.secrets import SecretNames
from cto_dagster.defs.automation import (
    automation_sensor,
    follow_condition,
    task_condition,
    tasks_reload_sensor,
    with_condition,
)
from cto_dagster.defs.executor import executor_for
from cto_dagster.defs.history import learned_durations
from cto_dagster.defs.integration_assets import build_integration_asset
from cto_dagster.defs.metrics_assets import (
    build_failure_sensor,
    build_metrics_asset,
    build_metrics_job,
)
from cto_dagster.defs.resources import project_resources
from cto_dagster.defs.task_assets import build_task_asset, task_priorities
from cto_dagster.defs.translator import TAG_PREDICTED, TAG_PROJECT, TaskTranslator


def job_name(project: ProjectSettings, single: bool) -> str:
    return "play_project" if single else f"play_project_{project.name}"


def job_description(
    project: ProjectSettings, plan: ExecutionPlan, prediction: Prediction | None = None
) -> str:
    """What the job runs, its predicted makespan, and the plan's Mermaid chart (levels, critical
    path, what is skipped)."""
    tags = ", ".join(plan.planned_tags) if plan.planned_tags else plan.tag
    label = "tags" if plan.planned_tags else "tag"
    predicted = f" {prediction.line(default_slots(plan)).capitalize()}." if prediction else ""
    return (
        f"Run project {project.name}'s TaskMaster tasks ({label} {tags}) with the "
        f"{project.agent.preset or 'custom'} agent: {len(plan.task_ids)} tasks in "
        f"{len(plan.levels)} levels, theoretical speedup {plan.stats['theoretical_speedup']}x."
        f"{predicted}\n\n{mermaid_block(plan)}"
    )


def build_project_definitions(
    project: ProjectSettings,
    plan: ExecutionPlan,
    single: bool,
    translator: TaskTranslator | None = None,
    executor_def: dg.ExecutorDefinition | None = None,
    secrets: SecretNames | None = None,
) -> dg.Definitions:
    translator = translator or TaskTranslator()
    executor_def = executor_def or executor_for(project.kind)
    secrets = secrets or SecretNames.of([project.git.token_env], project.secret_env)
    prediction = predict(plan, learned_durations(project, plan, translator))
    priorities = task_priorities(plan, prediction)
    # other projects' git tokens: every pod inherits the git Secret; its pods hold only this one's
    others = tuple(sorted(secrets.git_tokens - {project.git.token_env}))
    assets = [
        build_task_asset(
            project, plan, task_id, translator, priorities[task_id], other_tokens=others
        )
        for task_id in plan.task_ids
    ]
    stages = project.integration.stages(len(plan.levels))
    assets += [
        build_integration_asset(
            project, plan, stage, stages[i - 1] if i else None, translator, others
        )
        for i, stage in enumerate(stages)
    ]
    if plan.task_ids:
        assets.append(build_metrics_asset(project, plan, translator, stages[-1], others))
    assets, *automation_sensors = _automation(project, assets, len(plan.task_ids))
    job = dg.define_asset_job(
        name=job_name(project, single),
        selection=dg.AssetSelection.assets(*(asset.key for asset in assets)),
        executor_def=executor_def,
        description=job_description(project, plan, prediction),
        tags={
            TAG_PROJECT: project.name,
            **(
                {TAG_PREDICTED: f"{prediction.makespan(default_slots(plan)):.1f}"}
                if prediction
                else {}
            ),
        },
    )
    resources = project_resources(project, secrets)
    if not plan.task_ids:
        return dg.Definitions(
            assets=assets, jobs=[job] if assets else [], resources=resources if assets else {}
        )
    metrics_job = build_metrics_job(project, single)
    return dg.Definitions(
        assets=assets,
        jobs=[job, metrics_job],
        sensors=[build_failure_sensor(project, job, metrics_job), *automation_sensors],
        resources=resources,
    )


def _automation(project: ProjectSettings, assets: list, task_count: int) -> tuple:
    """`automation: on`: the assets with their conditions, the project's automation sensor, and
    the reload sensor (cto_dagster/defs/automation.py); the reload sensor alone (stopped) when
    off, for a person to start; nothing for a local tasks file."""
    reload = [] if project.tasks_path else [tasks_reload_sensor(project)]
    if not project.automation:
        return (assets, *reload)
    automated = [
        with_condition(asset, task_condition() if i < task_count else follow_condition())
        for i, asset in enumerate(assets)
    ]
    return (automated, automation_sensor(project, automated), *reload)
