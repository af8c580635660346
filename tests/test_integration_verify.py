"""Integration is tested (issue 28, item 4), in the core on real repositories: two tasks that
each pass the project's checks alone break together (one renames a function the other's new
code calls); the checks catch it on the merged head. Without repair the branch is pushed for
people to see and the verdict says what failed; with `integration_repair: agent` an agent given
the failing output fixes it, the fix is committed on top of the merge and only a head that
passes is pushed."""

import sys
from pathlib import Path

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.integration.checks import verification_report
from cto_dagster.core.integration.level_merge import IntegrationRequest, integrate_level
from cto_dagster.core.task_run.conflict_resolution import ConflictPolicy
from cto_dagster.core.task_run.step import Repository, TaskRunRequest, run_task
from cto_dagster.core.task_run.verify import VerifyPolicy
from cto_dagster.core.taskmaster import parse_tasks
from tests.helpers import bare_git

A = "def greet():\n    return 'hi'\n"
B = "import a\n\n\ndef main():\n    return 'ok'\n"
RENAMED = "def hello():\n    return 'hi'\n"  # task 1: greet -> hello
CALLS = "import a\n\n\ndef main():\n    return a.greet()\n"  # task 2: calls the old name
FIXED = CALLS.replace("greet", "hello")
CHECK = (sys.executable, "-c", "import b; b.main()")
BRANCH = "integration/level-0-run12345"

# a repairing agent, as a model would be: it reads the failing output it was given and fixes
# the call; it checks what it was told first (exit 5: the prompt or the output was wrong)
REPAIRING_AGENT = """
import os, pathlib, sys
output = pathlib.Path(os.environ["CTO_CHECK_OUTPUT_FILE"]).read_text()
prompt = pathlib.Path(os.environ["CTO_PROMPT_FILE"]).read_text()
told = (
    os.environ.get("CTO_REPAIR_ATTEMPT") == "1"
    and "has no attribute 'greet'" in output
    and "### Task 1: Rename greet" in prompt and "### Task 2: Call greet" in prompt
    and "has no attribute 'greet'" in prompt and "`python -c import b; b.main()`" in prompt
)
if not told:
    print(output, prompt)
    sys.exit(5)
b = pathlib.Path("b.py")
b.write_text(b.read_text().replace("a.greet()", "a.hello()"))
"""
# one that does something, but not the fix
USELESS_AGENT = "open('notes.txt', 'w').write('looked at it\\n')"
# one that fixes the call but leaves conflict markers behind (where the check does not look)
MARKERS_AGENT = (
    f"open('b.py', 'w').write({FIXED!r}); open('notes.md', 'w').write("
    + repr("<<<<<<< ours\nx = 1\n=======\nx = 2\n>>>>>>> theirs\n")
    + ")"
)


def agent(code: str) -> AgentSpec:
    return AgentSpec(preset=None, command=(sys.executable, "-c", code), timeout_seconds=60)


def writer(path: str, content: str) -> AgentSpec:
    return agent(f"open({path!r}, 'w').write({content!r})")


TASKS = [
    {"id": 1, "title": "Rename greet to hello", "details": "a.py: greet() becomes hello()"},
    {"id": 2, "title": "Call greet from main", "details": "b.py: main() returns a.greet()"},
]


def git(remote, *args) -> str:
    return bare_git(remote, *args)


@pytest.fixture
def sides(tmp_path):
    """A remote with two task branches that each pass the check alone (run with it)."""
    remote = create_sample_repository(
        tmp_path / "s", '{"master": {"tasks": []}}', extra_files={"a.py": A, "b.py": B}
    )
    repo = Repository(url=str(remote), workspace_root=str(tmp_path / "ws"))
    tasks = parse_tasks(TASKS, [])
    heads = {}
    for task_id, (path, content) in (("1", ("a.py", RENAMED)), ("2", ("b.py", CALLS))):
        result = run_task(
            TaskRunRequest(
                task=tasks[task_id],
                level=0,
                repository=repo,
                agent=writer(path, content),
                verify=VerifyPolicy(checks=(CHECK,)),
            )
        )
        assert result.verification is not None and result.verification.passed  # alone: fine
        heads[task_id] = result.head_commit
    return remote, repo, heads, tasks


def integrate(sides, repair: str = "off", repairer: str | None = None, **policy):
    _, repo, heads, tasks = sides
    lines: list[str] = []
    result = integrate_level(
        IntegrationRequest(
            level=0,
            run_token="run12345",
            repository=repo,
            base_branch="main",
            previous_commit=None,
            tasks=dict(heads),
            conflicts=ConflictPolicy(agent=agent(repairer) if repairer else None),
            agent=agent("raise SystemExit('the project agent must not run')"),
            task_info=dict(tasks),
            verify=VerifyPolicy(checks=(CHECK,), integration_repair=repair, **policy),
        ),
        log=lines.append,
    )
    return result, lines


