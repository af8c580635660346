"""Actual against theoretical speedup, from what a run recorded (pandas; no Dagster here).

Inputs are plain records (task id, level, start, finish) and the plan's dependencies; outputs are
three frames (tasks, levels, run) and the picture of the run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from cto_dagster.core.metrics.verify_summary import VerifiedCounts, verified_line
from cto_dagster.core.support.graphs import longest_path
from cto_dagster.core.support.names import id_sort_key, sorted_ids


@dataclass(frozen=True)
class TaskTiming:
    task_id: str
    level: int
    started_at: float
    finished_at: float
    launched_at: float | None = None  # when its step's process (or pod) was launched
    from_run: str | None = None  # the earlier run (of a re-executed one) that did this task
    run_started_at: float | None = None  # when the run that did it started (if not the first)
    usage: Mapping[str, float] = field(default_factory=dict)  # what its agent reported
    # where its time went (SPLIT_FIELDS: setup, agent, checks, repairs), as far as recorded
    split: Mapping[str, float] = field(default_factory=dict)
    verified: str | None = None  # passed | repaired | failed; None: no checks configured

    def shifted(self, seconds: float, from_run: str | None, run_started_at: float | None):
        launched = None if self.launched_at is None else self.launched_at - seconds
        started = None if run_started_at is None else run_started_at - seconds
        return replace(
            self,
            started_at=self.started_at - seconds,
            finished_at=self.finished_at - seconds,
            launched_at=launched,
            from_run=from_run,
            run_started_at=started,
        )


# what agents report about themselves, summed per run where any task reported it
USAGE_FIELDS = ("agent_cost_usd", "agent_input_tokens", "agent_output_tokens", "agent_turns")


# a task's time, split (the rest of its duration is git: merging, checking out, pushing)
SPLIT_FIELDS = ("setup_s", "agent_s", "check_s", "repair_s")
# the materialization's metadata each comes from
SPLIT_METADATA = {
    "setup_s": "setup_seconds",
    "agent_s": "agent_seconds",
    "check_s": "check_seconds",
    "repair_s": "repair_seconds",
}


def usage_totals(timings: Sequence[TaskTiming]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for name in USAGE_FIELDS:
        values = [t.usage[name] for t in timings if name in t.usage]
        totals[name] = round(float(sum(values)), 6) if values else float("nan")
    return totals


@dataclass(frozen=True)
class RunPart:
    """What one run of a re-execution chain (the first run, then each re-execution) did."""

    run_id: str
    started_at: float | None
    timings: Sequence[TaskTiming]


def join_runs(parts: Sequence[RunPart]) -> tuple[list[TaskTiming], float | None]:
    """One timeline for a run and the runs it re-executed (oldest first): each task from the
    newest run that did it, earlier runs' tasks marked with their run, and the idle time between
    runs (a person fixing the cause) cut out, so speedups measure the time tasks ran.
    Returns the timings and when the timeline starts."""
    newest: dict[str, tuple[int, TaskTiming]] = {}
    for index, part in enumerate(parts):
        for timing in part.timings:
            newest[timing.task_id] = (index, timing)
    joined: list[TaskTiming] = []
    end: float | None = None
    shift = 0.0
    started: float | None = parts[0].started_at if parts else None
    for index, part in enumerate(parts):
        mine = [t for i, t in newest.values() if i == index]
        starts = [t.started_at for t in mine] + ([part.started_at] if part.started_at else [])
        if end is not None and starts:
            shift = max(0.0, min(starts) - end)
        label = part.run_id if index < len(parts) - 1 else None
        begun = part.started_at if index else None
        joined += [t.shifted(shift, label, begun) for t in mine]
        if mine:
            finish = max(t.finished_at - shift for t in mine)
            end = finish if end is None else max(end, finish)
    return joined, started


@dataclass
class RunMetrics:
    run_id: str
    tasks: pd.DataFrame  # one row a task that finished
    levels: pd.DataFrame  # one row a level
    summary: dict[str, float | int | str]
    critical_path: list[str]
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    verified: VerifiedCounts | None = None  # None: no checks configured

    @property
    def complete(self) -> bool:
        return not self.missing and not self.failed


def speedup_figures(timings: Sequence[TaskTiming]) -> tuple[float, float, float]:
    """Sequential time (the sum of task durations), parallel time (first start to last finish)
    and their ratio, the actual speedup (0 when nothing ran)."""
    if not timings:
        return 0.0, 0.0, 0.0
    sequential = sum(t.finished_at - t.started_at for t in timings)
    makespan = max(t.finished_at for t in timings) - min(t.started_at for t in timings)
    return sequential, makespan, (sequential / makespan if makespan > 0 else 0.0)


TASK_COLUMNS = [
    "task",
    "level",
    "start_s",
    "finish_s",
    "duration_s",
    "queue_wait_s",
    "slot_wait_s",
    "start_up_s",
    "dependencies",
    "run",
    *SPLIT_FIELDS,
    "verified",
]
LEVEL_COLUMNS = ["level", "tasks", "first_start_s", "last_finish_s", "wall_s", "longest_task_s"]


def _task_rows(
    timings: Sequence[TaskTiming],
    dependencies: Mapping[str, Sequence[str]],
    run_started_at: float | None,
) -> list[dict]:
    """One row a finished task: when it ran, and how long it waited once it was ready."""
    done = {t.task_id: t for t in timings}
    origin = min(
        [t.started_at for t in timings] + ([run_started_at] if run_started_at else []), default=0.0
    )
    rows = []
    for timing in sorted(timings, key=lambda t: (t.started_at, id_sort_key(t.task_id))):
        deps_here = [done[d] for d in dependencies.get(timing.task_id, ()) if d in done]
        # ready when its dependencies were done, and not before its own run started
        floor = timing.run_started_at if timing.run_started_at is not None else None
        floor = floor if floor is not None else (run_started_at or origin)
        ready_at = max([d.finished_at for d in deps_here] + [floor])
        rows.append(
            {
                "task": timing.task_id,
                "level": timing.level,
                "start_s": round(timing.started_at - origin, 3),
                "finish_s": round(timing.finished_at - origin, 3),
                "duration_s": round(timing.finished_at - timing.started_at, 3),
                "queue_wait_s": round(max(0.0, timing.started_at - ready_at), 3),
                # queue wait = waiting for a free agent slot + starting the step
                "slot_wait_s": _seconds_between(ready_at, timing.launched_at),
                "start_up_s": _seconds_between(timing.launched_at, timing.started_at),
                "dependencies": ", ".join(sorted_ids(dependencies.get(timing.task_id, ()))),
                "run": timing.from_run[:8] if timing.from_run else "this run",
                **_split(timing),
                "verified": timing.verified or "",
            }
        )
    return rows


def _split(timing: TaskTiming) -> dict[str, float]:
    """Its setup, agent, checks and repairs in seconds; NaN where nothing was recorded (an older
    materialization; no checks configured)."""
    return {
        name: round(float(timing.split[name]), 3) if name in timing.split else float("nan")
        for name in SPLIT_FIELDS
    }


def _verify_figures(tasks: pd.DataFrame, verified: VerifiedCounts | None) -> dict[str, float]:
    """Time spent on checks, setups and repairs in the run, and how many passed: only where
    checks are configured (nothing to plot otherwise)."""
    if verified is None:
        return {}
    sums = {
        "setup_time_s": "setup_s",
        "check_time_s": "check_s",
        "repair_time_s": "repair_s",
    }
    figures: dict[str, float] = {
        name: round(float(tasks[column].dropna().sum()), 3) for name, column in sums.items()
    }
    return {**figures, **verified.figures()}


def _levels_frame(tasks: pd.DataFrame) -> pd.DataFrame:
    if tasks.empty:
        return pd.DataFrame(columns=LEVEL_COLUMNS)
    levels = (
        tasks.groupby("level")
        .agg(
            tasks=("task", "count"),
            first_start_s=("start_s", "min"),
            last_finish_s=("finish_s", "max"),
            longest_task_s=("duration_s", "max"),
        )
        .reset_index()
    )
    levels["wall_s"] = (levels["last_finish_s"] - levels["first_start_s"]).round(3)
    return levels[LEVEL_COLUMNS]


def _critical_path(rows: list[dict], dependencies: Mapping[str, Sequence[str]]):
    durations = {row["task"]: row["duration_s"] for row in rows}
    order = [r["task"] for r in sorted(rows, key=lambda r: (r["level"], id_sort_key(r["task"])))]
    run_deps = {t: [d for d in dependencies.get(t, ()) if d in durations] for t in order}
    return longest_path(run_deps, order, lambda t: durations[t])


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator > 0 else 0.0


def _wait_figures(tasks: pd.DataFrame) -> dict[str, float]:
    waits = tasks["queue_wait_s"]
    return {
        "mean_queue_wait_s": round(float(waits.mean()), 3) if len(tasks) else 0.0,
        "median_queue_wait_s": round(float(waits.median()), 3) if len(tasks) else 0.0,
        "median_slot_wait_s": _median(tasks["slot_wait_s"]),
        "median_start_up_s": _median(tasks["start_up_s"]),
    }


def _prediction_figures(predicted: float | None, makespan: float) -> dict[str, float]:
    """The makespan the plan predicted (from history, complexity or the file's durations)
    beside the real one, so users see how good the prediction was."""
    if not predicted:
        return {}
    return {
        "predicted_makespan_s": round(predicted, 3),
        "prediction_error": round((makespan - predicted) / predicted, 3),
    }


def compute_metrics(
    run_id: str,
    timings: Sequence[TaskTiming],
    dependencies: Mapping[str, Sequence[str]],
    planned: Sequence[str],
    planned_levels: int,
    run_started_at: float | None = None,
    agent_slots: int | None = None,
    failed: Sequence[str] = (),
    conflicts: Mapping[str, int] | None = None,
    predicted_makespan: float | None = None,
    verified: VerifiedCounts | None = None,
) -> RunMetrics:
    """Everything the metrics asset and `cto-dagster report` show, for one run."""
    done = {t.task_id for t in timings}
    rows = _task_rows(timings, dependencies, run_started_at)
    tasks = pd.DataFrame(rows, columns=TASK_COLUMNS)
    levels = _levels_frame(tasks)
    path, path_seconds = _critical_path(rows, dependencies)
    sequential, makespan, speedup = speedup_figures(timings)
    barrier = float(levels["longest_task_s"].sum()) if not levels.empty else 0.0
    slots = agent_slots or max((int(x) for x in levels["tasks"]), default=1)
    summary: dict[str, float | int | str] = {
        "tasks_planned": len(planned),
        "tasks_finished": len(rows),
        "tasks_failed": len(failed),
        "tasks_missing": len([t for t in planned if t not in done]),
        "levels": planned_levels,
        "sequential_time_s": round(sequential, 3),
        "parallel_time_s": round(makespan, 3),
        "actual_speedup": round(speedup, 3),
        "theoretical_speedup": _ratio(len(planned), planned_levels),
        "critical_path_s": round(path_seconds, 3),
        "best_speedup": _ratio(sequential, path_seconds),
        "level_barrier_time_s": round(barrier, 3),
        "dataflow_gain": _ratio(barrier, makespan),
        "agent_slots": slots,
        "agent_utilization": _ratio(sequential, slots * makespan),
        "scheduling_overhead_s": round(max(0.0, makespan - path_seconds), 3),
        **_wait_figures(tasks),
        **usage_totals(timings),
        **{name: int(count) for name, count in (conflicts or {}).items()},
        **_prediction_figures(predicted_makespan, makespan),
        **_verify_figures(tasks, verified),
    }
    return RunMetrics(
        run_id=run_id,
        tasks=tasks,
        levels=levels,
        summary=summary,
        critical_path=path,
        missing=[t for t in planned if t not in done and t not in failed],
        failed=sorted_ids(failed),
        verified=verified,
    )


def _seconds_between(earlier: float | None, later: float | None) -> float:
    if earlier is None or later is None:
        return float("nan")
    return round(max(0.0, later - earlier), 3)


def _median(column: pd.Series) -> float:
    """Median of the known values; NaN (shown as "n/a") when no step's launch was recorded."""
    known = column.dropna()
    return round(float(known.median()), 3) if len(known) else float("nan")


_LEVEL_COLORS = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip


def gantt_svg(metrics: RunMetrics, title: str = "") -> str:
    """A Gantt chart of the run (SVG: no plotting library, and the UI shows it as an image),
    one bar a task, coloured by level, the critical path outlined and hatched; where a task
    recorded where its time went, its bar is split into setup, agent, checks, repairs and git
    (so a slow test suite or a costly repair shows at a glance)."""
    from xml.sax.saxutils import escape

    frame = metrics.tasks.sort_values(["level", "start_s"]).reset_index(drop=True)
    left, right, top, row = 150, 20, 58, 26
    width = 900
    plot = width - left - right
    height = top + row * max(1, len(frame)) + 40
    end = float(frame["finish_s"].max()) if not frame.empty else 1.0
    scale = plot / (end or 1.0)
    summary = metrics.summary
    heading = title or (
        f"Run {metrics.run_id[:8]}: {summary['actual_speedup']:.2f}x actual, "
        f"{summary['theoretical_speedup']:.2f}x theoretical (hatched: critical path)"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="black" '
        'stroke-width="1.5"/></pattern></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="14">'
        f"{escape(heading)}</text>",
    ]
    ticks = 6
    for i in range(ticks + 1):
        x = left + plot * i / ticks
        seconds = end * i / ticks
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 34}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{height - 20}" text-anchor="middle">{seconds:.1f}</text>'
        )
    parts.append(
        f'<text x="{left + plot / 2}" y="{height - 4}" text-anchor="middle">'
        "seconds since the run started</text>"
    )
    if any(_segments(task, float(task.duration_s)) for task in frame.itertuples()):
        parts.append(_gantt_legend(top - 12, left))
    critical = set(metrics.critical_path)
    for index, task in enumerate(frame.itertuples()):
        parts.append(_gantt_bar(task, top + index * row, left, scale, row, task.task in critical))
    parts.append("</svg>")
    return "".join(parts)


