"""The execution plan: a validated task graph, its levels, critical path and advice.

Levels, paths, redundancy and cycles are linear passes over plain adjacency lists (no graph
library: importing one cost ~1 s of every process start). Levels are computed in one
topological pass (O(V + E)), not round by round as the original did
(O(levels x V x deps)). A task's level is one more than its deepest dependency's; levels label
tasks for tags, integration and reports, and never hold a task back (DESIGN.md principle 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cto_dagster.core.support.graphs import (
    Deps,
    find_cycles,
    longest_path,
    redundant_edges,
    topological_levels,
)
from cto_dagster.core.support.names import InvalidName, asset_name_for, sorted_ids, task_branch
from cto_dagster.core.taskmaster import FIX_HINT, Task, TaskList, TasksFileError, read_tasks
from cto_dagster.core.taskmaster.statuses import status_group

REDUNDANCY_CHECK_LIMIT = 20_000


@dataclass
class ExecutionPlan:
    task_list: TaskList
    include_all: bool
    dependencies: dict[str, list[str]]  # the tasks to run -> their dependencies that also run
    levels: list[list[str]]
    level_of: dict[str, int]
    critical_path: list[str]
    critical_path_seconds: float | None
    skipped: list[dict[str, str]]
    blocked: list[dict[str, str]]
    redundant_dependencies: list[tuple[str, str]] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    # run task -> the `review` tasks it depends on: not run again, their branches are built on
    reviewed: dict[str, list[str]] = field(default_factory=dict)
    # (task, dependency) edges added between tags (`<tag>.metadata.dependsOn`)
    cross_tag_dependencies: list[tuple[str, str]] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return self.task_list.tag

    @property
    def planned_tags(self) -> tuple[str, ...]:
        """The tags planned together (empty for a plan of one tag)."""
        return self.task_list.planned_tags

    def review_dependencies(self, task_id: str) -> list[str]:
        """Dependencies in `review`: not run again; the task builds on their branches."""
        return list(self.reviewed.get(task_id, []))

    @property
    def tasks(self) -> dict[str, Task]:
        """Every task of the tag, planned or not."""
        return self.task_list.tasks

    @property
    def task_ids(self) -> list[str]:
        """The tasks to run, in plan order (level by level)."""
        return [task_id for level in self.levels for task_id in level]

    def dependencies_to_run(self, task_id: str) -> list[str]:
        """Dependencies that this plan runs (done ones are already satisfied)."""
        return sorted_ids(self.dependencies[task_id])

    @property
    def stats(self) -> dict[str, float | int]:
        total = len(self.task_ids)
        levels = len(self.levels)
        speedup = round(total / levels, 2) if levels else 0.0
        return {
            "total_tasks": total,
            "total_levels": levels,
            "max_parallelism": max((len(level) for level in self.levels), default=0),
            "avg_parallelism": speedup,
            "theoretical_speedup": speedup,
        }

    def to_json(self) -> dict:
        return {
            "tag": self.tag,
            "tags": list(self.planned_tags or [self.tag]),
            "tasks_file": str(self.task_list.path),
            "levels": [list(level) for level in self.levels],
            "stats": self.stats,
            "critical_path": list(self.critical_path),
            "critical_path_seconds": self.critical_path_seconds,
            "skipped": list(self.skipped),
            "blocked": list(self.blocked),
            "redundant_dependencies": [
                {"task": task, "dependency": dep} for task, dep in self.redundant_dependencies
            ],
            "review_dependencies": {t: list(r) for t, r in self.reviewed.items()},
            "cross_tag_dependencies": [
                {"task": task, "dependency": dep} for task, dep in self.cross_tag_dependencies
            ],
            "complexity": {
                t: self.tasks[t].complexity
                for t in self.task_ids
                if self.tasks[t].complexity is not None
            },
            "advice": list(self.advice),
        }


# ---------------------------------------------------------------------------------------------
# Building a plan


def dependency_map(tasks: Mapping[str, Task]) -> dict[str, list[str]]:
    """task -> its dependencies that exist (missing ones are reported by the reader)."""
    return {t.id: [d for d in t.dependencies if d in tasks and d != t.id] for t in tasks.values()}


def _check_names(tasks: Mapping[str, Task]) -> list[str]:
    problems: list[str] = []
    by_asset: dict[str, str] = {}
    for task_id in tasks:
        try:
            task_branch(task_id)
            name = asset_name_for(task_id)
        except InvalidName as exc:
            problems.append(str(exc))
            continue
        if name in by_asset:
            problems.append(f"ids {by_asset[name]} and {task_id} both become asset {name}")
        by_asset[name] = task_id
    return problems


@dataclass
class _Split:
    run: list[str]
    skipped: list[dict[str, str]]
    blocked: list[dict[str, str]]
    run_deps: dict[str, list[str]]  # run task -> the run tasks it waits for
    reviewed: dict[str, list[str]]  # run task -> the review tasks whose branches it builds on


def _split_by_status(tasks: Mapping[str, Task], deps: Deps, order: list[str], include_all: bool):
    """Done tasks are satisfied; `review` ones are not run again, and their dependents build on
    their branches (and wait for what those wait for); held ones (cancelled, deferred, blocked)
    are not run and block what needs them."""
    if include_all:
        return _Split(list(order), [], [], {t: list(deps[t]) for t in order}, {})
    skipped = [
        {"id": t, "status": tasks[t].status, "group": status_group(tasks[t].status)}
        for t in sorted_ids(order)
        if status_group(tasks[t].status) != "run"
    ]
    run: list[str] = []
    run_deps: dict[str, list[str]] = {}
    reviewed: dict[str, list[str]] = {}
    blocked: dict[str, str] = {}
    review_waits: dict[str, set[str]] = {}  # review task -> run tasks its dependents wait for
    for task_id in order:  # topological: a dependency's fate is known before its dependents'
        task = tasks[task_id]
        group = status_group(task.status)
        if group in ("done", "held"):
            continue
        through = [d for d in deps[task_id] if tasks[d].is_in_review]
        needs = {d for d in deps[task_id] if d in run_deps}
        for review_task in through:
            needs |= review_waits[review_task]
        if group == "review":
            review_waits[task_id] = needs
            continue
        held = [d for d in deps[task_id] if tasks[d].is_held]
        behind = [d for d in deps[task_id] if d in blocked]
        if held:
            blocked[task_id] = "depends on " + ", ".join(
                f"{tasks[d].status} task {d}" for d in sorted_ids(held)
            )
        elif behind:
            blocked[task_id] = "waits for blocked task " + ", ".join(sorted_ids(behind))
        else:
            run.append(task_id)
            run_deps[task_id] = sorted_ids(needs)
            if through:
                reviewed[task_id] = sorted_ids(through)
    return _Split(
        run,
        skipped,
        [{"id": t, "reason": blocked[t]} for t in sorted_ids(blocked)],
        run_deps,
        reviewed,
    )


def _cross_tag_edges(
    task_list: TaskList, tasks: Mapping[str, Task], split: _Split
) -> list[tuple[str, str]]:
    """(task, dependency) edges between tags: the first tasks of a tag wait for the last tasks of
    every tag it depends on, which wait for all the others: every task of the tag runs after
    every task of those tags. Review tasks count, their branches being built on."""
    if not task_list.planned_tags:
        return []
    running = set(split.run)
    members: dict[str, list[str]] = {tag: [] for tag in task_list.planned_tags}
    for task_id in split.run:
        members[tasks[task_id].tag or ""].append(task_id)
    edges: list[tuple[str, str]] = []
    for tag, needed_tags in task_list.tag_depends.items():
        firsts = [
            t
            for t in members.get(tag, [])
            if not any(tasks[d].tag == tag for d in split.run_deps[t])
        ]
        for needed in needed_tags:
            own = [t for t in members.get(needed, [])]
            depended = {d for t in own for d in split.run_deps[t]}
            lasts = [t for t in own if t not in depended]
            reviewed = [
                t.id
                for t in tasks.values()
                if t.tag == needed and t.is_in_review and t.id not in running
            ]
            edges += [(first, last) for first in firsts for last in [*lasts, *reviewed]]
    return edges


def _advice(
    task_list: TaskList, run: list[str], levels: list[list[str]], redundant, blocked
) -> list[str]:
    advice: list[str] = []
    if len(run) > REDUNDANCY_CHECK_LIMIT:
        advice.append(f"redundant-dependency check skipped: over {REDUNDANCY_CHECK_LIMIT} tasks")
    if redundant:
        sample = ", ".join(f"{task} -> {dep}" for task, dep in redundant[:10])
        more = f" (and {len(redundant) - 10} more)" if len(redundant) > 10 else ""
        advice.append(
            f"{len(redundant)} dependencies are already implied by others and can be dropped "
            f"(task -> dependency): {sample}{more}"
        )
    if len(run) > 1 and len(levels) == len(run):
        advice.append(
            "No parallelism detected: every task waits for the one before it. Check the TaskMaster "
            "dependencies: tasks may be over-coupled."
        )
    if blocked:
        advice.append(
            f"{len(blocked)} tasks are blocked behind cancelled, deferred or blocked tasks and "
            "will not run."
        )
    advice.extend(task_list.notes)
    return advice


def task_weight(task: Task) -> float:
    """A task's relative size when no run has timed it: its complexity score over 5 (TaskMaster
    scores 1-10, so a medium task weighs 1), else 1."""
    if task.complexity is not None and task.complexity > 0:
        return task.complexity / 5.0
    return 1.0


def weights(tasks: Mapping[str, Task], run: list[str]) -> tuple[Callable[[str], float], bool]:
    """Weights for the critical path and priorities: estimated seconds when every task to run
    has one (`True`; a zero estimate is none), else relative sizes from the complexity report
    (`False`)."""
    if run and all((tasks[t].duration or 0) > 0 for t in run):
        return (lambda t: tasks[t].duration or 0.0), True
    return (lambda t: task_weight(tasks[t])), False


def _invalid(task_list: TaskList, problems: list[str]) -> TasksFileError:
    return TasksFileError(
        f"invalid tasks in {task_list.path} (tag {task_list.tag}): {len(problems)} "
        + ("problems" if len(problems) != 1 else "problem"),
        problems,
        hint=FIX_HINT,
    )


def build_plan(task_list: TaskList, include_all: bool = False) -> ExecutionPlan:
    """Validate the graph of one tag (or several) and plan it; raise `TasksFileError` naming
    every error at once."""
    tasks = task_list.tasks
    deps = dependency_map(tasks)
    problems = list(task_list.problems) + _check_names(tasks)
    all_levels, leftover = topological_levels(deps)
    if leftover:
        problems += ["dependency cycle: " + " -> ".join(c) for c in find_cycles(deps, leftover)]
    if problems:
        raise _invalid(task_list, problems)
    order = [t for level in all_levels for t in level]
    split = _split_by_status(tasks, deps, order, include_all)
    run, run_deps = split.run, split.run_deps
    cross = _cross_tag_edges(task_list, tasks, split)
    for task_id, needed in cross:
        if tasks[needed].is_in_review and needed not in run_deps:
            split.reviewed.setdefault(task_id, []).append(needed)
        elif needed not in run_deps[task_id]:
            run_deps[task_id] = [*run_deps[task_id], needed]
    levels, _ = topological_levels(run_deps)
    level_of = {task_id: index for index, level in enumerate(levels) for task_id in level}
    plan_order = [t for level in levels for t in level]
    weight, in_seconds = weights(tasks, run)
    path, length = longest_path(run_deps, plan_order, weight)
    own = (
        {t: [d for d in run_deps[t] if (t, d) not in set(cross)] for t in run}
        if cross
        else run_deps
    )
    redundant = redundant_edges(own, plan_order) if len(run) <= REDUNDANCY_CHECK_LIMIT else []
    return ExecutionPlan(
        task_list=task_list,
        include_all=include_all,
        dependencies={t: list(run_deps[t]) for t in run},
        levels=levels,
        level_of=level_of,
        critical_path=path,
        critical_path_seconds=length if in_seconds else None,
        skipped=split.skipped,
        blocked=split.blocked,
        redundant_dependencies=redundant,
        advice=_advice(task_list, run, levels, redundant, split.blocked),
        reviewed={t: sorted_ids(r) for t, r in split.reviewed.items()},
        cross_tag_dependencies=sorted(cross),
    )


def plan_tasks_file(
    path: str | os.PathLike[str] | None,
    tag: str | None = None,
    include_all: bool = False,
    environ: Mapping[str, str] | None = None,
    tags: list[str] | None = None,
    all_tags: bool = False,
) -> ExecutionPlan:
    """Plan one tag (`tag`, else the project's current one) or several (`tags`, `all_tags`)."""
    wanted = list(tags or ([tag] if tag else []))
    return build_plan(read_tasks(path, wanted, all_tags, environ), include_all=include_all)
