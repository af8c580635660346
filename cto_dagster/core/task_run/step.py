"""One task step, start to finish, with no Dagster in sight.

Cut `feature/task-<id>-implementation` from the base branch with the dependencies' recorded head
commits merged in (in the object cache, no work tree), check the agent's work tree out, run the
agent in its sandbox, record and check what it left, and push with a lease so that nothing anyone
else pushed is overwritten; what a push replaces is kept under a backup ref. The step's folder is
removed whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cto_dagster.core.agents import AgentSpec, SandboxUnavailable, render_prompt, sandbox_for
from cto_dagster.core.agents.presets import Usage
from cto_dagster.core.agents.prompt import DoneDependency
from cto_dagster.core.git.agent_work import RecordedTree, record_work_tree
from cto_dagster.core.git.cache import ObjectCache, backup_ref
from cto_dagster.core.git.command import BranchMoved, GitError
from cto_dagster.core.git.worktree import AgentWorkTree
from cto_dagster.core.support.names import task_branch
from cto_dagster.core.support.safe_fs import TreeProblem, remove_tree
from cto_dagster.core.support.workspaces import new_workspace
from cto_dagster.core.task_run.agent_session import AgentUnavailable, run_agent_in_tree
from cto_dagster.core.task_run.conflict_resolution import (
    Conflict,
    ConflictPolicy,
    Resolution,
    ResolutionFailed,
    Resolver,
    SideTask,
)
from cto_dagster.core.task_run.repository import Repository
from cto_dagster.core.task_run.verify import (
    CheckRunner,
    RepairAttempt,
    Verification,
    VerifyPolicy,
)
from cto_dagster.core.taskmaster import Task

__all__ = [
    "DependencyHead",
    "Repository",
    "TaskFailed",
    "TaskRunRequest",
    "TaskRunResult",
    "run_task",
]


@dataclass(frozen=True)
class DependencyHead:
    task_id: str
    commit: str | None  # as recorded by the dependency's materialization
    title: str = ""
    files: tuple[str, ...] = ()  # what it changed, for the agent's prompt
    details: str = ""  # the task's details, for a conflict resolver's prompt
    in_review: bool = False  # a `review` task: not run again; its branch's head is built on

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
    pushing_head: str | None = None  # a push this instance announced but never recorded
    before_push: Callable[[str], None] | None = None  # records the commit about to be pushed
    conflicts: ConflictPolicy = field(default_factory=ConflictPolicy)
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)


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
    backup_ref: str | None = None
    sandbox: str = "none"
    usage: Usage | None = None
    flattened_repositories: list[str] = field(default_factory=list)
    taskmaster_edits: list[str] = field(default_factory=list)
    status_set_by_agent: str | None = None
    resolutions: list[Resolution] = field(default_factory=list)  # conflicts an agent resolved
    prepare_seconds: float = 0.0  # started until the agent started: heads, merges, work tree
    publish_seconds: float = 0.0  # the agent's end until pushed: record, checks, commit, push
    verification: Verification | None = None  # the project's checks (None: not configured)

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


@dataclass
class _Start:
    base_commit: str
    remote_now: str | None
    start: str
    merged: list[str]
    resolutions: list[Resolution] = field(default_factory=list)


def _check_ownership(request: TaskRunRequest, branch: str, remote_now: str | None) -> None:
    """A branch is ours to replace only when its head is a commit this instance recorded;
    commit messages and trailers prove nothing (anyone can write them)."""
    ours = {request.previous_head, request.pushing_head} - {None}
    if remote_now is None or remote_now in ours or request.repository.adopt_existing_branches:
        return
    recorded = (request.previous_head or "nothing")[:12]
    raise TaskFailed(
        f"branch {branch} is at {remote_now[:12]}, not at a commit this instance recorded for "
        f"the task ({recorded}): someone else pushed to it, or it was made by another "
        "instance. Nothing was overwritten. Merge or move that work, or delete the branch, or "
        "set `adopt_existing_branches: true` for the project (the old head is then kept under "
        "refs/cto-dagster/replaced/), then re-run.",
        retryable=False,
    )


def _review_head(dep: DependencyHead, remote: Mapping[str, str | None]) -> DependencyHead:
    """A `review` dependency is built on as its branch stands now (reviewers may have pushed)."""
    head = remote.get(dep.branch)
    if head is None:
        raise TaskFailed(
            f"dependency task {dep.task_id} is in review, but its branch {dep.branch} does not "
            "exist: set its status to `done` if its work is merged, or `pending` to run it",
            retryable=False,
        )
    return replace(dep, commit=head)


def _dependency_commits(
    dependencies: Sequence[DependencyHead], cache: ObjectCache
) -> list[tuple[str, str]]:
    heads: list[tuple[str, str]] = []
    for dep in dependencies:
        if dep.commit is None:
            raise TaskFailed(
                f"dependency task {dep.task_id} has no recorded materialization in this "
                "instance: materialize it first",
                retryable=False,
            )
        if not cache.has_commit(dep.commit):
            raise TaskFailed(
                f"dependency task {dep.task_id}: its recorded commit {dep.commit[:12]} is no "
                f"longer in the repository ({dep.branch}); re-materialize task {dep.task_id}",
                retryable=False,
            )
        heads.append((dep.branch, dep.commit))
    return heads


def _dependency_conflict(paths: Sequence[str], left: str, right: str) -> TaskFailed:
    return TaskFailed(
        f"the branches of this task's dependencies conflict with each other: "
        f"{left} and {right} both change {', '.join(paths[:20])}. "
        "Resolve the conflict on one of them (or add a dependency between the tasks, or let an "
        "agent resolve conflicts: `conflicts: {resolve: agent}`) and re-run.",
        retryable=False,
        details={"conflicting_paths": list(paths), "branches": [left, right]},
    )


def _merge_dependencies(
    request: TaskRunRequest,
    cache: ObjectCache,
    base: str,
    dependencies: Sequence[DependencyHead],
    branch: str,
    log,
) -> tuple[str, list[Resolution]]:
    """The task's starting commit: the base with every dependency merged in, `--no-ff`, in the
    cache (no work tree). A conflict fails the task before its agent runs, unless the project
    lets an agent resolve it (then the resolution is checked before it is built on)."""
    policy = request.conflicts
    heads = [(d, d.commit or "") for d in dependencies]  # checked by _dependency_commits
    if not policy.enabled:
        for i, (left, left_commit) in enumerate(heads):
            for right, right_commit in heads[i + 1 :]:
                tree, paths = cache.merge_tree(left_commit, right_commit)
                if tree is None:
                    raise _dependency_conflict(paths, left.branch, right.branch)
    resolver = Resolver(policy, request.agent, request.repository, log)
    start = base
    merged: list[DependencyHead] = []
    for dep, commit in heads:
        if cache.is_ancestor(commit, start):  # already in, through another dependency
            continue
        tree, paths = cache.merge_tree(start, commit)
        if tree is not None:
            start = cache.commit_tree(tree, [start, commit], f"Merge {dep.branch} into {branch}")
        elif not policy.enabled:
            ours = merged[-1].branch if merged else request.repository.base_branch
            raise _dependency_conflict(paths, ours, dep.branch)
        else:
            conflict = Conflict(
                where=f"task {request.task.id}'s dependencies",
                ours=start,
                theirs=commit,
                theirs_label=dep.branch,
                into=branch,
                ours_tasks=tuple(_side(d) for d in merged),
                theirs_tasks=(_side(dep),),
                task=request.task,
                level=request.level,
            )
            try:
                start = resolver.resolve(cache, conflict, paths)
            except ResolutionFailed as exc:
                ours = merged[-1].branch if merged else request.repository.base_branch
                failed = _dependency_conflict(paths, ours, dep.branch)
                raise TaskFailed(
                    f"Task {request.task.id}: {exc.message}",
                    retryable=False,
                    details={
                        **failed.details,
                        "resolver_log_tail": exc.resolution.resolver_log_tail,
                    },
                ) from None
        merged.append(dep)
    return start, resolver.resolutions


def _side(dep: DependencyHead) -> SideTask:
    return SideTask(dep.task_id, dep.title, dep.details, dep.files)


def _prepare(request: TaskRunRequest, cache: ObjectCache, branch: str, log) -> _Start:
    repo = request.repository
    reviewed = [d for d in request.dependencies if d.in_review]
    remote = cache.remote_heads([repo.base_branch, branch, *(d.branch for d in reviewed)])
    base_commit = repo.base_commit or remote[repo.base_branch]
    if base_commit is None:
        raise TaskFailed(f"base branch {repo.base_branch} does not exist", retryable=False)
    remote_now = remote[branch]
    _check_ownership(request, branch, remote_now)
    dependencies = [_review_head(d, remote) if d.in_review else d for d in request.dependencies]
    # the branch's head too: a replaced head is kept under a backup ref, pushed from the cache
    cache.ensure([base_commit, remote_now, *(d.commit for d in dependencies)])
    if not cache.has_commit(base_commit):
        raise TaskFailed(f"the base commit {base_commit[:12]} is not in the repository", False)
    heads = _dependency_commits(dependencies, cache)
    start, resolutions = _merge_dependencies(request, cache, base_commit, dependencies, branch, log)
    return _Start(base_commit, remote_now, start, [b for b, _ in heads], resolutions)


def _run_agent(
    request: TaskRunRequest,
    folder: Path,
    work: Path,
    branch: str,
    log,
    failure: str = "",
    attempt: int = 0,
):
    """The agent's run; `failure` (a failing check's output) is added to its prompt, and given
    to a custom command as CTO_CHECK_OUTPUT_FILE, with CTO_REPAIR_ATTEMPT on a repair."""
    task = request.task
    done = [DoneDependency(d.task_id, d.title, d.files) for d in request.dependencies]
    prompt = render_prompt(task, request.level, branch, done)
    if failure:
        prompt += repair_section(failure, attempt)
    try:
        return run_agent_in_tree(
            request.agent,
            request.repository,
            folder,
            work,
            task=task,
            level=request.level,
            branch=branch,
            prompt=prompt,
            label=f"task {task.id}" + (f" (repair {attempt})" if attempt else ""),
            log=log,
            extra_env={"CTO_REPAIR_ATTEMPT": str(attempt)} if attempt else None,
            extra_files={"CTO_CHECK_OUTPUT_FILE": failure} if failure else None,
            attempt=attempt,
        )
    except AgentUnavailable as exc:
        raise TaskFailed(f"Task {task.id}: {exc}", retryable=False) from None


def repair_section(failure: str, attempt: int) -> str:
    """What the agent is told when the project's checks failed (its capped output)."""
    if attempt:
        opening = (
            f"## Your work failed the project's checks (repair attempt {attempt})\n\n"
            "Your changes are still in the work tree. The project's checks failed on them:"
        )
    else:
        opening = (
            "## The project's checks already fail before your work\n\n"
            "They failed on the merged dependencies, before you started; fix this too:"
        )
    return (
        f"\n{opening}\n\n{failure}\n"
        "Fix the cause (in the code, not by weakening or skipping the checks); the checks run "
        "again on your result.\n"
    )