# the parts of a task's bar (its level's colour is the agent's part)
_SEGMENT_COLORS = {"setup_s": "#6e6e6e", "check_s": "#1a7f37", "repair_s": "#cf222e"}
_OTHER_COLOR = "#d9d9d9"  # git: merging the dependencies, checking out, recording, pushing
_SEGMENT_NAMES = {
    "setup_s": "setup",
    "agent_s": "agent",
    "check_s": "checks",
    "repair_s": "repairs",
}


def _segments(task, duration: float) -> list[tuple[str, float]]:
    """The bar's parts in seconds, in the order a task goes (setup, agent, checks, repairs,
    then the rest: git); empty when the task recorded no split (one bar, as before)."""
    known = {name: getattr(task, name, float("nan")) for name in SPLIT_FIELDS}
    if is_nan(known["agent_s"]):
        return []
    parts = [(n, float(v)) for n, v in known.items() if not is_nan(v) and v > 0]
    rest = duration - sum(v for _, v in parts)
    return parts + ([("other", rest)] if rest > 0 else [])


def _gantt_bar(task, y: float, left: float, scale: float, row: int, on_path: bool) -> str:
    """One task's label and bar (outlined and hatched on the critical path), split into where
    its time went when the task recorded it."""
    from xml.sax.saxutils import escape

    x = left + float(task.start_s) * scale
    bar = max(2.0, float(task.duration_s) * scale)
    color = _LEVEL_COLORS[int(task.level) % len(_LEVEL_COLORS)]
    outline = ' stroke="black" stroke-width="2"' if on_path else ""
    shape = f'<rect x="{x:.1f}" y="{y + 3}" width="{bar:.1f}" height="{row - 6}" '
    segments = _segments(task, float(task.duration_s))
    where = "; ".join(f"{_SEGMENT_NAMES.get(n, 'git')} {v:.1f} s" for n, v in segments)
    text = (
        f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">'
        f"L{task.level} · task {escape(str(task.task))}</text>"
        f'{shape}fill="{color}"{outline}><title>task {escape(str(task.task))}: '
        f"{task.duration_s:.1f} s{escape(f' ({where})' if where else '')}</title></rect>"
    )
    offset = x
    for name, seconds in segments:
        width = seconds * scale
        if name != "agent_s":  # the agent's part keeps the level's colour
            fill = _SEGMENT_COLORS.get(name, _OTHER_COLOR)
            text += (
                f'<rect x="{offset:.1f}" y="{y + 3}" width="{width:.1f}" height="{row - 6}" '
                f'fill="{fill}"><title>task {escape(str(task.task))}: '
                f"{_SEGMENT_NAMES.get(name, 'git')} {seconds:.1f} s</title></rect>"
            )
        offset += width
    if segments and on_path:
        text += f'{shape}fill="none"{outline}/>'
    return text + (f'{shape}fill="url(#hatch)"/>' if on_path else "")


