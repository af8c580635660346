"""How each step pod looks on Kubernetes: the `dagster-k8s/config` op tag. Kept apart from the
executor so that local runs never import the Kubernetes client (4 s of every start-up).

Every step pod (task, integration, metrics) gets:
- no service-account token: a step needs no Kubernetes API, and an agent must not get one;
- a deadline, and resources whose limits are never below their requests, whatever the run
  launcher's defaults that dagster-k8s merges underneath (its limits would otherwise win over a
  task's larger requests, and the API server rejects such a Job).
Task pods run as root with only the capabilities the `user` sandbox needs: they start the agent
as an unprivileged user (bubblewrap cannot make namespaces under the default seccomp profile), so
the agent cannot read the step's environment or the pod's secrets. Only task pods carry the
guide's labels (`task-id`, `execution-level`, `project-play`; `parallel-execution` is added per run
by the executor, from its config).
"""

import re

from cto_dagster.core.names import label_value
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.taskmaster import Task

K8S_CONFIG_TAG = "dagster-k8s/config"
BOOKKEEPING_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "512Mi"},
    "limits": {"memory": "1Gi"},
}
BOOKKEEPING_DEADLINE_SECONDS = 3600
SANDBOX_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"]

_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(text: str) -> float:
    """A Kubernetes quantity (`500m`, `4Gi`) as a number, for comparing requests and limits."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def consistent_resources(resources: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Every requested resource gets a limit at least as large (an explicit limit overrides the
    run launcher's under the merge)."""
    requests = dict(resources.get("requests") or {})
    limits = dict(resources.get("limits") or {})
    for name, wanted in requests.items():
        if name not in limits or quantity(limits[name]) < quantity(wanted):
            limits[name] = wanted
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def step_labels(project: ProjectSettings, task: Task, level: int) -> dict[str, str]:
    return {
        "task-id": label_value(task.id),
        "execution-level": str(level),
        "project-play": "true",
        "repository": label_value(project.github_repository or project.name),
        "cto-project": label_value(project.name),
    }


def _pod_config(labels: dict[str, str], resources: dict, deadline: int, security=None) -> dict:
    container: dict[str, object] = {"resources": consistent_resources(resources)}
    pod_spec: dict[str, object] = {"automount_service_account_token": False}
    if security:
        container["security_context"] = security["container"]
        pod_spec["security_context"] = security["pod"]
    return {
        "container_config": container,
        "pod_spec_config": pod_spec,
        "job_metadata": {"labels": labels},
        "pod_template_spec_metadata": {"labels": labels},
        "job_spec_config": {"active_deadline_seconds": deadline, "backoff_limit": 0},
    }


def task_k8s_config(project: ProjectSettings, task: Task, level: int) -> dict[str, object]:
    """The `dagster-k8s/config` op tag of a task step."""
    kube = project.kubernetes
    deadline = int(project.agent.timeout_seconds) + kube.deadline_margin_seconds
    security = {
        "pod": {"run_as_user": 0, "run_as_non_root": False},
        "container": {
            "run_as_user": 0,
            "run_as_non_root": False,
            "allow_privilege_escalation": False,
            "capabilities": {"drop": ["ALL"], "add": SANDBOX_CAPABILITIES},
        },
    }
    resources = kube.task_resources.get(task.id, kube.resources)
    return _pod_config(step_labels(project, task, level), resources, deadline, security)


def bookkeeping_k8s_config(project: ProjectSettings, step: str) -> dict[str, object]:
    """The `dagster-k8s/config` op tag of an integration or metrics step."""
    labels = {"cto-project": label_value(project.name), "cto-step": step}
    return _pod_config(labels, BOOKKEEPING_RESOURCES, BOOKKEEPING_DEADLINE_SECONDS)
