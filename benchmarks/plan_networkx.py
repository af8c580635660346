"""Planning 10,000 tasks with our graph code against the same steps with networkx.

    uv run python benchmarks/plan_networkx.py     (networkx is in the dev group only)

The graph work of `build_plan` on one random DAG (10,000 tasks, 30,000 edges, the graph of
benchmarks/plan_scale.py): levels, the cycle check, the heaviest chain and the redundant
dependencies, done by `cto_dagster.core.support.graphs` and by networkx (topological
generations, DAG check, longest path, transitive reduction), each the best of three; the whole
planner (reading the JSON included); and what `import networkx` costs a fresh process. Both
answers are compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.plan_scale import random_dag
from cto_dagster.core.planning.planner import plan_tasks_file
from cto_dagster.core.support.graphs import longest_path, redundant_edges, topological_levels

TASKS, EDGES, RUNS = 10_000, 30_000, 3


def ours(deps: dict[str, list[str]]):
    levels, leftover = topological_levels(deps)
    assert not leftover
    order = [t for level in levels for t in level]
    path, _ = longest_path(deps, order, lambda _: 1.0)
    return levels, path, redundant_edges(deps, order)


def with_networkx(deps: dict[str, list[str]]):
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(deps)
    graph.add_edges_from((d, t) for t, ds in deps.items() for d in ds)
    assert nx.is_directed_acyclic_graph(graph)
    levels = [sorted(g, key=int) for g in nx.topological_generations(graph)]
    path = nx.dag_longest_path(graph)
    kept = nx.transitive_reduction(graph)
    redundant = [(t, d) for d, t in graph.edges if not kept.has_edge(d, t)]
    return levels, path, redundant


def best(function, *args) -> tuple[float, object]:
    times, result = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def import_seconds() -> float:
    code = "import time; s = time.perf_counter(); import networkx; print(time.perf_counter() - s)"
    return min(
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(RUNS)
    )


def main() -> None:
    tasks = random_dag(TASKS, EDGES, seed=7)
    deps = {str(t["id"]): [str(d) for d in t["dependencies"]] for t in tasks}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tasks.json"
        path.write_text(json.dumps({"master": {"tasks": tasks}}))
        whole, plan = best(lambda: plan_tasks_file(path, environ={}))
    mine, (levels, chain, redundant) = best(ours, deps)
    theirs, (nx_levels, nx_chain, nx_redundant) = best(with_networkx, deps)
    assert levels == nx_levels and len(chain) == len(nx_chain) == len(plan.levels)
    assert sorted(redundant) == sorted(nx_redundant)
    print(f"{TASKS:,} tasks, {EDGES:,} edges, {len(levels)} levels, {len(redundant):,} redundant")
    print(f"whole planner (read + plan):      {whole:6.2f} s")
    print(f"graph work, cto_dagster.graphs:   {mine:6.2f} s")
    print(f"graph work, networkx:             {theirs:6.2f} s")
    print(f"import networkx (fresh process):  {import_seconds():6.2f} s")


if __name__ == "__main__":
    main()
