"""Level integration on real repositories, without Dagster."""

import subprocess
import sys

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.integration.level_merge import (
    IntegrationRequest,
    integrate_level,
    overlap_report,
)
from cto_dagster.core.integration.pull_requests import ForgeError, open_or_reuse_pull_request
from cto_dagster.core.task_run.step import Repository, TaskRunRequest, run_task
from cto_dagster.core.taskmaster import parse_tasks
from tests.fake_github import FakeGitHub
from tests.helpers import CONFIG


def edit_agent(path: str, line: int, text: str) -> AgentSpec:
    code = (
        f"p={path!r}; lines=open(p).read().splitlines(True); lines[{line - 1}]={text!r}+'\\n';"
        "open(p,'w').writelines(lines)"
    )
    return AgentSpec(preset=None, command=(sys.executable, "-c", code), timeout_seconds=60)


def write_agent(path: str, content: str) -> AgentSpec:
    code = (
        f"import pathlib; p=pathlib.Path({path!r}); p.parent.mkdir(exist_ok=True, parents=True);"
        f" p.write_text({content!r})"
    )
    return AgentSpec(preset=None, command=(sys.executable, "-c", code), timeout_seconds=60)


@pytest.fixture
def repo(tmp_path):
    remote = create_sample_repository(
        tmp_path / "s", '{"master": {"tasks": []}}', extra_files={"config.txt": CONFIG}
    )
    return Repository(url=str(remote), workspace_root=str(tmp_path / "ws"))


def task_branch_for(repo, task_id, agent) -> str:
    task = parse_tasks([{"id": task_id, "title": f"Task {task_id}"}], [])[str(task_id)]
    return run_task(TaskRunRequest(task=task, level=0, repository=repo, agent=agent)).head_commit


def integrate(repo, level, tasks, previous=None, **kwargs):
    return integrate_level(
        IntegrationRequest(
            level=level,
            run_token="run12345",
            repository=repo,
            base_branch="main",
            previous_commit=previous,
            tasks=tasks,
            **kwargs,
        )
    )


def branches(repo) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo.url}", "branch", "--list"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout


def test_different_files_merge_cleanly_and_levels_stack(repo):
    one = task_branch_for(repo, 1, write_agent("a.txt", "a"))
    two = task_branch_for(repo, 2, write_agent("b.txt", "b"))
    level0 = integrate(repo, 0, {"1": one, "2": two})
    assert level0.pushed and level0.complete and not level0.overlaps
    assert level0.merged == ["feature/task-1-implementation", "feature/task-2-implementation"]
    three = task_branch_for(repo, 3, write_agent("c.txt", "c"))
    level1 = integrate(repo, 1, {"3": three}, previous=level0.head_commit)
    assert level1.pushed
    ancestor = subprocess.run(
        [
            "git",
            f"--git-dir={repo.url}",
            "merge-base",
            "--is-ancestor",
            level0.head_commit,
            level1.head_commit,
        ],
        check=False,
    )
    assert ancestor.returncode == 0  # level 1's integration branch contains level 0's
    log = subprocess.run(
        ["git", f"--git-dir={repo.url}", "log", "--format=%s", "integration/level-0-run12345"],
        text=True,
        capture_output=True,
    ).stdout
    assert "Merge feature/task-1-implementation into integration/level-0-run12345" in log


def test_different_lines_of_one_file_merge_and_warn(repo):
    one = task_branch_for(repo, 1, edit_agent("config.txt", 2, "changed by one"))
    two = task_branch_for(repo, 2, edit_agent("config.txt", 18, "changed by two"))
    result = integrate(repo, 0, {"1": one, "2": two})
    assert result.pushed and result.predicted_conflicts == []
    assert result.overlaps == {"config.txt": ["1", "2"]}
    assert overlap_report(0, result.overlaps).splitlines() == [
        "⚠️ Potential overlap detected across PRs in level 0:",
        "config.txt (tasks 1, 2)",
    ]


def test_same_lines_conflict_is_predicted_and_nothing_is_pushed(repo):
    base = task_branch_for(repo, 9, write_agent("x.txt", "x"))
    level0 = integrate(repo, 0, {"9": base})
    one = task_branch_for(repo, 1, edit_agent("config.txt", 5, "one's version"))
    two = task_branch_for(repo, 2, edit_agent("config.txt", 5, "two's version"))
    result = integrate(repo, 1, {"1": one, "2": two}, previous=level0.head_commit)
    assert result.predicted_conflicts == [("1", "2", ["config.txt"])]
    assert result.conflict_branch == "feature/task-2-implementation"
    assert result.conflict_paths == ["config.txt"] and result.conflict_tasks == ["1", "2"]
    assert not result.pushed
    assert "integration/level-1-run12345" not in branches(repo)
    assert "integration/level-0-run12345" in branches(repo)


def test_missing_tasks_make_the_level_incomplete(repo):
    one = task_branch_for(repo, 1, write_agent("a.txt", "a"))
    result = integrate(repo, 0, {"1": one, "2": None})
    assert result.missing == ["2"] and not result.complete and result.pushed


def test_disabled_integration_builds_no_branch(repo):
    one = task_branch_for(repo, 1, write_agent("a.txt", "a"))
    result = integrate(repo, 0, {"1": one}, build_branch=False)
    assert not result.pushed and "integration/" not in branches(repo)


def test_pull_request_is_created_then_reused_and_token_stays_in_headers():
    token = "ghp_s3cr3tTOKENvalue123"
    with FakeGitHub() as github:
        pull_request = (
            github.url,
            token,
            "acme/shop",
            "integration/level-0-r",
            "main",
            "Integration PR: Level 0 for r",
            "body",
        )
        first = open_or_reuse_pull_request(*pull_request)
        again = open_or_reuse_pull_request(*pull_request)
        assert (first.number, first.reused) == (1, False)
        assert (again.number, again.reused) == (1, True)
        assert len(github.pulls) == 1
        assert all(
            auth == f"token {token}" or auth == f"Bearer {token}" for _, _, auth in github.requests
        )
        assert all(token not in path for _, path, _ in github.requests)
        with pytest.raises(ForgeError, match="GitHub answered 404") as info:
            open_or_reuse_pull_request(github.url + "/nowhere", token, "a/b", "x", "main", "t", "b")
        assert token not in str(info.value)
    with pytest.raises(ForgeError) as info:
        open_or_reuse_pull_request("http://127.0.0.1:9", token, "acme/shop", "h", "main", "t", "b")
    assert token not in str(info.value)


def test_a_transient_github_outage_is_retried_and_the_pr_is_opened():
    """Two 502s (GitHub's load balancer, a deploy) before the API answers: PyGithub's own retry
    (bounded, with backoff) opens the PR; an outage longer than the retries is a ForgeError."""
    with FakeGitHub() as github:
        github.fail_next = 2
        args = (github.url, "t0ken", "acme/shop", "integration/level-0-r", "main", "T", "b")
        pull = open_or_reuse_pull_request(*args)
        assert pull.number == 1 and len(github.pulls) == 1
        assert len(github.requests) >= 4  # two answered 502, then the list and the create
        github.fail_next = 100
        with pytest.raises(ForgeError, match=r"502|cannot reach"):
            open_or_reuse_pull_request(*args[:3], "integration/level-1-r", "main", "T", "b")
