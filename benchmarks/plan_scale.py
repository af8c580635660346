"""Planning time at scale, beside the original's round-by-round method on the same graphs.

    uv run python benchmarks/plan_scale.py

Prints one row per graph: tasks, edges, levels, our planner's time (reading the JSON included)
and the round-by-round time (skipped where it would take minutes; the estimate is printed).
Goal: 10,000 tasks with 30,000 edges under 1 s; far ahead of rounds on long chains.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cto_dagster.core.planning.planner import plan_tasks_file
from cto_dagster.core.support.graphs import topological_levels


def random_dag(n: int, edges: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    deps: list[set[int]] = [set() for _ in range(n)]
    placed = 0
    while placed < edges:
        a, b = rng.randrange(1, n), rng.randrange(1, n)
        if a == b:
            continue
        low, high = min(a, b), max(a, b)
        if low not in deps[high]:
            deps[high].add(low)
            placed += 1
    return [
        {
            "id": i + 1,
            "title": f"t{i + 1}",
            "status": "pending",
            "dependencies": sorted(d + 1 for d in deps[i]),
        }
        for i in range(n)
    ]


def chain(n: int) -> list[dict]:
    return [{"id": i + 1, "title": "t", "dependencies": [i] if i else []} for i in range(n)]


def rounds(tasks: list[dict]) -> int:
    """The original's method: each round scans every remaining task."""
    deps = {t["id"]: set(t["dependencies"]) for t in tasks}
    remaining, done, levels = set(deps), set(), 0
    while remaining:
        level = {t for t in remaining if deps[t] <= done}
        done |= level
        remaining -= level
        levels += 1
    return levels


def measure(name: str, tasks: list[dict], folder: Path, rounds_budget: float) -> None:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"master": {"tasks": tasks}}))
    edges = sum(len(t["dependencies"]) for t in tasks)
    start = time.perf_counter()
    plan = plan_tasks_file(path, environ={})
    whole = time.perf_counter() - start
    levels = len(plan.levels)
    deps = {str(t["id"]): [str(d) for d in t["dependencies"]] for t in tasks}
    start = time.perf_counter()
    topological_levels(deps)
    ours = time.perf_counter() - start
    # the round-by-round cost grows as levels x tasks; estimate it before running
    estimate = levels * len(tasks) * 1.5e-7 * (1 + edges / max(len(tasks), 1))
    if estimate <= rounds_budget:
        start = time.perf_counter()
        assert rounds(tasks) == levels
        elapsed = time.perf_counter() - start
        theirs, ratio = f"{elapsed:9.3f} s", f"{elapsed / ours:8.1f}x"
    else:
        theirs, ratio = f"~{estimate:6.0f} s (est.)", "     n/a"
    print(
        f"{name:<15}{len(tasks):>7}{edges:>8}{levels:>7}{whole:>10.3f} s{ours:>10.3f} s"
        f"{theirs:>17}{ratio}"
    )


def main() -> None:
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    print("whole plan = read + validate + levels + critical path + advice;")
    print("levels = our level computation alone, beside the original's rounds on the same dicts\n")
    print(
        f"{'graph':<15}{'tasks':>7}{'edges':>8}{'levels':>7}{'whole plan':>12}{'levels':>12}"
        f"{'rounds':>17}{'faster':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in (1_000, 10_000, 50_000):
            measure(f"random-{n}", random_dag(n, 3 * n, seed=n), folder, budget)
        for n in (1_000, 5_000, 20_000):
            measure(f"chain-{n}", chain(n), folder, budget)


if __name__ == "__main__":
    main()
