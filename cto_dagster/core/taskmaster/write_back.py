"""Status write-back: the tasks file with some tasks' status changed and nothing else, so that
merging an integration PR updates TaskMaster in the same merge with a diff of one line per task.

The file is parsed with the position of every value, and only the status values are replaced in
the text, whatever its layout (TaskMaster's `JSON.stringify(data, null, 2)`, or a file edited by
hand). A task without a `status` key gets one, written after its `id`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from json.decoder import scanstring

from cto_dagster.core.support.names import canonical_id
from cto_dagster.core.taskmaster.model import TasksFileError
from cto_dagster.core.taskmaster.reader import find_tags

_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_LITERALS = {"true": True, "false": False, "null": None}


class _Object(dict):
    """A JSON object that remembers where each of its values is in the text."""

    spans: dict[str, tuple[int, int]]


def _value(text: str, at: int) -> tuple[object, int]:
    at = _SPACE.match(text, at).end()
    char = text[at : at + 1]
    if char == "{":
        found = _Object()
        found.spans = {}
        at = _SPACE.match(text, at + 1).end()
        if text[at : at + 1] == "}":
            return found, at + 1
        while True:
            if text[at : at + 1] != '"':
                raise ValueError(f"expected a key at {at}")
            key, at = scanstring(text, at + 1)
            at = _SPACE.match(text, at).end()
            if text[at : at + 1] != ":":
                raise ValueError(f"expected ':' at {at}")
            start = _SPACE.match(text, at + 1).end()
            found[key], at = _value(text, start)
            found.spans[key] = (start, at)
            at = _SPACE.match(text, at).end()
            if text[at : at + 1] == "}":
                return found, at + 1
            if text[at : at + 1] != ",":
                raise ValueError(f"expected ',' at {at}")
            at = _SPACE.match(text, at + 1).end()
    if char == "[":
        items: list[object] = []
        at = _SPACE.match(text, at + 1).end()
        if text[at : at + 1] == "]":
            return items, at + 1
        while True:
            item, at = _value(text, at)
            items.append(item)
            at = _SPACE.match(text, at).end()
            if text[at : at + 1] == "]":
                return items, at + 1
            if text[at : at + 1] != ",":
                raise ValueError(f"expected ',' at {at}")
            at += 1
    if char == '"':
        return scanstring(text, at + 1)
    for word, literal in _LITERALS.items():
        if text.startswith(word, at):
            return literal, at + len(word)
    number = _NUMBER.match(text, at)
    if number:
        return json.loads(number.group()), number.end()
    raise ValueError(f"unexpected {char!r} at {at}")


def set_statuses(content: bytes, statuses: Mapping[str, Mapping[str, str]]) -> bytes | None:
    """`content` with `statuses` (tag -> {id in the file -> status}) applied; None when nothing
    changes or the file cannot be read (the integration then leaves it as it is)."""
    try:
        text = content.decode("utf-8-sig")
        data, end = _value(text, 0)
        if text[end:].strip():
            return None
        _, tags = find_tags(data)
    except (ValueError, IndexError, TasksFileError, RecursionError, UnicodeDecodeError):
        return None
    edits: list[tuple[int, int, str]] = []
    for tag, wanted in statuses.items():
        for raw in tags.get(tag, ()):
            if not isinstance(raw, _Object):
                continue
            status = wanted.get(canonical_id(raw.get("id")) or "")
            if status is None or raw.get("status") == status:
                continue
            if "status" in raw:
                start, stop = raw.spans["status"]
                edits.append((start, stop, json.dumps(status)))
            elif "id" in raw:
                stop = raw.spans["id"][1]
                edits.append((stop, stop, f', "status": {json.dumps(status)}'))
    if not edits:
        return None
    for start, stop, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[stop:]
    bom = b"\xef\xbb\xbf" if content.startswith(b"\xef\xbb\xbf") else b""
    return bom + text.encode("utf-8")
