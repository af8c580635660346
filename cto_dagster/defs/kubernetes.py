"""Kubernetes: task steps as pods (`k8s_job_executor`), labelled the way the original's users
query them (`kubectl get pods -l execution-level=0`), with resources and a deadline per task."""

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA, k8s_job_executor

from cto_dagster.core.names import label_value
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.taskmaster import Task

K8S_CONFIG_TAG = "dagster-k8s/config"


def step_labels(project: ProjectSettings, task: Task, level: int) -> dict[str, str]:
    return {
        "task-id": label_value(task.id),
        "execution-level": str(level),
        "project-play": "true",
        "parallel-execution": "true",
        "repository": label_value(project.github_repository or project.name),
        "cto-project": label_value(project.name),
    }


def task_k8s_config(project: ProjectSettings, task: Task, level: int) -> dict[str, object]:
    """The `dagster-k8s/config` op tag of a task step: labels on the Job and its pod, the
    container's resources, and `active_deadline_seconds` from the agent's timeout."""
    kube = project.kubernetes
    labels = step_labels(project, task, level)
    deadline = int(project.agent.timeout_seconds) + kube.deadline_margin_seconds
    return {
        "container_config": {"resources": kube.task_resources.get(task.id, kube.resources)},
        "job_metadata": {"labels": labels},
        "pod_template_spec_metadata": {"labels": labels},
        "job_spec_config": {"active_deadline_seconds": deadline, "backoff_limit": 0},
    }


PLAY_K8S_CONFIG = {
    **_K8S_EXECUTOR_CONFIG_SCHEMA,
    "parallel_execution": dg.Field(
        bool, default_value=True, description="false: one task pod at a time."
    ),
}


@dg.executor(
    name="play_k8s",
    config_schema=PLAY_K8S_CONFIG,
    requirements=multiple_process_executor_requirements(),
)
def play_k8s_executor(init_context: dg.InitExecutorContext):
    """`k8s_job_executor` with the guide's `parallel_execution` switch."""
    config = dict(init_context.executor_config)
    if not config.pop("parallel_execution", True):
        config["max_concurrent"] = 1
    inner = init_context._replace(executor_config=config)
    return k8s_job_executor.executor_creation_fn(inner)
