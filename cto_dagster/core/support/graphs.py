"""Graph algorithms on plain adjacency lists (`node -> the nodes it depends on`), shared by the
task planner and the tag planner.

No graph library: importing one cost ~1 s of every process start. Every pass is linear
(O(V + E)) and iterative, so a 10,000-task chain never recurses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from cto_dagster.core.support.names import id_sort_key, sorted_ids

MAX_CYCLES_SHOWN = 20

Deps = Mapping[str, list[str]]  # node -> the nodes it depends on (its predecessors)


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
