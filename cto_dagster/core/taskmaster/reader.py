"""Reading `.taskmaster/tasks/tasks.json` in every shape real projects have.

The rules follow `TASKMASTER-FORMAT.md` section 6 where TaskMaster itself is inconsistent. Reading
never raises anything but `TasksFileError`, and it collects every problem of a file before it does,
so a person fixes them in one pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cto_dagster.core.support.names import (
    canonical_id,
    describe_bad_id,
    sorted_ids,
    subtask_reference,
)
from cto_dagster.core.taskmaster.complexity import read_reports
from cto_dagster.core.taskmaster.model import (
    DEPENDENCY_KEYS,
    MAX_FILE_BYTES,
    Subtask,
    Task,
    TaskList,
    TasksFileError,
)
from cto_dagster.core.taskmaster.tags import combine, tag_dependencies, tag_problems

# ---------------------------------------------------------------------------------------------
# Finding the file and the tag


def resolve_tasks_path(path: str | os.PathLike[str] | None) -> Path:
    """A tasks file, or a project folder holding `.taskmaster/tasks/tasks.json` (or the legacy
    `tasks/tasks.json`)."""
    candidate = Path(path) if path not in (None, "") else Path.cwd()
    if candidate.is_dir():
        for relative in (".taskmaster/tasks/tasks.json", "tasks/tasks.json"):
            if (candidate / relative).is_file():
                return candidate / relative
        raise TasksFileError(
            f"TaskMaster tasks.json not found: {candidate / '.taskmaster/tasks/tasks.json'}",
            hint="Run `task-master init` in the project, or pass the path of a tasks.json.",
        )
    if not candidate.is_file():
        raise TasksFileError(
            f"TaskMaster tasks.json not found: {candidate}",
            hint="Ensure TaskMaster is initialized in the project and the path is right.",
        )
    return candidate


def load_json(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TasksFileError(f"{path} is {size} bytes; refusing files over {MAX_FILE_BYTES}")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        reason = f"{exc.reason} at byte {exc.start}"
        raise TasksFileError(f"{path} is not UTF-8 text ({reason})") from None
    except OSError as exc:
        raise TasksFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not text.strip():
        hint = "Run `task-master parse-prd` to create tasks."
        raise TasksFileError(f"{path} is empty", hint=hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TasksFileError(
            f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise TasksFileError(f"{path} is nested too deeply to be a tasks file") from None


def find_tags(data: Any) -> tuple[str, dict[str, Any]]:
    """The file's format and its tags, each mapped to its raw task list."""
    if isinstance(data, list):
        return "list", {"master": data}
    if not isinstance(data, dict):
        raise TasksFileError(
            f"the top level is a JSON {type(data).__name__}; expected an object of tags "
            '(`{"master": {"tasks": [...]}}`) or `{"tasks": [...]}`'
        )
    tags: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(value.get("tasks"), list):
            tags[key] = value["tasks"]
    if isinstance(data.get("tasks"), list) and not tags:
        return "legacy", {"master": data["tasks"]}
    if tags:
        return "tagged", tags
    for key, value in data.items():
        if key not in ("tasks", "metadata") and isinstance(value, list):
            tags[key] = value
    if tags:
        return "tag-list", tags
    raise TasksFileError(
        "no task list found: expected a tag object with a `tasks` array "
        '(`{"master": {"tasks": [...]}}`) or a top-level `tasks` array'
    )


def _read_small_json(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def choose_tag(
    tags: list[str], tasks_path: Path, explicit: str | None, environ: Mapping[str, str]
) -> str:
    """--tag > TASKMASTER_TAG > state.json currentTag > config.json defaultTag > master > only."""
    asked = [(explicit, "--tag"), (environ.get("TASKMASTER_TAG") or None, "TASKMASTER_TAG")]
    for wanted, source in asked:
        if wanted:
            if wanted in tags:
                return wanted
            raise TasksFileError(
                f"tag {describe_bad_id(wanted)} (from {source}) is not in {tasks_path}",
                [f"tags present: {', '.join(tags) or '(none)'}"],
            )
    taskmaster_dir = tasks_path.parent.parent
    if taskmaster_dir.name == ".taskmaster":
        state_tag = _read_small_json(taskmaster_dir / "state.json").get("currentTag")
        config_global = _read_small_json(taskmaster_dir / "config.json").get("global")
        config_tag = config_global.get("defaultTag") if isinstance(config_global, dict) else None
        for candidate in (state_tag, config_tag):
            if isinstance(candidate, str) and candidate in tags:
                return candidate
    if "master" in tags:
        return "master"
    if len(tags) == 1:
        return tags[0]
    raise TasksFileError(
        f"{tasks_path} has several tags and none is chosen",
        [f"tags present: {', '.join(tags)}"],
        hint="Pass --tag TAG, or set TASKMASTER_TAG.",
    )


# ---------------------------------------------------------------------------------------------
# Parsing tasks


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)[:100_000]


