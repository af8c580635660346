"""Issue 27: what an agent's pod on Kubernetes holds and reaches. Step Jobs rendered by
dagster-k8s's real step handler (tests/test_kubernetes.py), the NetworkPolicy applied beside the
chart, and the `user` sandbox run with exactly the capabilities a task pod gets."""

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile

import kubernetes_validate
import pytest
import yaml

from cto_dagster.core.agents.environment import agent_environment
from cto_dagster.core.demo.sample_repository import create_sample_repository, guide_tasks_json
from cto_dagster.defs.k8s_tags import AGENT_LABEL, SANDBOX_CAPABILITIES
from cto_dagster.defs.kubernetes import COMPUTE_LOGS_VOLUME
from tests.helpers import REPO_ROOT
from tests.test_kubernetes import VALUES, render_step_jobs

POLICY = REPO_ROOT / "helm-values" / "agent-network-policy.yaml"
SHOP_KEYS = {
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "SHOP_ANTHROPIC_KEY",  # agent.env_from: {ANTHROPIC_API_KEY: SHOP_ANTHROPIC_KEY}
}
BLOG_KEYS = {"CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_MODEL", "BLOG_EXTRA"}
BLOG_RESOLVER_KEYS = {  # the gemini preset's names
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GEMINI_MODEL",
}


def write_two_projects(tmp_path, monkeypatch) -> None:
    """shop (claude, its own Secret) and blog (codex; conflicts resolved by a gemini agent)."""
    projects = []
    for name, extra in (
        (
            "shop",
            {
                "agent": {
                    "preset": "claude",
                    "env_from": {"ANTHROPIC_API_KEY": "SHOP_ANTHROPIC_KEY"},
                },
                "kubernetes": {"agent_secret": "cto-dagster-agents-shop"},
                "git": {"token_env": "SHOP_GIT_TOKEN"},
            },
        ),
        (
            "blog",
            {
                "agent": {"preset": "codex", "pass_env": ["BLOG_EXTRA", "DAGSTER_PG_PASSWORD"]},
                "conflicts": {"resolve": "agent", "agent": {"preset": "gemini"}},
                "kubernetes": {"agent_secret": "cto-dagster-agents-blog"},
                "git": {"token_env": "BLOG_GIT_TOKEN"},
            },
        ),
    ):
        remote = create_sample_repository(tmp_path / name, guide_tasks_json())
        projects.append({"name": name, "repository": str(remote), "max_retries": 0, **extra})
    config = tmp_path / "cto.yaml"
    config.write_text(yaml.safe_dump({"projects": projects}))
    monkeypatch.setenv("CTO_DAGSTER_CONFIG", str(config))
    monkeypatch.setenv("CTO_DAGSTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CTO_DAGSTER_KIND", "kubernetes")


def container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def secret_keys(job: dict) -> dict[str, set[str]]:
    """Secret name -> the keys the pod's environment takes from it (envFrom: every key, '*')."""
    found: dict[str, set[str]] = {}
    for entry in container(job).get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            found.setdefault(ref["name"], set()).add(ref["key"])
    for entry in container(job).get("envFrom") or []:
        if "secretRef" in entry:
            found.setdefault(entry["secretRef"]["name"], set()).add("*")
    return found


