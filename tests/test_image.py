"""The user-code image, built by `.ci/run` from the Dockerfile (on a Debian base made with
debootstrap: no image registry is reachable here) and started on a real Docker daemon.

`CTO_DAGSTER_IMAGE` (the default target) and `CTO_DAGSTER_AGENTS_IMAGE` (the `agents` target) name
the images; without them, or without a running daemon, these tests say SKIPPED with the reason.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

from cto_dagster.core.agents.presets import PRESETS
from cto_dagster.core.demo.sample_repository import create_sample_repository, guide_tasks_json
from tests.helpers import push_to_main

pytestmark = pytest.mark.slow
IMAGE = os.environ.get("CTO_DAGSTER_IMAGE")
AGENTS_IMAGE = os.environ.get("CTO_DAGSTER_AGENTS_IMAGE")
SIZE_GOAL_MB = 600
# What the chart runs for a deployment with `codeServerArgs` (helm-values/values.yaml)
CHART_CODE_SERVER_COMMAND = (
    *("dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030"),
    *("-m", "cto_dagster.definitions"),
)


def docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client (.ci/run installs Debian's docker.io)"
    ping = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    return None if ping.returncode == 0 else "the Docker daemon is not running"


PROBLEM = docker_problem()
needs_image = pytest.mark.skipif(
    PROBLEM is not None or not IMAGE,
    reason=PROBLEM or "CTO_DAGSTER_IMAGE is not set (.ci/run builds the image and sets it)",
)
needs_agents_image = pytest.mark.skipif(
    PROBLEM is not None or not AGENTS_IMAGE,
    reason=PROBLEM or "CTO_DAGSTER_AGENTS_IMAGE is not set (.ci/run builds it)",
)


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@needs_image
def test_the_image_is_small_runs_as_non_root_and_has_what_the_cluster_needs():
    size = int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip())
    print(f"image {IMAGE}: {size / 1e6:.0f} MB")
    assert size < SIZE_GOAL_MB * 1e6, f"{size / 1e6:.0f} MB"
    probe = docker(
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "id -u; for x in git bwrap uv; do command -v $x; done; "
        "python -c 'import dagster_postgres, dagster_k8s, psycopg2; print(\"storage ok\")'; "
        # no configuration: the embedded demo loads as the image's user (no root-owned folder)
        "python -c 'import cto_dagster.definitions as d; print(len(d.defs().assets))'",
    )
    lines = probe.stdout.split()
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert lines[0] == "1000"
    assert "/usr/bin/git" in lines and "/usr/bin/bwrap" in lines and "uv" not in probe.stdout
    assert "storage ok" in probe.stdout and int(lines[-1]) > 6


# What the UI does on "Reload" (Dagster's own workspace classes), run inside the container.
ASSET_KEYS_IN_IMAGE = """
import sys, tempfile
import dagster as dg
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget
target = GrpcServerTarget(host="localhost", port=3030, socket=None, location_name="cto_dagster")
instance = dg.DagsterInstance.local_temp(tempfile.mkdtemp())
with instance, WorkspaceProcessContext(instance, target) as ctx:
    if sys.argv[1:] == ["reload"]:
        ctx.reload_code_location("cto_dagster")
    location = ctx.create_request_context().get_code_location("cto_dagster")
    repository = next(iter(location.get_repositories().values()))
    print(" ".join(sorted(n.asset_key.to_user_string() for n in repository.get_asset_node_snaps())))