def _fail_on_findings(task: Task, recorded: RecordedTree, details: dict) -> None:
    if recorded.conflict_markers:
        files = ", ".join(recorded.conflict_markers[:20])
        raise TaskFailed(
            f"Task {task.id}: the agent left merge conflict markers (<<<<<<< ... >>>>>>>) in "
            f"{files}; nothing was pushed",
            retryable=True,
            details={**details, "files_with_conflict_markers": recorded.conflict_markers},
        )


def run_task(request: TaskRunRequest, log=print) -> TaskRunResult:
    """Run one task; raise `TaskFailed` with a message a person can act on (secrets redacted)."""
    try:
        return _run_task(request, log)
    except TaskFailed as exc:
        repo = request.repository
        details = {k: repo.redact(v) if isinstance(v, str) else v for k, v in exc.details.items()}
        raise TaskFailed(repo.redact(exc.message), exc.retryable, details) from None


def _run_task(request: TaskRunRequest, log) -> TaskRunResult:
    task, repo = request.task, request.repository
    branch = task_branch(task.id)
    started = time.time()
    folder = new_workspace("task", task.id, repo.workspace_root)
    cache = repo.cache()
    try:
        try:
            start = _prepare(request, cache, branch, log)
            tree = AgentWorkTree(folder / "work", cache, branch, start.start)
            tree.create(repo.commit_exclude)
        except GitError as exc:
            raise TaskFailed(str(exc), retryable=True) from None
        log(f"🚀 Task {task.id} started on {branch} (level {request.level})")
        checks = _check_runner(request, folder, tree.path, log)
        verification = Verification(request.verify)
        before = _baseline(request, checks, verification, start) if checks else ""
        agent_started = time.time()
        sandbox, agent = _run_agent(request, folder, tree.path, branch, log, before)
        details = {
            "agent_exit_code": agent.exit_code,
            "agent_log_tail": repo.redact(agent.log_tail),
            "agent_seconds": round(agent.duration_seconds, 3),
        }
        _check_agent_exit(request, agent, details)
        _check_tree(task, tree, details)
        agent_seconds = agent.duration_seconds
        if checks:
            _verify_and_repair(request, checks, verification, (folder, tree, branch), log)
            details["verification"] = verification.summary()
        head, recorded, backup = _commit_and_push(
            request, cache, folder, start, branch, details, log
        )
        stats = cache.diff_stats(start.start, head)
        finished = time.time()
        log(f"✅ Task {task.id} finished in {finished - started:.1f} s: {branch} at {head[:12]}")
        return TaskRunResult(
            task_id=task.id,
            branch=branch,
            base_branch=repo.base_branch,
            base_commit=start.base_commit,
            start_commit=start.start,
            head_commit=head,
            merged_dependencies=start.merged,
            files_changed=list(stats["files"]),  # type: ignore[arg-type]
            insertions=int(stats["insertions"]),  # type: ignore[arg-type]
            deletions=int(stats["deletions"]),  # type: ignore[arg-type]
            started_at=started,
            finished_at=finished,
            agent_exit_code=agent.exit_code,
            agent_seconds=agent_seconds,
            agent_log_tail=details["agent_log_tail"],
            replaced_commit=start.remote_now,
            backup_ref=backup,
            sandbox=sandbox.mode,
            usage=agent.usage,
            flattened_repositories=recorded.flattened,
            taskmaster_edits=recorded.taskmaster_paths,
            status_set_by_agent=recorded.taskmaster_status,
            resolutions=start.resolutions,
            prepare_seconds=agent_started - started - verification.seconds_before_agent,
            publish_seconds=max(
                0.0,
                finished - agent_started - agent_seconds - verification.seconds_after_agent,
            ),
            verification=verification if checks else None,
        )
    finally:
        remove_tree(folder)