def _duration(raw: Mapping[str, Any]) -> float | None:
    """An optional estimate in seconds: `duration`, `estimatedDuration` or `metadata.duration`."""
    metadata = raw.get("metadata")
    for value in (
        raw.get("duration"),
        raw.get("estimatedDuration"),
        metadata.get("duration") if isinstance(metadata, dict) else None,
    ):
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e9:
            return float(value)
    return None


def _raw_dependencies(raw: Mapping[str, Any], where: str, problems: list[str]) -> list[Any]:
    values: list[Any] = []
    for key in DEPENDENCY_KEYS:
        if key not in raw or raw[key] is None:
            continue
        value = raw[key]
        if isinstance(value, list):
            values.extend(value)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            values.append(value)
        else:
            problems.append(f"{where}: `{key}` must be a list of ids, not {type(value).__name__}")
    return values


def _parse_subtasks(raw: Mapping[str, Any], parent: str) -> tuple[Subtask, ...]:
    subtasks = raw.get("subtasks")
    if not isinstance(subtasks, list):
        return ()
    parsed: list[Subtask] = []
    for index, item in enumerate(subtasks, start=1):
        if not isinstance(item, dict):
            continue
        ref = subtask_reference(item.get("id"))
        local = ref[1] if ref else canonical_id(item.get("id")) or str(index)
        deps = []
        raw_deps = item.get("dependencies")
        for dep in raw_deps if isinstance(raw_deps, list) else []:
            dep_ref = subtask_reference(dep)
            deps.append(f"{dep_ref[0]}.{dep_ref[1]}" if dep_ref else _text(dep))
        parsed.append(
            Subtask(
                id=f"{parent}.{local}",
                title=_text(item.get("title")),
                status=_text(item.get("status") or "pending").strip().lower(),
                description=_text(item.get("description")),
                details=_text(item.get("details")),
                dependencies=tuple(deps),
            )
        )
    return tuple(parsed)


def parse_tasks(raw_tasks: list[Any], problems: list[str]) -> dict[str, Task]:
    """Turn raw task objects into `Task`s; every per-task problem is appended to `problems`."""
    tasks: dict[str, Task] = {}
    for index, raw in enumerate(raw_tasks):
        if not isinstance(raw, dict):
            problems.append(f"entry #{index + 1} is a {type(raw).__name__}, not a task object")
            continue
        if "id" not in raw:
            problems.append(f"entry #{index + 1} ({_text(raw.get('title'))[:40]!r}) has no `id`")
            continue
        task_id = canonical_id(raw["id"])
        if task_id is None:
            problems.append(
                f"entry #{index + 1} has id {describe_bad_id(raw['id'])}, which is not a usable "
                "name (ids are non-negative integers or slugs of letters, digits, `-` and `_`)"
            )
            continue
        where = f"task {task_id}"
        if task_id in tasks:
            problems.append(f"duplicate id: {task_id} is used by more than one task")
            continue
        dependencies: list[str] = []
        for dep in _raw_dependencies(raw, where, problems):
            ref = subtask_reference(dep)
            dep_id = ref[0] if ref else canonical_id(dep)
            if dep_id is None:
                problems.append(f"{where} has dependency {describe_bad_id(dep)}, not a task id")
            elif ref and dep_id == task_id:
                continue  # a task waiting on its own subtask: ordering inside one agent run
            elif dep_id not in dependencies:
                dependencies.append(dep_id)
        tasks[task_id] = Task(
            id=task_id,
            title=_text(raw.get("title")),
            status=_text(raw.get("status") or "pending").strip().lower() or "pending",
            priority=_text(raw.get("priority") or "medium").strip().lower() or "medium",
            description=_text(raw.get("description")),
            details=_text(raw.get("details")),
            test_strategy=_text(raw.get("testStrategy") or raw.get("test_strategy")),
            dependencies=tuple(dependencies),
            subtasks=_parse_subtasks(raw, task_id),
            duration=_duration(raw),
            raw=raw,
        )
    for task in tasks.values():
        for dep in task.dependencies:
            if dep == task.id:
                problems.append(f"task {task.id} depends on itself")
            elif dep not in tasks:
                problems.append(f"task {task.id} depends on {dep}, which does not exist")
    return tasks