def selects(policy: dict, labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert set(selector) == {"matchLabels"}, "only matchLabels is evaluated here"
    return selector["matchLabels"].items() <= labels.items()


@pytest.fixture(scope="module")
def policy() -> dict:
    return yaml.safe_load(POLICY.read_text())


def test_each_pod_holds_only_its_projects_agent_keys(monkeypatch, tmp_path, policy):
    """The task pod of one project gets that project's agent keys, key by key, from that
    project's Secret; no pod gets the agents Secret whole, another project's keys (agent keys
    or git token), or a capability it does not need; only agents' pods are the NetworkPolicy's."""
    write_two_projects(tmp_path, monkeypatch)
    jobs = render_step_jobs(
        tmp_path,
        {
            "task": ("task_002", True),
            "integration": ("integration_level_0", True),
            "metrics": ("run_metrics", True),
        },
        project="shop",
        job_name="play_project_shop",
    )
    blog = render_step_jobs(
        tmp_path,
        {"task": ("task_002", True), "integration": ("integration_level_0", True)},
        project="blog",
        job_name="play_project_blog",
    )
    git_only = {"cto-dagster-git": {"*"}, "dagster-postgresql-secret": {"postgresql-password"}}
    assert secret_keys(jobs["task"]) == {**git_only, "cto-dagster-agents-shop": SHOP_KEYS}
    # blog's conflicts are resolved by an agent (when a task merges its dependencies, and when
    # an integration merges the level's tasks): both pods get the resolver's keys, and its
    # integration pod is an agent's pod
    blog_keys = {**git_only, "cto-dagster-agents-blog": BLOG_KEYS | BLOG_RESOLVER_KEYS}
    assert secret_keys(blog["task"]) == blog_keys
    assert secret_keys(blog["integration"]) == blog_keys
    for kind in ("integration", "metrics"):  # no agent runs there: no agent key at all
        assert secret_keys(jobs[kind]) == git_only, kind
    for name, job in [*jobs.items(), *(("blog " + k, v) for k, v in blog.items())]:
        pod = job["spec"]["template"]
        security = container(job)["securityContext"]
        agent = name in ("task", "blog task", "blog integration")
        assert (pod["metadata"]["labels"].get(AGENT_LABEL) == "true") is agent, name
        assert selects(policy, pod["metadata"]["labels"]) is agent, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not security.get("privileged"), name
        if agent:  # root, to start the agent as another user; the sandbox's capabilities only
            assert security["runAsUser"] == 0, name
            assert security["capabilities"]["add"] == sorted(SANDBOX_CAPABILITIES), name
        else:  # the run launcher's user, no capability at all
            assert "add" not in security["capabilities"], name
            assert pod["spec"]["securityContext"]["runAsUser"] == 1000, name
        # the PostgreSQL password is the step's (env of its root process), never an agent key
        env = {e["name"]: e for e in container(job)["env"]}
        # the git Secret (envFrom, every pod's) holds both projects' tokens: the other
        # project's is set empty, which wins over envFrom; its own is left to the Secret
        other, own = (
            ("SHOP_GIT_TOKEN", "BLOG_GIT_TOKEN")
            if name.startswith("blog")
            else ("BLOG_GIT_TOKEN", "SHOP_GIT_TOKEN")
        )
        assert env[other] == {"name": other, "value": ""}, name
        assert own not in env, name
        assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
            "dagster-postgresql-secret"
        )
        # this run's compute logs only: the volume's folder of this run, where it writes them
        run_id = pod["metadata"]["labels"]["dagster/run-id"]
        mounts = [m for m in container(job)["volumeMounts"] if m["name"] == COMPUTE_LOGS_VOLUME]
        assert len(mounts) == 1 and mounts[0]["subPath"] == run_id, (name, mounts)
        assert mounts[0]["mountPath"].endswith("/" + run_id), mounts
    shop_text = json.dumps(jobs)
    assert not any(key in shop_text for key in BLOG_KEYS | BLOG_RESOLVER_KEYS)
    assert "cto-dagster-agents-blog" not in shop_text


