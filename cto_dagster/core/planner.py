"""The execution plan: a validated task graph, its levels, critical path and advice.

Levels, paths, redundancy and cycles are linear passes over plain adjacency lists (no graph
library: importing one cost ~1 s of every process start). Levels are computed in one
topological pass (O(V + E)), not round by round as the original did
(O(levels x V x deps)). A task's level is one more than its deepest dependency's; levels label
tasks for tags, integration and reports, and never hold a task back (DESIGN.md principle 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cto_dagster.core.names import InvalidName, asset_name_for, id_sort_key, sorted_ids, task_branch
from cto_dagster.core.taskmaster import FIX_HINT, Task, TaskList, TasksFileError, read_task_list

REDUNDANCY_CHECK_LIMIT = 20_000
MAX_CYCLES_SHOWN = 20


Deps = Mapping[str, list[str]]  # task -> the tasks it depends on (its predecessors)


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

    @property
    def tag(self) -> str:
        return self.task_list.tag

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
            "advice": list(self.advice),
        }


# ---------------------------------------------------------------------------------------------
# Pure graph algorithms


def dependency_map(tasks: Mapping[str, Task]) -> dict[str, list[str]]:
    """task -> its dependencies that exist (missing ones are reported by the reader)."""
    return {t.id: [d for d in t.dependencies if d in tasks and d != t.id] for t in tasks.values()}


def topological_levels(deps: Deps) -> tuple[list[list[str]], list[str]]:
    """Kahn's generations: level(v) = 1 + max(level(dependencies)). O(V + E).

    Returns the levels (ids sorted numerically, then slugs) and the tasks left over, which lie on
    or behind a cycle (empty for a DAG).
    """
    waiting = {task: len(parents) for task, parents in deps.items()}
    children: dict[str, list[str]] = {task: [] for task in deps}
    for task, parents in deps.items():
        for parent in parents:
            children[parent].append(task)
    current = [task for task, count in waiting.items() if count == 0]
    levels: list[list[str]] = []
    while current:
        levels.append(sorted_ids(current))
        following = []
        for task in current:
            for child in children[task]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    following.append(child)
        current = following
    placed = sum(map(len, levels))
    leftover = [] if placed == len(deps) else [t for t, c in waiting.items() if c > 0]
    return levels, leftover


def strongly_connected(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (deep chains never recurse). O(V + E)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(edges[successor])))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _shortest_cycle_through(start: str, edges: Mapping[str, list[str]]) -> list[str] | None:
    """Breadth first from `start` back to it: the shortest cycle through `start`."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted_ids(edges[node]):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                if successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    return None


def find_cycles(deps: Deps, among: Iterable[str], limit: int = MAX_CYCLES_SHOWN) -> list[list[str]]:
    """Cycles as `[5, 16, 5]` (5 depends on 16, which depends on 5): the shortest few of each
    strongly connected component of `among`. O(V + E) for the components, then a bounded
    breadth-first search from their first members."""
    members = set(among)
    edges = {t: [d for d in deps[t] if d in members] for t in sorted_ids(members)}
    cycles: list[list[str]] = []
    components = [sorted_ids(c) for c in strongly_connected(edges) if len(c) > 1]
    for component in sorted(components, key=lambda c: id_sort_key(c[0])):
        inside = set(component)
        sub = {t: [d for d in edges[t] if d in inside] for t in component}
        found: list[list[str]] = []
        for start in component[:50]:
            cycle = _shortest_cycle_through(start, sub)
            if cycle and not any(set(cycle) == set(other) for other in found):
                found.append(cycle)
        for cycle in sorted(found, key=len)[:3]:
            first = min(range(len(cycle)), key=lambda i: id_sort_key(cycle[i]))
            rotated = cycle[first:] + cycle[:first]
            cycles.append([*rotated, rotated[0]])
        if len(cycles) >= limit:
            break
    return cycles[:limit]


def longest_path(
    deps: Deps, order: Iterable[str], weight: Callable[[str], float]
) -> tuple[list[str], float]:
    """The heaviest dependency chain (weights on tasks), given a topological `order`. O(V + E).
    Ties go to the smaller ids."""
    best: dict[str, float] = {}
    parent: dict[str, str | None] = {}
    for node in order:
        top = None
        for candidate in deps[node]:
            if (
                top is None
                or best[candidate] > best[top]
                or (best[candidate] == best[top] and id_sort_key(candidate) < id_sort_key(top))
            ):
                top = candidate
        best[node] = weight(node) + (best[top] if top is not None else 0.0)
        parent[node] = top
    if not best:
        return [], 0.0
    end = min(best, key=lambda n: (-best[n], id_sort_key(n)))
    path = [end]
    while (previous := parent[path[-1]]) is not None:
        path.append(previous)
    return path[::-1], best[end]


