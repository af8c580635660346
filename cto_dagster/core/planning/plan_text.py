"""The plan as a person reads it, in the original guide's words."""

from __future__ import annotations

from cto_dagster.core.planning.planner import ExecutionPlan
from cto_dagster.core.planning.predictions import default_slots, predict

_TITLE_WIDTH = 70


def _title(plan: ExecutionPlan, task_id: str) -> str:
    title = " ".join(plan.tasks[task_id].title.split())
    if len(title) > _TITLE_WIDTH:
        title = title[: _TITLE_WIDTH - 1] + "…"
    text = f"Task {task_id}: {title}" if title else f"Task {task_id}"
    complexity = plan.tasks[task_id].complexity
    return f"{text} (complexity {complexity:g})" if complexity is not None else text


def summary_lines(plan: ExecutionPlan) -> list[str]:
    stats = plan.stats
    return [
        "✅ Dependency graph built successfully",
        f"📊 Total tasks: {stats['total_tasks']}",
        f"📊 Execution levels: {stats['total_levels']}",
        f"📊 Max parallel tasks: {stats['max_parallelism']}",
        f"📊 Theoretical speedup: {stats['theoretical_speedup']:.1f}x",
    ]


def level_lines(plan: ExecutionPlan) -> list[str]:
    lines: list[str] = []
    for index, level in enumerate(plan.levels):
        lines.append(f"📊 LEVEL {index}")
        lines += [f"  → {_title(plan, task_id)}" for task_id in level]
    return lines


_NOT_RUN = (
    ("review", "🔍 In review (not run again; dependents build on their branches)"),
    ("done", "⏭️  Done (not run)"),
    ("held", "⏸️  Held: cancelled, deferred or blocked (not run)"),
)


def _tag_line(plan: ExecutionPlan) -> str:
    if not plan.planned_tags:
        return f"Tag: {plan.tag} ({plan.task_list.path})"
    waits = [
        f"{tag} waits for {', '.join(needed)}"
        for tag, needed in plan.task_list.tag_depends.items()
        if needed
    ]
    order = f" ({'; '.join(waits)})" if waits else ""
    return f"Tags: {', '.join(plan.planned_tags)}{order} ({plan.task_list.path})"


def status_lines(plan: ExecutionPlan) -> list[str]:
    """The tasks that do not run, by status group, then the blocked ones with the reason."""
    lines: list[str] = []
    for group, heading in _NOT_RUN:
        members = [s for s in plan.skipped if s.get("group", group) == group]
        if members:
            lines += ["", f"{heading} ({len(members)}):"]
            lines += [f"  - {_title(plan, s['id'])} [{s['status']}]" for s in members]
    if plan.blocked:
        lines += ["", f"⛔ Blocked ({len(plan.blocked)}):"]
        lines += [f"  - Task {b['id']}: {b['reason']}" for b in plan.blocked]
    return lines


def render_plan(plan: ExecutionPlan) -> str:
    lines = summary_lines(plan)
    lines.append("")
    lines.append(_tag_line(plan))
    if not plan.levels:
        lines.append("Nothing to run: every task is done, in review, held or blocked.")
    lines += level_lines(plan)
    if plan.critical_path:
        chain = " -> ".join(plan.critical_path)
        if plan.critical_path_seconds is not None:
            weight = f"{plan.critical_path_seconds:g} s estimated"
        elif any(plan.tasks[t].complexity is not None for t in plan.task_ids):
            weight = f"{len(plan.critical_path)} tasks, weighted by complexity"
        else:
            weight = f"{len(plan.critical_path)} tasks"
        lines += ["", f"🧭 Critical path ({weight}): {chain}"]
        prediction = predict(plan, {})
        if prediction is not None:
            lines.append(f"🔮 {prediction.line(default_slots(plan)).capitalize()}")
    lines += status_lines(plan)
    if plan.advice:
        lines += ["", "💡 Advice:"]
        lines += [f"  - {item}" for item in plan.advice]
    return "\n".join(lines)