def parents(remote, commit: str) -> list[str]:
    return git(remote, "rev-list", "--parents", "-n1", commit).split()[1:]


def test_a_semantic_conflict_fails_the_checks_and_is_pushed_for_people_to_see(sides):
    remote, repo, heads, _ = sides
    result, lines = integrate(sides)
    verification = result.verification
    assert verification is not None and not verification.passed
    assert result.pushed and git(remote, "rev-parse", BRANCH).strip() == result.head_commit
    # what is pushed is the merge itself, nothing added: both tasks' work, unrepaired
    assert git(remote, "show", f"{BRANCH}:b.py") == CALLS
    assert git(remote, "show", f"{BRANCH}:a.py") == RENAMED
    assert heads["2"] in parents(remote, result.head_commit)
    [checked] = verification.rounds
    assert checked.label == "integration"
    failed = checked.failed
    assert failed is not None and failed.argv == CHECK and failed.exit_code == 1
    assert "has no attribute 'greet'" in failed.output_tail
    data = verification.metadata()
    assert data["verified"] == "failed" and data["check_seconds"] > 0
    assert "exited with code 1" in verification.summary()
    assert not result.repaired_by_agent and not verification.repairs
    assert verification_report(result.checked).startswith("❌ The project's checks fail")
    assert any(line.startswith("❌ Level 0 integration: checks failed") for line in lines)
    assert list(Path(repo.workspace_root).iterdir()) == []  # the work tree is removed


def test_the_agent_repairs_the_merge_and_only_the_verified_head_is_pushed(sides):
    remote, repo, heads, _ = sides
    result, lines = integrate(sides, repair="agent", repairer=REPAIRING_AGENT)
    verification = result.verification
    assert verification is not None and verification.passed and verification.repaired
    assert [r.label for r in verification.rounds] == [
        "integration",
        "integration after repair 1",
    ]
    assert [(r.attempt, r.result) for r in verification.repairs] == [(1, "passed")]
    assert result.pushed and result.repaired_by_agent
    head = git(remote, "rev-parse", BRANCH).strip()
    assert head == result.head_commit and git(remote, "show", f"{head}:b.py") == FIXED
    # the fix is one commit on top of the merge (whose parents are the task branches)
    [merge] = parents(remote, head)
    assert heads["2"] in parents(remote, merge)
    message = git(remote, "log", "-1", "--format=%B", head)
    assert message.startswith("Fix integration of level 0: checks `python -c import b; b.main()`")
    assert "(repaired by the custom command agent)" in message.splitlines()[0]
    fix = result.checked.fix
    assert fix is not None and fix.commit == head and fix.files == ["b.py"]
    assert fix.insertions == 1 and fix.deletions == 1
    report = verification_report(result.checked)
    assert report.startswith("✅ The project's checks pass on this branch")
    assert "`b.py`" in report and head[:12] in report
    assert any("the custom command agent repairs it (attempt 1 of 1)" in line for line in lines)
    assert list(Path(repo.workspace_root).iterdir()) == []


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (USELESS_AGENT, "checks failed"),
        ("raise SystemExit(3)", "the agent exited with code 3"),
        (MARKERS_AGENT, "conflict markers were added to notes.md"),
    ],
    ids=["not fixed", "the agent fails", "markers left"],
)
def test_a_failed_repair_pushes_nothing(sides, code, why):
    remote, _, _, _ = sides
    result, _ = integrate(sides, repair="agent", repairer=code)
    verification = result.verification
    assert verification is not None and not verification.passed
    assert not result.pushed and result.head_commit is None
    assert BRANCH not in git(remote, "branch", "--list")
    [repair] = verification.repairs
    assert why in repair.result
    assert not result.repaired_by_agent


def test_no_checks_on_the_integration_branch_when_turned_off(sides):
    result, _ = integrate(sides, integration=False)
    assert result.pushed and result.checked is None and result.verification is None


def _project(make_project, github, **verify):
    from tests.conftest import demo_task

    tasks = [
        demo_task(1, title="Rename greet to hello", files={"a.py": RENAMED}),
        demo_task(2, title="Call greet from main", files={"b.py": CALLS}),
        demo_task(3, deps=[1], files={"c.txt": "three\n"}),
    ]
    return make_project(
        tasks,
        settings={**github.settings(), "verify": {"checks": [list(CHECK)], **verify}},
        files={"a.py": A, "b.py": B},
    )


