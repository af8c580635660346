"""Kubernetes: Helm values against the official chart's schema, and the Job manifest that
dagster-k8s itself builds for a task step."""

import importlib.util
import json
import shutil
import sys

import dagster as dg
import kubernetes_validate
import pytest
import yaml
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)
from kubernetes.client import ApiClient

from cto_dagster.core.names import asset_name_for
from cto_dagster.core.sample import create_sample_repository, guide_tasks_json
from cto_dagster.defs.loader import build_definitions
from tests.helpers import REPO_ROOT

VALUES = REPO_ROOT / "helm-values" / "values.yaml"
CHART = REPO_ROOT / "helm-values" / "chart"


def load_validator():
    spec = importlib.util.spec_from_file_location(
        "validate_helm_values", REPO_ROOT / "scripts" / "validate_helm_values.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_values_validate_against_the_chart_schema():
    assert load_validator().validate_values(VALUES, CHART) == []


def test_values_configure_what_the_design_asks_for():
    values = yaml.safe_load(VALUES.read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "cto_dagster.definitions"]
    assert {"name": "CTO_DAGSTER_KIND", "value": "kubernetes"} in deployment["env"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert values["concurrency"]["pools"]["defaultLimit"] > 0
    assert {"name": "cto-dagster-git"} in deployment["envSecrets"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "pullPolicy: IfNotPresent",
            "pullPolicy: Sometimes",
            "dagster-user-deployments.deployments.0.image.pullPolicy: 'Sometimes' is not one of",
        ),
        ("type: QueuedRunCoordinator", "type: FastRunCoordinator", "runCoordinator.type"),
        (
            "requests: {cpu: 250m, memory: 512Mi}",
            "requests: {cpu: [1]}",
            "deployments.0.resources",
        ),
    ],
)
def test_a_wrong_value_fails_with_a_clear_error(tmp_path, old, new, expected):
    text = VALUES.read_text()
    assert old in text
    bad = tmp_path / "values.yaml"
    bad.write_text(text.replace(old, new, 1))
    errors = load_validator().validate_values(bad, CHART)
    assert any(expected in error for error in errors), errors


def test_validator_cli_exit_codes(tmp_path):
    import subprocess

    script = REPO_ROOT / "scripts" / "validate_helm_values.py"

    def validate(values):
        command = [sys.executable, str(script), str(values), "--chart", str(CHART)]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    ok = validate(VALUES)
    assert ok.returncode == 0 and "✅" in ok.stdout
    bad = tmp_path / "v.yaml"
    bad.write_text("dagsterWebserver:\n  replicaCount: many\n")
    failed = validate(bad)
    assert failed.returncode == 1 and "dagsterWebserver.replicaCount" in failed.stderr


@pytest.fixture
def k8s_defs(monkeypatch, tmp_path):
    tasks = json.loads(guide_tasks_json())
    remote = create_sample_repository(tmp_path / "repo", json.dumps(tasks))
    config = tmp_path / "cto.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "projects": [
                    {
                        "name": "shop",
                        "repository": str(remote),
                        "agent": {"preset": "demo", "timeout_seconds": 1800},
                        "kubernetes": {
                            "task_resources": {"3": {"requests": {"cpu": "2", "memory": "4Gi"}}}
                        },
                    }
                ]
            }
        )
    )
    monkeypatch.setenv("CTO_DAGSTER_CONFIG", str(config))
    monkeypatch.setenv("CTO_DAGSTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CTO_DAGSTER_KIND", "kubernetes")
    return build_definitions()


def test_kubernetes_variant_loads_with_the_k8s_executor(k8s_defs):
    job = k8s_defs.resolve_job_def("play_project")
    assert job.executor_def.name == "play_k8s"
    assert "parallel_execution" in job.executor_def.config_schema.as_field().config_type.fields
    assert k8s_defs.resolve_asset_graph().get(dg.AssetKey(["shop", "task_004"]))


def step_job_manifest(defs, task_id: str) -> dict:
    """Build the step's Job exactly as K8sStepHandler.launch_step does."""
    assets = defs.resolve_assets_def(dg.AssetKey(["shop", asset_name_for(task_id)]))
    user_config = get_user_defined_k8s_config(assets.op.tags)
    job_config = DagsterK8sJobConfig(
        job_image="ghcr.io/your-org/cto-dagster:0.1.0",
        dagster_home="/opt/dagster/dagster_home",
        instance_config_map="dagster-instance",
        image_pull_policy="IfNotPresent",
    )
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-0123456789abcdef",
        pod_name="dagster-step-0123456789abcdef",
        component="step_worker",
        user_defined_k8s_config=user_config,
        labels={
            "dagster/job": "play_project",
            "dagster/op": f"shop__{asset_name_for(task_id)}",
            "dagster/run-id": "0123456789",
        },
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": f"shop__{asset_name_for(task_id)}"}],
    )
    manifest = ApiClient().sanitize_for_serialization(job)
    manifest.setdefault("apiVersion", "batch/v1")
    manifest.setdefault("kind", "Job")
    return manifest


def test_step_job_manifest_is_valid_and_carries_labels_resources_deadline(k8s_defs):
    manifest = step_job_manifest(k8s_defs, "2")
    kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    expected = {
        "task-id": "2",
        "execution-level": "1",
        "project-play": "true",
        "parallel-execution": "true",
    }
    job_labels = manifest["metadata"]["labels"]
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    for labels in (job_labels, pod_labels):
        assert expected.items() <= labels.items()
        assert labels["repository"] == "shop"
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "4Gi"},
    }
    assert manifest["spec"]["activeDeadlineSeconds"] == 1800 + 600
    # per-task resources replace the default for that task only
    heavy = step_job_manifest(k8s_defs, "3")["spec"]["template"]["spec"]["containers"][0]
    assert heavy["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}}


def test_a_broken_manifest_is_caught_by_the_same_check(k8s_defs):
    manifest = step_job_manifest(k8s_defs, "2")
    manifest["spec"]["activeDeadlineSeconds"] = "soon"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)


def test_dockerfile_serves_the_code_location():
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert "git" in text and '-m", "cto_dagster.definitions"' in text
    assert shutil.which("git")


def test_step_pods_plan_from_the_commit_the_run_planned_from(k8s_defs, tmp_path):
    """A run lasts hours: its step pods get the commit of the tasks file it planned from."""
    from dagster._config import process_config
    from dagster._core.definitions.job_base import InMemoryJob

    from cto_dagster.core.settings import PINNED_COMMITS_ENV, planned_commits

    job = k8s_defs.resolve_job_def("play_project")
    schema = job.executor_def.config_schema.config_type
    kubeconfig = tmp_path / "kubeconfig"  # read at start-up; no cluster is contacted
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    raw = {
        "env_vars": ["EXTRA=1"],
        "parallel_execution": False,
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
    }
    config = process_config(schema, raw).value
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        executor = job.executor_def.executor_creation_fn(
            dg.InitExecutorContext(
                job=InMemoryJob(job),
                executor_def=job.executor_def,
                executor_config=config,
                instance=instance,
            )
        )
    context = executor._step_handler._executor_container_context
    env = {e["name"]: e.get("value") for e in context.run_k8s_config.container_config["env"]}
    commits = planned_commits()
    assert commits and all(len(sha) == 40 for sha in commits.values())
    assert env == {"EXTRA": "1", PINNED_COMMITS_ENV: json.dumps(commits, sort_keys=True)}
    assert executor._max_concurrent == 1  # parallel_execution: false
