"""TaskMaster's tasks file: reading it (every shape real projects write), its statuses, tags that
depend on tags, and the complexity report. No Dagster here."""

from cto_dagster.core.taskmaster.model import (
    DEPENDENCY_KEYS,
    FIX_HINT,
    MAX_FILE_BYTES,
    PRIORITY_RANK,
    Subtask,
    Task,
    TaskList,
    TasksFileError,
    content_hash,
)
from cto_dagster.core.taskmaster.reader import (
    choose_tag,
    find_tags,
    load_json,
    parse_tasks,
    read_task_list,
    read_tasks,
    resolve_tasks_path,
)
from cto_dagster.core.taskmaster.statuses import DONE, HOLD, REVIEW, status_group

__all__ = [
    "DEPENDENCY_KEYS",
    "DONE",
    "FIX_HINT",
    "HOLD",
    "MAX_FILE_BYTES",
    "PRIORITY_RANK",
    "REVIEW",
    "Subtask",
    "Task",
    "TaskList",
    "TasksFileError",
    "choose_tag",
    "content_hash",
    "find_tags",
    "load_json",
    "parse_tasks",
    "read_task_list",
    "read_tasks",
    "resolve_tasks_path",
    "status_group",
]
