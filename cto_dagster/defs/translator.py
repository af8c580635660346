"""How a task looks in Dagster: subclass `TaskTranslator` to change keys, groups, tags or text,
the way `DagsterDbtTranslator` lets dbt users shape their assets."""

import re

import dagster as dg

from cto_dagster.core.planning.planner import ExecutionPlan
from cto_dagster.core.settings import ProjectSettings, planned_commit
from cto_dagster.core.support.names import asset_name_for, label_value
from cto_dagster.core.taskmaster import Task

TAG_LEVEL = "cto/level"
TAG_TASK_ID = "cto/task_id"
TAG_PRIORITY = "cto/priority"
TAG_PROJECT = "cto/project"
TAG_PREDICTED = "cto/predicted_makespan_s"  # a play_project run's predicted makespan (seconds)
TAG_TASKMASTER_TAG = "cto/tag"
# on every op of a project: the commit of the tasks file it was planned from (a run pod on
# Kubernetes plans that commit again: cto_dagster/defs/run_pods.py)
TAG_TASKS_COMMIT = "cto/tasks_commit"


def project_op_tags(project: ProjectSettings) -> dict[str, str]:
    """The op tags every step of a project carries: its name, and the commit planned from."""
    commit = planned_commit(project)
    return {TAG_PROJECT: project.name, **({TAG_TASKS_COMMIT: commit} if commit else {})}


DESCRIPTION_LIMIT = 20_000
_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class TaskTranslator:
    def asset_key(self, project: ProjectSettings, task_id: str) -> dg.AssetKey:
        return dg.AssetKey([project.name, asset_name_for(task_id)])

    def group_name(
        self, project: ProjectSettings, level: int | None = None, tag: str | None = None
    ) -> str:
        """One group per level (its tasks and its integration), and one for the run's metrics
        (`level=None`): a 100-task graph reads as a short chain of collapsible groups. With
        several tags, one group per tag (`tag`), and one for the integration of all levels."""
        if tag is not None:
            return f"{project.name}_{_GROUP_UNSAFE.sub('_', tag)}"
        if level is None:
            return f"{project.name}_metrics"
        return f"{project.name}_level_{level}"

    def task_group(self, project: ProjectSettings, plan: ExecutionPlan, task: Task) -> str:
        if plan.planned_tags and task.tag:
            return self.group_name(project, tag=task.tag)
        return self.group_name(project, plan.level_of[task.id])

    def integration_group(self, project: ProjectSettings, plan: ExecutionPlan, level: int) -> str:
        if plan.planned_tags:
            return self.group_name(project, tag="integration")
        return self.group_name(project, level)

    def tags(self, project: ProjectSettings, task: Task, level: int) -> dict[str, str]:
        priority = (
            task.priority if task.priority in ("critical", "high", "medium", "low") else "medium"
        )
        # tag values hold 63 characters: a longer slug id is shortened with a stable hash (the
        # step's op tag keeps the whole id)
        tags = {TAG_LEVEL: str(level), TAG_TASK_ID: label_value(task.id), TAG_PRIORITY: priority}
        if task.tag:
            tags[TAG_TASKMASTER_TAG] = label_value(task.tag)
        return tags

    def description(self, task: Task) -> str:
        """Plain text, title first: the catalog shows it as written, one line of it."""
        head = f"Task {task.id}: {' '.join(task.title.split())}"
        summary = " ".join(task.description.split())
        parts = [f"{head}. {summary}" if summary else head]
        for heading, text in (("Details", task.details), ("Test strategy", task.test_strategy)):
            if text.strip():
                parts.append(f"{heading}:\n{text.strip()}")
        if task.subtasks:
            parts.append("Subtasks:\n" + "\n".join(f"- {s.id} {s.title}" for s in task.subtasks))
        text = "\n\n".join(parts)
        return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"

    def kinds(self, project: ProjectSettings) -> set[str]:
        """Badges on a task asset: git, and the agent that does the work."""
        agent = project.agent.preset if not project.agent.command else "agent"
        return {"git", agent or "agent"}

    def metadata(self, plan: ExecutionPlan, task: Task, level: int) -> dict[str, object]:
        return {
            "task_id": task.id,
            "title": task.title,
            "status_in_tasks_json": task.status,
            "priority": task.priority,
            "execution_level": level,
            "dependencies": ", ".join(plan.dependencies_to_run(task.id)) or "(none)",
            "review_dependencies": ", ".join(plan.review_dependencies(task.id)) or "(none)",
            "subtasks": len(task.subtasks),
            "complexity": task.complexity if task.complexity is not None else "(no report)",
            **({"taskmaster_tag": task.tag} if task.tag else {}),
        }
