"""Small builders shared by the tests."""

from __future__ import annotations

import json
import subprocess
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


def push_to_main(remote: Path, workdir: Path, files: dict[str, str], message: str) -> None:
    """Someone else's commit on the remote's main branch (a clone, a commit, a push)."""
    subprocess.run(["git", "clone", "-q", str(remote), str(workdir)], check=True)
    for relative, content in files.items():
        (workdir / relative).write_text(content, encoding="utf-8")
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", *ident, "-C", str(workdir), "commit", "-qam", message], check=True)
    subprocess.run(["git", "-C", str(workdir), "push", "-q", "origin", "HEAD:main"], check=True)
