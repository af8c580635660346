"""Level integration: stack a level's task branches on the previous level's integration branch.

Level L's branch `integration/level-L-<run>` starts from level L-1's (level 0: the base branch) and
merges the level's task branches in ascending id order, `--no-ff`. Before merging it measures
overlaps (files two tasks both changed, against their merge base) and predicts conflicts between
every pair (`git merge-tree`, no work tree touched). A merge that conflicts is aborted and nothing
is pushed, so the levels before keep their branches. All of it happens in the object cache: no
clone, no work tree.

When the project has checks (`verify.checks`, with `verify.integration` on), they run on the
merged head in a work tree before anything is pushed (core/integration/checks.py): a failure is
pushed for people to see and reported, unless an agent repairs it (`verify.integration_repair:
agent`); then only a head that passes is pushed, the fix committed on top of the merge.

A stage of several levels (integration `granularity`) merges its tasks level by level; overlaps
and predictions compare tasks of one level (those that ran side by side), each task's files
being its own commits' (not what it merged from its dependencies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.git.cache import ObjectCache, backup_ref
from cto_dagster.core.git.command import GitError
from cto_dagster.core.integration.checks import (
    IntegrationCheck,
    IntegrationChecker,
    IntegrationTarget,
)
from cto_dagster.core.integration.level_stages import IntegrationStage
from cto_dagster.core.support.names import check_base_branch, id_sort_key, task_branch
from cto_dagster.core.task_run.conflict_resolution import (
    Conflict,
    ConflictPolicy,
    Resolution,
    ResolutionFailed,
    Resolver,
    SideTask,
)
from cto_dagster.core.task_run.repository import Repository
from cto_dagster.core.task_run.verify import Verification, VerifyPolicy
from cto_dagster.core.taskmaster import Task
from cto_dagster.core.taskmaster.write_back import set_statuses


@dataclass(frozen=True)
class IntegrationRequest:
    level: int  # the first level integrated
    run_token: str
    repository: Repository
    base_branch: str  # where level 0 starts (integration_base_branch)
    previous_commit: str | None  # level L-1's integration head (None for level 0)
    tasks: dict[str, str | None]  # task id -> recorded head commit (None: did not run)
    build_branch: bool = True  # False when integration_pr_enabled is false
    detect_overlaps: bool = True
    write_back: StatusWriteBack | None = None
    conflicts: ConflictPolicy = field(default_factory=ConflictPolicy)
    agent: AgentSpec | None = None  # the project's agent (the default resolver)
    task_info: Mapping[str, Task] = field(default_factory=dict)  # for a resolver's prompt
    last_level: int | None = None  # a stage of several levels ends here (None: one level)
    task_levels: Mapping[str, int] = field(default_factory=dict)  # merge order: level, then id
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)  # the project's checks

    @property
    def checks_integration(self) -> bool:
        """Whether the merged head is checked (checks configured, `verify.integration` on)."""
        return self.verify.enabled and self.verify.integration

    @property
    def stage(self) -> IntegrationStage:
        last = self.last_level if self.last_level is not None else self.level
        return IntegrationStage(self.level, last)

    def merge_order(self) -> list[str]:
        return sorted(self.tasks, key=lambda t: (self.task_levels.get(t, 0), id_sort_key(t)))


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
    label: str = ""  # "level 3" or "levels 0-4"
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
    resolutions: list[Resolution] = field(default_factory=list)  # conflicts an agent resolved
    resolution_failure: str | None = None  # why the resolver could not resolve the conflict
    resolver_log_tail: str = ""
    checked: IntegrationCheck | None = None  # the project's checks on the merged head

    @property
    def complete(self) -> bool:
        return not self.missing and self.conflict_branch is None

    @property
    def verification(self) -> Verification | None:
        return self.checked.verification if self.checked else None

    @property
    def repaired_by_agent(self) -> bool:
        return self.checked is not None and self.checked.fix is not None


def overlap_report(level: int | str, overlaps: dict[str, list[str]]) -> str:
    """The guide's warning, one path a line, each with the tasks that touched it."""
    where = level if isinstance(level, str) else f"level {level}"
    lines = [f"⚠️ Potential overlap detected across PRs in {where}:"]
    lines += [f"{path} (tasks {', '.join(tasks)})" for path, tasks in sorted(overlaps.items())]
    return "\n".join(lines)


