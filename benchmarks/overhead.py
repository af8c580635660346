"""Where a task step's time goes besides its agent, on graphs shaped like real TaskMaster projects:

    uv run python benchmarks/overhead.py [--speed 1.0]

Two generated graphs (the corpus's median, 15 tasks in 7 levels; and a 30-task one), agents
taking lognormal durations with a 3 s median that the scheduler is not told (no `metadata.duration`
in the file: the demo agent sleeps `metadata.demo.sleep`). For each graph: the makespan against the
limit (the critical path of the agents' real times, or their work spread over the slots), the goal
(<= 1.10 x limit + 0.5 s per task on the critical path), and the median of each part of a step:

- slot wait: ready until its process is launched (no free agent slot),
- start-up: process launched until the task's code runs (fork, Dagster's step set-up),
- prepare: until the agent starts (remote heads, dependency merges, the work tree),
- agent: the agent itself,
- publish: after the agent, until the branch is pushed (record, checks, commit, push),
- report: pushed until the step's success is in the event log (metadata, materialization).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from schedule import execute


def shaped(tasks: int, levels: int, seed: int) -> list[dict]:
    """A graph of `tasks` in exactly `levels` levels, 1-2 dependencies each on earlier levels,
    agent times lognormal around 3 s."""
    rng = random.Random(seed)
    per_level = [[] for _ in range(levels)]
    for index in range(tasks):
        per_level[index % levels if index < levels else rng.randrange(levels)].append(index + 1)
    out = []
    for level, members in enumerate(per_level):
        for task_id in members:
            deps = []
            if level:
                deps = [rng.choice(per_level[level - 1])]
                earlier = [t for lv in per_level[:level] for t in lv if t not in deps]
                if earlier and rng.random() < 0.4:
                    deps.append(rng.choice(earlier))
            seconds = round(min(12.0, rng.lognormvariate(1.1, 0.5)), 2)  # median e^1.1 = 3 s
            out.append(
                {
                    "id": task_id,
                    "title": f"Task {task_id}",
                    "status": "pending",
                    "dependencies": sorted(set(deps)),
                    "metadata": {"demo": {"sleep": seconds}},
                }
            )
    return sorted(out, key=lambda t: t["id"])


def run(name: str, tasks: list[dict], speed: float) -> dict:
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance
    from cto_dagster.defs.metrics_assets import metrics_for_run
    from cto_dagster.defs.run_records import task_records

    home, run_id, plan, _ = execute(name, tasks, speed, None, True)
    with open_instance(home) as instance:
        metrics = metrics_for_run(instance, run_id, plan)
        records = task_records(instance, run_id)
        successes = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_SUCCESS, limit=10_000
        ).records
        done = {r.event_log_entry.step_key: r.event_log_entry.timestamp for r in successes}
    frame = metrics.tasks
    parts = {
        "slot wait": list(frame["slot_wait_s"].dropna()),
        "start-up": list(frame["start_up_s"].dropna()),
        "prepare": [r.number("prepare_seconds") or 0.0 for r in records],
        "agent": [r.number("agent_seconds") or 0.0 for r in records],
        "publish": [r.number("publish_seconds") or 0.0 for r in records],
        "report": [
            max(0.0, done[r.step_key] - (r.number("finished_at") or done[r.step_key]))
            for r in records
            if r.step_key in done
        ],
    }
    from cto_dagster.core.support.graphs import longest_path

    agent = {r.task_id: r.number("agent_seconds") or 0.0 for r in records}
    path, agent_path = longest_path(plan.dependencies, plan.task_ids, agent.__getitem__)
    s = metrics.summary
    return {
        "name": name,
        "tasks": len(tasks),
        "levels": s["levels"],
        "makespan": s["parallel_time_s"],
        "critical": agent_path,  # of the agents' own times: our overhead is not in the limit
        "on_path": len(path),
        "work": sum(agent.values()),
        "slots": s["agent_slots"],
        "parts": {k: statistics.median(v) if v else 0.0 for k, v in parts.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()
    rows = [
        run("median-15", shaped(15, 7, seed=15), args.speed),
        run("project-30", shaped(30, 9, seed=30), args.speed),
    ]
    missed = 0
    for row in rows:
        limit = max(row["critical"], row["work"] / row["slots"])
        goal = 1.10 * limit + 0.5 * row["on_path"]
        verdict = "met" if row["makespan"] <= goal else "MISSED"
        missed += verdict == "MISSED"
        print(
            f"{row['name']}: {row['tasks']} tasks, {row['levels']} levels; makespan "
            f"{row['makespan']:.1f} s, limit {limit:.1f} s, goal {goal:.1f} s "
            f"(1.10 x limit + 0.5 s x {row['on_path']} tasks on the critical path): {verdict}"
        )
        shown = ", ".join(f"{k} {v:.2f} s" for k, v in row["parts"].items())
        print(f"   median per step: {shown}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
