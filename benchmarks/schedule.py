"""Scheduling on real runs: `play_project` through `dagster job execute`, demo agent sleeping.

    uv run python benchmarks/schedule.py [--speed 1.0] [--only guide,project10,random30,priority]

For each graph it prints the makespan beside the physical limit (the critical path with the real
durations, or the work divided among the agent slots when they are fewer than the graph's width),
what the original's level barriers would have taken with the same durations, the sequential time,
and the step start latency (the time from "dependencies done" to "task running", waits for a free
slot included) with its start-up part alone (from "step launched" to "task running").
The last rows run one graph with fewer agent slots than ready tasks, with and without priority
ordering (the longest remaining path first). Goals: makespan within 10% of the critical path plus
the per-step latency; median step start latency under 2 s; priority ordering beats no ordering.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cto_dagster.commands.demo import job_execute_command
from cto_dagster.commands.runs.instance_home import prepare_home
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.defs.executor import DEFAULT_AGENT_SLOTS


def task(task_id: int, deps: list[int], seconds: float) -> dict:
    return {
        "id": task_id,
        "title": f"Task {task_id}",
        "status": "pending",
        "dependencies": deps,
        "metadata": {"duration": seconds},
    }


def guide() -> list[dict]:
    data = json.loads(
        (
            Path(__file__).resolve().parent.parent
            / "cto_dagster"
            / "sample_data"
            / "guide_tasks.json"
        ).read_text()
    )
    return data["master"]["tasks"]


def project10() -> list[dict]:
    """Shaped like a real project: setup, parallel features, integration, docs."""
    return [
        task(1, [], 3),
        task(2, [1], 4),
        task(3, [1], 2),
        task(4, [1], 6),
        task(5, [2], 3),
        task(6, [3], 2),
        task(7, [2, 3], 5),
        task(8, [4, 6], 2),
        task(9, [5, 7, 8], 3),
        task(10, [1], 2),
    ]


def random30(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for i in range(1, 31):
        candidates = list(range(max(1, i - 8), i))
        deps = sorted(rng.sample(candidates, k=min(len(candidates), rng.choice([0, 1, 1, 2]))))
        tasks.append(task(i, deps, rng.choice([1, 2, 2, 3, 4])))
    return tasks


def priority_graph() -> list[dict]:
    """A chain of five 3 s tasks hidden behind eight independent ones (ids sort them first)."""
    independent = [task(i, [], 3) for i in range(1, 9)]
    chain = [task(20, [], 3)] + [task(20 + k, [20 + k - 1], 3) for k in range(1, 5)]
    return independent + chain


def execute(
    name: str, tasks: list[dict], speed: float, slots: int | None, priorities: bool
) -> tuple[Path, str, object, float]:
    """One real play_project run of `tasks` (demo agent) in a fresh folder: its DAGSTER_HOME, run
    id, plan and wall time."""
    from cto_dagster.commands.runs.instance_home import open_instance
    from cto_dagster.core.planning.planner import build_plan
    from cto_dagster.core.taskmaster import read_task_list

    root = Path(tempfile.mkdtemp(prefix=f"cto-bench-{name.replace(' ', '-')}-"))
    remote = create_sample_repository(root / "repo", json.dumps({"master": {"tasks": tasks}}))
    home = root / "home"
    prepare_home(home)
    config = root / "cto.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "projects": [
                    {
                        "name": "bench",
                        "repository": str(remote),
                        "workspace_root": str(root / "ws"),
                        "max_retries": 0,
                    }
                ]
            }
        )
    )
    run_config = root / "run.yaml"
    run_config.write_text(
        yaml.safe_dump({"execution": {"config": {"max_concurrent": slots or DEFAULT_AGENT_SLOTS}}})
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CTO_DAGSTER_CONFIG": str(config),
        "CTO_DAGSTER_CACHE": str(root / "cache"),
        "CTO_DEMO_SPEED": str(speed),
        "CTO_DAGSTER_PRIORITIES": "on" if priorities else "off",
    }
    started = time.monotonic()
    result = subprocess.run(
        job_execute_command("-c", str(run_config)),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{name}: run failed\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    tasks_file = root / "tasks.json"
    tasks_file.write_text(json.dumps({"master": {"tasks": tasks}}))
    plan = build_plan(read_task_list(tasks_file, environ={}))
    with open_instance(home) as instance:
        import dagster as dg

        run_id = instance.get_run_records(dg.RunsFilter(), limit=1)[0].dagster_run.run_id
    return home, run_id, plan, wall


def run(name: str, tasks: list[dict], speed: float, slots: int | None, priorities: bool) -> dict:
    from cto_dagster.commands.runs.instance_home import open_instance
    from cto_dagster.defs.metrics_assets import metrics_for_run

    home, run_id, plan, wall = execute(name, tasks, speed, slots, priorities)
    with open_instance(home) as instance:
        metrics = metrics_for_run(instance, run_id, plan)
    frame = metrics.tasks
    downstream = frame[frame["dependencies"] != ""]["queue_wait_s"]
    start_up = frame[frame["dependencies"] != ""]["start_up_s"].dropna()
    first_wave = frame[frame["dependencies"] == ""]["queue_wait_s"]
    s = metrics.summary
    return {
        "name": name,
        "tasks": len(tasks),
        "levels": s["levels"],
        "slots": slots or DEFAULT_AGENT_SLOTS,
        "makespan": s["parallel_time_s"],
        "critical": s["critical_path_s"],
        "barrier": s["level_barrier_time_s"],
        "sequential": s["sequential_time_s"],
        "latency": statistics.median(downstream) if len(downstream) else 0.0,
        "start_up": statistics.median(start_up) if len(start_up) else 0.0,
        "first_wave": statistics.median(first_wave) if len(first_wave) else 0.0,
        "wall": wall,
    }


def print_row(row: dict) -> None:
    # the limit: the critical path plus one start latency per level transition, or, with fewer
    # slots than the graph's width, the work (each task plus its start-up) divided among the slots
    dataflow = row["critical"] + row["latency"] * max(1, row["levels"] - 1)
    slot_bound = (row["sequential"] + row["start_up"] * row["tasks"]) / row["slots"]
    limit = max(dataflow, slot_bound)
    within = (row["makespan"] - limit) / limit * 100 if limit else 0.0
    print(
        f"{row['name']:<20}{row['tasks']:>6}{row['levels']:>7}{row['slots']!s:>6}"
        f"{row['makespan']:>10.1f}{row['critical']:>10.1f}{limit:>9.1f}{within:>+8.0f}%"
        f"{row['barrier']:>10.1f}{row['sequential']:>8.1f}{row['latency']:>9.2f}"
        f"{row['start_up']:>9.2f}"
        f"{row['first_wave']:>8.1f}{row['wall']:>8.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=1.0, help="multiplies every duration")
    parser.add_argument("--only", default="guide,project10,random30,priority")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    print(
        f"{'graph':<20}{'tasks':>6}{'levels':>7}{'slots':>6}{'makespan':>10}{'critical':>10}"
        f"{'limit':>9}{'vs lim':>9}{'barrier':>10}{'seq':>8}{'latency':>9}{'startup':>9}"
        f"{'1st wv':>8}"
        f"{'wall':>8}"
    )
    print(
        "(seconds; limit = critical path + median step latency per level transition, or"
        " (work + start-up of each task) / slots if larger;"
        " latency = median of 'dependencies done' to 'task running', slot waits included;"
        " startup = median of 'step launched' to 'task running')"
    )
    graphs = {"guide": guide(), "project10": project10(), "random30": random30()}
    for name, tasks in graphs.items():
        if name in wanted:
            print_row(run(name, tasks, args.speed, None, True))
    if "priority" in wanted:
        with_priority = run("2 slots, priority", priority_graph(), args.speed, 2, True)
        print_row(with_priority)
        without = run("2 slots, no order", priority_graph(), args.speed, 2, False)
        print_row(without)
        gain = without["makespan"] / with_priority["makespan"]
        print(
            f"priority ordering: {with_priority['makespan']:.1f} s against "
            f"{without['makespan']:.1f} s without ({gain:.2f}x)"
        )


if __name__ == "__main__":
    main()