def _check_tree(task: Task, tree: AgentWorkTree, details: dict) -> None:
    """What only the orchestrator may do (commit, switch branches) the agent did not do."""
    try:
        problem = tree.problem_after_agent()
    except GitError as exc:
        raise TaskFailed(f"Task {task.id}: {exc}", retryable=True, details=details) from None
    if problem:
        raise TaskFailed(problem, retryable=False, details=details)


def _check_runner(request: TaskRunRequest, folder: Path, work: Path, log) -> CheckRunner | None:
    if not request.verify.enabled:
        return None
    try:
        sandbox = sandbox_for(request.agent)
    except SandboxUnavailable as exc:
        raise TaskFailed(f"Task {request.task.id}: {exc}", retryable=False) from None
    return CheckRunner(
        request.verify, request.agent, request.repository, folder, work, sandbox,
        request.task.id, log,
    )  # fmt: skip


def _baseline(
    request: TaskRunRequest, checks: CheckRunner, verification: Verification, start: _Start
) -> str:
    """The checks on the merged dependencies, before the agent: a failure there is theirs.
    Returns the failure to give the agent (`baseline: repair`), else ''."""
    task = request.task
    baseline = checks.run("baseline")
    verification.baseline = baseline
    if baseline.passed:
        return ""
    policy = request.verify.baseline
    failed = baseline.failed
    assert failed is not None
    if policy == "ignore" and failed.kind == "check":
        verification.ignored = tuple(sorted(baseline.failing_checks()))
        checks.log(
            f"⚠️ Task {task.id}: the checks already fail before the agent ("
            f"{baseline.failure_text(200).splitlines()[0]}); ignored (`baseline: ignore`)"
        )
        return ""
    if policy == "repair":
        checks.log(f"🩹 Task {task.id}: the checks already fail; the agent is asked to fix it")
        return baseline.failure_text()
    where = ", ".join(start.merged) or f"the base branch {request.repository.base_branch}"
    if failed.kind == "setup":  # the registry or the network as likely as the dependencies
        raise TaskFailed(
            f"Task {task.id}: the project's setup failed before the agent started, on {where} "
            f"(the network or a package registry, or the dependencies' files): "
            f"{baseline.failure_text()}",
            retryable=True,
            details={"verification": verification.summary(), "blamed_on": where},
        )
    raise TaskFailed(
        f"Task {task.id}: the project's checks already fail before the agent started, on "
        f"{where} (the dependencies' breakage, not this task's): "
        f"{baseline.failure_text()}"
        "Fix the dependencies (or set `verify.baseline: repair` to have this task's agent fix "
        "it, or `ignore`), then re-run.",
        retryable=False,
        details={"verification": verification.summary(), "blamed_on": where},
    )


