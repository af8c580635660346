"""The built-in demo agent: does real, deterministic work on the task's branch, with no network.

It writes `tasks/task-<id>.md` from the task, plus any files named in the task's
`metadata.demo.files` ({path: content}; paths stay inside the work tree), sleeps the task's
`metadata.duration` (seconds, times `CTO_DEMO_SPEED`), and fails when `metadata.demo.exit_code` is
set or the task id is listed in `CTO_DEMO_FAIL_TASKS` (comma separated). That is enough to exercise
every path of the engine: parallel timing, overlaps, conflicts and failures.

As a conflict resolver (`CTO_CONFLICT_FILES` set: the conflicted files, one a line) it resolves
deterministically by keeping both sides' lines, ours first, and drops the markers (and a diff3
base section); `CTO_DEMO_RESOLVE=fail|leave-markers|sleep` make it fail on purpose, for tests.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _task() -> dict:
    path = os.environ.get("CTO_TASK_FILE")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _inside(root: Path, relative: str) -> Path | None:
    candidate = (root / relative).resolve()
    if candidate == root or root not in candidate.parents or ".git" in candidate.parts:
        return None
    return candidate


def keep_both_sides(text: str) -> str:
    """A conflicted file with both sides' lines kept, ours first, and no markers left."""
    kept: list[str] = []
    in_base = False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if bare.startswith("<<<<<<<") or bare.startswith(">>>>>>>"):
            in_base = False
            continue
        if bare.startswith("|||||||"):
            in_base = True
            continue
        if bare == "=======":
            in_base = False
            continue
        if not in_base:
            kept.append(line)
    return "".join(kept)


def resolve(files: list[str]) -> int:
    mode = os.environ.get("CTO_DEMO_RESOLVE", "")
    print(f"demo agent: resolving the conflict in {', '.join(files)}", flush=True)
    if mode == "sleep":
        time.sleep(3600)
    if mode == "fail":
        print("demo agent: giving up on purpose", flush=True)
        return 3
    root = Path.cwd().resolve()
    for relative in files:
        target = _inside(root, relative)
        if target is None or not target.is_file():
            print(f"demo agent: cannot resolve {relative!r}: not a file here", flush=True)
            return 2
        if mode != "leave-markers":
            text = target.read_text(encoding="utf-8")
            target.write_text(keep_both_sides(text), encoding="utf-8")
        print(f"demo agent: resolved {relative} (kept both sides)", flush=True)
    return 0


def main() -> int:
    conflicted = [f for f in os.environ.get("CTO_CONFLICT_FILES", "").splitlines() if f]
    if conflicted:
        return resolve(conflicted)
    task_id = os.environ.get("CTO_TASK_ID", "unknown")
    title = os.environ.get("CTO_TASK_TITLE", "")
    task = _task()
    metadata = task.get("metadata") if isinstance(task.get("metadata"), dict) else {}
    demo = metadata.get("demo") if isinstance(metadata.get("demo"), dict) else {}
    print(f"demo agent: task {task_id}: {title}", flush=True)

    # `demo.sleep`: a duration the planner is not told (benchmarks of unknown durations)
    duration = demo.get("sleep", metadata.get("duration", task.get("duration", 0)))
    speed = float(os.environ.get("CTO_DEMO_SPEED", "1") or 1)
    if isinstance(duration, int | float) and duration > 0:
        print(f"demo agent: working for {duration * speed:.1f} s", flush=True)
        time.sleep(duration * speed)

    root = Path.cwd().resolve()
    notes = root / "tasks" / f"task-{task_id}.md"
    notes.parent.mkdir(parents=True, exist_ok=True)
    body = [f"# Task {task_id}: {title}", ""]
    for key in ("CTO_TASK_DESCRIPTION", "CTO_TASK_DETAILS"):
        if os.environ.get(key):
            body += [os.environ[key], ""]
    notes.write_text("\n".join(body), encoding="utf-8")
    print(f"demo agent: wrote {notes.relative_to(root)}", flush=True)

    files = demo.get("files") if isinstance(demo.get("files"), dict) else {}
    for relative, content in files.items():
        target = _inside(root, str(relative))
        if target is None:
            print(f"demo agent: refusing to write outside the work tree: {relative!r}", flush=True)
            return 2
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(str(content), encoding="utf-8")
        print(f"demo agent: wrote {target.relative_to(root)}", flush=True)

    failing = {t.strip() for t in os.environ.get("CTO_DEMO_FAIL_TASKS", "").split(",")}
    exit_code = demo.get("exit_code", 0)
    if task_id in failing:
        exit_code = exit_code or 1
    if exit_code:
        print(f"demo agent: failing on purpose with exit code {exit_code}", flush=True)
        return int(exit_code)
    print("demo agent: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
