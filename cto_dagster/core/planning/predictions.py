"""How long each task will take, and so the run: learned from earlier runs.

TaskMaster files carry no durations; the instance holds every task's real agent time from earlier
runs. Each task's prediction is, in order: its `metadata.duration` in the file, its recorded agent
time from the latest earlier run, else the median of the known ones scaled by its complexity
weight (`task_weight`: score / 5, or 1). With nothing known at all there is no prediction, and
priorities and the critical path fall back to complexity weights, else task counts.

A run's step processes must see the same predictions as the process that planned the run (their
op tags and descriptions come from them), so the learned times are pinned for them through an
environment variable, like the commits the run planned from.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from cto_dagster.core.planning.planner import ExecutionPlan, task_weight
from cto_dagster.core.support.graphs import longest_path

LEARNED_ENV = "CTO_DAGSTER_LEARNED_DURATIONS"
DEFAULT_AGENT_SLOTS = 8  # the executor's default `max_concurrent`
_learned: dict[str, dict[str, float]] = {}  # "<project> <repository>" -> task -> seconds


@dataclass(frozen=True)
class Prediction:
    durations: dict[str, float]  # every task to run -> predicted seconds
    source: str  # where the figures come from, for people
    critical_path: list[str]
    critical_path_seconds: float

    def makespan(self, slots: int) -> float:
        """The larger of the two bounds: the critical path, and the work spread over the slots."""
        work = sum(self.durations.values())
        return max(self.critical_path_seconds, work / max(1, slots))

    def line(self, slots: int) -> str:
        return (
            f"predicted makespan {self.makespan(slots):.0f} s with {slots} agent slots "
            f"(critical path {' -> '.join(self.critical_path)}: "
            f"{self.critical_path_seconds:.0f} s; {self.source})"
        )


def default_slots(plan: ExecutionPlan) -> int:
    """Agent slots a run gets by default: the executor's, or fewer for a narrow plan."""
    widest = max((len(level) for level in plan.levels), default=1)
    return max(1, min(DEFAULT_AGENT_SLOTS, widest))


def predict(plan: ExecutionPlan, learned: Mapping[str, float]) -> Prediction | None:
    run = plan.task_ids
    from_file = {t: float(plan.tasks[t].duration or 0) for t in run}
    from_file = {t: s for t, s in from_file.items() if s > 0}
    from_history = {t: float(s) for t, s in learned.items() if t in run and s > 0}
    known = {**from_history, **from_file}  # the file's own estimate wins
    if not known:
        return None
    typical = statistics.median(known.values())
    durations = {t: known.get(t, typical * task_weight(plan.tasks[t])) for t in run}
    parts = []
    if from_file:
        parts.append(f"{len(from_file)} from the tasks file")
    if set(from_history) - set(from_file):
        parts.append(f"{len(set(from_history) - set(from_file))} from earlier runs")
    guessed = len(run) - len(known)
    if guessed:
        parts.append(f"{guessed} estimated from the median and complexity")
    order = list(run)
    path, seconds = longest_path(plan.dependencies, order, lambda t: durations[t])
    return Prediction(durations, "durations: " + ", ".join(parts), path, seconds)


def record_learned(project: str, durations: Mapping[str, float]) -> None:
    _learned[project] = {t: round(float(s), 3) for t, s in durations.items()}


def learned_pin() -> str | None:
    """The value of LEARNED_ENV for this process's step processes (None: nothing learned)."""
    return json.dumps(_learned, sort_keys=True) if _learned else None


def pinned_learned(environ: Mapping[str, str], key: str) -> dict[str, float] | None:
    """The learned durations the run's planning process pinned (None: not in a run's step)."""
    text = environ.get(LEARNED_ENV)
    if not text:
        return None
    try:
        value = json.loads(text).get(key, {})
    except (ValueError, AttributeError):
        return None
    if not isinstance(value, dict):
        return None
    return {
        str(t): float(s)
        for t, s in value.items()
        if isinstance(s, int | float) and not isinstance(s, bool)
    }
