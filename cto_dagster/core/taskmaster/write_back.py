"""Status write-back: the tasks file with some tasks' status changed, written as TaskMaster writes
it (`JSON.stringify(data, null, 2)`), everything else kept as it was, so that merging an
integration PR updates TaskMaster in the same merge."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from cto_dagster.core.names import canonical_id
from cto_dagster.core.taskmaster.model import TasksFileError
from cto_dagster.core.taskmaster.reader import find_tags

_INDENT = re.compile(rb"^[\[{]\r?\n([ \t]+)\S")


def set_statuses(content: bytes, statuses: Mapping[str, Mapping[str, str]]) -> bytes | None:
    """`content` with `statuses` (tag -> {id in the file -> status}) applied; None when nothing
    changes or the file cannot be read (the integration then leaves it as it is)."""
    try:
        data = json.loads(content.decode("utf-8-sig"))
        _, tags = find_tags(data)
    except (ValueError, TasksFileError, RecursionError):
        return None
    changed = False
    for tag, wanted in statuses.items():
        for raw in tags.get(tag, ()):
            if not isinstance(raw, dict):
                continue
            status = wanted.get(canonical_id(raw.get("id")) or "")
            if status is not None and raw.get("status") != status:
                raw["status"] = status
                changed = True
    if not changed:
        return None
    match = _INDENT.match(content.lstrip(b"\xef\xbb\xbf"))
    indent = match.group(1).decode() if match else 2
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    newline = "\n" if content.endswith(b"\n") else ""
    return (text + newline).encode("utf-8")
