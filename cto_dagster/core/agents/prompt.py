"""The task as the agent reads it: Markdown, because every coding agent reads Markdown, written for
an agent nobody will answer: what to do, what its dependencies already did, and how to finish."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cto_dagster.core.taskmaster import Task

FILES_SHOWN = 30


@dataclass(frozen=True)
class DoneDependency:
    """A dependency's finished work, merged into this task's branch."""

    task_id: str
    title: str
    files: tuple[str, ...] = ()


def render_prompt(
    task: Task, level: int, branch: str, dependencies: Sequence[DoneDependency] = ()
) -> str:
    parts = [f"# Task {task.id}: {task.title}", ""]
    if task.tag:
        parts += [f"(TaskMaster tag `{task.tag}`, task {task.file_id})", ""]
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
    if dependencies:
        parts += ["## Already done (merged into your branch)", ""]
        for dep in dependencies:
            parts.append(f"- Task {dep.task_id}: {dep.title}")
            shown = list(dep.files[:FILES_SHOWN])
            if shown:
                more = (
                    f" (and {len(dep.files) - FILES_SHOWN} more)"
                    if len(dep.files) > FILES_SHOWN
                    else ""
                )
                parts.append(f"  files changed: {', '.join(shown)}{more}")
        parts.append("")
    parts += [
        "## Working agreement",
        "",
        "- You work alone and unattended: no one will answer questions. Where something is "
        "unclear, make the most reasonable choice, say so in your final message, and finish.",
        "- Before you finish, run the test strategy above (or the project's tests) and fix what "
        "fails.",
        f"- You are on branch `{branch}` (execution level {level}). Do not switch branches, "
        "push, or rewrite history.",
        "- Leave your changes in the work tree; they are committed and pushed for you.",
        "- Leave `.taskmaster/` and `.gitignore` as they are: task statuses are recorded for you.",
        "",
    ]
    return "\n".join(parts)
