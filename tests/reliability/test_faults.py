"""Faults, each ending in a clean, resumable state."""

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from cto_dagster.commands.demo import job_execute_command
from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.support.processes import ProcessIdentity
from cto_dagster.core.task_run.step import Repository, TaskFailed, TaskRunRequest, run_task
from cto_dagster.core.taskmaster import parse_tasks
from tests.conftest import demo_task
from tests.helpers import processes_matching


def find_agent(task_id: str, workspace_root: Path, timeout: float = 90) -> int:
    """The pid of the demo agent running task `task_id` under `workspace_root`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                b"cto_dagster.core.demo.agent" in cmdline
                and f"CTO_TASK_ID={task_id}".encode() in environ
                and any(
                    v.startswith(b"CTO_PROMPT_FILE=" + str(workspace_root).encode())
                    for v in environ
                )
            ):
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"agent of task {task_id} never started")


def parent_of(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def step_of(agent: int) -> int:
    """The step process running an agent: its nearest ancestor outside the sandbox."""
    pid = parent_of(agent)
    while b"bwrap" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
        pid = parent_of(pid)
    return pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path("/proc") / str(pid) / "stat"
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_step_killed_mid_agent_resumes_cleanly(make_project):
    project = make_project([demo_task(1, duration=60), demo_task(2), demo_task(3, deps=[1])])
    workspaces = project.root / "workspaces"
    command = job_execute_command()
    run = subprocess.Popen(
        command,
        env=project.env(),
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    agent = find_agent("1", workspaces)
    step = step_of(agent)
    assert b"bwrap" not in Path(f"/proc/{step}/cmdline").read_bytes()
    os.kill(step, signal.SIGKILL)  # the step process dies mid-agent
    assert run.wait(timeout=180) != 0
    assert "feature/task-1-implementation" not in project.git("branch", "--list")  # no half push

    resumed = project.cli("resume", CTO_DEMO_SPEED="0.01")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert not alive(agent), "the killed step's agent was left running"
    assert list(workspaces.iterdir()) == [], "stray workspaces remain"
    records = project.records()
    assert {"1", "3"} <= set(records) and all(r.status == "materialized" for r in records.values())
    head = project.git("rev-parse", "feature/task-1-implementation").strip()
    assert head == records["1"].metadata["head_commit"]


@pytest.mark.slow
def test_read_only_remote_is_retried_then_fails_clearly(make_project):
    project = make_project([demo_task(1)], settings={"max_retries": 1})
    hook = project.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'this remote is read-only' >&2\nexit 1\n")
    hook.chmod(0o755)
    main_before = project.git("rev-parse", "main")
    result = project.execute()
    assert result.returncode != 0
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    run_id = project.runs()[0].run_id
    with open_instance(project.home) as instance:
        retries = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
        ).records
    assert len(retries) == 1  # the retry policy tried again
    error = project.records(run_id)["1"].error
    assert "push of feature/task-1-implementation failed" in error
    assert "read-only" in error
    assert project.git("rev-parse", "main") == main_before
    assert "feature/" not in project.git("branch", "--list")


# ---- the agent misbehaves (no Dagster needed) ------------------------------------------------


@pytest.fixture
def repo(tmp_path):
    remote = create_sample_repository(tmp_path / "s", '{"master": {"tasks": []}}')
    return Repository(url=str(remote), workspace_root=str(tmp_path / "ws"))


def request(repo, task_id, argv, timeout=120, sandbox="auto"):
    task = parse_tasks([{"id": task_id, "title": "t"}], [])[str(task_id)]
    agent = AgentSpec(
        preset=None,
        command=tuple(argv),
        timeout_seconds=timeout,
        sandbox=sandbox,
        allow_no_changes=True,  # these agents test other things than their output
    )
    return TaskRunRequest(task=task, level=0, repository=repo, agent=agent)


def test_agent_printing_100_mb_keeps_memory_bounded(repo):
    code = (
        "import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(100 * 1024): "
        "sys.stdout.write(line)\nprint('THE END')"
    )
    tracemalloc.start()
    result = run_task(request(repo, 1, [sys.executable, "-c", code]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert len(result.agent_log_tail) <= 4000 and result.agent_log_tail.rstrip().endswith("THE END")
    assert list(Path(repo.workspace_root).iterdir()) == []


def test_agent_removing_git_is_detected(repo):
    with pytest.raises(TaskFailed, match=r"removed or replaced the repository's \.git"):
        run_task(request(repo, 2, ["rm", "-rf", ".git"]))


def test_agent_pushing_by_itself_is_detected(repo):
    """The agent's repository has no remote and no credentials; an agent that adds one and
    pushes (possible only without a sandbox, to a remote on the same disk) is caught."""
    push = [
        "sh",
        "-c",
        f"git remote add mine {repo.url} && git commit -q --allow-empty -m sneaky && "
        "git push -q mine HEAD:refs/heads/feature/task-3-implementation",
    ]
    with pytest.raises(TaskFailed, match="changed on the remote while the agent ran"):
        run_task(request(repo, 3, push, sandbox="none"))


def test_agent_switching_branch_is_detected(repo):
    with pytest.raises(TaskFailed, match="switched away from feature/task-4-implementation"):
        run_task(request(repo, 4, ["git", "checkout", "-q", "-b", "elsewhere"]))


def test_hung_agent_timeout_leaves_no_orphans(repo):
    seconds = 300_000 + time.time_ns() % 99_991  # a command line no other process has
    argv = ["sh", "-c", f"sleep {seconds} & sleep {seconds + 1} & sleep {seconds + 2}"]
    started = time.monotonic()
    with pytest.raises(TaskFailed, match="exceeded its timeout of 1 s"):
        run_task(request(repo, 5, argv, timeout=1))
    assert time.monotonic() - started < 30
    assert processes_matching(f"sleep {seconds}") == "", "the agent's children outlived it"


def test_stale_workspace_of_a_dead_step_is_reaped(repo, tmp_path):
    from cto_dagster.core.support.workspaces import (
        AGENT_FILE,
        OWNER_FILE,
        reap_stale,
        write_identity,
    )

    root = Path(repo.workspace_root)
    root.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = root / f"cto-task-9-p{dead.pid}-abcd"
    (stale / "repo").mkdir(parents=True)
    write_identity(stale, OWNER_FILE, dead.pid)
    write_identity(stale, AGENT_FILE, sleeper.pid)
    live = root / f"cto-task-8-p{os.getpid()}-efgh"
    live.mkdir()
    write_identity(live, OWNER_FILE, os.getpid())
    assert reap_stale(root) == [stale]
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    assert live.exists() and not stale.exists()


def test_a_recycled_agent_pid_is_never_killed(repo):
    """The agent recorded in a dead step's folder is gone, and its pid now belongs to another
    process (here: the same pid, another start time): that process lives on."""
    import json

    from cto_dagster.core.support.workspaces import AGENT_FILE, reap_stale

    root = Path(repo.workspace_root)
    root.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = root / f"cto-task-9-p{dead.pid}-abcd"
    stale.mkdir()
    recorded = ProcessIdentity.of(bystander.pid).as_metadata()
    recorded["process_start_ticks"] = str(int(recorded["process_start_ticks"]) - 1)
    (stale / AGENT_FILE).write_text(json.dumps(recorded))
    try:
        assert reap_stale(root) == [stale]
        assert bystander.poll() is None, "a process that merely has the recorded pid was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_an_agent_recorded_after_it_ended_is_never_judged_by_its_pid(tmp_path):
    """An agent that ended before its step wrote `agent.json` is recorded with this boot but no
    start time: its pid (and process group id) may since belong to another group, which lives
    on. Only a record made without /proc at all (no boot id) falls back to the bare pid."""
    import json

    from cto_dagster.core.support.workspaces import AGENT_FILE, reap_stale

    root = tmp_path / "ws"
    root.mkdir()
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = root / f"cto-task-9-p{dead.pid}-abcd"
    stale.mkdir()
    recorded = ProcessIdentity.of(bystander.pid).as_metadata()
    assert recorded["boot_id"], "this test needs /proc"
    recorded["process_start_ticks"] = ""  # /proc/<pid> was already gone when it was recorded
    (stale / AGENT_FILE).write_text(json.dumps(recorded))
    try:
        assert reap_stale(root) == [stale]
        assert bystander.poll() is None, "a group that merely has the recorded pgid was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_folder_without_its_owner_file_is_reaped_once_its_pid_was_recycled(tmp_path):
    """A step killed before it wrote `owner.json` leaves only the pid in its folder's name: a
    process holding that pid that started after the folder was last changed is not its owner
    (the folder is reaped, the process lives on); a living owner's folder stays."""
    from cto_dagster.core.support.workspaces import reap_stale

    root = tmp_path / "ws"
    root.mkdir()
    later = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        recycled = root / f"cto-task-9-p{later.pid}-efgh"
        recycled.mkdir()
        os.utime(recycled, (time.time() - 3600, time.time() - 3600))  # made an hour ago
        kept = root / f"cto-task-8-p{os.getpid()}-ijkl"
        kept.mkdir()
        assert reap_stale(root) == [recycled]
        assert kept.exists() and later.poll() is None
    finally:
        later.kill()
        later.wait()
