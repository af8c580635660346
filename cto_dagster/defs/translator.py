"""How a task looks in Dagster: subclass `TaskTranslator` to change keys, groups, tags or text,
the way `DagsterDbtTranslator` lets dbt users shape their assets."""

import dagster as dg

from cto_dagster.core.names import asset_name_for
from cto_dagster.core.planner import ExecutionPlan
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.taskmaster import Task

TAG_LEVEL = "cto/level"
TAG_TASK_ID = "cto/task_id"
TAG_PRIORITY = "cto/priority"
TAG_PROJECT = "cto/project"


class TaskTranslator:
    def asset_key(self, project: ProjectSettings, task_id: str) -> dg.AssetKey:
        return dg.AssetKey([project.name, asset_name_for(task_id)])

    def group_name(self, project: ProjectSettings) -> str:
        return project.name

    def tags(self, project: ProjectSettings, task: Task, level: int) -> dict[str, str]:
        priority = (
            task.priority if task.priority in ("critical", "high", "medium", "low") else "medium"
        )
        return {TAG_LEVEL: str(level), TAG_TASK_ID: task.id, TAG_PRIORITY: priority}

    def description(self, task: Task) -> str:
        parts = [f"**Task {task.id}: {task.title}**"]
        for heading, text in (
            ("", task.description),
            ("Details", task.details),
            ("Test strategy", task.test_strategy),
        ):
            if text:
                parts.append(f"### {heading}\n\n{text}" if heading else text)
        if task.subtasks:
            parts.append(
                "### Subtasks\n\n" + "\n".join(f"- {s.id} {s.title}" for s in task.subtasks)
            )
        return "\n\n".join(parts)

    def metadata(self, plan: ExecutionPlan, task: Task, level: int) -> dict[str, object]:
        return {
            "task_id": task.id,
            "title": task.title,
            "status_in_tasks_json": task.status,
            "priority": task.priority,
            "execution_level": level,
            "dependencies": ", ".join(plan.dependencies_to_run(task.id)) or "(none)",
            "subtasks": len(task.subtasks),
        }
