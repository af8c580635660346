"""Where the project's checks run, as the README says: setups share the repository's package
caches (the second task's install is fast), each check gets private, empty caches of its own (no
check can poison the next install), and nothing writes bytecode into the work tree."""

import os
import sys

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.task_run.step import Repository, TaskRunRequest, run_task
from cto_dagster.core.task_run.verify import VerifyPolicy
from cto_dagster.core.taskmaster import parse_tasks

SHOW = "import os; print('{kind}', os.environ['PIP_CACHE_DIR'], os.environ['npm_config_cache'], os.environ.get('PYTHONDONTWRITEBYTECODE'))"  # noqa: E501


@pytest.fixture
def repo(tmp_path):
    remote = create_sample_repository(tmp_path / "s", '{"master": {"tasks": []}}')
    return Repository(url=str(remote), workspace_root=str(tmp_path / "ws"))


def caches_seen(repo, task_id: str) -> dict[str, tuple[str, ...]]:
    """What the setup and the check of one task's run saw: {kind: (pip, npm, bytecode)}."""
    task = parse_tasks([{"id": int(task_id), "title": "Write"}], [])[task_id]
    policy = VerifyPolicy(
        setup=((sys.executable, "-c", SHOW.format(kind="SETUP")),),
        checks=((sys.executable, "-c", SHOW.format(kind="CHECK")),),
        timeout_seconds=60,
    )
    write = f"open('file-{task_id}.txt', 'w').write('x')"
    request = TaskRunRequest(
        task=task,
        level=0,
        repository=repo,
        agent=AgentSpec(preset=None, command=(sys.executable, "-c", write), timeout_seconds=60),
        verify=policy,
    )
    result = run_task(request)
    assert result.verification is not None and result.verification.passed
    seen: dict[str, tuple[str, ...]] = {}
    for round_ in [result.verification.baseline, *result.verification.rounds]:
        assert round_ is not None
        for command in round_.commands:
            line = next(
                x for x in command.output_tail.splitlines() if x.startswith(command.kind.upper())
            )
            seen.setdefault(command.kind, tuple(line.split()[1:]))
    return seen


def test_setups_share_the_repositorys_caches_and_checks_get_private_ones(repo):
    first, second = caches_seen(repo, "1"), caches_seen(repo, "2")
    assert first["setup"][:2] == second["setup"][:2]  # one package cache per repository
    assert os.path.isdir(first["setup"][0])  # kept on this machine for the next setup
    assert first["check"][0] != first["setup"][0] and first["check"][0] != second["check"][0]
    assert first["check"][2] == first["setup"][2] == "1"  # PYTHONDONTWRITEBYTECODE
