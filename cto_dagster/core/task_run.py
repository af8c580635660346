"""One task step, start to finish, with no Dagster in sight.

Clone into a fresh workspace, cut `feature/task-<id>-implementation` from the base branch with the
dependencies' recorded head commits merged in, run the agent, commit what it left, and push with a
lease so that nothing anyone else pushed is overwritten. The workspace is removed whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import git

from cto_dagster.core.agents import AgentSpec, render_prompt, run_agent, task_environment
from cto_dagster.core.gitops import (
    BranchMoved,
    GitError,
    Identity,
    MergeConflict,
    Workspace,
    git_environment,
)
from cto_dagster.core.names import task_branch
from cto_dagster.core.taskmaster import Task
from cto_dagster.core.workspaces import new_workspace


@dataclass(frozen=True)
class Repository:
    """Where the work lives and how git reaches it."""

    url: str
    base_branch: str = "main"
    identity: Identity = field(default_factory=Identity)
    git_env: Mapping[str, str] = field(default_factory=dict)  # credentials, from credentials.py
    secret_env_names: tuple[str, ...] = ()  # kept from the agent's environment
    workspace_root: str | None = None
    commit_exclude: tuple[str, ...] = ()  # gitignore patterns the agent's leftovers are held to


@dataclass(frozen=True)
class DependencyHead:
    task_id: str
    commit: str | None  # as recorded by the dependency's materialization

    @property
    def branch(self) -> str:
        return task_branch(self.task_id)


@dataclass(frozen=True)
class TaskRunRequest:
    task: Task
    level: int
    repository: Repository
    agent: AgentSpec
    dependencies: tuple[DependencyHead, ...] = ()
    previous_head: str | None = None  # our last recorded head of this task's branch


@dataclass
class TaskRunResult:
    task_id: str
    branch: str
    base_branch: str
    base_commit: str
    start_commit: str
    head_commit: str
    merged_dependencies: list[str]
    files_changed: list[str]
    insertions: int
    deletions: int
    started_at: float
    finished_at: float
    agent_exit_code: int
    agent_seconds: float
    agent_log_tail: str
    replaced_commit: str | None

    @property
    def duration_seconds(self) -> float:
        return self.finished_at - self.started_at


class TaskFailed(Exception):
    """The task did not produce a branch; `retryable` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool, details: Mapping[str, object] | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.details = dict(details or {})


def _agent_environment(request: TaskRunRequest, task_env: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in request.repository.secret_env_names}
    for name in list(env):
        if name.startswith(("GIT_", "CTO_GIT_", "DAGSTER_")):
            env.pop(name)
    env.update(request.agent.env)
    env.update(task_env)
    # agents may commit on their own: they get an identity, never credentials
    identity = request.repository.identity
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=identity.name,
        GIT_AUTHOR_EMAIL=identity.email,
        GIT_COMMITTER_NAME=identity.name,
        GIT_COMMITTER_EMAIL=identity.email,
    )
    return env


def _merge_dependencies(ws: Workspace, request: TaskRunRequest, branch: str) -> list[str]:
    heads: list[tuple[str, str]] = []
    for dep in request.dependencies:
        commit = dep.commit or ws.cloned_head(dep.branch)
        if commit is None:
            raise TaskFailed(
                f"dependency task {dep.task_id} has no branch {dep.branch} and no recorded "
                "materialization: materialize it first",
                retryable=False,
            )
        if not ws.has_commit(commit):
            raise TaskFailed(
                f"dependency task {dep.task_id}: its recorded commit {commit[:12]} is no longer on "
                f"{dep.branch}; re-materialize task {dep.task_id}",
                retryable=False,
            )
        heads.append((dep.branch, commit))
    for i, (left_branch, left) in enumerate(heads):
        for right_branch, right in heads[i + 1 :]:
            paths = ws.predict_conflict(left, right)
            if paths:
                raise TaskFailed(
                    f"the branches of this task's dependencies conflict with each other: "
                    f"{left_branch} and {right_branch} both change {', '.join(paths[:20])}. "
                    "Resolve the conflict on one of them (or add a dependency between the tasks) "
                    "and re-run.",
                    retryable=False,
                    details={"conflicting_paths": paths, "branches": [left_branch, right_branch]},
                )
    for dep_branch, commit in heads:
        if ws.is_ancestor(commit, "HEAD"):
            continue  # already in, through another dependency
        try:
            ws.merge(commit, dep_branch, branch)
        except MergeConflict as exc:
            raise TaskFailed(str(exc), retryable=False, details={"paths": exc.paths}) from None
    return [b for b, _ in heads]


def _check_agent_left_branch_intact(ws: Workspace, branch: str, start: str) -> None:
    git_dir = ws.path / ".git"
    if not git_dir.is_dir() or not (git_dir / "HEAD").is_file():
        raise TaskFailed("the agent removed or replaced the repository's .git", retryable=False)
    try:
        current = ws.git.symbolic_ref("--quiet", "HEAD")
    except git.GitCommandError:
        current = "(detached HEAD)"
    if current != f"refs/heads/{branch}":
        raise TaskFailed(
            f"the agent switched away from {branch} (HEAD is now {current}); agents must stay "
            "on the task's branch",
            retryable=False,
        )
    if not ws.is_ancestor(start, "HEAD"):
        raise TaskFailed(
            f"the agent rewrote the history of {branch}: the starting commit {start[:12]} is no "
            "longer in it (reset or rebase)",
            retryable=False,
        )


