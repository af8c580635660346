"""Secrets: with a token configured, a full run (tasks, integration, a PR against the GitHub
stand-in, metrics) leaves the token nowhere: not in the event log, metadata, logs, exceptions,
prompt files, the agents' environment or anything pushed."""

import subprocess
import sys

import pytest
from dagster._serdes import serialize_value

from tests.conftest import demo_task
from tests.fake_github import FakeGitHub

pytestmark = pytest.mark.slow

TOKEN = "ghp_Sup3rSecretTokenForTheScan9876"

# An agent that copies everything it can see (environment, prompt, task file) into the branch.
SNOOP = (
    "import os, pathlib; t = os.environ['CTO_TASK_ID']; "
    "env = '\\n'.join(f'{k}={v}' for k, v in os.environ.items()); "
    "pathlib.Path(f'env-{t}.txt').write_text(env); "
    "pathlib.Path(f'prompt-{t}.md').write_text(open(os.environ['CTO_PROMPT_FILE']).read()); "
    "pathlib.Path(f'task-{t}.json').write_text(open(os.environ['CTO_TASK_FILE']).read()); "
    "print('snooped')"
)


def test_token_appears_nowhere(make_project):
    with FakeGitHub() as github:
        project = make_project(
            [demo_task(1), demo_task(2), demo_task(3, deps=[1, 2])],
            settings={
                **github.settings("CTO_TEST_SCAN_TOKEN"),
                "agent": {"preset": None, "command": [sys.executable, "-c", SNOOP]},
            },
        )
        result = project.execute(CTO_TEST_SCAN_TOKEN=TOKEN)
        report = project.cli("report", CTO_TEST_SCAN_TOKEN=TOKEN)
        authorizations = [auth for _, _, auth in github.requests]
        pulls = list(github.pulls)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert report.returncode == 0
    assert len(pulls) == 2  # one integration PR per level, so the token was really used
    assert all(auth and TOKEN in auth for auth in authorizations)

    found = []
    if TOKEN in result.stdout + result.stderr + report.stdout + report.stderr:
        found.append("command output")
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(project.home) as instance:
        for run in project.runs():
            for record in instance.get_records_for_run(run.run_id, limit=100_000).records:
                if TOKEN in serialize_value(record.event_log_entry):
                    found.append(f"event {record.event_log_entry.dagster_event_type}")
        for key in instance.get_asset_keys():
            event = instance.get_latest_materialization_event(key)
            if event and TOKEN in serialize_value(event):
                found.append(f"metadata of {key.to_user_string()}")
        assert instance.get_asset_keys()
        del dg
    for path in project.home.rglob("*"):  # compute logs, SQLite files, anything else
        if path.is_file() and TOKEN.encode() in path.read_bytes():
            found.append(str(path))
    grep = subprocess.run(
        [
            "git",
            f"--git-dir={project.remote}",
            "grep",
            "-I",
            "-l",
            TOKEN,
            *project.git("for-each-ref", "--format=%(refname)").split(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if grep.stdout.strip():
        found.append(f"pushed content: {grep.stdout.strip()}")
    assert found == []
    # the agents ran and left their snoop files: the scan above looked at real data
    env_dump = project.git("show", "feature/task-3-implementation:env-3.txt")
    assert "CTO_TASK_ID=3" in env_dump and "CTO_TEST_SCAN_TOKEN" not in env_dump
    assert "Task 3" in project.git("show", "feature/task-3-implementation:prompt-3.md")
