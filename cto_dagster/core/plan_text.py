"""The plan as a person reads it, in the original guide's words."""

from __future__ import annotations

from cto_dagster.core.planner import ExecutionPlan

_TITLE_WIDTH = 70


def _title(plan: ExecutionPlan, task_id: str) -> str:
    title = " ".join(plan.tasks[task_id].title.split())
    if len(title) > _TITLE_WIDTH:
        title = title[: _TITLE_WIDTH - 1] + "…"
    return f"Task {task_id}: {title}" if title else f"Task {task_id}"


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


def render_plan(plan: ExecutionPlan) -> str:
    lines = summary_lines(plan)
    lines.append("")
    lines.append(f"Tag: {plan.tag} ({plan.task_list.path})")
    if not plan.levels:
        lines.append("Nothing to run: every task is done, cancelled, deferred or blocked.")
    lines += level_lines(plan)
    if plan.critical_path:
        chain = " -> ".join(plan.critical_path)
        if plan.critical_path_seconds is not None:
            weight = f"{plan.critical_path_seconds:g} s estimated"
        else:
            weight = f"{len(plan.critical_path)} tasks"
        lines += ["", f"🧭 Critical path ({weight}): {chain}"]
    if plan.skipped:
        lines += ["", f"⏭️  Not run ({len(plan.skipped)}):"]
        lines += [f"  - Task {s['id']} ({s['status']})" for s in plan.skipped]
    if plan.blocked:
        lines += ["", f"⛔ Blocked ({len(plan.blocked)}):"]
        lines += [f"  - Task {b['id']}: {b['reason']}" for b in plan.blocked]
    if plan.advice:
        lines += ["", "💡 Advice:"]
        lines += [f"  - {item}" for item in plan.advice]
    return "\n".join(lines)
