"""What a tasks file holds once read: tasks (with their subtasks), a tag's task list, and the
one error type reading and planning raise."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cto_dagster.core.taskmaster.statuses import DONE, HOLD, REVIEW

DEPENDENCY_KEYS = ("dependencies", "dependsOn", "depends_on")
PRIORITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}
FIX_HINT = (
    "Fix tasks.json, or run `task-master validate-dependencies` / `task-master fix-dependencies`."
)
MAX_FILE_BYTES = 256 * 1024 * 1024


class TasksFileError(Exception):
    """A tasks file that cannot be planned; `problems` lists every reason, one line each."""

    def __init__(self, headline: str, problems: list[str] | None = None, hint: str = ""):
        self.headline = headline
        self.problems = list(problems or [])
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"❌ {self.headline}"]
        lines += [f"  - {problem}" for problem in self.problems]
        if self.hint:
            lines.append(f"  {self.hint}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Subtask:
    id: str
    title: str
    status: str
    description: str = ""
    details: str = ""
    dependencies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    status: str = "pending"
    priority: str = "medium"
    description: str = ""
    details: str = ""
    test_strategy: str = ""
    dependencies: tuple[str, ...] = ()
    subtasks: tuple[Subtask, ...] = ()
    duration: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    complexity: float | None = None  # from TaskMaster's complexity report, when there is one
    tag: str | None = None  # in a plan of several tags: the tag the task belongs to
    local_id: str | None = None  # in a plan of several tags: its id inside its tag

    @cached_property
    def content_hash(self) -> str:
        """Identifies the work asked for; becomes the asset's code version."""
        return content_hash(self.raw)

    @property
    def file_id(self) -> str:
        """The id as the tasks file writes it (inside its tag)."""
        return self.local_id or self.id

    @property
    def is_done(self) -> bool:
        return self.status in DONE

    @property
    def is_held(self) -> bool:
        return self.status in HOLD

    @property
    def is_in_review(self) -> bool:
        return self.status in REVIEW

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self.raw.get("metadata")
        return value if isinstance(value, dict) else {}

    @property
    def priority_rank(self) -> int:
        return PRIORITY_RANK.get(self.priority, 2)


@dataclass(frozen=True)
class TaskList:
    """The tasks of one tag, parsed and checked task by task (graph checks live in the planner)."""

    path: Path
    tag: str
    tags: tuple[str, ...]
    file_format: str
    tasks: dict[str, Task]
    notes: tuple[str, ...] = field(default=())
    # Per-task problems; the planner reports them together with the graph's (cycles, names).
    problems: tuple[str, ...] = field(default=())
    # Several tags planned together: the tags, and the tags each depends on (`dependsOn`)
    planned_tags: tuple[str, ...] = field(default=())
    tag_depends: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def content_hash(raw: Mapping[str, Any]) -> str:
    """What the agent is asked to do; status and timestamps change without changing the work."""
    volatile = {"status", "updatedAt", "createdAt", "actualEffort", "lastModified"}
    stable = {key: value for key, value in raw.items() if key not in volatile}
    try:
        blob = json.dumps(stable, sort_keys=True, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        blob = repr(sorted(stable))
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]
