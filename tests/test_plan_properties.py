"""Property tests on random graphs: levels are a valid and tight layering, and the graph code
(levels, cycles, longest path, redundant edges) agrees with networkx, the independent reference
(a dev dependency only: the product does not import it, see docs/dependencies.md)."""

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from cto_dagster.core.planning.planner import build_plan
from cto_dagster.core.support.graphs import (
    MAX_CYCLES_SHOWN,
    find_cycles,
    longest_path,
    redundant_edges,
    topological_levels,
)
from cto_dagster.core.taskmaster import TaskList, parse_tasks


@st.composite
def random_dags(draw):
    size = draw(st.integers(min_value=0, max_value=40))
    tasks = []
    for index in range(size):
        deps = (
            draw(
                st.lists(
                    st.integers(min_value=0, max_value=max(index - 1, 0)),
                    max_size=min(index, 5),
                    unique=True,
                )
            )
            if index
            else []
        )
        status = draw(st.sampled_from(["pending"] * 6 + ["done", "cancelled", "in-progress"]))
        tasks.append({"id": index, "title": "t", "dependencies": deps, "status": status})
    return tasks


def _plan(raw, include_all):
    problems = []
    tasks = parse_tasks(raw, problems)
    assert problems == []
    listing = TaskList(path=None, tag="master", tags=("master",), file_format="tagged", tasks=tasks)
    return build_plan(listing, include_all=include_all), tasks


@settings(max_examples=150, deadline=None)
@given(random_dags(), st.booleans())
def test_levels_are_valid_and_tight(raw, include_all):
    plan, tasks = _plan(raw, include_all)
    for task_id, level in plan.level_of.items():
        planned_deps = [d for d in tasks[task_id].dependencies if d in plan.level_of]
        # every dependency that runs sits in an earlier level
        assert all(plan.level_of[d] < level for d in planned_deps)
        # and no task could sit in an earlier level
        if level > 0:
            assert any(plan.level_of[d] == level - 1 for d in planned_deps)
        # nothing that runs depends on a cancelled or blocked task
        assert all(d in plan.level_of or tasks[d].is_done for d in tasks[task_id].dependencies)
    assert sum(map(len, plan.levels)) == plan.stats["total_tasks"]
    if include_all:
        assert len(plan.level_of) == len(tasks)
    if plan.levels:
        assert len(plan.critical_path) == len(plan.levels)


# networkx as the independent reference: the planner's own graph code against a library's
@st.composite
def random_graphs(draw, acyclic: bool):
    """`node -> its dependencies` on nodes "1".."n" (no self-dependency); with `acyclic`, only
    on smaller ids, else any."""
    size = draw(st.integers(min_value=0, max_value=30))
    nodes = [str(i) for i in range(1, size + 1)]
    deps = {}
    for index, node in enumerate(nodes):
        pool = nodes[:index] if acyclic else [n for n in nodes if n != node]
        deps[node] = draw(st.lists(st.sampled_from(pool), max_size=4, unique=True)) if pool else []
    return deps


def _networkx(deps):
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(deps)
    graph.add_edges_from((d, t) for t, ds in deps.items() for d in ds)  # dependency -> task
    return nx, graph


@settings(max_examples=200, deadline=None)
@given(random_graphs(acyclic=False))
def test_levels_and_cycles_agree_with_networkx(deps):
    nx, graph = _networkx(deps)
    levels, leftover = topological_levels(deps)
    on_cycles = {n for c in nx.strongly_connected_components(graph) if len(c) > 1 for n in c}
    behind = set(on_cycles).union(*(nx.descendants(graph, n) for n in on_cycles))
    assert set(leftover) == behind  # what lies on or behind a cycle, nothing else
    if not on_cycles:
        assert [set(level) for level in levels] == [
            set(g) for g in nx.topological_generations(graph)
        ]
    cycles = find_cycles(deps, leftover)
    assert bool(cycles) == (not nx.is_directed_acyclic_graph(graph))
    for cycle in cycles:  # each a real cycle: every member depends on the next
        assert cycle[0] == cycle[-1] and len(set(cycle)) == len(cycle) - 1
        assert all(after in deps[before] for before, after in pairwise(cycle))
    components = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    shown = {frozenset(cycle) for cycle in cycles}
    if len(components) <= MAX_CYCLES_SHOWN // 3:  # each component shows a cycle of its own
        assert all(any(s <= c for s in shown) for c in components)


@settings(max_examples=200, deadline=None)
@given(random_graphs(acyclic=True), st.data())
def test_longest_path_and_redundant_edges_agree_with_networkx(deps, data):
    nx, graph = _networkx(deps)
    weight = {n: float(data.draw(st.integers(min_value=1, max_value=9))) for n in deps}
    levels, leftover = topological_levels(deps)
    assert leftover == []
    order = [t for level in levels for t in level]
    path, length = longest_path(deps, order, weight.__getitem__)
    # node weights as the weight of the edges into each node, from one extra source
    weighted = nx.DiGraph()
    weighted.add_weighted_edges_from((d, t, weight[t]) for d, t in graph.edges)
    weighted.add_weighted_edges_from(("source", n, weight[n]) for n in deps)
    expected = nx.dag_longest_path_length(weighted) if deps else 0.0
    assert length == expected
    assert sum(weight[n] for n in path) == length
    assert all(a in deps[b] for a, b in pairwise(path))  # a real chain
    kept = nx.transitive_reduction(graph)
    assert sorted(redundant_edges(deps, order)) == sorted(
        (t, d) for d, t in graph.edges if not kept.has_edge(d, t)
    )