def _our_unrecorded_push(ws: Workspace, task_id: str, remote: str, recorded: str | None) -> bool:
    """True when the remote head is a commit a run of ours pushed on top of the recorded head but
    never recorded (the step died between push and materialization): safe to replace."""
    try:
        message = ws.git.log("-1", "--format=%B", remote)  # the clone has the remote's branches
    except git.GitCommandError:
        return False
    trailers = dict(
        line.split(": ", 1)
        for line in message.splitlines()
        if line.startswith("Cto-") and ": " in line
    )
    return trailers.get("Cto-Task") == task_id and trailers.get("Cto-Replaces") == (
        recorded or "none"
    )


def run_task(request: TaskRunRequest, log=print) -> TaskRunResult:
    """Run one task; raise `TaskFailed` with a message a person can act on."""
    task, repo = request.task, request.repository
    branch = task_branch(task.id)
    started = time.time()
    folder = new_workspace("task", task.id, repo.workspace_root)
    env = git_environment(repo.identity, repo.git_env)
    try:
        ws = Workspace(folder / "repo", repo.url, env)
        try:
            ws.clone(repo.base_branch)
            base_commit = ws.rev(f"refs/remotes/origin/{repo.base_branch}")
            remote_now = ws.cloned_head(branch)
        except GitError as exc:
            raise TaskFailed(str(exc), retryable=True) from None
        if (
            remote_now
            and remote_now != request.previous_head
            and not _our_unrecorded_push(ws, task.id, remote_now, request.previous_head)
        ):
            recorded = (request.previous_head or "none")[:12]
            raise TaskFailed(
                f"branch {branch} is at {remote_now[:12]}, not at the commit our last run of this "
                f"task recorded ({recorded}): someone else pushed to it. Nothing was overwritten. "
                "Merge or move that work, or delete the branch, then re-run.",
                retryable=False,
            )
        ws.start_branch(branch, base_commit)
        ws.exclude_untracked(repo.commit_exclude)
        merged = _merge_dependencies(ws, request, branch)
        start_commit = ws.rev("HEAD")
        log(f"🚀 Task {task.id} started on {branch} (level {request.level})")

        prompt_file = folder / "prompt.md"
        prompt_file.write_text(render_prompt(task, request.level, branch), encoding="utf-8")
        task_file = folder / "task.json"
        task_file.write_text(json.dumps(dict(task.raw), default=str), encoding="utf-8")
        task_env = task_environment(
            task, request.level, branch, repo.base_branch, prompt_file, task_file
        )
        values = {
            "prompt_file": str(prompt_file),
            "prompt": prompt_file.read_text(encoding="utf-8"),
            "task_id": task.id,
            "task_file": str(task_file),
            "workdir": str(ws.path),
        }
        agent = run_agent(
            request.agent,
            values,
            ws.path,
            _agent_environment(request, task_env),
            folder / "agent.log",
        )
        failure_details = {
            "agent_exit_code": agent.exit_code,
            "agent_log_tail": agent.log_tail,
            "agent_seconds": round(agent.duration_seconds, 3),
        }
        if agent.timed_out:
            raise TaskFailed(
                f"⏱️ Task {task.id}: the agent exceeded its timeout of "
                f"{request.agent.timeout_seconds:g} s and was stopped (with everything it started)",
                retryable=True,
                details=failure_details,
            )
        if agent.exit_code != 0:
            raise TaskFailed(
                f"Task {task.id}: the agent exited with code {agent.exit_code}",
                retryable=True,
                details=failure_details,
            )
        _check_agent_left_branch_intact(ws, branch, start_commit)
        try:
            if ws.remote_head(branch) != remote_now:
                raise TaskFailed(
                    f"{branch} changed on the remote while the agent ran (did the agent push?); "
                    "nothing was overwritten",
                    retryable=False,
                    details=failure_details,
                )
            message = (
                f"Task {task.id}: {task.title}\n\n"
                f"Cto-Task: {task.id}\nCto-Replaces: {remote_now or 'none'}\n"
            )
            head = ws.commit_all(message)
            stats = ws.diff_stats(start_commit, head)
            ws.push(branch, remote_now)
        except GitError as exc:
            raise TaskFailed(str(exc), retryable=not isinstance(exc, BranchMoved)) from None
        finished = time.time()
        log(f"✅ Task {task.id} finished in {finished - started:.1f} s: {branch} at {head[:12]}")
        return TaskRunResult(
            task_id=task.id,
            branch=branch,
            base_branch=repo.base_branch,
            base_commit=base_commit,
            start_commit=start_commit,
            head_commit=head,
            merged_dependencies=merged,
            files_changed=list(stats["files"]),  # type: ignore[arg-type]
            insertions=int(stats["insertions"]),  # type: ignore[arg-type]
            deletions=int(stats["deletions"]),  # type: ignore[arg-type]
            started_at=started,
            finished_at=finished,
            agent_exit_code=agent.exit_code,
            agent_seconds=agent.duration_seconds,
            agent_log_tail=agent.log_tail,
            replaced_commit=remote_now,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
