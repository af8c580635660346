"""Several tags planned together, with the dependencies between tags that TaskMaster keeps in
`<tag>.metadata.dependsOn` (a list of tag names).

Task ids restart in every tag, so in a plan of several tags each task is named `<tag>.<id>`
(`api.3`): an id never holds a dot, so the name is unambiguous, and it is a valid branch, label
and asset name. A tag that depends on another waits for every task of it that runs; a cycle
between tags, or a `dependsOn` naming a tag that does not exist, is reported like task problems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from cto_dagster.core.support.graphs import find_cycles
from cto_dagster.core.support.names import qualified_id, sorted_ids, valid_tag_name
from cto_dagster.core.taskmaster.model import Task, TaskList


def tag_dependencies(data: Any, tags: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """tag -> the tags it depends on, from `<tag>.metadata.dependsOn` (a name or a list)."""
    found: dict[str, tuple[str, ...]] = {}
    for tag in tags:
        entry = data.get(tag) if isinstance(data, dict) else None
        metadata = entry.get("metadata") if isinstance(entry, dict) else None
        value = metadata.get("dependsOn") if isinstance(metadata, dict) else None
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            found[tag] = tuple(str(v) for v in value if isinstance(v, str | int))
    return found


def tag_problems(
    planned: Sequence[str],
    depends: Mapping[str, Sequence[str]],
    all_tags: Sequence[str],
    complete: Mapping[str, bool],
) -> list[str]:
    """Every problem of the tags' graph: bad names, missing tags, unplanned unfinished ones,
    cycles (shown like task cycles, `a -> b -> a`)."""
    problems = [
        f"tag {tag!r} cannot name branches (letters, digits, `-` and `_` only)"
        for tag in planned
        if not valid_tag_name(tag)
    ]
    for tag in planned:
        for needed in depends.get(tag, ()):
            if needed not in all_tags:
                problems.append(f"tag {tag} depends on tag {needed}, which does not exist")
            elif needed not in planned and not complete.get(needed, False):
                problems.append(
                    f"tag {tag} depends on tag {needed}, which is not planned and not done: "
                    "plan it too (--tag, or --all-tags)"
                )
    problems += [f"tag cycle: {' -> '.join(cycle)}" for cycle in _tag_cycles(planned, depends)]
    return problems


def _tag_cycles(planned: Sequence[str], depends: Mapping[str, Sequence[str]]) -> list[list[str]]:
    members = set(planned)
    edges = {t: [d for d in depends.get(t, ()) if d in members] for t in planned}
    return find_cycles(edges, planned)


def combine(lists: Mapping[str, TaskList], depends: Mapping[str, Sequence[str]]) -> TaskList:
    """One task list of several tags: ids qualified with their tag, dependencies too."""
    first = next(iter(lists.values()))
    tasks: dict[str, Task] = {}
    problems: list[str] = []
    for tag, task_list in lists.items():
        for task in task_list.tasks.values():
            name = qualified_id(tag, task.id)
            deps = tuple(qualified_id(tag, d) for d in task.dependencies)
            tasks[name] = replace(task, id=name, dependencies=deps, tag=tag, local_id=task.id)
        problems += [f"tag {tag}: {problem}" for problem in task_list.problems]
    planned = tuple(lists)
    return TaskList(
        path=first.path,
        tag="+".join(planned),
        tags=first.tags,
        file_format=first.file_format,
        tasks={task_id: tasks[task_id] for task_id in sorted_ids(tasks)},
        notes=tuple(n for task_list in lists.values() for n in task_list.notes),
        problems=tuple(problems),
        planned_tags=planned,
        tag_depends={t: tuple(depends.get(t, ())) for t in planned},
    )