def test_values_give_no_pod_every_agent_key_nor_every_runs_logs():
    """What the chart puts in every run and step pod (the code server's deployment, included in
    launched runs, and the run launcher): the git Secret only; the compute logs volume defined
    but mounted by no one but the step pods, each its run's folder."""
    values = yaml.safe_load(VALUES.read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    launcher = values["runLauncher"]["config"]["customRunLauncher"]["config"]
    assert deployment["envSecrets"] == [{"name": "cto-dagster-git"}]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": False}
    assert launcher["env_secrets"] == ["cto-dagster-git"]
    for mounts in (deployment.get("volumeMounts"), launcher.get("volume_mounts")):
        assert COMPUTE_LOGS_VOLUME not in {m["name"] for m in mounts or []}
    assert {"name": COMPUTE_LOGS_VOLUME} | {
        "persistentVolumeClaim": {"claimName": "cto-dagster-compute-logs"}
    } in launcher["volumes"]


def test_the_step_only_password_never_reaches_an_agent():
    """Whatever a project names (pass_env, env_from, literal env), DAGSTER_PG_PASSWORD stays the
    step's: the agent's environment is built from an allowlist that never holds it."""
    parent = {"DAGSTER_PG_PASSWORD": "pg-secret", "PATH": "/usr/bin", "KEY": "k"}
    env = agent_environment(
        parent,
        pass_env=["DAGSTER_PG_PASSWORD", "KEY"],
        env_from={"PGPASSWORD": "DAGSTER_PG_PASSWORD", "DAGSTER_PG_PASSWORD": "KEY"},
        literal={"DAGSTER_PG_PASSWORD": "x"},
    )
    assert "pg-secret" not in env.values() and "DAGSTER_PG_PASSWORD" not in env
    assert env["KEY"] == "k"


# ------------------------------------------------------------------------------ NetworkPolicy

NAMESPACE = "cto-dagster"
KUBE_SYSTEM = {"kubernetes.io/metadata.name": "kube-system"}
OURS = {"kubernetes.io/metadata.name": NAMESPACE}


def _peer_matches(peer: dict, dest: dict) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(dest["ip"])
        network = ipaddress.ip_network(block["cidr"])
        if address.version != network.version or address not in network:
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
    if dest.get("pod") is None:  # selectors only ever match pods
        return False
    namespace = peer.get("namespaceSelector")
    if namespace is None:
        if dest["namespace"] != OURS:  # a bare podSelector: the policy's own namespace
            return False
    elif not namespace.get("matchLabels", {}).items() <= dest["namespace"].items():
        return False
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    return pods.items() <= dest["pod"].items()


def egress_allowed(policy: dict, dest: dict) -> bool:
    """Whether the policy lets a selected pod open `dest` (ip, port, protocol; pod labels and
    namespace labels for in-cluster pods). A pod's address is matched by ipBlocks too (some
    network plugins do, some do not): the policy must hold either way."""
    spec = policy["spec"]
    assert "Egress" in spec["policyTypes"]
    for rule in spec.get("egress") or []:
        ports = rule.get("ports")
        if ports and not any(
            p.get("protocol", "TCP") == dest["protocol"] and p.get("port") == dest["port"]
            for p in ports
        ):
            continue
        if not rule.get("to") or any(_peer_matches(peer, dest) for peer in rule["to"]):
            return True
    return False


def pod(ip, port, labels, namespace=OURS, protocol="TCP"):
    return {"ip": ip, "port": port, "protocol": protocol, "pod": labels, "namespace": namespace}


def outside(ip, port=443, protocol="TCP"):
    return {"ip": ip, "port": port, "protocol": protocol, "pod": None, "namespace": None}


WEBSERVER = {"component": "dagster-webserver", "app.kubernetes.io/name": "dagster"}
CODE_SERVER = {"component": "user-deployments", "deployment": "cto-dagster"}
POSTGRES = {"app": "postgresql", "release": "cto-dagster", "role": "master"}
KUBE_DNS = {"k8s-app": "kube-dns"}
ALLOWED = {
    "DNS over UDP": pod("10.244.0.10", 53, KUBE_DNS, KUBE_SYSTEM, "UDP"),
    "DNS over TCP": pod("10.244.0.10", 53, KUBE_DNS, KUBE_SYSTEM),
    "GitHub": outside("140.82.112.3"),
    "an agent's API": outside("160.79.104.10"),
    "a public IPv6 address": outside("2606:4700:4700::1111"),
    "the step's PostgreSQL": pod("10.244.1.5", 5432, POSTGRES),
}
REFUSED = {
    "the webserver's GraphQL (pod)": pod("10.244.1.7", 80, WEBSERVER),
    "the webserver's Service": outside("10.96.14.2", 80),
    "the code server's gRPC": pod("10.244.1.8", 3030, CODE_SERVER),
    "PostgreSQL on another port": pod("10.244.1.5", 22, POSTGRES),
    "PostgreSQL's Service address": outside("10.96.20.1", 5432),
    "the Kubernetes API Service": outside("10.96.0.1"),
    "the API server (node address)": outside("192.168.49.2", 6443),
    "the cloud's metadata service": outside("169.254.169.254", 80),
    "AWS's IPv6 metadata service": outside("fd00:ec2::254", 80),
    "a carrier-grade NAT address (GKE/EKS pod ranges)": outside("100.64.3.4"),
    "a 172.16/12 address": outside("172.20.0.1"),
    "DNS of another pod": pod("10.244.1.9", 53, {"app": "evil-dns"}),
    "kube-dns on another port": pod("10.244.0.10", 9153, KUBE_DNS, KUBE_SYSTEM),
    "a pod in kube-system": pod("10.244.0.11", 443, {"k8s-app": "metrics-server"}, KUBE_SYSTEM),
}


def test_the_network_policy_is_a_valid_kubernetes_object(policy):
    kubernetes_validate.validate(policy, "1.37.0", strict=True)
    assert policy["kind"] == "NetworkPolicy" and "namespace" not in policy["metadata"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {AGENT_LABEL: "true"}}


def test_agent_pods_accept_no_connection(policy):
    spec = policy["spec"]
    assert "Ingress" in spec["policyTypes"] and not spec.get("ingress")


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_agent_pods_reach_dns_the_internet_and_their_steps_database(policy, name):
    assert egress_allowed(policy, ALLOWED[name]), name


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_agent_pods_reach_no_other_in_cluster_address(policy, name):
    assert not egress_allowed(policy, REFUSED[name]), name


# ----------------------------------------------------------------- the capabilities, each needed

SETPRIV = shutil.which("setpriv")
SYSTEM_PYTHON = "/usr/bin/python3"
needs_root_and_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None or not os.path.exists(SYSTEM_PYTHON),
    reason="runs a step as root under setpriv (util-linux), the agent on the system Python",
)

