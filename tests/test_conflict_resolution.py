"""Merge conflicts resolved by an agent (issue 17), on real repositories: at both merge places,
and the five ways a resolution fails, each leaving nothing pushed; then through Dagster, with the
WARN check, the PR section and the run's conflict counts."""

import sys
import time
from pathlib import Path

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.integration.level_merge import IntegrationRequest, integrate_level
from cto_dagster.core.task_run.conflict_resolution import ConflictPolicy
from cto_dagster.core.task_run.step import (
    DependencyHead,
    Repository,
    TaskFailed,
    TaskRunRequest,
    run_task,
)
from cto_dagster.core.taskmaster import parse_tasks
from tests.conftest import demo_task
from tests.helpers import bare_git, check_evaluations

ROUTES = 'ROUTES = [\n    "/",\n'
ONE = ROUTES + '    "/cart",\n]\n'
TWO = ROUTES + '    "/orders",\n]\n'
BOTH = ROUTES + '    "/cart",\n    "/orders",\n]\n'
COMPILE = (sys.executable, "-m", "py_compile", "routes.py")


def writer(content: str) -> AgentSpec:
    code = f"open('routes.py', 'w').write({content!r})"
    return AgentSpec(preset=None, command=(sys.executable, "-c", code), timeout_seconds=60)


def resolver(mode: str = "", timeout: float = 60) -> AgentSpec:
    """The demo agent as resolver (keeps both sides); `mode` makes it fail on purpose."""
    env = {"CTO_DEMO_RESOLVE": mode} if mode else {}
    return AgentSpec(preset="demo", env=env, timeout_seconds=timeout)


def policy(mode: str = "", verify=COMPILE, timeout: float = 60) -> ConflictPolicy:
    return ConflictPolicy(resolve="agent", agent=resolver(mode, timeout), verify=tuple(verify))


def task(task_id, deps=()):
    raw = [{"id": task_id, "title": f"Page {task_id}", "details": f"details of {task_id}"}]
    raw[0]["dependencies"] = list(deps)
    raw += [{"id": d, "title": f"Page {d}"} for d in deps]
    return parse_tasks(raw, [])[str(task_id)]


def git(remote, *args) -> str:
    return bare_git(remote, *args)


@pytest.fixture
def sides(tmp_path):
    """A remote with two task branches that both add routes.py, differently."""
    remote = create_sample_repository(tmp_path / "s", '{"master": {"tasks": []}}')
    repo = Repository(url=str(remote), workspace_root=str(tmp_path / "ws"))
    heads = {}
    for task_id, content in (("1", ONE), ("2", TWO)):
        request = TaskRunRequest(
            task=task(task_id), level=0, repository=repo, agent=writer(content)
        )
        heads[task_id] = run_task(request).head_commit
    return remote, repo, heads


def dependent(repo, heads, conflicts: ConflictPolicy) -> TaskRunRequest:
    deps = tuple(
        DependencyHead(t, heads[t], f"Page {t}", ("routes.py",), details=f"details of {t}")
        for t in ("1", "2")
    )
    return TaskRunRequest(
        task=task(3, deps=[1, 2]),
        level=1,
        repository=repo,
        agent=AgentSpec(preset="demo"),
        dependencies=deps,
        conflicts=conflicts,
    )


def integrate(repo, heads, conflicts: ConflictPolicy):
    return integrate_level(
        IntegrationRequest(
            level=0,
            run_token="run12345",
            repository=repo,
            base_branch="main",
            previous_commit=None,
            tasks=dict(heads),
            conflicts=conflicts,
            agent=AgentSpec(preset="demo"),
            task_info={t: task(t) for t in heads},
        ),
        log=lambda line: None,
    )


def test_dependency_conflict_resolved_verified_and_built_on(sides):
    remote, repo, heads = sides
    lines: list[str] = []
    result = run_task(dependent(repo, heads, policy()), log=lines.append)
    assert git(remote, "show", f"{result.head_commit}:routes.py") == BOTH
    [resolution] = result.resolutions
    assert resolution.files == ["routes.py"] and resolution.resolver == "demo"
    assert resolution.merged == "feature/task-2-implementation"
    assert resolution.into == "feature/task-3-implementation"
    assert resolution.verify.startswith("passed (`python")
    assert resolution.diff_files == ["routes.py"] and resolution.deletions == 3  # the markers
    merge = resolution.commit
    parents = git(remote, "rev-list", "--parents", "-n1", merge).split()[1:]
    assert heads["2"] in parents and len(parents) == 2  # a real merge: both sides reachable
    assert git(remote, "merge-base", "--is-ancestor", merge, result.head_commit) == ""
    assert any(line.startswith("🔀 Conflict in task 3's dependencies") for line in lines)
    assert any(line.startswith("✅ Conflict resolved") for line in lines)


def test_integration_conflict_resolved_and_pushed(sides):
    remote, repo, heads = sides
    result = integrate(repo, heads, policy())
    assert result.complete and result.pushed and result.conflict_branch is None
    assert git(remote, "show", f"{result.branch}:routes.py") == BOTH
    [resolution] = result.resolutions
    assert resolution.where == "level 0 integration" and resolution.tasks == ["1", "2"]
    assert result.predicted_conflicts == [("1", "2", ["routes.py"])]