"""


@needs_image
def test_the_code_server_starts_from_a_mounted_configmap_and_reloads_pushed_tasks(tmp_path):
    """As the chart runs it (`codeServerArgs`: `dagster code-server start -h 0.0.0.0 -p 3030 -m
    cto_dagster.definitions`), the projects file mounted read-only at /etc/cto-dagster, ready once
    the chart's health check answers; a task pushed later appears when the UI reloads the
    location, without restarting the pod."""
    mount = tmp_path / "configmap"
    mount.mkdir()
    create_sample_repository(tmp_path / "sample")
    shutil.copytree(tmp_path / "sample" / "remote.git", mount / "shop.git")
    (mount / "cto-dagster.yaml").write_text(
        json.dumps({"projects": [{"name": "shop", "repository": "shop.git"}]})
    )
    subprocess.run(["chown", "-R", "1000:1000", str(mount)], check=False)
    name = f"cto-code-server-{os.getpid()}"
    started = docker(
        "run",
        "-d",
        "--name",
        name,
        "-v",
        f"{mount}:/etc/cto-dagster:ro",
        "-e",
        "CTO_DAGSTER_CONFIG=/etc/cto-dagster/cto-dagster.yaml",
        "-e",
        "CTO_DAGSTER_KIND=kubernetes",
        IMAGE,
        *CHART_CODE_SERVER_COMMAND,
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 120
        while True:
            health = docker("exec", name, "dagster", "api", "grpc-health-check", "-p", "3030")
            if health.returncode == 0:
                break
            state = docker("inspect", name, "--format", "{{.State.Running}}").stdout.strip()
            assert state == "true", docker("logs", name).stderr[-3000:]
            assert time.monotonic() < deadline, docker("logs", name).stderr[-3000:]
            time.sleep(2)
        logs = docker("logs", name)
        assert "Started Dagster code proxy server" in logs.stdout + logs.stderr
        before = docker("exec", name, "python", "-c", ASSET_KEYS_IN_IMAGE)
        assert "shop/task_006" in before.stdout.split(), before.stderr[-2000:]
        assert "shop/task_007" not in before.stdout.split()

        tasks = json.loads(guide_tasks_json())
        tasks["master"]["tasks"].append({"id": 7, "title": "pushed later", "dependencies": [6]})
        subprocess.run(["chown", "-R", "0:0", str(mount)], check=False)  # git: ours to write
        push_to_main(
            mount / "shop.git",
            tmp_path / "clone",
            {".taskmaster/tasks/tasks.json": json.dumps(tasks)},
            "a task pushed after the deploy",
        )
        subprocess.run(["chown", "-R", "1000:1000", str(mount)], check=False)
        unchanged = docker("exec", name, "python", "-c", ASSET_KEYS_IN_IMAGE)
        assert "shop/task_007" not in unchanged.stdout.split()  # the UI shows what it loaded
        reloaded = docker("exec", name, "python", "-c", ASSET_KEYS_IN_IMAGE, "reload")
        assert "shop/task_007" in reloaded.stdout.split(), reloaded.stderr[-2000:]
    finally:
        docker("rm", "-f", name)


SNOOP_IN_IMAGE = """
import json, os, pathlib, sys
from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.task_run.step import Repository, TaskRunRequest, run_task
from cto_dagster.core.taskmaster import parse_tasks
root = pathlib.Path('/var/tmp/cto-dagster/test')
remote = create_sample_repository(root / 'sample', '{"master": {"tasks": []}}')
code = ("import os; token = b'TOKEN-IN-THE-POD'; found = []\\n"
        "for pid in os.listdir('/proc'):\\n"
        "    try: seen = open(f'/proc/{pid}/environ', 'rb').read()\\n"
        "    except OSError: continue\\n"
        "    found += [pid] if token in seen else []\\n"
        "open('found.txt', 'w').write(repr(found))")
task = parse_tasks([{'id': 1, 'title': 'snoop'}], [])['1']
agent = AgentSpec(preset=None, command=(sys.executable, '-c', code))
request = TaskRunRequest(task=task, level=0, repository=Repository(url=str(remote)), agent=agent)
result = run_task(request, log=lambda line: None)
import subprocess
found = subprocess.run(['git', f'--git-dir={remote}', 'show', f'{result.branch}:found.txt'],
                       capture_output=True, text=True).stdout
print(json.dumps({'sandbox': result.sandbox, 'found': found}))
"""


@needs_image
def test_task_pods_start_the_agent_as_an_unprivileged_user():
    """A task step pod as k8s_tags.py makes it: root with only the capabilities the `user`
    sandbox needs, the token in the step's environment. bubblewrap cannot make namespaces under
    the default seccomp profile, so the agent runs as a uid of its own and cannot read the token."""
    capabilities = ["CHOWN", "SETGID", "SETUID"]
    args = ["run", "--rm", "--user", "0", "--cap-drop", "ALL"]
    for capability in capabilities:
        args += ["--cap-add", capability]
    args += ["--security-opt", "no-new-privileges", "-e", "GITHUB_TOKEN=TOKEN-IN-THE-POD"]
    done = docker(*args, IMAGE, "python", "-c", SNOOP_IN_IMAGE)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"sandbox": "user", "found": "[]"}, outcome


@needs_agents_image
def test_the_agents_image_runs_every_cli_at_its_verified_version():
    versions = docker(
        "run",
        "--rm",
        AGENTS_IMAGE,
        "sh",
        "-c",
        "node --version; "
        "for cli in claude codex gemini aider; do $cli --version 2>&1 | tail -1; done; "
        "test ! -e /root/.npm && test ! -e /tmp/npm-cache && echo no-npm-cache",
    )
    assert versions.returncode == 0, versions.stderr[-2000:]
    lines = versions.stdout.strip().splitlines()
    assert int(lines[0].lstrip("v").split(".")[0]) >= 22
    assert lines[-1] == "no-npm-cache"  # the 514 MB npm cache is not left in a layer
    for line, name in zip(lines[1:-1], ("claude", "codex", "gemini", "aider"), strict=True):
        assert PRESETS[name].verified_version in line, (name, line)
    size = int(docker("image", "inspect", AGENTS_IMAGE, "--format", "{{.Size}}").stdout.strip())
    print(f"image {AGENTS_IMAGE}: {size / 1e6:.0f} MB")