def _gantt_legend(y: float, x: float) -> str:
    """What the colours of a split bar mean."""
    items = [("agent (level colour)", "#4e79a7"), ("setup", _SEGMENT_COLORS["setup_s"])]
    items += [("checks", _SEGMENT_COLORS["check_s"]), ("repairs", _SEGMENT_COLORS["repair_s"])]
    items += [("git", _OTHER_COLOR)]
    parts = []
    for label, fill in items:
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" fill="{fill}"/>'
            f'<text x="{x + 14:.1f}" y="{y}">{label}</text>'
        )
        x += 24 + 7 * len(label)
    return "".join(parts)


def check_time_svg(history: Sequence[tuple[str, Mapping[str, float]]]) -> str:
    """Check time per task across runs (oldest first): one line a task, so a test suite that
    grows slow, or one task's checks that do, shows over runs. `history`: (run, {task: s})."""
    from xml.sax.saxutils import escape

    tasks = sorted_ids({t for _, seconds in history for t in seconds})
    left, right, top, bottom, width, height = 60, 130, 40, 50, 900, 360
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for _, seconds in history for v in seconds.values()), default=0.0) or 1.0
    step = plot_w / max(1, len(history) - 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">'
        "Check time per task across runs (seconds)</text>",
    ]
    for i in range(5):
        y = top + plot_h * (1 - i / 4)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{peak * i / 4:.1f}</text>'
        )
    for index, (run, _) in enumerate(history):
        x = left + index * step
        parts.append(
            f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f'font-size="10">{escape(run)}</text>'
        )
    for number, task in enumerate(tasks):
        color = _LEVEL_COLORS[number % len(_LEVEL_COLORS)]
        points = [
            (left + index * step, top + plot_h * (1 - seconds[task] / peak))
            for index, (_, seconds) in enumerate(history)
            if task in seconds
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points]
        y_label = top + 14 * number
        parts.append(
            f'<rect x="{width - right + 10}" y="{y_label}" width="10" height="10" fill="{color}"/>'
            f'<text x="{width - right + 24}" y="{y_label + 9}">task {escape(task)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline_text(metrics: RunMetrics, width: int = 40) -> str:
    """The run as text bars, one task a line (short enough for the UI to show inline on small
    runs; the Gantt chart image is the full picture)."""
    frame = metrics.tasks
    if frame.empty:
        return "(no task finished)"
    end = float(frame["finish_s"].max()) or 1.0
    critical = set(metrics.critical_path)
    lines = []
    for row in frame.sort_values(["start_s", "level"]).itertuples():
        left = round(row.start_s / end * width)
        length = max(1, round(row.duration_s / end * width))
        bar = " " * left + ("#" if row.task in critical else "=") * length
        lines.append(f"L{row.level} {row.task:>6} |{bar:<{width}}| {row.duration_s:.1f}s")
    return "```\n" + "\n".join(lines) + "\n(# marks the critical path)\n```"


def is_nan(value: object) -> bool:
    """A figure no step recorded (NaN): shown as n/a, and left out of JSON (it has no NaN)."""
    return isinstance(value, float) and math.isnan(value)


def _shown(seconds: float | int | str) -> str:
    return "n/a" if is_nan(seconds) else f"{seconds:.2f} s"


def telemetry_lines(metrics: RunMetrics) -> list[str]:
    """The original's telemetry words, with the numbers it never had."""
    s = metrics.summary
    lines = [
        "📊 PERFORMANCE TELEMETRY",
        "═" * 40,
        f"Run: {metrics.run_id}",
        f"⏱️  Total duration (first start to last finish): {s['parallel_time_s']:.1f} s",
        f"📊 Sequential time (sum of task durations): {s['sequential_time_s']:.1f} s",
        f"📊 Actual speedup: {s['actual_speedup']:.2f}x",
        f"📊 Theoretical speedup: {s['theoretical_speedup']:.2f}x (tasks / levels)",
        f"🧭 Critical path: {' -> '.join(metrics.critical_path) or '(none)'} "
        f"({s['critical_path_s']:.1f} s; best possible speedup {s['best_speedup']:.2f}x)",
        f"🚧 With level barriers (the original's strategy): {s['level_barrier_time_s']:.1f} s; "
        f"dataflow gain {s['dataflow_gain']:.2f}x",
        f"🤖 Agent slots: {s['agent_slots']}, utilization {s['agent_utilization']:.0%}",
        f"⏳ Queue wait: median {s['median_queue_wait_s']:.2f} s, "
        f"mean {s['mean_queue_wait_s']:.2f} s (median waiting for an agent slot "
        f"{_shown(s['median_slot_wait_s'])}, starting the step {_shown(s['median_start_up_s'])}); "
        f"scheduling overhead {s['scheduling_overhead_s']:.1f} s",
    ]
    if not is_nan(s["agent_input_tokens"]):
        cost = "" if is_nan(s["agent_cost_usd"]) else f"${s['agent_cost_usd']:.4f}, "
        turns = "" if is_nan(s["agent_turns"]) else f", {s['agent_turns']:.0f} turns"
        lines.append(
            f"💰 Agents: {cost}{s['agent_input_tokens']:.0f} input and "
            f"{s['agent_output_tokens']:.0f} output tokens{turns}"
        )
    if "predicted_makespan_s" in s:
        lines.append(
            f"🔮 Predicted makespan: {s['predicted_makespan_s']:.1f} s; actual "
            f"{s['parallel_time_s']:.1f} s ({s['prediction_error']:+.0%})"
        )
    if "conflicts_predicted" in s:
        lines.append(
            f"🔀 Merge conflicts: {s['conflicts_predicted']} predicted, "
            f"{s.get('conflicts_resolved', 0)} resolved by an agent, "
            f"{s.get('conflicts_left', 0)} left for a person"
        )
    lines += _verify_lines(metrics)
    if metrics.failed:
        lines.append(f"❌ Failed: tasks {', '.join(metrics.failed)}")
    if metrics.missing:
        lines.append(f"⚠️ Missing (did not run): tasks {', '.join(metrics.missing)}")
    if not metrics.tasks.empty:
        lines += [
            "",
            "Per level:",
            metrics.levels.to_string(index=False),
            "",
            "Per task:",
            _task_table(metrics.tasks).to_string(index=False, na_rep="n/a"),
        ]
    return lines


def _verify_lines(metrics: RunMetrics) -> list[str]:
    """The verified line, and where the checks' time went (nothing without checks)."""
    line = verified_line(metrics.verified)
    if line is None:
        return []
    s = metrics.summary
    setup = f", setup {s['setup_time_s']:.1f} s" if s["setup_time_s"] else ""
    return [
        line,
        f"🧪 Checks {s['check_time_s']:.1f} s{setup}, repairs {s['repair_time_s']:.1f} s "
        "(summed over tasks)",
    ]


def _task_table(tasks: pd.DataFrame) -> pd.DataFrame:
    """The per-task table as printed: the split's columns only where something was recorded."""
    shown = tasks.drop(columns=["dependencies"])
    empty = [c for c in SPLIT_FIELDS if shown[c].isna().all()]
    if not (shown["verified"] != "").any():
        empty.append("verified")
    return shown.drop(columns=empty)