FAILURES = {
    "the resolver fails": (policy("fail"), "it exited with code 3"),
    "markers are left": (policy("leave-markers"), "conflict markers are left in routes.py"),
    "verify fails": (
        policy(verify=(sys.executable, "-c", "raise SystemExit(4)")),
        "failed: exited with code 4",
    ),
    "the resolver times out": (policy("sleep", timeout=2), "exceeded its timeout of 2 s"),
}


@pytest.mark.parametrize("case", FAILURES, ids=list(FAILURES))
def test_a_failed_resolution_fails_the_task_and_pushes_nothing(sides, case):
    remote, repo, heads = sides
    conflicts, why = FAILURES[case]
    started = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        run_task(dependent(repo, heads, conflicts))
    assert time.monotonic() - started < 30
    assert why in info.value.message and "nothing was pushed" in info.value.message
    assert info.value.details["conflicting_paths"] == ["routes.py"]
    assert (
        "demo agent: resolving the conflict in routes.py"
        in str(info.value.details["resolver_log_tail"])
        or case == "verify fails"
    )
    assert "feature/task-3-implementation" not in git(remote, "branch", "--list")
    assert list(Path(repo.workspace_root).iterdir()) == []  # every work tree removed


@pytest.mark.parametrize("case", FAILURES, ids=list(FAILURES))
def test_a_failed_resolution_leaves_the_integration_conflict_unpushed(sides, case):
    remote, repo, heads = sides
    conflicts, why = FAILURES[case]
    result = integrate(repo, heads, conflicts)
    assert not result.pushed and result.conflict_branch == "feature/task-2-implementation"
    assert why in (result.resolution_failure or "")
    assert "integration/level-0-run12345" not in git(remote, "branch", "--list")


def test_resolution_off_keeps_todays_behaviour(sides):
    remote, repo, heads = sides
    with pytest.raises(TaskFailed) as info:
        run_task(dependent(repo, heads, ConflictPolicy()))
    assert "conflict with each other" in info.value.message
    assert "resolve: agent" in info.value.message  # the way out is named
    result = integrate(repo, heads, ConflictPolicy())
    assert result.conflict_branch and not result.pushed and result.resolutions == []
    assert result.resolution_failure is None
    assert "feature/task-3-implementation" not in git(remote, "branch", "--list")


def test_the_resolver_reads_both_sides_in_its_prompt(sides, tmp_path):
    _, repo, heads = sides
    seen = tmp_path / "prompt-seen.md"
    code = (
        "import os, shutil; shutil.copy(os.environ['CTO_PROMPT_FILE'], "
        f"{str(seen)!r}); open('routes.py', 'w').write({BOTH!r})"
    )
    spec = AgentSpec(preset=None, command=(sys.executable, "-c", code), timeout_seconds=60)
    spec = AgentSpec(**{**spec.__dict__, "sandbox": "none"})
    result = run_task(dependent(repo, heads, ConflictPolicy(resolve="agent", agent=spec)))
    prompt = seen.read_text()
    assert "# Resolve a merge conflict: `feature/task-2-implementation` into" in prompt
    assert "- `routes.py`" in prompt
    assert "### Task 1: Page 1" in prompt and "### Task 2: Page 2" in prompt
    assert "details of 2" in prompt
    assert result.resolutions[0].verify == "not configured"


@pytest.mark.slow
def test_through_dagster_warn_check_pr_section_and_counts(make_project):
    from tests.fake_github import FakeGitHub

    tasks = [
        demo_task(1, files={"routes.py": ONE}),
        demo_task(2, files={"routes.py": TWO}),
        demo_task(3, deps=[1, 2]),
    ]
    with FakeGitHub() as github:
        project = make_project(
            tasks,
            settings={
                **github.settings(),
                "conflicts": {"resolve": "agent", "verify": list(COMPILE)},
            },
        )
        result = project.execute(CTO_TEST_TOKEN="ghp_x")
        pulls = list(github.pulls)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance
    from cto_dagster.defs.run_records import conflict_counts

    run_id = project.runs()[0].run_id
    with open_instance(project.home) as instance:
        checks = check_evaluations(instance, run_id)
        counts = conflict_counts(instance, run_id)
        task3 = instance.get_latest_materialization_event(dg.AssetKey(["proj", "task_003"]))
    for asset in ("task_003", "integration_level_0"):
        check = checks[(asset, "resolved_conflicts")]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert check.description == "resolved by an agent: review these files: routes.py"
    assert checks[("task_001", "resolved_conflicts")].passed
    assert checks[("integration_level_0", "merge_conflicts")].passed
    meta = task3.asset_materialization.metadata
    assert meta["conflicts_resolved"].value == 1
    assert "| feature/task-2-implementation |" in meta["conflict_resolutions"].value
    assert counts == {"conflicts_predicted": 1, "conflicts_resolved": 2, "conflicts_left": 0}
    level0 = next(p for p in pulls if p["title"].startswith("Integration PR: Level 0"))
    assert "## Conflicts resolved by an agent" in level0["body"]
    assert "`routes.py`" in level0["body"]
