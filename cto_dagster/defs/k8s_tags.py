"""How a task step pod looks on Kubernetes: the `dagster-k8s/config` op tag. Kept apart from the
executor so that local runs never import the Kubernetes client (4 s of every start-up)."""

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
