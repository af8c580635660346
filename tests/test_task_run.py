"""A task step on real repositories, without Dagster: branches, leases, conflicts, agents."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.task_run.step import (
    DependencyHead,
    Repository,
    TaskFailed,
    TaskRunRequest,
    run_task,
)
from cto_dagster.core.taskmaster import parse_tasks
from tests.helpers import processes_matching

DEMO = AgentSpec(preset="demo")


def python_agent(code: str, timeout: float = 60) -> AgentSpec:
    return AgentSpec(preset=None, command=(sys.executable, "-c", code), timeout_seconds=timeout)


@pytest.fixture
def remote(tmp_path) -> Path:
    return create_sample_repository(tmp_path / "sample", tasks_json='{"master": {"tasks": []}}')


def make_task(task_id, title=None, deps=(), **extra):
    raw = [
        {"id": task_id, "title": title or f"Task {task_id}", "dependencies": list(deps), **extra}
    ]
    for dep in deps:
        raw.append({"id": dep, "title": "dep"})
    problems = []
    return parse_tasks(raw, problems)[str(task_id)]


def request(remote, tmp_path, task, agent=DEMO, deps=(), previous=None, level=0, pushing=None):
    return TaskRunRequest(
        task=task,
        level=level,
        repository=Repository(url=str(remote), workspace_root=str(tmp_path / "ws")),
        agent=agent,
        dependencies=tuple(deps),
        previous_head=previous,
        pushing_head=pushing,
    )


def git_remote(remote, *args):
    return subprocess.run(
        ["git", f"--git-dir={remote}", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_run_pushes_branch_with_metadata_and_cleans_workspace(remote, tmp_path):
    result = run_task(request(remote, tmp_path, make_task(7)))
    assert result.branch == "feature/task-7-implementation"
    assert git_remote(remote, "rev-parse", result.branch) == result.head_commit
    assert result.files_changed == ["tasks/task-7.md"] and result.insertions > 0
    assert result.agent_exit_code == 0 and "demo agent: done" in result.agent_log_tail
    assert list((tmp_path / "ws").iterdir()) == []  # nothing left behind


def someone_commits(remote: Path, folder: Path, branch: str, amend: bool = False) -> str:
    """A person's commit on a task branch (a clone, a commit or an amend, a push)."""
    ident = ["-c", "user.name=x", "-c", "user.email=x@x"]
    subprocess.run(["git", "clone", "-q", "-b", branch, str(remote), str(folder)], check=True)
    (folder / "theirs.txt").write_text("mine")
    subprocess.run(["git", "-C", str(folder), "add", "--all"], check=True)
    if amend:  # keeping the message (and its trailers) of the task's commit
        commit = ["commit", "-q", "--amend", "--no-edit"]
    else:
        commit = ["commit", "-q", "-m", "their work"]
    subprocess.run(["git", *ident, "-C", str(folder), *commit], check=True)
    subprocess.run(["git", "-C", str(folder), "push", "-qf", "origin", branch], check=True)
    return git_remote(remote, "rev-parse", branch)


def test_rerun_replaces_only_what_our_last_run_recorded(remote, tmp_path):
    first = run_task(request(remote, tmp_path, make_task(1)))
    second = run_task(request(remote, tmp_path, make_task(1), previous=first.head_commit))
    assert second.replaced_commit == first.head_commit
    # what a re-run replaces is kept under a backup ref first
    backup = f"refs/cto-dagster/replaced/feature/task-1-implementation/{first.head_commit}"
    assert second.backup_ref == backup
    assert git_remote(remote, "rev-parse", backup) == first.head_commit
    # someone else pushes to the branch: the next run refuses and keeps their commit
    theirs = someone_commits(remote, tmp_path / "someone", "feature/task-1-implementation")
    with pytest.raises(TaskFailed) as info:
        run_task(request(remote, tmp_path, make_task(1), previous=second.head_commit))
    assert "someone else pushed to it" in info.value.message and not info.value.retryable
    assert git_remote(remote, "rev-parse", "feature/task-1-implementation") == theirs