def _project_root(tasks_path: Path) -> Path | None:
    """The project folder of `<root>/.taskmaster/tasks/tasks.json` (None for other layouts)."""
    if tasks_path.parent.name == "tasks" and tasks_path.parent.parent.name == ".taskmaster":
        return tasks_path.parent.parent.parent
    return None


def _one_tag(
    tasks_path: Path, file_format: str, tags: Mapping[str, Any], tag: str, scores: Mapping
) -> TaskList:
    problems: list[str] = []
    tasks = parse_tasks(tags[tag], problems)
    known = scores.get(tag, {})
    if known:
        tasks = {i: replace(t, complexity=known[i]) if i in known else t for i, t in tasks.items()}
    notes = []
    if file_format == "list":
        notes.append("the file is a bare list of tasks (TaskMaster itself cannot read it)")
    if file_format == "tag-list":
        notes.append(f"tag {tag} maps straight to a list of tasks (not TaskMaster's format)")
    return TaskList(
        path=tasks_path,
        tag=tag,
        tags=tuple(tags),
        file_format=file_format,
        tasks={task_id: tasks[task_id] for task_id in sorted_ids(tasks)},
        notes=tuple(notes),
        problems=tuple(problems),
    )


def _tag_complete(task_list: TaskList) -> bool:
    """Nothing left to run in a tag: every task done (or cancelled)."""
    return all(t.is_done or t.status == "cancelled" for t in task_list.tasks.values())


def read_tasks(
    path: str | os.PathLike[str] | None,
    tags: Sequence[str] | None = None,
    all_tags: bool = False,
    environ: Mapping[str, str] | None = None,
) -> TaskList:
    """Read one tag (the chosen one, see `choose_tag`) or several (`tags`, or `all_tags`) of a
    tasks file, with complexity scores when the project has a report. A file that cannot be read
    raises `TasksFileError`; problems of single tasks (and of the tags' graph) are kept in
    `problems` for the planner to report together with the graph's."""
    tasks_path = resolve_tasks_path(path)
    data = load_json(tasks_path)
    file_format, found = find_tags(data)
    environ = os.environ if environ is None else environ
    wanted = list(dict.fromkeys(found if all_tags else (tags or ())))
    if len(wanted) <= 1:
        wanted = [choose_tag(list(found), tasks_path, wanted[0] if wanted else None, environ)]
    missing = [t for t in wanted if t not in found]
    if missing:
        raise TasksFileError(
            f"{'tags' if len(missing) > 1 else 'tag'} {', '.join(map(describe_bad_id, missing))} "
            f"not in {tasks_path}",
            [f"tags present: {', '.join(found) or '(none)'}"],
        )
    root = _project_root(tasks_path)
    scores = read_reports(root, wanted) if root else {}
    depends = tag_dependencies(data, list(found))
    lists = {t: _one_tag(tasks_path, file_format, found, t, scores) for t in wanted}
    if len(wanted) == 1:
        only = lists[wanted[0]]
        waiting = [
            needed
            for needed in depends.get(wanted[0], ())
            if needed in found
            and not _tag_complete(_one_tag(tasks_path, file_format, found, needed, {}))
        ]
        if not waiting:
            return only
        note = (
            f"tag {wanted[0]} depends on tag {', '.join(waiting)}, which has tasks not done: "
            f"plan them together (--tag {' --tag '.join([*waiting, wanted[0]])}) to run in order"
        )
        return replace(only, notes=(*only.notes, note))
    complete = {
        t: _tag_complete(_one_tag(tasks_path, file_format, found, t, {}))
        for t in found
        if t not in lists
    }
    combined = combine(lists, depends)
    problems = tag_problems(wanted, depends, list(found), complete)
    return replace(combined, problems=(*problems, *combined.problems))


def read_task_list(
    path: str | os.PathLike[str] | None,
    tag: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> TaskList:
    """Read one tag of a tasks file (see `read_tasks`)."""
    return read_tasks(path, [tag] if tag else None, environ=environ)
