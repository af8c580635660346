"""Level integration: stack a level's task branches on the previous level's integration branch.

Level L's branch `integration/level-L-<run>` starts from level L-1's (level 0: the base branch) and
merges the level's task branches in ascending id order, `--no-ff`. Before merging it measures
overlaps (files two tasks both changed, against their merge base) and predicts conflicts between
every pair (`git merge-tree`, no work tree touched). A merge that conflicts is aborted and nothing
is pushed, so the levels before keep their branches. All of it happens in the object cache: no
clone, no work tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cto_dagster.core.git.cache import ObjectCache, backup_ref
from cto_dagster.core.git.command import GitError, MergeConflict
from cto_dagster.core.names import check_base_branch, id_sort_key, integration_branch, task_branch
from cto_dagster.core.task_run import Repository
from cto_dagster.core.taskmaster.write_back import set_statuses


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
    write_back: StatusWriteBack | None = None


@dataclass(frozen=True)
class StatusWriteBack:
    """Set the status of the merged tasks in the tasks file, in one commit on top of the merges."""

    tasks_file: str  # path in the repository
    status: str  # `review` or `done`
    names: Mapping[str, tuple[str, str]]  # plan task id -> (tag, id in the file)


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
    backup_ref: str | None = None
    statuses_written: list[str] = field(default_factory=list)  # task ids set in the tasks file

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


def _changed_by_each(cache: ObjectCache, start: str, present: dict[str, str]):
    return {t: cache.changed_files(cache.merge_base(start, c), c) for t, c in present.items()}


def _overlaps_and_predictions(cache: ObjectCache, result: IntegrationResult, present, touched):
    by_path: dict[str, list[str]] = {}
    for task_id, paths in touched.items():
        for path in paths:
            by_path.setdefault(path, []).append(task_id)
    result.overlaps = {p: t for p, t in by_path.items() if len(t) > 1}
    ids = list(present)
    for i, left in enumerate(ids):
        for right in ids[i + 1 :]:
            tree, paths = cache.merge_tree(present[left], present[right])
            if tree is None:
                result.predicted_conflicts.append((left, right, paths))


def _merge_in_order(cache, result: IntegrationResult, present, touched) -> str | None:
    """Merge the level's branches in id order; on a conflict, record it and return None."""
    head = result.start_commit
    for task_id, commit in present.items():
        try:
            head = cache.merge(head, commit, task_branch(task_id), result.branch)
        except MergeConflict as exc:
            result.conflict_branch = task_branch(task_id)
            result.conflict_paths = exc.paths
            involved = {task_id}
            for other in result.merged:
                other_id = other[len("feature/task-") : -len("-implementation")]
                if set(touched.get(other_id, [])) & set(exc.paths):
                    involved.add(other_id)
            result.conflict_tasks = sorted(involved, key=id_sort_key)
            return None  # nothing half-merged is pushed
        result.merged.append(task_branch(task_id))
    return head


def _write_back(
    cache: ObjectCache,
    head: str,
    write_back: StatusWriteBack,
    merged: list[str],
    result: IntegrationResult,
) -> str:
    """One commit setting the merged tasks' status; the head unchanged when there is nothing to
    set (statuses already right, or no readable tasks file on the branch)."""
    content = cache.read_blob(head, write_back.tasks_file)
    if content is None:
        return head
    wanted: dict[str, dict[str, str]] = {}
    for task_id in merged:
        tag, file_id = write_back.names[task_id]
        wanted.setdefault(tag, {})[file_id] = write_back.status
    updated = set_statuses(content, wanted)
    if updated is None:
        return head
    tree = cache.tree_with_file(head, write_back.tasks_file, updated)
    shown = ", ".join(merged[:20]) + (f" and {len(merged) - 20} more" if len(merged) > 20 else "")
    message = (
        f"TaskMaster: tasks {shown} -> {write_back.status}\n\n"
        f"Level {result.level} integration by cto-dagster: merging this branch records the "
        "tasks' new status.\n"
    )
    result.statuses_written = list(merged)
    return cache.commit_tree(tree, [head], message)


def integrate_level(request: IntegrationRequest) -> IntegrationResult:
    """Merges are computed in the object cache, without a work tree: no clone, no checkout."""
    repo = request.repository
    check_base_branch(request.base_branch)
    branch = integration_branch(request.level, request.run_token)
    cache = repo.cache()
    remote = cache.remote_heads([request.base_branch, branch])
    if request.previous_commit:
        start = request.previous_commit
    elif request.base_branch == repo.base_branch and repo.base_commit:
        start = repo.base_commit  # the commit the run planned from, like its task branches
    else:
        start = remote[request.base_branch]
        if start is None:
            raise GitError(f"base branch {request.base_branch} does not exist in the repository")
    cache.ensure([start, remote[branch], *request.tasks.values()])
    if not cache.has_commit(start):
        raise GitError(
            f"level {request.level - 1}'s integration commit {start[:12]} is not in the "
            "repository any more; re-materialize that level first"
        )
    result = IntegrationResult(level=request.level, branch=branch, start_commit=start)
    present: dict[str, str] = {}
    for task_id in sorted(request.tasks, key=id_sort_key):
        commit = request.tasks[task_id]
        if commit and cache.has_commit(commit):
            present[task_id] = commit
        else:
            result.missing.append(task_id)
    touched = _changed_by_each(cache, start, present)
    if request.detect_overlaps:
        _overlaps_and_predictions(cache, result, present, touched)
    if not request.build_branch:
        return result
    head = _merge_in_order(cache, result, present, touched)
    if head is None:
        return result
    if request.write_back and present:
        head = _write_back(cache, head, request.write_back, list(present), result)
    remote_now = remote[branch]
    # the branch belongs to this run (and its re-executions); what it replaces is kept
    backup = backup_ref(branch, remote_now) if remote_now and remote_now != head else None
    if remote_now != head:
        cache.push(head, branch, remote_now, backup)
    result.head_commit = head
    result.pushed = True
    result.backup_ref = backup
    result.files_changed = cache.changed_files(start, head)
    return result