def conflict_report(result: IntegrationResult) -> str:
    lines = [f"❌ Merge conflict when merging {result.conflict_branch}"]
    lines += [f"conflicting path: {path}" for path in result.conflict_paths]
    if result.conflict_tasks:
        lines.append(f"tasks involved: {', '.join(result.conflict_tasks)}")
    if result.resolution_failure:
        lines.append(result.resolution_failure)
    return "\n".join(lines)


def resolution_report(resolutions: list[Resolution]) -> str:
    """Markdown for reviewers: each conflict an agent resolved, and what it changed."""
    if not resolutions:
        return "No conflict needed resolving."
    lines = [
        "Resolved by an agent: review these files.",
        "",
        "| merged | into | files | resolver | seconds | verify | resolution diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in resolutions:
        files = ", ".join(f"`{p}`" for p in r.files[:20])
        lines.append(
            f"| {r.merged} | {r.into} | {files} | {r.resolver} | {r.seconds:.1f} | {r.verify} "
            f"| +{r.insertions} -{r.deletions} in {len(r.diff_files)} files |"
        )
    return "\n".join(lines)


def _changed_by_each(request: IntegrationRequest, cache: ObjectCache, start: str, present):
    if request.stage.single_level:
        return {t: cache.changed_files(cache.merge_base(start, c), c) for t, c in present.items()}
    level_of = request.task_levels
    return {
        t: cache.own_changes(
            c, [start, *(h for o, h in present.items() if level_of.get(o, 0) < level_of.get(t, 0))]
        )
        for t, c in present.items()
    }


def _overlaps_and_predictions(
    request: IntegrationRequest, cache: ObjectCache, result: IntegrationResult, present, touched
):
    """Files changed by two tasks of one level, and the pairs of one level whose merge would
    conflict (tasks of different levels of a stage are dependent or were merged in turn)."""
    by_path: dict[str, list[str]] = {}
    for task_id, paths in touched.items():
        for path in paths:
            by_path.setdefault(path, []).append(task_id)
    level_of = request.task_levels
    for path, ids in by_path.items():
        by_level: dict[int, list[str]] = {}
        for task_id in ids:
            by_level.setdefault(level_of.get(task_id, 0), []).append(task_id)
        side_by_side = [t for group in by_level.values() if len(group) > 1 for t in group]
        if side_by_side:
            result.overlaps[path] = side_by_side
    ids = list(present)
    for i, left in enumerate(ids):
        for right in ids[i + 1 :]:
            if level_of.get(left, 0) != level_of.get(right, 0):
                continue
            tree, paths = cache.merge_tree(present[left], present[right])
            if tree is None:
                result.predicted_conflicts.append((left, right, paths))


def _involved(result: IntegrationResult, task_id: str, paths, touched) -> list[str]:
    involved = {task_id}
    for other in result.merged:
        other_id = other[len("feature/task-") : -len("-implementation")]
        if set(touched.get(other_id, [])) & set(paths):
            involved.add(other_id)
    return sorted(involved, key=id_sort_key)


def _side(request: IntegrationRequest, task_id: str, touched) -> SideTask:
    task = request.task_info.get(task_id)
    return SideTask(
        task_id,
        task.title if task else "",
        task.details if task else "",
        tuple(touched.get(task_id, ())),
    )


def _merge_in_order(request, cache, result: IntegrationResult, present, touched, log):
    """Merge the level's branches in id order. A conflict is resolved by an agent when the
    project lets one; otherwise, or when the resolution fails, it is recorded and None returned
    (nothing half-merged is pushed)."""
    head = result.start_commit
    resolver = Resolver(request.conflicts, request.agent or AgentSpec(), request.repository, log)
    for task_id, commit in present.items():
        label = task_branch(task_id)
        tree, paths = cache.merge_tree(head, commit)
        if tree is not None:
            head = cache.commit_tree(tree, [head, commit], f"Merge {label} into {result.branch}")
            result.merged.append(label)
            continue
        involved = _involved(result, task_id, paths, touched)
        if request.conflicts.enabled:
            conflict = Conflict(
                where=f"{result.label} integration",
                ours=head,
                theirs=commit,
                theirs_label=label,
                into=result.branch,
                ours_tasks=tuple(_side(request, t, touched) for t in involved if t != task_id),
                theirs_tasks=(_side(request, task_id, touched),),
                task=request.task_info.get(task_id) or Task(id=task_id, title=""),
                level=result.level,
            )
            try:
                head = resolver.resolve(cache, conflict, paths)
                result.merged.append(label)
                continue
            except ResolutionFailed as exc:
                result.resolution_failure = exc.message
                result.resolver_log_tail = exc.resolution.resolver_log_tail
            finally:
                result.resolutions = list(resolver.resolutions)
        result.conflict_branch = label
        result.conflict_paths = paths
        result.conflict_tasks = involved
        return None
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
        f"{result.label.capitalize()} integration by cto-dagster: merging this branch records the "
        "tasks' new status.\n"
    )
    result.statuses_written = list(merged)
    return cache.commit_tree(tree, [head], message)