def test_an_announced_push_that_was_never_recorded_is_ours(remote, tmp_path):
    """A step that died after pushing but before its materialization was recorded: the commit
    it announced before the push (an observation in Dagster) is this instance's record."""
    announced = []
    base = request(remote, tmp_path, make_task(1))
    first = run_task(TaskRunRequest(**{**base.__dict__, "before_push": announced.append}))
    assert announced == [first.head_commit]
    again = run_task(request(remote, tmp_path, make_task(1), previous=None, pushing=announced[0]))
    assert again.replaced_commit == first.head_commit


def test_trailers_are_not_proof_and_nothing_becomes_unreachable(remote, tmp_path):
    """A person amends the task's commit keeping its message (`Cto-Task` trailer and all), then
    a run from an instance with no record of the branch (a fresh DAGSTER_HOME)."""
    run_task(request(remote, tmp_path, make_task(1)))
    branch = "feature/task-1-implementation"
    amended = someone_commits(remote, tmp_path / "person", branch, amend=True)
    assert "Cto-Task: 1" in git_remote(remote, "log", "-1", "--format=%B", branch)
    with pytest.raises(TaskFailed) as info:
        run_task(request(remote, tmp_path, make_task(1), previous=None))
    assert "not at a commit this instance recorded" in info.value.message
    assert "adopt_existing_branches" in info.value.message
    assert git_remote(remote, "rev-parse", branch) == amended
    # the project says such branches are its own: replaced, and the person's commit kept
    adopting = Repository(
        url=str(remote), workspace_root=str(tmp_path / "ws"), adopt_existing_branches=True
    )
    base = request(remote, tmp_path, make_task(1))
    result = run_task(TaskRunRequest(**{**base.__dict__, "repository": adopting}))
    assert result.replaced_commit == amended
    assert git_remote(remote, "rev-parse", result.backup_ref) == amended
    refs = git_remote(remote, "for-each-ref", "--format=%(objectname)")
    assert amended in refs.split()  # reachable from a ref: nothing was lost


def test_dependencies_are_merged_from_recorded_commits(remote, tmp_path):
    one = run_task(request(remote, tmp_path, make_task(1)))
    two = run_task(request(remote, tmp_path, make_task(2)))
    three = run_task(
        request(
            remote,
            tmp_path,
            make_task(3, deps=[1, 2]),
            level=1,
            deps=[DependencyHead("1", one.head_commit), DependencyHead("2", two.head_commit)],
        )
    )
    files = git_remote(remote, "ls-tree", "-r", "--name-only", three.head_commit).split()
    assert {"tasks/task-1.md", "tasks/task-2.md", "tasks/task-3.md"} <= set(files)
    assert three.merged_dependencies == [
        "feature/task-1-implementation",
        "feature/task-2-implementation",
    ]
    log = git_remote(remote, "log", "--format=%s", three.head_commit)
    assert "Merge feature/task-1-implementation into feature/task-3-implementation" in log


def test_conflicting_dependencies_fail_before_the_agent_runs(remote, tmp_path):
    one = run_task(
        request(
            remote, tmp_path, make_task(1), python_agent("open('shared.txt','w').write('one\\n')")
        )
    )
    two = run_task(
        request(
            remote, tmp_path, make_task(2), python_agent("open('shared.txt','w').write('two\\n')")
        )
    )
    marker = tmp_path / "agent-ran"
    with pytest.raises(TaskFailed) as info:
        run_task(
            request(
                remote,
                tmp_path,
                make_task(3, deps=[1, 2]),
                python_agent(f"open({str(marker)!r},'w')"),
                deps=[DependencyHead("1", one.head_commit), DependencyHead("2", two.head_commit)],
            )
        )
    message = info.value.message
    assert "feature/task-1-implementation" in message and "feature/task-2-implementation" in message
    assert "shared.txt" in message
    assert not marker.exists()
    assert "feature/task-3-implementation" not in git_remote(remote, "branch", "--list")


