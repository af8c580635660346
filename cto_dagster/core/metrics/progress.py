"""How far a run is: tasks done out of total, what runs now, and an estimate of the time left.

The estimate is the larger of two bounds on what is left: the heaviest remaining dependency chain
and the remaining work spread over the agent slots. Each task's duration is its prediction when the
project has one (history, complexity, `metadata.duration`), else the mean of the tasks finished so
far in this run; with neither, there is no estimate yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cto_dagster.core.support.graphs import remaining_path_lengths, topological_levels
from cto_dagster.core.support.names import sorted_ids


def format_duration(seconds: float) -> str:
    """`42 s`, `3 min 5 s`, `2 h 10 min`: what a person reads at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


@dataclass
class RunProgress:
    """Progress of one run's tasks, fed with start, finish and failure times as they happen."""

    dependencies: Mapping[str, Sequence[str]]  # task -> its dependencies among the run's tasks
    slots: int = 1
    predicted: Mapping[str, float] = field(default_factory=dict)  # task -> seconds, where known
    started: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)  # finished task -> seconds
    failed: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return len(self.dependencies)

    @property
    def done(self) -> int:
        return len(self.durations)

    @property
    def running(self) -> list[str]:
        return sorted_ids(
            t for t in self.started if t not in self.durations and t not in self.failed
        )

    def start(self, task_id: str, at: float) -> None:
        if task_id in self.dependencies:
            self.started[task_id] = at
            self.failed.discard(task_id)  # a retry

    def finish(self, task_id: str, at: float) -> None:
        if task_id in self.dependencies:
            self.durations[task_id] = max(0.0, at - self.started.get(task_id, at))

    def fail(self, task_id: str) -> None:
        if task_id in self.dependencies:
            self.failed.add(task_id)

    def _cannot_run(self) -> set[str]:
        """Failed tasks and everything downstream of them: not part of what is left."""
        out = set(self.failed)
        changed = True
        while changed:
            changed = False
            for task, deps in self.dependencies.items():
                if task not in out and task not in self.durations and out.intersection(deps):
                    out.add(task)
                    changed = True
        return out

    def seconds_left(self, now: float) -> float | None:
        """An estimate of the time to the last task's end; None when nothing says how long a
        task takes yet."""
        mean = sum(self.durations.values()) / len(self.durations) if self.durations else None
        excluded = self._cannot_run()
        left: dict[str, float] = {}
        for task in self.dependencies:
            if task in self.durations or task in excluded:
                continue
            expected = self.predicted.get(task, mean)
            if expected is None:
                return None
            if task in self.started:
                expected = max(0.0, expected - (now - self.started[task]))
            left[task] = expected
        if not left:
            return 0.0
        deps = {t: [d for d in self.dependencies[t] if d in left] for t in left}
        levels, _ = topological_levels(deps)
        order = [task for level in levels for task in level]
        chain = max(remaining_path_lengths(deps, order, lambda t: left[t]).values())
        return max(chain, sum(left.values()) / max(1, self.slots))

    def line(self, now: float) -> str:
        parts = [f"{self.done}/{self.total} tasks done"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        running = self.running
        if running:
            shown = ", ".join(running[:8]) + (f" (+{len(running) - 8})" if len(running) > 8 else "")
            parts.append(f"running {shown}")
        left = self.seconds_left(now)
        if left and self.done < self.total:
            parts.append(f"about {format_duration(left)} left")
        return "[" + " · ".join(parts) + "]"