def _verify_and_repair(
    request: TaskRunRequest,
    checks: CheckRunner,
    verification: Verification,
    where: tuple[Path, AgentWorkTree, str],
    log,
) -> None:
    """The checks on the agent's work; on a failure the agent runs again with the output, up
    to `repair_attempts` times. The outcome is in `verification` (a failure is not raised: the
    work is pushed for people to see, and the `verified` check fails)."""
    folder, tree, branch = where
    task = request.task
    attempt = 0
    started = time.time()
    while True:
        label = "after the agent" if attempt == 0 else f"after repair {attempt}"
        verification.rounds.append(checks.run(label))
        if verification.repairs:  # the last repair's result is what its checks say
            verification.repairs[-1].result = "passed" if verification.passed else "checks failed"
        if verification.passed or attempt >= request.verify.repair_attempts:
            break
        attempt += 1
        log(f"🩹 Task {task.id}: checks failed; repair attempt {attempt} of "
            f"{request.verify.repair_attempts}")  # fmt: skip
        failure = verification.rounds[-1].failure_text()
        _, agent = _run_agent(request, folder, tree.path, branch, log, failure, attempt)
        cost = agent.usage.cost_usd if agent.usage else None
        repair = RepairAttempt(attempt, agent.duration_seconds, cost, "")
        verification.repairs.append(repair)
        if agent.problem is not None or agent.timed_out or agent.exit_code != 0:
            why = (
                agent.problem.message
                if agent.problem
                else ("timed out" if agent.timed_out else f"exited with code {agent.exit_code}")
            )
            repair.result = f"the agent {why}"
            break
        _check_tree(task, tree, {"repair_attempt": attempt})
    verification.seconds_after_agent = time.time() - started
    mark = "✅" if verification.passed else "❌"
    log(f"{mark} Task {task.id}: checks {verification.summary()}")


