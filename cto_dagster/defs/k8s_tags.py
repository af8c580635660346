"""How each step pod looks on Kubernetes: the `dagster-k8s/config` op tag. Kept apart from the
executor so that local runs never import the Kubernetes client (4 s of every start-up).

Every step pod (task, integration, metrics) gets:
- no service-account token: a step needs no Kubernetes API, and an agent must not get one;
- no privilege escalation, no capabilities beyond those below, the runtime's default seccomp
  profile;
- a deadline, and resources whose limits are never below their requests, whatever the run
  launcher's defaults that dagster-k8s merges underneath (its limits would otherwise win over a
  task's larger requests, and the API server rejects such a Job).
Pods that run an agent (every task step; an integration step whose project resolves conflicts
with an agent) are labelled `cto-agent: "true"` (helm-values/agent-network-policy.yaml keeps them
from every in-cluster Service) and get, of the project's agent Secret, only the keys its agents
read. They run as root with only the capabilities the `user` sandbox needs: they start the agent
as an unprivileged user (bubblewrap cannot make namespaces under the default seccomp profile), so
the agent cannot read the step's environment (the git token, the PostgreSQL password) nor the
pod's files. Other pods get no agent key and run as the image's user. Only task pods carry the
guide's labels (`task-id`, `execution-level`, `project-play`; `parallel-execution` is added per run
by the executor, from its config).
"""

import re
from collections.abc import Sequence

from cto_dagster.core.agents.environment import BASICS, STEP_ONLY
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.support.names import label_value
from cto_dagster.core.taskmaster import Task

K8S_CONFIG_TAG = "dagster-k8s/config"
BOOKKEEPING_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "512Mi"},
    "limits": {"memory": "1Gi"},
}
BOOKKEEPING_DEADLINE_SECONDS = 3600
AGENT_LABEL = "cto-agent"  # on every pod that runs an agent (the NetworkPolicy selects it)
# What the root step needs to run its agent in the `user` sandbox, and why: each one is shown
# needed by tests/test_kubernetes_containment.py (the step run with it taken away fails).
SANDBOX_CAPABILITIES = {
    "SETUID": "start the agent as its own uid, and end every process of that uid as that uid "
    "(kill -1) when it exits or times out",
    "SETGID": "start it with its own group and no supplementary group of root's",
    "CHOWN": "hand the work tree and the agent's home to its uid, and take them back once it has "
    "ended (so the step reads, commits and removes them as their owner: no DAC_OVERRIDE, "
    "FOWNER or KILL)",
}
_SECCOMP = {"type": "RuntimeDefault"}

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


def agent_keys(project: ProjectSettings) -> list[str]:
    """The variables this project's agents read from the step's environment (the task's agent,
    and the conflict resolver when agents resolve conflicts): the keys its pods get."""
    specs = [project.agent.spec()]
    if project.conflicts.resolve == "agent":
        specs.append((project.conflicts.agent or project.agent).spec())
    names = (name for spec in specs for name in spec.step_env_names)
    return [n for n in dict.fromkeys(names) if n not in BASICS and n not in STEP_ONLY]


def agent_env(project: ProjectSettings) -> list[dict]:
    """Each key as its own variable from the project's Secret (never `envFrom` of the whole
    Secret, which would hand every project's keys to every pod); `optional`, as a key that is not
    in the Secret is simply not set (what `envFrom` did)."""
    secret = project.kubernetes.agent_secret
    return [
        {
            "name": name,
            "value_from": {"secret_key_ref": {"name": secret, "key": name, "optional": True}},
        }
        for name in agent_keys(project)
    ]


def _security(agent: bool) -> dict:
    """An agent's pod: root with the sandbox's capabilities. Others: the run launcher's user
    (helm-values/values.yaml: uid 1000), nothing added."""
    container: dict[str, object] = {
        "allow_privilege_escalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": _SECCOMP,
    }
    pod: dict[str, object] = {"seccomp_profile": _SECCOMP}
    if agent:
        root = {"run_as_user": 0, "run_as_non_root": False}
        container.update(root, capabilities={"drop": ["ALL"], "add": sorted(SANDBOX_CAPABILITIES)})
        pod.update(root)
    return {"container": container, "pod": pod}


def hidden_env(names: Sequence[str]) -> list[dict]:
    """Other projects' git token variables, set empty: an explicit variable wins over the
    Secret's `envFrom` (which every pod inherits from the run launcher), so a pod holds its own
    project's token only."""
    return [{"name": name, "value": ""} for name in sorted(set(names))]


def _pod_config(
    labels: dict[str, str],
    resources: dict,
    deadline: int,
    project: ProjectSettings,
    agent: bool,
    other_tokens: Sequence[str] = (),
) -> dict:
    security = _security(agent)
    container: dict[str, object] = {
        "resources": consistent_resources(resources),
        "security_context": security["container"],
    }
    env = hidden_env(other_tokens)
    if agent:
        labels = {**labels, AGENT_LABEL: "true"}
        env += agent_env(project)
    if env:
        container["env"] = env
    pod_spec: dict[str, object] = {
        "automount_service_account_token": False,
        "security_context": security["pod"],
    }
    return {
        "container_config": container,
        "pod_spec_config": pod_spec,
        "job_metadata": {"labels": labels},
        "pod_template_spec_metadata": {"labels": labels},
        "job_spec_config": {"active_deadline_seconds": deadline, "backoff_limit": 0},
    }


def task_k8s_config(
    project: ProjectSettings, task: Task, level: int, other_tokens: Sequence[str] = ()
) -> dict[str, object]:
    """The `dagster-k8s/config` op tag of a task step; `other_tokens`: other projects' git
    token variables, which its pod must not hold."""
    kube = project.kubernetes
    deadline = int(project.agent.timeout_seconds) + kube.deadline_margin_seconds
    resources = kube.task_resources.get(task.id, kube.resources)
    labels = step_labels(project, task, level)
    return _pod_config(labels, resources, deadline, project, True, other_tokens)


def bookkeeping_k8s_config(
    project: ProjectSettings, step: str, other_tokens: Sequence[str] = ()
) -> dict[str, object]:
    """The `dagster-k8s/config` op tag of an integration or metrics step: an agent's pod only
    when it is an integration whose conflicts an agent resolves (or whose checks run)."""
    labels = {"cto-project": label_value(project.name), "cto-step": step}
    agent = step == "integration" and (
        project.conflicts.resolve == "agent"
        or (bool(project.verify.checks) and project.verify.integration)
    )
    return _pod_config(
        labels, BOOKKEEPING_RESOURCES, BOOKKEEPING_DEADLINE_SECONDS, project, agent, other_tokens
    )