# A task step as in a pod (bubblewrap cannot run there: the `user` sandbox), with the PostgreSQL
# password in its environment from the start; its agent looks for the password in every
# /proc/<pid>/environ, leaves a folder only it may read and a sticky folder, and a child that
# ignores SIGTERM and writes after the agent has exited.
STEP = r"""
import json, pathlib, subprocess, sys, tempfile, time
import cto_dagster.core.agents.sandbox as sandbox
sandbox.bubblewrap_problem = lambda: "bubblewrap cannot run in this pod"
from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.task_run.step import Repository, TaskRunRequest, run_task
from cto_dagster.core.taskmaster import parse_tasks
root = pathlib.Path(sys.argv[1])  # a folder the agent's user may pass through, as in a pod
bare = create_sample_repository(root / "sample", '{"master": {"tasks": [{"id": 1}]}}')
(root / "marks").mkdir(mode=0o777)
(root / "marks").chmod(0o777)  # where the agent's child may write
late = root / "marks" / "late"
AGENT = '''
import os, pathlib, signal, subprocess, sys
found = []
for entry in pathlib.Path("/proc").iterdir():
    try:
        if entry.name.isdigit() and b"pg-secret-4242" in (entry / "environ").read_bytes():
            found.append(entry.name)
    except OSError:
        pass
if "pg-secret-4242" in repr(dict(os.environ)):
    found.append("own")
pathlib.Path("found.txt").write_text(repr(found))
pathlib.Path("README.md").write_text("edited by the agent\\n")  # a file the checkout made
private = pathlib.Path("private"); private.mkdir(); (private / "f.txt").write_text("x\\n")
(private / "f.txt").chmod(0o600); private.chmod(0o700)
sticky = pathlib.Path("sticky"); sticky.mkdir(); (sticky / "g.txt").write_text("y\\n")
sticky.chmod(0o1777)
child = "import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
child += "time.sleep(1.5); pathlib.Path(%r).write_text('late')"
subprocess.Popen([sys.executable, "-c", child % LATE])
'''.replace("LATE", repr(str(late)))
spec = AgentSpec(preset=None, command=("/usr/bin/python3", "-c", AGENT), timeout_seconds=60,
                 sandbox="auto")
repo = Repository(url=str(bare), git_env={}, denied_env=(), secrets=(),
                  workspace_root=str(root / "ws"), cache_root=str(root / "cache"))
task = parse_tasks([{"id": 1, "title": "Task 1"}], [])["1"]
out = {}
try:
    result = run_task(TaskRunRequest(task=task, level=0, repository=repo, agent=spec),
                      log=lambda line: None)
    def show(path):
        return subprocess.run(["git", f"--git-dir={bare}", "show", f"{result.branch}:{path}"],
                              capture_output=True, text=True).stdout
    out.update(sandbox=result.sandbox, found=show("found.txt"), private=show("private/f.txt"),
               readme=show("README.md"))
    out["left"] = [str(p) for p in (root / "ws").rglob("*")][:3]
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"[:300]
time.sleep(2.5)
out["late"] = late.exists()
print(json.dumps(out))
"""

# what breaks without each capability: the reasons in k8s_tags.SANDBOX_CAPABILITIES
WITHOUT = {
    "SETUID": lambda out: "cannot start" in out.get("error", ""),
    "SETGID": lambda out: "cannot start" in out.get("error", ""),
    "CHOWN": lambda out: "Operation not permitted" in out.get("error", ""),
}


def run_step_with(capabilities) -> dict:
    """The step run with only `capabilities` (root's bounding set), as in a task pod."""
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
    env = {**os.environ, "DAGSTER_PG_PASSWORD": "pg-secret-4242"}
    # not under pytest's tmp_path: its folders are root's alone (0700), unlike a pod's /var/tmp
    folder = tempfile.mkdtemp(prefix="cto-caps-")
    os.chmod(folder, 0o755)
    command = [SETPRIV, "--bounding-set", bounding, "--", sys.executable, "-c", STEP, folder]
    try:
        done = subprocess.run(
            command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_root_and_setpriv
def test_the_task_pods_capabilities_run_the_user_sandbox_and_keep_the_password():
    """Exactly the task pod's capabilities: the agent runs as another user, cannot read the
    PostgreSQL password in any /proc/<pid>/environ (root's, 0400, and not ptrace-able by it),
    all its work is committed, what it started is ended, its work tree removed."""
    assert set(SANDBOX_CAPABILITIES) == set(WITHOUT)
    out = run_step_with(SANDBOX_CAPABILITIES)
    assert out == {
        "sandbox": "user",
        "found": "[]",
        "private": "x\n",
        "readme": "edited by the agent\n",
        "left": [],
        "late": False,
    }


@needs_root_and_setpriv
@pytest.mark.parametrize("missing", sorted(WITHOUT))
def test_each_capability_of_the_task_pod_is_needed(missing):
    out = run_step_with([c for c in SANDBOX_CAPABILITIES if c != missing])
    assert WITHOUT[missing](out), (missing, out)
    assert out.get("found") in (None, "[]")  # whatever breaks, the password stays out of reach
