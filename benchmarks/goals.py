"""The speed promises as ratios measured within one run, with their goals; exit 1 when a goal is
clearly missed. `.ci/run` runs it (about 2 minutes on 2 cores):

    uv run python benchmarks/goals.py

Each goal compares two things measured here, now, on the same machine, so a loaded CI machine
slows both sides alike:

- priority ordering: a 5-task chain hidden behind 8 independent tasks, 2 agent slots; the run
  with priorities (longest remaining path first) against the same run with every priority 0;
- dataflow against level barriers: a graph whose levels mix one long and one short task; the
  real run's makespan against what the original's level barriers take with the same durations;
- planning at scale: 10,000 tasks (30,000 edges) against 1,000 tasks (3,000 edges): growth near
  linear (10x the tasks), far from quadratic (100x);
- run creation: a run of 150 assets with a check each (300 planned events) created on the instance
  `cto-dagster` sets up (planned events in one batch) against Dagster's own SQLite event log;
- launch with the UI up, 500 tasks: `cto-dagster launch` submitting to the running webserver
  (its code location loaded) against a launch starting a code server of its own, each until the
  run's first task starts (benchmarks/remote_launch.py).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from plan_scale import random_dag
from schedule import priority_graph, run, task

from cto_dagster.core.planning.planner import plan_tasks_file


@dataclass
class Goal:
    name: str
    ratio: float
    goal: float  # the ratio must be at least this
    detail: str

    @property
    def met(self) -> bool:
        return self.ratio >= self.goal


def heterogeneous() -> list[dict]:
    """Levels mixing a long and a short task: a1 (8 s) -> a2 (8 s) beside b1 -> ... -> b6 (2 s
    each). Level barriers wait for the long task at every level they share: 8+8+2+2+2+2 = 24 s;
    dataflow needs max(16, 12) s plus its per-step overhead."""
    long_chain = [task(1, [], 8), task(2, [1], 8)]
    short_chain = [task(10, [], 2)] + [task(10 + k, [9 + k], 2) for k in range(1, 6)]
    return long_chain + short_chain


def priority_goal() -> Goal:
    ordered = run("priority", priority_graph(), 0.5, 2, True)
    unordered = run("no order", priority_graph(), 0.5, 2, False)
    ratio = unordered["makespan"] / ordered["makespan"]
    return Goal(
        "priority ordering vs none (2 slots)",
        ratio,
        1.15,
        f"{ordered['makespan']:.1f} s with priorities, {unordered['makespan']:.1f} s without",
    )


def dataflow_goal() -> Goal:
    row = run("heterogeneous", heterogeneous(), 1.0, None, True)
    ratio = row["barrier"] / row["makespan"]
    return Goal(
        "dataflow vs level barriers (heterogeneous graph)",
        ratio,
        1.15,
        f"makespan {row['makespan']:.1f} s, level barriers {row['barrier']:.1f} s, "
        f"critical path {row['critical']:.1f} s",
    )


def _plan_seconds(tasks: list[dict], folder: Path, name: str, repeat: int = 3) -> float:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"master": {"tasks": tasks}}))
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        plan_tasks_file(path, environ={})
        best = min(best, time.perf_counter() - started)
    return best


def planning_goal() -> Goal:
    with tempfile.TemporaryDirectory() as tmp:
        small = _plan_seconds(random_dag(1_000, 3_000, seed=1), Path(tmp), "small", repeat=7)
        large = _plan_seconds(random_dag(10_000, 30_000, seed=2), Path(tmp), "large", repeat=3)
    growth = large / small
    # reported as headroom against quadratic growth: 100x the time for 10x the tasks
    return Goal(
        "planning 10,000 tasks vs 1,000 (quadratic / actual growth)",
        100 / growth,
        100 / 40,  # at most 40x the time for 10x the tasks: clearly not quadratic
        f"1,000 tasks {small:.3f} s, 10,000 tasks {large:.3f} s ({growth:.1f}x)",
    )


def _planned_job(assets: int):
    import dagster as dg

    def make(index: int):
        @dg.asset(
            name=f"a{index}",
            deps=[f"a{index - 1}"] if index else [],
            check_specs=[dg.AssetCheckSpec("ok", asset=f"a{index}")],
        )
        def _asset():
            yield dg.MaterializeResult()

        return _asset

    defs = dg.Definitions(
        assets=[make(i) for i in range(assets)], jobs=[dg.define_asset_job("all")]
    )
    return defs.resolve_job_def("all")


def _creation_seconds(job, home: Path, batched: bool) -> float:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from cto_dagster.commands.runs.instance_home import prepare_home

    if batched:
        prepare_home(home)
    else:
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        instance.create_run_for_job(job)  # first run: databases created
        started = time.perf_counter()
        instance.create_run_for_job(job)
        return time.perf_counter() - started


def run_creation_goal() -> Goal:
    job = _planned_job(150)
    with tempfile.TemporaryDirectory() as tmp:
        dagsters = _creation_seconds(job, Path(tmp) / "dagster", batched=False)
        batched = _creation_seconds(job, Path(tmp) / "batched", batched=True)
    return Goal(
        "run creation, 300 planned events: batched vs Dagster's SQLite",
        dagsters / batched,
        2.0,
        f"{batched:.2f} s batched, {dagsters:.2f} s one event at a time",
    )


def remote_launch_goal() -> Goal:
    from remote_launch import measure

    remote, local = measure(500)
    return Goal(
        "first task at 500 tasks: launch to the running UI vs own server",
        local / remote,
        1.5,
        f"{remote:.1f} s through the UI, {local:.1f} s with a code server of its own",
    )


def main() -> int:
    goals = [
        planning_goal(),
        priority_goal(),
        dataflow_goal(),
        run_creation_goal(),
        remote_launch_goal(),
    ]
    print(f"\n{'goal':<62}{'ratio':>8}{'needs':>8}  result")
    for goal in goals:
        mark = "met" if goal.met else "MISSED"
        print(f"{goal.name:<62}{goal.ratio:>7.2f}x{goal.goal:>7.2f}x  {mark}: {goal.detail}")
    missed = [g.name for g in goals if not g.met]
    if missed:
        print(f"\n❌ goals missed: {', '.join(missed)}")
        return 1
    print("\n✅ every goal met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
