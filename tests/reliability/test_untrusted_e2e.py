"""The untrusted-agent guarantees through real Dagster runs: projects isolated from each other,
branches nobody recorded left alone, task files edited by agents, and a killed run resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from cto_dagster.commands.demo import job_execute_command
from cto_dagster.core.demo.sample_repository import create_sample_repository
from tests.conftest import demo_task
from tests.reliability.test_faults import alive

pytestmark = pytest.mark.slow

TOKEN_A = "ghp_ProjectAlphaToken000111"
TOKEN_B = "ghp_ProjectBetaToken222333"
KEY_B = "sk-beta-agent-key-444555"

# Looks everywhere an agent could: its environment, every process's environment and command
# line, the files of its home. The values are written backwards so that the agent's own command
# line does not hold them.
SNOOP = (
    "import os, pathlib\n"
    "wanted = {{label: v[::-1] for label, v in {wanted!r}.items()}}\n"
    "found = [label for label, v in wanted.items() if v in os.environ.values()]\n"
    "for entry in pathlib.Path('/proc').iterdir():\n"
    "    for name in ('environ', 'cmdline'):\n"
    "        try:\n"
    "            data = (entry / name).read_bytes()\n"
    "        except OSError:\n"
    "            continue\n"
    "        found += [label for label, v in wanted.items() if v.encode() in data]\n"
    "pathlib.Path('found.txt').write_text(repr(sorted(set(found))))\n"
)


def two_projects(tmp_path):
    config = {"projects": []}
    for name, token_env, key_env in (
        ("alpha", "ALPHA_TOKEN", None),
        ("beta", "BETA_TOKEN", "BETA_KEY"),
    ):
        remote = create_sample_repository(
            tmp_path / name, json.dumps({"master": {"tasks": [{"id": 1, "title": "snoop"}]}})
        )
        wanted = {"token A": TOKEN_A[::-1], "token B": TOKEN_B[::-1], "key B": KEY_B[::-1]}
        agent = {"preset": None, "command": [sys.executable, "-c", SNOOP.format(wanted=wanted)]}
        if key_env:
            agent["env_from"] = {"ANTHROPIC_API_KEY": key_env}
        config["projects"].append(
            {
                "name": name,
                "repository": str(remote),
                "git": {"token_env": token_env},
                "workspace_root": str(tmp_path / "ws"),
                "max_retries": 0,
                "agent": agent,
            }
        )
    path = tmp_path / "cto.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_no_project_sees_another_projects_token_or_agent_key(tmp_path):
    from cto_dagster.commands.runs.instance_home import prepare_home

    config = two_projects(tmp_path)
    home = prepare_home(tmp_path / "home")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CTO_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "CTO_DAGSTER_CONFIG": str(config),
        "CTO_DAGSTER_CACHE": str(tmp_path / "cache"),
        "ALPHA_TOKEN": TOKEN_A,
        "BETA_TOKEN": TOKEN_B,
        "BETA_KEY": KEY_B,
    }
    for job in ("play_project_alpha", "play_project_beta"):
        done = subprocess.run(
            job_execute_command(job=job), env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert TOKEN_A not in done.stdout + done.stderr and KEY_B not in done.stdout + done.stderr
    for name in ("alpha", "beta"):
        found = subprocess.run(
            [
                "git",
                f"--git-dir={tmp_path / name / 'remote.git'}",
                "show",
                "feature/task-1-implementation:found.txt",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if name == "alpha":
            assert found == "[]", found  # nothing of beta's, and not its own token either
        else:
            assert found == "['key B']", found  # only its own agent key, never a git token


def test_a_branch_this_instance_never_recorded_is_left_alone(make_project, tmp_path):
    """A person amends a task's commit keeping its message; a run from a fresh DAGSTER_HOME
    refuses the branch; with `adopt_existing_branches` it replaces it, keeping a backup ref."""
    project = make_project([demo_task(1)])
    assert project.execute().returncode == 0
    branch = "feature/task-1-implementation"
    person = tmp_path / "person"
    subprocess.run(
        ["git", "clone", "-q", "-b", branch, str(project.remote), str(person)], check=True
    )
    (person / "mine.txt").write_text("a person's work")
    subprocess.run(["git", "-C", str(person), "add", "-A"], check=True)
    ident = ["-c", "user.name=p", "-c", "user.email=p@p"]
    subprocess.run(
        ["git", *ident, "-C", str(person), "commit", "-q", "--amend", "--no-edit"], check=True
    )
    subprocess.run(["git", "-C", str(person), "push", "-qf", "origin", branch], check=True)
    amended = project.git("rev-parse", branch).strip()

    fresh = tmp_path / "fresh_home"
    from cto_dagster.commands.runs.instance_home import prepare_home

    prepare_home(fresh)
    refused = project.execute(DAGSTER_HOME=str(fresh))
    assert refused.returncode != 0
    assert "not at a commit this instance recorded" in refused.stdout + refused.stderr
    assert project.git("rev-parse", branch).strip() == amended

    settings = yaml.safe_load(project.config.read_text())
    settings["projects"][0]["adopt_existing_branches"] = True
    project.config.write_text(yaml.safe_dump(settings))
    adopted = project.execute(DAGSTER_HOME=str(fresh))
    assert adopted.returncode == 0, adopted.stdout[-3000:]
    backup = f"refs/cto-dagster/replaced/{branch}/{amended}"
    assert project.git("rev-parse", backup).strip() == amended
    assert project.git("rev-parse", branch).strip() != amended


def test_agents_marking_their_tasks_done_do_not_break_the_run(make_project):
    """TaskMaster-aware agents set their status in tasks.json: the edit stays out of the task
    branch (its status is reported), dependents merge, every integration level is complete."""
    mark = (
        "import json, os, pathlib; p = pathlib.Path('.taskmaster/tasks/tasks.json');"
        "d = json.loads(p.read_text()); me = os.environ['CTO_TASK_ID'];"
        "[t.update(status='done') for t in d['master']['tasks'] if str(t['id']) == me];"
        "p.write_text(json.dumps(d)); pathlib.Path('t' + os.environ['CTO_TASK_ID']).write_text('x')"
    )
    project = make_project(
        [demo_task(1), demo_task(2), demo_task(3, deps=[1, 2])],
        settings={"agent": {"preset": None, "command": [sys.executable, "-c", mark]}},
    )
    result = project.execute()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = project.records()
    assert all(r.metadata["status_set_by_agent"] == "done" for r in records.values())
    assert records["3"].metadata["taskmaster_edits_left_out"] == ".taskmaster/tasks/tasks.json"
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(project.home) as instance:
        for level in (0, 1):
            event = instance.get_latest_materialization_event(
                dg.AssetKey(["proj", f"integration_level_{level}"])
            )
            assert event.asset_materialization.metadata["complete"].value is True


def test_a_killed_run_is_settled_and_resumed_and_frees_its_pool(make_project):
    project = make_project(
        [demo_task(1, duration=60), demo_task(2, deps=[1])],
        settings={"pool": "cto_agents"},
    )
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(project.home) as instance:
        instance.event_log_storage.set_concurrency_slots("cto_agents", 1)
    run = subprocess.Popen(
        job_execute_command(),
        env=project.env(),
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = project.runs()
        if runs and runs[0].status == dg.DagsterRunStatus.STARTED:
            with open_instance(project.home) as instance:
                taken = instance.event_log_storage.get_concurrency_info("cto_agents")
            if taken.active_slot_count:
                break
        time.sleep(0.5)
    os.killpg(run.pid, signal.SIGKILL)  # the run's process and its steps die (a crash)
    run.wait(timeout=30)
    time.sleep(1)
    assert project.runs()[0].status == dg.DagsterRunStatus.STARTED  # stuck, as Dagster left it

    resumed = project.cli("resume", CTO_DEMO_SPEED="0.01", timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "is gone: marked failed, its pool slots freed" in resumed.stdout
    runs = project.runs()
    assert runs[1].status == dg.DagsterRunStatus.FAILURE and runs[0].status.value == "SUCCESS"
    assert set(project.records(runs[0].run_id)) == {"1", "2"}
    with open_instance(project.home) as instance:
        assert instance.event_log_storage.get_concurrency_info("cto_agents").active_slot_count == 0
    assert not [p for p in (run.pid,) if alive(p)]
