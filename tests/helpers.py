"""Small builders shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
CORPUS = SHARED / "taskmaster-corpus"
GUIDE_EXAMPLE = REPO_ROOT / "examples" / "guide-project"


def task(task_id, deps=(), status="pending", **extra) -> dict:
    return {
        "id": task_id,
        "title": f"Task {task_id}",
        "status": status,
        "dependencies": list(deps),
        **extra,
    }


def write_tasks(folder: Path, data, name: str = ".taskmaster/tasks/tasks.json") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def tagged(*tasks: dict, tag: str = "master") -> dict:
    return {tag: {"tasks": list(tasks), "metadata": {}}}
