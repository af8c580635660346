"""Kubernetes: task steps as pods (`k8s_job_executor`), labelled the way the original's users
query them (`kubectl get pods -l execution-level=0`); what each step pod looks like lives in
`k8s_tags.py`. Imported only when a project runs on Kubernetes.

`play_k8s` is dagster-k8s's own executor, of which a run's config may set only how many pods run
at once and retries (the rest is the deployment's: `DEPLOYMENT_ENV`), with two things added
through its public configuration:
the guide's `parallel_execution` switch (false: one pod at a time, and the task pods say so in
their `parallel-execution` label, as they do under `max_concurrent: 1`), and the commits the run
planned from, passed to every step pod;
and one through its step handler: each step pod mounts only its own run's folder of the compute
logs volume (`RunLogsStepHandler`), not every run's.
"""

import json
import os
from pathlib import Path

import dagster as dg
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.executor import K8sStepHandler, k8s_job_executor

from cto_dagster.core.support.mappings import deep_merge
from cto_dagster.defs.step_processes import planned_pins
from cto_dagster.defs.translator import TAG_TASK_ID

# What a run's config may choose: how many pods at once, and retries. Where the pods run, with
# which image, identity, secrets, volumes and pod spec is the deployment's, never a run's
# (Dagster's webserver has no login): dagster-k8s's other fields come from DEPLOYMENT_ENV, a JSON
# object in the code location's environment, else from the run launcher's configuration.
RUN_CHOICES = ("max_concurrent", "retries", "tag_concurrency_limits", "step_dependency_config")
DEPLOYMENT_ENV = "CTO_DAGSTER_K8S_EXECUTOR"
_K8S_FIELDS = k8s_job_executor.config_schema.config_type.fields
PLAY_K8S_CONFIG = {
    **{name: field for name, field in _K8S_FIELDS.items() if name in RUN_CHOICES},
    "parallel_execution": dg.Field(
        bool, default_value=True, description="false: one task pod at a time."
    ),
}


def deployment_config() -> dict[str, object]:
    """dagster-k8s's executor fields the deployment sets (`DEPLOYMENT_ENV`), checked by name."""
    text = os.environ.get(DEPLOYMENT_ENV) or "{}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise dg.Failure(f"{DEPLOYMENT_ENV} is not a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise dg.Failure(f"{DEPLOYMENT_ENV} is not a JSON object")
    unknown = sorted(set(data) - set(_K8S_FIELDS))
    if unknown:
        raise dg.Failure(
            f"{DEPLOYMENT_ENV} names {', '.join(unknown)}, which dagster-k8s's k8s_job_executor "
            f"does not have (its fields: {', '.join(sorted(_K8S_FIELDS))})"
        )
    return data


def task_ops(job: dg.JobDefinition) -> list[str]:
    """The op names of the job's task steps (their op tags name the task)."""
    return sorted(
        node.name for node in job.graph.nodes if TAG_TASK_ID in (node.definition.tags or {})
    )


def per_run_labels(job: dg.JobDefinition, parallel: bool) -> dict[str, dict]:
    label = {"parallel-execution": "true" if parallel else "false"}
    metadata = {"job_metadata": {"labels": label}, "pod_template_spec_metadata": {"labels": label}}
    return {op: metadata for op in task_ops(job)}


@dg.executor(
    name="play_k8s",
    config_schema=PLAY_K8S_CONFIG,
    requirements=dg.multiple_process_executor_requirements(),
)
def play_k8s_executor(init_context: dg.InitExecutorContext):
    """`k8s_job_executor` with the guide's `parallel_execution` switch. Step pods plan from the
    commits this run planned from: a run lasts hours, and its pods must not pick up a tasks file
    pushed meanwhile."""
    config = {**deployment_config(), **init_context.executor_config}
    parallel = config.pop("parallel_execution", True)
    if not parallel:
        config["max_concurrent"] = 1
    # the label says how the pods really run: one at a time through `max_concurrent: 1` (the
    # run's or the deployment's) is not parallel, whatever `parallel_execution` says
    parallel = parallel and config.get("max_concurrent") != 1
    labels = per_run_labels(init_context.job.get_definition(), parallel)
    per_step = dict(config.get("per_step_k8s_config") or {})
    for op, extra in labels.items():
        per_step[op] = deep_merge(extra, per_step.get(op) or {})
    config["per_step_k8s_config"] = per_step
    pins = [f"{name}={value}" for name, value in planned_pins().items()]
    if pins:
        config["env_vars"] = [*(config.get("env_vars") or []), *pins]
    inner = init_context._replace(executor_config=config)
    executor = k8s_job_executor.executor_creation_fn(inner)
    logs = init_context.instance.compute_log_manager
    if isinstance(logs, LocalComputeLogManager):
        RunLogsStepHandler.adopt(executor._step_handler, logs)
    return executor


COMPUTE_LOGS_VOLUME = "compute-logs"  # helm-values/values.yaml: the run launcher's volume


class RunLogsStepHandler(K8sStepHandler):
    """dagster-k8s's step handler, whose step pods mount the compute logs volume's folder of
    their own run (`subPath`), where `LocalComputeLogManager` writes the step's output
    (`<base_dir>/<run id>/compute_logs/`): an agent in one run cannot read another run's (or
    project's) agents' output. The run launcher defines the volume and mounts it nowhere."""

    _logs: LocalComputeLogManager

    @classmethod
    def adopt(cls, handler: K8sStepHandler, logs: LocalComputeLogManager) -> None:
        """Turn the executor's own handler into this one (same state, one method more)."""
        handler.__class__ = cls
        handler._logs = logs  # type: ignore[attr-defined]

    def _get_container_context(self, step_handler_context: StepHandlerContext):
        context = super()._get_container_context(step_handler_context)
        volumes = context.run_k8s_config.pod_spec_config.get("volumes") or []
        if not any(volume.get("name") == COMPUTE_LOGS_VOLUME for volume in volumes):
            return context
        run_id = step_handler_context.execute_step_args.run_id
        return context.merge(
            K8sContainerContext(volume_mounts=[run_logs_mount(self._logs, run_id)])
        )


def run_logs_mount(logs: LocalComputeLogManager, run_id: str) -> dict[str, str]:
    """The volume mount of one run's folder, at the path the compute log manager writes it."""
    folder = Path(logs.get_captured_local_path([run_id, "compute_logs", "step"], "out")).parent
    return {"name": COMPUTE_LOGS_VOLUME, "mount_path": str(folder.parent), "sub_path": run_id}
