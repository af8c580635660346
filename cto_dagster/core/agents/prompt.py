"""The task as the agent reads it: Markdown, because every coding agent reads Markdown."""

from __future__ import annotations

from cto_dagster.core.taskmaster import Task


def render_prompt(task: Task, level: int, branch: str) -> str:
    parts = [f"# Task {task.id}: {task.title}", ""]
    if task.description:
        parts += [task.description, ""]
    if task.details:
        parts += ["## Details", "", task.details, ""]
    if task.test_strategy:
        parts += ["## Test strategy", "", task.test_strategy, ""]
    if task.subtasks:
        parts += ["## Subtasks", ""]
        for sub in task.subtasks:
            after = f" (after {', '.join(sub.dependencies)})" if sub.dependencies else ""
            parts.append(f"- [{sub.id}] {sub.title}{after}")
            if sub.description:
                parts.append(f"  {sub.description}")
        parts.append("")
    parts += [
        "## Working agreement",
        "",
        f"- You are on branch `{branch}` (execution level {level}). Do not switch branches.",
        "- Leave your changes in the work tree; they are committed and pushed for you.",
        "- Do not push, and do not rewrite history.",
        "",
    ]
    return "\n".join(parts)