def _may_change_nothing(request: TaskRunRequest) -> bool:
    metadata = request.task.raw.get("metadata")
    allowed = isinstance(metadata, dict) and metadata.get("allow_no_changes") is True
    return request.agent.allow_no_changes or allowed


def _check_agent_exit(request: TaskRunRequest, agent, details: dict) -> None:
    task = request.task
    if agent.problem is not None:
        again = "retried" if agent.problem.retryable else "not retried: change the setup first"
        raise TaskFailed(
            f"Task {task.id}: {agent.problem.message} ({again})",
            retryable=agent.problem.retryable,
            details=details,
        )
    if agent.timed_out:
        raise TaskFailed(
            f"⏱️ Task {task.id}: the agent exceeded its timeout of "
            f"{request.agent.timeout_seconds:g} s and was stopped (with everything it started)",
            retryable=True,
            details=details,
        )
    if agent.exit_code != 0:
        raise TaskFailed(
            f"Task {task.id}: the agent exited with code {agent.exit_code}",
            retryable=True,
            details=details,
        )


def _maintain(cache: ObjectCache, log) -> None:
    """Pack the shared cache when it has grown; the task is pushed already, so a failure here
    is said, not raised."""
    started = time.monotonic()
    try:
        if cache.maintain():
            log(f"🧹 Packed the shared object cache in {time.monotonic() - started:.1f} s")
    except GitError as exc:
        log(f"⚠️ Could not pack the shared object cache: {exc}")


def _commit_and_push(
    request: TaskRunRequest,
    cache: ObjectCache,
    folder: Path,
    start: _Start,
    branch: str,
    details: dict,
    log=print,
) -> tuple[str, RecordedTree, str | None]:
    task, repo = request.task, request.repository
    try:
        recorded = record_work_tree(
            cache,
            folder / "work",
            start.start,
            folder,
            repo.commit_exclude,
            task.file_id,
            task.tag or repo.tag,
            request.agent.limits,
        )
        _fail_on_findings(task, recorded, details)
        if recorded.tree == cache.tree_of(start.start) and not _may_change_nothing(request):
            raise TaskFailed(
                f"Task {task.id}: the agent exited 0 but changed nothing; a task is not done by "
                "doing nothing (if that is right for this task, set `allow_no_changes: true` in "
                "its metadata, or agent.allow_no_changes for the project)",
                retryable=True,
                details=details,
            )
        message = f"Task {task.id}: {task.title}\n\nCto-Task: {task.id}\n"
        head = cache.commit_tree(recorded.tree, [start.start], message)
        live = cache.remote_heads([branch])[branch]
        if live != start.remote_now:
            raise TaskFailed(
                f"{branch} changed on the remote while the agent ran (did the agent push?); "
                "nothing was overwritten",
                retryable=False,
                details=details,
            )
        if request.before_push is not None:
            request.before_push(head)
        backup = backup_ref(branch, start.remote_now) if start.remote_now else None
        cache.push(head, branch, start.remote_now, backup)
        _maintain(cache, log)
    except TreeProblem as exc:
        raise TaskFailed(
            f"Task {task.id}: the agent's work was not recorded: {exc}; nothing was pushed",
            retryable=False,
            details=details,
        ) from None
    except GitError as exc:
        retryable = not isinstance(exc, BranchMoved)
        raise TaskFailed(str(exc), retryable=retryable, details=details) from None
    return head, recorded, backup
