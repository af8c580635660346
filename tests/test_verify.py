"""Verified work (issue 28), in the core on real repositories: the project's checks run on the
agent's work in its sandbox; a failure is repaired by the agent with the failing output, or
recorded (and pushed, for people to see); a failure before the agent is blamed on the
dependencies; checks see no secret."""

import sys

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.settings.models import VerifySettings
from cto_dagster.core.task_run.step import Repository, TaskFailed, TaskRunRequest, run_task
from cto_dagster.core.task_run.verify import VerifyPolicy
from cto_dagster.core.taskmaster import parse_tasks
from tests.helpers import bare_git

# the check: calc.py's add(), where there is one, must add (the base has none: it passes)
CHECK = (
    sys.executable,
    "-c",
    "import os, sys\nif os.path.exists('calc.py'):\n"
    "    import calc; sys.exit(0 if calc.add(2, 3) == 5 else 1)",
)
# the same, but calc.py must exist (the base fails it)
STRICT = (sys.executable, "-c", "import calc, sys; sys.exit(0 if calc.add(2, 3) == 5 else 1)")
BROKEN = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"

# an agent that writes broken code first; on a repair it reads the failing output it was given
# and writes the fix (as a model would, from the output)
REPAIRING_AGENT = f"""
import os, pathlib
attempt = int(os.environ.get("CTO_REPAIR_ATTEMPT", "0"))
if attempt:
    output = pathlib.Path(os.environ["CTO_CHECK_OUTPUT_FILE"]).read_text()
    assert "exited with code 1" in output, output
    pathlib.Path("repairs.txt").write_text(f"repair {{attempt}}\\n")
    pathlib.Path("calc.py").write_text({FIXED!r})
else:
    pathlib.Path("calc.py").write_text({BROKEN!r})
"""


def agent(code: str) -> AgentSpec:
    return AgentSpec(preset=None, command=(sys.executable, "-c", code), timeout_seconds=60)


def one_task():
    return parse_tasks([{"id": 1, "title": "Add numbers"}], [])["1"]


@pytest.fixture
def repo(tmp_path):
    remote = create_sample_repository(tmp_path / "s", '{"master": {"tasks": []}}')
    return Repository(url=str(remote), workspace_root=str(tmp_path / "ws"))


def request(repo, code: str, check=CHECK, **policy) -> TaskRunRequest:
    return TaskRunRequest(
        task=one_task(),
        level=0,
        repository=repo,
        agent=agent(code),
        verify=VerifyPolicy(checks=(check,), **policy),
    )


def show(repo, commit: str, path: str) -> str:
    return bare_git(repo.url, "show", f"{commit}:{path}")


def test_a_failing_check_is_repaired_by_the_agent_with_the_failing_output(repo):
    lines: list[str] = []
    result = run_task(request(repo, REPAIRING_AGENT, repair_attempts=1), log=lines.append)
    verification = result.verification
    assert verification is not None and verification.passed and verification.repaired
    assert [r.label for r in verification.rounds] == ["after the agent", "after repair 1"]
    assert not verification.rounds[0].passed and verification.rounds[1].passed
    assert [(r.attempt, r.result) for r in verification.repairs] == [(1, "passed")]
    assert show(repo, result.head_commit, "calc.py") == FIXED
    assert show(repo, result.head_commit, "repairs.txt") == "repair 1\n"
    assert verification.baseline is not None and verification.baseline.passed
    data = verification.metadata()
    assert data["verified"] == "passed" and data["repair_attempts"] == 1
    assert data["check_seconds"] > 0
    assert any("repair attempt 1 of 1" in line for line in lines)


def test_a_task_whose_checks_still_fail_is_pushed_but_not_verified(repo):
    """No repair left: the work is pushed (nothing lost) and the verdict says what failed."""
    result = run_task(request(repo, REPAIRING_AGENT, repair_attempts=0))
    verification = result.verification
    assert verification is not None and not verification.passed
    assert show(repo, result.head_commit, "calc.py") == BROKEN
    failed = verification.rounds[-1].failed
    assert failed is not None and failed.exit_code == 1
    assert "`python" in verification.summary() and "exited with code 1" in verification.summary()


def test_a_check_failing_before_the_agent_is_blamed_on_the_dependencies(repo):
    """The base has no calc.py: the check fails at baseline; by default the agent never runs."""
    ran = "open('agent-ran', 'w').write('yes')"
    with pytest.raises(TaskFailed) as failed:
        run_task(request(repo, ran, STRICT))
    message = failed.value.message
    assert "already fail before the agent started" in message
    assert "the base branch main" in message and "not this task's" in message
    assert not failed.value.retryable


def test_baseline_repair_gives_the_agent_the_failure_to_fix(repo):
    fix = (
        "import os, pathlib\n"
        "assert 'already fail before your work' in open(os.environ['CTO_PROMPT_FILE']).read()\n"
        f"pathlib.Path('calc.py').write_text({FIXED!r})\n"
    )
    result = run_task(request(repo, fix, STRICT, baseline="repair"))
    assert result.verification is not None and result.verification.passed
    assert not result.verification.repairs


def test_checks_see_no_secret(repo, monkeypatch, tmp_path):
    """The token is in the step's environment; a check looking for it finds nothing."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secretvalue123")
    guarded = Repository(
        url=repo.url,
        workspace_root=repo.workspace_root,
        denied_env=("GITHUB_TOKEN",),
        secrets=("ghp_secretvalue123",),
    )
    snoop = (
        sys.executable,
        "-c",
        "import os, sys; print(sorted(os.environ)); "
        "sys.exit(3 if 'GITHUB_TOKEN' in os.environ else 0)",
    )
    write = f"open('calc.py', 'w').write({FIXED!r})"
    result = run_task(
        TaskRunRequest(
            task=one_task(),
            level=0,
            repository=guarded,
            agent=agent(write),
            verify=VerifyPolicy(checks=(snoop,)),
        )
    )
    assert result.verification is not None and result.verification.passed


def test_verify_settings_take_argv_lists_and_task_overrides():
    settings = VerifySettings(checks=[["npm", "test"]], setup=[["npm", "ci"]])
    policy = settings.for_task({"verify": {"checks": [["npm", "run", "lint"]]}})
    assert policy.checks == (("npm", "run", "lint"),) and policy.setup == (("npm", "ci"),)
    assert settings.for_task(None).checks == (("npm", "test"),)
    with pytest.raises(ValueError, match="valid list"):
        VerifySettings(checks=["npm test"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="argv list of non-empty strings"):
        VerifySettings(checks=[["npm", ""]])
    with pytest.raises(ValueError, match=r"metadata\.verify"):
        settings.for_task({"verify": {"checks": "npm test"}})
    with pytest.raises(ValueError, match=r"metadata\.verify must be a mapping"):
        settings.for_task({"verify": ["npm", "test"]})


def test_a_setup_failing_before_the_agent_is_retryable_and_says_so(repo):
    """A setup that fails (a registry down, the network) is not blamed on the dependencies alone,
    and a retry may help."""
    failing = (sys.executable, "-c", "raise SystemExit('registry unreachable')")
    task = TaskRunRequest(
        task=one_task(),
        level=0,
        repository=repo,
        agent=agent("open('agent-ran', 'w').write('yes')"),
        verify=VerifyPolicy(setup=(failing,), checks=(CHECK,)),
    )
    with pytest.raises(TaskFailed) as failed:
        run_task(task)
    assert "setup failed before the agent started" in failed.value.message
    assert "registry unreachable" in failed.value.message and failed.value.retryable