def _check_merged(request, cache, head: str, result: IntegrationResult, present, touched, log):
    """The project's checks on the merged head (and the agent's repair): the head to push, or
    None when nothing may be pushed (repair is on and the checks still fail: only a verified
    head is pushed then). Without repair a failing head is pushed, for people to see; its
    `integration_verified` check fails."""
    if not request.checks_integration:
        return head
    repair_agent = request.conflicts.agent or request.agent or AgentSpec()
    checker = IntegrationChecker(
        request.verify, request.agent or AgentSpec(), repair_agent, request.repository, log
    )
    target = IntegrationTarget(
        label=result.label,
        branch=result.branch,
        level=result.level,
        name=request.stage.asset_name,
        tasks=tuple(_side(request, t, touched) for t in present),
    )
    result.checked = checker.check(cache, head, target)
    if result.checked.verification.passed or not checker.repairing:
        return result.checked.head
    log(f"❌ {result.label.capitalize()} integration: the checks still fail after the agent's "
        f"repair; {result.branch} is not pushed")  # fmt: skip
    return None


def integrate_level(
    request: IntegrationRequest, log: Callable[[str], None] = print
) -> IntegrationResult:
    """Merges are computed in the object cache, without a work tree: no clone, no checkout."""
    repo = request.repository
    check_base_branch(request.base_branch)
    branch = request.stage.branch(request.run_token)
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
            f"the integration commit {start[:12]} that {request.stage.label} stacks on is not in "
            "the repository any more; re-materialize the integration before it first"
        )
    result = IntegrationResult(
        level=request.level, branch=branch, start_commit=start, label=request.stage.label
    )
    present: dict[str, str] = {}
    for task_id in request.merge_order():
        commit = request.tasks[task_id]
        if commit and cache.has_commit(commit):
            present[task_id] = commit
        else:
            result.missing.append(task_id)
    touched = _changed_by_each(request, cache, start, present)
    if request.detect_overlaps:
        _overlaps_and_predictions(request, cache, result, present, touched)
    if not request.build_branch:
        return result
    head = _merge_in_order(request, cache, result, present, touched, log)
    if head is None:
        return result
    head = _check_merged(request, cache, head, result, present, touched, log)
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
