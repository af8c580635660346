"""Level integration: stack a level's task branches on the previous level's integration branch.

Level L's branch `integration/level-L-<run>` starts from level L-1's (level 0: the base branch) and
merges the level's task branches in ascending id order, `--no-ff`. Before merging it measures
overlaps (files two tasks both changed, against their merge base) and predicts conflicts between
every pair (`git merge-tree`, no work tree touched). A merge that conflicts is aborted and nothing
is pushed, so the levels before keep their branches.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from cto_dagster.core.gitops import GitError, MergeConflict, Workspace, git_environment
from cto_dagster.core.names import check_base_branch, id_sort_key, integration_branch, task_branch
from cto_dagster.core.task_run import Repository
from cto_dagster.core.workspaces import new_workspace


@dataclass(frozen=True)
class IntegrationRequest:
    level: int
    run_token: str
    repository: Repository
    base_branch: str  # where level 0 starts (integration_base_branch)
    previous_commit: str | None  # level L-1's integration head (None for level 0)
    tasks: dict[str, str | None]  # task id -> recorded head commit (None: did not run)
    build_branch: bool = True  # False when integration_pr_enabled is false
    detect_overlaps: bool = True


@dataclass
class IntegrationResult:
    level: int
    branch: str
    start_commit: str
    head_commit: str | None = None
    pushed: bool = False
    merged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    overlaps: dict[str, list[str]] = field(default_factory=dict)  # path -> task ids
    predicted_conflicts: list[tuple[str, str, list[str]]] = field(default_factory=list)
    conflict_branch: str | None = None
    conflict_paths: list[str] = field(default_factory=list)
    conflict_tasks: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and self.conflict_branch is None


def overlap_report(level: int, overlaps: dict[str, list[str]]) -> str:
    """The guide's warning, one path a line, each with the tasks that touched it."""
    lines = [f"⚠️ Potential overlap detected across PRs in level {level}:"]
    lines += [f"{path} (tasks {', '.join(tasks)})" for path, tasks in sorted(overlaps.items())]
    return "\n".join(lines)


def conflict_report(result: IntegrationResult) -> str:
    lines = [f"❌ Merge conflict when merging {result.conflict_branch}"]
    lines += [f"conflicting path: {path}" for path in result.conflict_paths]
    if result.conflict_tasks:
        lines.append(f"tasks involved: {', '.join(result.conflict_tasks)}")
    return "\n".join(lines)


def integrate_level(request: IntegrationRequest) -> IntegrationResult:
    repo = request.repository
    check_base_branch(request.base_branch)
    branch = integration_branch(request.level, request.run_token)
    folder = new_workspace("integration", str(request.level), repo.workspace_root)
    try:
        ws = Workspace(folder / "repo", repo.url, git_environment(repo.identity, repo.git_env))
        ws.clone(request.base_branch)
        if request.previous_commit:
            start = request.previous_commit
            if not ws.has_commit(start):
                raise GitError(
                    f"level {request.level - 1}'s integration commit {start[:12]} is not in the "
                    "repository any more; re-materialize that level first"
                )
        else:
            start = ws.rev(f"refs/remotes/origin/{request.base_branch}")
        result = IntegrationResult(level=request.level, branch=branch, start_commit=start)
        ordered = sorted(request.tasks, key=id_sort_key)
        present: dict[str, str] = {}
        for task_id in ordered:
            commit = request.tasks[task_id]
            if commit and ws.has_commit(commit):
                present[task_id] = commit
            else:
                result.missing.append(task_id)
        touched: dict[str, list[str]] = {}
        for task_id, commit in present.items():
            base = ws.merge_base(start, commit)
            touched[task_id] = ws.changed_files(base, commit)
        if request.detect_overlaps:
            by_path: dict[str, list[str]] = {}
            for task_id, paths in touched.items():
                for path in paths:
                    by_path.setdefault(path, []).append(task_id)
            result.overlaps = {p: t for p, t in by_path.items() if len(t) > 1}
            ids = list(present)
            for i, left in enumerate(ids):
                for right in ids[i + 1 :]:
                    paths = ws.predict_conflict(present[left], present[right])
                    if paths:
                        result.predicted_conflicts.append((left, right, paths))
        if not request.build_branch:
            return result
        ws.start_branch(branch, start)
        for task_id, commit in present.items():
            try:
                ws.merge(commit, task_branch(task_id), branch)
            except MergeConflict as exc:
                result.conflict_branch = task_branch(task_id)
                result.conflict_paths = exc.paths
                involved = {task_id}
                for other in result.merged:
                    other_id = other[len("feature/task-") : -len("-implementation")]
                    if set(touched.get(other_id, [])) & set(exc.paths):
                        involved.add(other_id)
                result.conflict_tasks = sorted(involved, key=id_sort_key)
                return result  # nothing half-merged is pushed
            result.merged.append(task_branch(task_id))
        head = ws.rev("HEAD")
        remote_now = ws.cloned_head(branch)
        ws.push(branch, remote_now)  # the branch belongs to this run (and its re-executions)
        result.head_commit = head
        result.pushed = True
        result.files_changed = ws.changed_files(start, head)
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)