def remaining_path_lengths(
    deps: Deps, order: list[str], weight: Callable[[str], float]
) -> dict[str, float]:
    """For each task, the heaviest chain from it to the end (itself included): its urgency."""
    tail: dict[str, float] = {task: 0.0 for task in order}
    remaining: dict[str, float] = {}
    for node in reversed(order):
        remaining[node] = weight(node) + tail[node]
        for parent in deps[node]:
            if remaining[node] > tail[parent]:
                tail[parent] = remaining[node]
    return remaining


def redundant_edges(deps: Deps, order: list[str]) -> list[tuple[str, str]]:
    """Dependencies implied by another path, as (`task`, `dependency`), with ancestor bitsets.
    O(E x V / 64) word operations; bounded by REDUNDANCY_CHECK_LIMIT tasks."""
    bit = {node: 1 << index for index, node in enumerate(order)}
    ancestors: dict[str, int] = {}
    redundant: list[tuple[str, str]] = []
    for node in order:
        parents = deps[node]
        reach = 0
        for p in parents:
            reach |= ancestors[p] | bit[p]
        ancestors[node] = reach
        if len(parents) > 1:
            for p in parents:
                if any(ancestors[q] & bit[p] for q in parents if q != p):
                    redundant.append((node, p))
    return sorted(redundant, key=lambda e: (id_sort_key(e[0]), id_sort_key(e[1])))


# ---------------------------------------------------------------------------------------------
# Building a plan


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


def _split_by_status(
    tasks: Mapping[str, Task], deps: Deps, order: list[str], include_all: bool
) -> tuple[list[str], list[dict[str, str]], list[dict[str, str]]]:
    """Done tasks are satisfied; cancelled/deferred ones are not run and block what needs them."""
    if include_all:
        return list(order), [], []
    skipped = [
        {"id": t, "status": tasks[t].status} for t in order if tasks[t].is_done or tasks[t].is_held
    ]
    run: list[str] = []
    blocked: dict[str, str] = {}
    for task_id in order:  # topological: a dependency's fate is known before its dependents'
        task = tasks[task_id]
        if task.is_done or task.is_held:
            continue
        held = [d for d in deps[task_id] if tasks[d].is_held]
        waiting = [d for d in deps[task_id] if d in blocked]
        if held:
            blocked[task_id] = "depends on " + ", ".join(
                f"{tasks[d].status} task {d}" for d in sorted_ids(held)
            )
        elif waiting:
            blocked[task_id] = "waits for blocked task " + ", ".join(sorted_ids(waiting))
        else:
            run.append(task_id)
    return run, skipped, [{"id": t, "reason": blocked[t]} for t in sorted_ids(blocked)]


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
            f"{len(blocked)} tasks are blocked behind cancelled or deferred tasks and will not run."
        )
    advice.extend(task_list.notes)
    return advice


def build_plan(task_list: TaskList, include_all: bool = False) -> ExecutionPlan:
    """Validate the graph of one tag and plan it; raise `TasksFileError` naming every error."""
    tasks = task_list.tasks
    deps = dependency_map(tasks)
    problems = list(task_list.problems) + _check_names(tasks)
    all_levels, leftover = topological_levels(deps)
    if leftover:
        problems += ["dependency cycle: " + " -> ".join(c) for c in find_cycles(deps, leftover)]
    if problems:
        raise TasksFileError(
            f"invalid tasks in {task_list.path} (tag {task_list.tag}): {len(problems)} "
            + ("problems" if len(problems) != 1 else "problem"),
            problems,
            hint=FIX_HINT,
        )
    order = [t for level in all_levels for t in level]
    run, skipped, blocked = _split_by_status(tasks, deps, order, include_all)
    if len(run) == len(order):
        run_deps, levels = deps, all_levels
    else:
        running = set(run)
        run_deps = {t: [d for d in deps[t] if d in running] for t in run}
        levels, _ = topological_levels(run_deps)
    level_of = {task_id: index for index, level in enumerate(levels) for task_id in level}
    plan_order = [t for level in levels for t in level]
    seconds = None
    if run and all(tasks[t].duration is not None for t in run):
        path, seconds = longest_path(run_deps, plan_order, lambda t: tasks[t].duration or 0.0)
    else:
        path, _ = longest_path(run_deps, plan_order, lambda _: 1.0)
    redundant = redundant_edges(run_deps, plan_order) if len(run) <= REDUNDANCY_CHECK_LIMIT else []
    return ExecutionPlan(
        task_list=task_list,
        include_all=include_all,
        dependencies={t: list(run_deps[t]) for t in run},
        levels=levels,
        level_of=level_of,
        critical_path=path,
        critical_path_seconds=seconds,
        skipped=skipped,
        blocked=blocked,
        redundant_dependencies=redundant,
        advice=_advice(task_list, run, levels, redundant, blocked),
    )


def plan_tasks_file(
    path: str | os.PathLike[str] | None,
    tag: str | None = None,
    include_all: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ExecutionPlan:
    return build_plan(read_task_list(path, tag, environ), include_all=include_all)