def _outcome(project):
    """The run's check evaluations and each integration asset's latest materialization."""
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance
    from tests.helpers import check_evaluations

    run_id = project.runs()[0].run_id
    with open_instance(project.home) as instance:
        checks = check_evaluations(instance, run_id)
        levels = [
            instance.get_latest_materialization_event(
                dg.AssetKey(["proj", f"integration_level_{n}"])
            )
            for n in (0, 1)
        ]
    return checks, [e.asset_materialization.metadata if e else None for e in levels]


def _step_statuses(project) -> dict[str, str]:
    """Step key -> how it ended, in the project's first run (a step not started is absent)."""
    from cto_dagster.commands.runs.instance_home import open_instance

    with open_instance(project.home) as instance:
        stats = instance.get_run_step_stats(project.runs()[-1].run_id)
    return {s.step_key: s.status.value for s in stats}


@pytest.mark.slow
def test_through_dagster_the_failing_check_blocks_the_next_stage(make_project):
    import dagster as dg

    from tests.fake_github import FakeGitHub

    with FakeGitHub() as github:
        project = _project(make_project, github)
        result = project.execute(CTO_TEST_TOKEN="ghp_x")
        pulls = list(github.pulls)
    assert result.returncode != 0  # the blocking check fails the run
    checks, (level0, level1) = _outcome(project)
    steps = _step_statuses(project)
    # the blocking check fails the stage's step, so the next stage's step never starts
    assert steps["proj__integration_level_0"] == "FAILURE"
    assert "proj__integration_level_1" not in steps and steps["proj__task_003"] == "SUCCESS"
    check = checks[("integration_level_0", "integration_verified")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description.startswith("failed: `python -c import b; b.main()`")
    assert "has no attribute 'greet'" in check.metadata["failing_output_tail"].value
    assert "| integration | check | `python -c import b; b.main()` | 1 |" in (
        check.metadata["commands"].value
    )
    assert checks[("integration_level_0", "merge_conflicts")].passed
    assert checks[("task_001", "verified")].passed and checks[("task_002", "verified")].passed
    assert level0["verified"].value == "failed" and level0["repaired_by_agent"].value is False
    assert level0["check_seconds"].value > 0 and "setup_seconds" in level0
    # pushed for people to see; the stage after it did not start, though its task ran
    branches = project.git("branch", "--list")
    assert "integration/level-0-" in branches and "integration/level-1-" not in branches
    assert level1 is None and ("integration_level_1", "integration_verified") not in checks
    assert "feature/task-3-implementation" in branches
    [pull] = pulls
    assert "## Verified" in pull["body"] and "❌ The project's checks fail" in pull["body"]
    # materialized on its own later, the next stage still refuses the unverified branch
    alone = project.execute("--op-selection", "proj__integration_level_1")
    assert alone.returncode != 0
    assert "integration branch did not pass the project's checks" in alone.stdout + alone.stderr
    assert "integration/level-1-" not in project.git("branch", "--list")


@pytest.mark.slow
def test_through_dagster_the_agent_repairs_the_merge_and_the_next_stage_stacks_on_it(
    make_project,
):
    from tests.fake_github import FakeGitHub

    with FakeGitHub() as github:
        project = _project(make_project, github, integration_repair="agent")
        with project.config.open() as handle:
            settings = __import__("yaml").safe_load(handle)
        settings["projects"][0]["conflicts"] = {
            "agent": {"command": [sys.executable, "-c", REPAIRING_AGENT]}
        }
        project.config.write_text(__import__("yaml").safe_dump(settings), encoding="utf-8")
        result = project.execute(CTO_TEST_TOKEN="ghp_x")
        pulls = list(github.pulls)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checks, (level0, level1) = _outcome(project)
    assert checks[("integration_level_0", "integration_verified")].passed
    assert checks[("integration_level_1", "integration_verified")].passed
    assert level0["verified"].value == "passed" and level0["repaired_by_agent"].value is True
    head, fix = level0["head_commit"].value, level0["repair_commit"].value
    assert level0["files_repaired_by_agent"].value == "b.py"
    assert project.git("show", f"{head}:b.py") == FIXED
    # the fix on top of the merges, the tasks' status written back on top of it
    assert project.git("rev-parse", f"{head}^").strip() == fix
    assert project.git("log", "-1", "--format=%s", fix).startswith("Fix integration of level 0")
    assert project.git("log", "-1", "--format=%s", head).startswith("TaskMaster: tasks 1, 2")
    assert level1["start_commit"].value == head  # the next stage stacks on the fixed head
    assert level1["repaired_by_agent"].value is False
    level0_pull = next(p for p in pulls if p["title"].startswith("Integration PR: Level 0"))
    assert "🩹 Repaired by an agent" in level0_pull["body"] and "`b.py`" in level0_pull["body"]
