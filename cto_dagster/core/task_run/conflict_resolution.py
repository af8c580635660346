"""Merge conflicts resolved by an agent, and checked before anything is pushed.

Opt-in per project (`conflicts: {resolve: agent}`). When a merge conflicts (a task's dependencies
merged into its branch, or a task branch merged into its level's integration branch), the
resolver agent runs in a work tree holding the conflicted merge (the files with their markers, as
`git merge` leaves them) and a prompt naming both sides. Then the orchestrator, never the agent,
decides: no conflict marker may remain in the conflicted files, the `verify` command must pass on
the resolved tree, and only then is the merge commit made, with both parents. Anything else
raises `ResolutionFailed` with the resolver's log; nothing of a failed resolution is pushed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.git.agent_work import record_work_tree
from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import GitError
from cto_dagster.core.git.worktree import AgentWorkTree
from cto_dagster.core.support.safe_fs import TreeProblem, remove_tree
from cto_dagster.core.support.workspaces import new_workspace
from cto_dagster.core.task_run.agent_session import AgentUnavailable, run_agent_in_tree
from cto_dagster.core.task_run.repository import Repository
from cto_dagster.core.task_run.verify import CheckRunner, VerifyPolicy
from cto_dagster.core.task_run.verify import shown as command_text
from cto_dagster.core.taskmaster import Task

DETAILS_SHOWN = 2000  # characters of each task's details in the resolver's prompt
FILES_SHOWN = 30
_MARKER_LINE = re.compile(rb"^(<{7}|>{7})( |$)", re.MULTILINE)


@dataclass(frozen=True)
class ConflictPolicy:
    """What to do when a merge conflicts: `off` fails the step (a person resolves), `agent`
    hands the conflict to `agent` (None: the project's agent), checked by `verify` (argv)."""

    resolve: str = "off"
    agent: AgentSpec | None = None
    verify: tuple[str, ...] = ()
    verify_timeout_seconds: float = 900.0
    project_checks: VerifyPolicy | None = None  # used when `verify` is unset

    def checks(self) -> VerifyPolicy:
        """What must pass on a resolved merge: `verify` (after the project's setup), else the
        project's checks."""
        project = self.project_checks or VerifyPolicy()
        if self.verify:
            return replace(
                project, checks=(tuple(self.verify),), timeout_seconds=self.verify_timeout_seconds
            )
        return project

    @property
    def enabled(self) -> bool:
        return self.resolve == "agent"


@dataclass(frozen=True)
class SideTask:
    """A task whose work one side of the conflict carries, as the resolver reads it."""

    task_id: str
    title: str
    details: str = ""
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conflict:
    where: str  # "task 9's dependencies", "level 0 integration"
    ours: str  # the commit being built on
    theirs: str  # the commit merged into it
    theirs_label: str  # the branch merged
    into: str  # the branch being built
    ours_tasks: tuple[SideTask, ...]
    theirs_tasks: tuple[SideTask, ...]
    task: Task  # whose step this is (the resolver's CTO_TASK_* environment)
    level: int


@dataclass
class Resolution:
    """One conflict and how it was resolved: recorded in the materialization, for reviewers."""

    where: str
    merged: str
    into: str
    tasks: list[str]
    files: list[str]
    resolver: str
    seconds: float = 0.0
    verify: str = "not configured"
    diff_files: list[str] = field(default_factory=list)  # what the resolver changed
    insertions: int = 0
    deletions: int = 0
    commit: str | None = None
    resolver_log_tail: str = ""

    def summary(self) -> str:
        return (
            f"{self.merged} into {self.into}: {', '.join(self.files)} resolved by "
            f"{self.resolver} in {self.seconds:.1f} s; verify {self.verify}; "
            f"+{self.insertions} -{self.deletions} in {len(self.diff_files)} files"
        )


class ResolutionFailed(Exception):
    """The conflict stays: the resolver failed, left markers, or `verify` failed."""

    def __init__(self, message: str, resolution: Resolution):
        super().__init__(message)
        self.message = message
        self.resolution = resolution


def conflict_prompt(
    conflict: Conflict, files: Sequence[str], verify: Sequence[Sequence[str]]
) -> str:
    """The resolver's instructions: Markdown, for an agent nobody will answer."""
    parts = [
        f"# Resolve a merge conflict: `{conflict.theirs_label}` into `{conflict.into}`",
        "",
        f"The work tree holds the merge of `{conflict.theirs_label}` into `{conflict.into}` "
        f"({conflict.where}). Git could not merge these files; they hold conflict markers "
        "(`<<<<<<<`, `=======`, `>>>>>>>`):",
        "",
        *(f"- `{path}`" for path in files),
        "",
    ]
    for heading, side in (
        (f"`{conflict.into}` (ours) carries", conflict.ours_tasks),
        (f"`{conflict.theirs_label}` (theirs) carries", conflict.theirs_tasks),
    ):
        parts += [f"## {heading}", ""]
        for task in side or (SideTask("-", "(no task: the base branch)"),):
            parts.append(f"### Task {task.task_id}: {task.title}")
            if task.details:
                text = task.details[:DETAILS_SHOWN]
                parts += ["", text + (" …" if len(task.details) > DETAILS_SHOWN else "")]
            if task.files:
                shown = ", ".join(task.files[:FILES_SHOWN])
                extra = len(task.files) - FILES_SHOWN
                more = f" (and {extra} more)" if extra > 0 else ""
                parts += ["", f"Files changed: {shown}{more}"]
            parts.append("")
    check = (
        f"then {', '.join(f'`{command_text(argv)}`' for argv in verify)} run on your result "
        "and must pass"
        if verify
        else "then the project's reviewers read it"
    )
    parts += [
        "## Working agreement",
        "",
        "- Keep the intent of both sides: each task's work must still be there and work. Where "
        "they truly contradict, choose the one the later task needs and say why in your final "
        "message.",
        "- Remove every conflict marker. Change other files only where the merge needs it (an "
        "import, a renamed name).",
        f"- Do not commit, switch branches, push or rewrite history: the merge is committed for "
        f"you once no marker is left; {check}.",
        "- You work alone and unattended: no one will answer questions.",
        "",
    ]
    return "\n".join(parts)


def files_with_markers(cache: ObjectCache, tree: str, paths: Sequence[str]) -> list[str]:
    """Conflicted files that still hold a marker line (`<<<<<<<` or `>>>>>>>`) in `tree`."""
    left = []
    for path in paths:
        content = cache.read_blob(tree, path)
        if content is not None and _MARKER_LINE.search(content):
            left.append(path)
    return left


Log = Callable[[str], None]


class Resolver:
    """Resolves conflicts of one step, each in a work tree of its own, removed afterwards."""

    def __init__(self, policy: ConflictPolicy, project_agent: AgentSpec, repo: Repository, log):
        self.policy = policy
        self.spec = policy.agent or project_agent
        self.repo = repo
        self.log = log
        self.resolutions: list[Resolution] = []

    def resolve(self, cache: ObjectCache, conflict: Conflict, paths: Sequence[str]) -> str:
        """The merge commit of `conflict.theirs` into `conflict.ours`, resolved and checked;
        raise `ResolutionFailed` otherwise."""
        tasks = sorted({t.task_id for t in (*conflict.ours_tasks, *conflict.theirs_tasks)})
        resolution = Resolution(
            where=conflict.where,
            merged=conflict.theirs_label,
            into=conflict.into,
            tasks=tasks,
            files=list(paths),
            resolver=self.spec.label,
        )
        self.log(
            f"🔀 Conflict in {conflict.where}: merging {conflict.theirs_label} into "
            f"{conflict.into} conflicts in {', '.join(paths[:20])}; the {self.spec.label} agent "
            "resolves it"
        )
        started = time.monotonic()
        folder = new_workspace("resolve", conflict.task.id, self.repo.workspace_root)
        try:
            commit = self._resolve_in(folder, cache, conflict, paths, resolution)
        finally:
            resolution.seconds = round(time.monotonic() - started, 3)
            remove_tree(folder)
        resolution.commit = commit
        self.resolutions.append(resolution)
        self.log(f"✅ Conflict resolved: {resolution.summary()}")
        return commit

    def _fail(self, resolution: Resolution, why: str) -> ResolutionFailed:
        message = self.repo.redact(
            f"the {resolution.resolver} agent could not resolve the conflict of "
            f"{resolution.merged} into {resolution.into} ({', '.join(resolution.files[:20])}): "
            f"{why}; nothing was pushed"
        )
        resolution.resolver_log_tail = self.repo.redact(resolution.resolver_log_tail)
        return ResolutionFailed(message, resolution)

    def _resolve_in(
        self,
        folder: Path,
        cache: ObjectCache,
        conflict: Conflict,
        paths: Sequence[str],
        resolution: Resolution,
    ) -> str:
        conflicted, work = self._conflicted_tree(folder, cache, conflict, resolution)
        sandbox = self._run_resolver(folder, work, conflict, paths, resolution)
        tree = self._resolved_tree(folder, cache, work, conflicted, paths, resolution)
        resolution.verify = self._verify(folder, work.path, sandbox, resolution, conflict.task.id)
        message = (
            f"Merge {conflict.theirs_label} into {conflict.into}\n\n"
            f"Conflicts in {', '.join(paths[:50])} resolved by the {self.spec.label} agent "
            f"(cto-dagster); verify: {resolution.verify}.\n"
        )
        commit = cache.commit_tree(tree, [conflict.ours, conflict.theirs], message)
        stats = cache.diff_stats(conflicted, commit)
        resolution.diff_files = list(stats["files"])  # type: ignore[arg-type]
        resolution.insertions = int(stats["insertions"])  # type: ignore[arg-type]
        resolution.deletions = int(stats["deletions"])  # type: ignore[arg-type]
        return commit

    def _conflicted_tree(self, folder, cache, conflict: Conflict, resolution: Resolution):
        """The merge with its markers, as a local commit (never pushed) checked out for the
        resolver."""
        tree = cache.merge_tree_with_markers(conflict.ours, conflict.theirs)
        conflicted = cache.commit_tree(
            tree,
            [conflict.ours],
            f"Merge {conflict.theirs_label} into {conflict.into}, with conflicts to resolve\n",
        )
        work = AgentWorkTree(folder / "work", cache, conflict.into, conflicted)
        try:
            work.create(self.repo.commit_exclude)
        except GitError as exc:
            raise self._fail(resolution, str(exc)) from None
        return conflicted, work

    def _run_resolver(self, folder, work, conflict: Conflict, paths, resolution: Resolution):
        extra = {
            "CTO_CONFLICT_FILES": "\n".join(paths),
            "CTO_MERGE_BRANCH": conflict.theirs_label,
            "CTO_MERGE_INTO": conflict.into,
        }
        try:
            sandbox, agent = run_agent_in_tree(
                self.spec,
                self.repo,
                folder,
                work.path,
                task=conflict.task,
                level=conflict.level,
                branch=conflict.into,
                prompt=conflict_prompt(conflict, paths, self.policy.checks().checks),
                label=f"resolver {conflict.task.id}",
                log=self.log,
                extra_env=extra,
            )
        except AgentUnavailable as exc:
            raise self._fail(resolution, str(exc)) from None
        resolution.resolver_log_tail = agent.log_tail
        if agent.problem is not None:
            raise self._fail(resolution, agent.problem.message)
        if agent.timed_out:
            timeout = f"{self.spec.timeout_seconds:g} s"
            raise self._fail(resolution, f"it exceeded its timeout of {timeout}")
        if agent.exit_code != 0:
            raise self._fail(resolution, f"it exited with code {agent.exit_code}")
        try:
            problem = work.problem_after_agent()
        except GitError as exc:
            raise self._fail(resolution, str(exc)) from None
        if problem:
            raise self._fail(resolution, problem)
        return sandbox

    def _resolved_tree(self, folder, cache, work, conflicted: str, paths, resolution) -> str:
        """What the resolver left, recorded by us; no marker may remain."""
        try:
            recorded = record_work_tree(
                cache,
                work.path,
                conflicted,
                folder,
                self.repo.commit_exclude,
                limits=self.spec.limits,
            )
        except (GitError, TreeProblem) as exc:
            raise self._fail(resolution, str(exc)) from None
        left = sorted(
            {*files_with_markers(cache, recorded.tree, paths), *recorded.conflict_markers}
        )
        if left:
            raise self._fail(resolution, f"conflict markers are left in {', '.join(left[:20])}")
        return recorded.tree

    def _verify(
        self, folder: Path, work: Path, sandbox, resolution: Resolution, task_id: str
    ) -> str:
        """The project's setup and checks (or `verify`) on the resolved tree, in the
        resolver's sandbox."""
        policy = self.policy.checks()
        if not policy.enabled:
            return "not configured"
        runner = CheckRunner(policy, self.spec, self.repo, folder, work, sandbox, task_id, self.log)
        checked = runner.run("resolved merge")
        names = ", ".join(command_text(argv) for argv in policy.checks)
        seconds = checked.seconds()
        if not checked.passed:
            resolution.resolver_log_tail = checked.failure_text()
            failed = checked.failed
            assert failed is not None
            raise self._fail(
                resolution,
                f"verify `{command_text(failed.argv)}` failed: "
                f"{failed.verdict(policy.timeout_seconds)}",
            )
        self.log(f"🧪 verify `{names}` passed in {seconds:.1f} s")
        return f"passed (`{names}`, {seconds:.1f} s)"
