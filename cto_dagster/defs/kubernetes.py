"""Kubernetes: task steps as pods (`k8s_job_executor`), labelled the way the original's users
query them (`kubectl get pods -l execution-level=0`); the labels, resources and deadline of each
step live in `k8s_tags.py`. Imported only when a project runs on Kubernetes."""

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA, k8s_job_executor

from cto_dagster.core.settings import PINNED_COMMITS_ENV, planned_commits_pin

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
    """`k8s_job_executor` with the guide's `parallel_execution` switch. Step pods plan from the
    commits this run planned from: a run lasts hours, and its pods must not pick up a tasks file
    pushed meanwhile."""
    config = dict(init_context.executor_config)
    if not config.pop("parallel_execution", True):
        config["max_concurrent"] = 1
    pin = planned_commits_pin()
    if pin:
        config["env_vars"] = [*(config.get("env_vars") or []), f"{PINNED_COMMITS_ENV}={pin}"]
    inner = init_context._replace(executor_config=config)
    return k8s_job_executor.executor_creation_fn(inner)