def test_task_text_is_data_never_code(remote, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    title = "$(touch pwned) `touch pwned2` \"; rm -rf x; echo '; --upload-pack=evil"
    details = '"; touch pwned3 #'
    task = make_task("inj", title=title, details=details)
    agent = AgentSpec(
        preset=None,
        timeout_seconds=60,
        command=(
            "sh",
            "-c",
            'printf %s "$CTO_TASK_TITLE" > title.txt; printf %s "$CTO_TASK_DETAILS" > d.txt',
        ),
    )
    result = run_task(request(remote, tmp_path, task, agent))
    content = git_remote(remote, "show", f"{result.head_commit}:title.txt")
    assert content == title
    assert git_remote(remote, "show", f"{result.head_commit}:d.txt") == details
    assert title in git_remote(remote, "log", "-1", "--format=%B", result.head_commit)
    for name in ("pwned", "pwned2", "pwned3", "x"):
        assert not list(tmp_path.rglob(name)), name
    # the {prompt} placeholder passes the whole prompt as one argument
    echo = AgentSpec(
        preset=None,
        timeout_seconds=60,
        command=(
            sys.executable,
            "-c",
            "import sys; open('argv.txt','w').write(repr(sys.argv[1:]))",
            "{prompt}",
        ),
    )
    result = run_task(request(remote, tmp_path, make_task("inj2", title=title), echo))
    argv = eval(git_remote(remote, "show", f"{result.head_commit}:argv.txt"))
    assert len(argv) == 1 and title in argv[0]


def test_agent_timeout_ends_its_whole_process_group(remote, tmp_path):
    seconds = 400_000 + time.time_ns() % 99_991  # a command line no other process has
    script = f"sleep {seconds} & sleep {seconds + 1} & sleep {seconds + 2}"
    agent = AgentSpec(preset=None, timeout_seconds=1.5, command=("sh", "-c", script))
    started = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        run_task(request(remote, tmp_path, make_task(9), agent))
    assert time.monotonic() - started < 20
    assert "exceeded its timeout of 1.5 s" in info.value.message and info.value.retryable
    assert processes_matching(f"sleep {seconds}") == "", "orphaned agent processes remain"
    assert "feature/task-9-implementation" not in git_remote(remote, "branch", "--list")


def test_failing_agent_reports_exit_code_and_log(remote, tmp_path):
    agent = python_agent("print('something broke'); raise SystemExit(3)")
    with pytest.raises(TaskFailed) as info:
        run_task(request(remote, tmp_path, make_task(5), agent))
    assert "exited with code 3" in info.value.message
    assert "something broke" in info.value.details["agent_log_tail"]


def test_agent_that_resets_the_branch_is_caught(remote, tmp_path):
    one = run_task(request(remote, tmp_path, make_task(1)))
    agent = AgentSpec(
        preset=None, timeout_seconds=60, command=("git", "reset", "--hard", "--quiet", "HEAD~1")
    )
    with pytest.raises(TaskFailed, match="rewrote the history"):
        run_task(
            request(
                remote,
                tmp_path,
                make_task(2, deps=[1]),
                agent,
                deps=[DependencyHead("1", one.head_commit)],
            )
        )


def test_unknown_preset_and_missing_agent_binary(remote, tmp_path):
    with pytest.raises(ValueError, match="unknown agent preset"):
        AgentSpec(preset="nope").validate()
    missing = AgentSpec(preset=None, command=("no-such-agent-cli", "{prompt}"), timeout_seconds=9)
    with pytest.raises(TaskFailed) as info:
        run_task(request(remote, tmp_path, make_task(6), missing))
    assert "cannot start agent 'no-such-agent-cli': not found on PATH" in info.value.message
    assert not info.value.retryable  # a retry cannot install the binary
    assert "cannot start agent 'no-such-agent-cli'" in info.value.details["agent_log_tail"]


def test_agent_scaffolding_is_not_committed_but_tracked_files_are(tmp_path):
    from cto_dagster.core.settings import AGENT_SCAFFOLDING

    remote = create_sample_repository(
        tmp_path / "sample",
        tasks_json='{"master": {"tasks": []}}',
        extra_files={".aider.input.history": "tracked on purpose\n"},
    )
    agent = python_agent(
        "from pathlib import Path\n"
        "Path('.aider.chat.history.md').write_text('chat')\n"
        "Path('.aider.tags.cache.v4').mkdir()\n"
        "Path('.aider.tags.cache.v4/cache.db').write_text('db')\n"
        "Path('.claude').mkdir()\n"
        "Path('.claude/settings.local.json').write_text('{}')\n"
        "Path('.aider.input.history').write_text('changed by the agent')\n"
        "Path('src').mkdir()\n"
        "Path('src/app.py').write_text('print(1)')\n"
    )
    base = request(remote, tmp_path, make_task(3), agent=agent)
    repository = Repository(
        url=str(remote), workspace_root=str(tmp_path / "ws"), commit_exclude=AGENT_SCAFFOLDING
    )
    result = run_task(TaskRunRequest(**{**base.__dict__, "repository": repository}))
    assert sorted(result.files_changed) == [".aider.input.history", "src/app.py"]
    files = git_remote(remote, "ls-tree", "-r", "--name-only", result.branch).split()
    assert ".aider.chat.history.md" not in files and ".claude/settings.local.json" not in files
    assert git_remote(remote, "show", f"{result.branch}:.aider.input.history") == (
        "changed by the agent"
    )


def test_clone_never_copies_the_remotes_object_files(remote, tmp_path):
    """A local-path clone used to copy the remote's objects folder file by file, including the
    quarantine folder of a push arriving meanwhile, and failed when that push removed it. A
    dangling link in such a folder makes the old way fail every time."""
    quarantine = remote / "objects" / "tmp_objdir-incoming-test" / "d6"
    quarantine.mkdir(parents=True)
    (quarantine / "7880c8375cdc7494503e7f77584fa424108fc6").symlink_to(tmp_path / "gone")
    result = run_task(request(remote, tmp_path, make_task(4)))
    assert git_remote(remote, "rev-parse", result.branch) == result.head_commit


def test_an_agent_that_changes_nothing_fails_its_task_unless_allowed(remote, tmp_path):
    idle = python_agent("print('looked around, did nothing')")
    with pytest.raises(TaskFailed) as info:
        run_task(request(remote, tmp_path, make_task(1), idle))
    assert "changed nothing" in info.value.message and "allow_no_changes" in info.value.message
    assert "feature/task-1-implementation" not in git_remote(remote, "branch", "--list")
    # the task's own metadata allows it (a verification task, say)
    allowed = make_task(2, metadata={"allow_no_changes": True})
    result = run_task(request(remote, tmp_path, allowed, idle))
    assert result.files_changed == []
    # or the project does
    lenient = AgentSpec(preset=None, command=idle.command, allow_no_changes=True)
    assert run_task(request(remote, tmp_path, make_task(3), lenient)).files_changed == []


def test_large_task_text_never_goes_past_the_argument_limit(remote, tmp_path):
    details = "x" * 300_000  # more than Linux takes in one argument (128 KiB)
    big = make_task(4, details=details)
    argv_agent = AgentSpec(
        preset=None, command=(sys.executable, "-c", "pass", "{prompt}"), timeout_seconds=30
    )
    with pytest.raises(TaskFailed) as info:
        run_task(request(remote, tmp_path, big, argv_agent))
    assert "{prompt_file}" in info.value.message and not info.value.retryable
    # by file, the whole prompt reaches the agent
    file_agent = python_agent(
        "import sys; text = open(sys.argv[1]).read(); open('got.txt', 'w').write(str(len(text)))"
    )
    file_agent = AgentSpec(
        preset=None, command=(*file_agent.command, "{prompt_file}"), timeout_seconds=30
    )
    result = run_task(request(remote, tmp_path, big, file_agent))
    assert int(git_remote(remote, "show", f"{result.head_commit}:got.txt")) > 300_000


def test_the_prompt_tells_an_unattended_agent_what_its_dependencies_did(remote, tmp_path):
    one = run_task(request(remote, tmp_path, make_task(1)))
    copy = python_agent(
        "import os, shutil; shutil.copy(os.environ['CTO_PROMPT_FILE'], 'prompt-seen.md')"
    )
    dep = DependencyHead("1", one.head_commit, "Set up the database", ("db/schema.sql",))
    result = run_task(request(remote, tmp_path, make_task(2, deps=[1]), copy, deps=[dep]))
    prompt = git_remote(remote, "show", f"{result.head_commit}:prompt-seen.md")
    assert "no one will answer questions" in prompt
    assert "run the test strategy" in prompt
    assert "Leave `.taskmaster/` and `.gitignore` as they are" in prompt
    assert "Task 1: Set up the database" in prompt and "db/schema.sql" in prompt
