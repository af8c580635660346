"""The built-in demo agent: does real, deterministic work on the task's branch, with no network.

It writes `tasks/task-<id>.md` from the task, plus any files named in the task's
`metadata.demo.files` ({path: content}; paths stay inside the work tree), sleeps the task's
`metadata.duration` (seconds, times `CTO_DEMO_SPEED`), and fails when `metadata.demo.exit_code` is
set or the task id is listed in `CTO_DEMO_FAIL_TASKS` (comma separated). That is enough to exercise
every path of the engine: parallel timing, overlaps, conflicts and failures.

As a conflict resolver (`CTO_CONFLICT_FILES` set: the conflicted files, one a line) it resolves
deterministically by keeping both sides' lines, ours first, and drops the markers (and a diff3
base section); `CTO_DEMO_RESOLVE=fail|leave-markers|sleep` make it fail on purpose, for tests.

Repairs, when the project's checks failed (`CTO_REPAIR_ATTEMPT` set, the failing output in
`CTO_CHECK_OUTPUT_FILE`), play what a model would do from that output, scripted by the tasks:
- a task's own repair writes its `metadata.demo.repair.files` (sleeping `repair.duration`);
- on an integration branch (`CTO_MERGE_INTO` set too) it reads the tasks file in the work tree
  and writes the `metadata.demo.integration_fix.files` of every task whose `when` text is in the
  failing output (a task that passes alone but breaks beside another); no fix known: exit 1.
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


def _check_output() -> str:
    path = os.environ.get("CTO_CHECK_OUTPUT_FILE")
    try:
        return Path(path).read_text(encoding="utf-8") if path else ""
    except OSError:
        return ""


def _write_files(root: Path, files: object) -> bool:
    """Write {path: content} inside the work tree; False (said) for a path outside it."""
    for relative, content in (files if isinstance(files, dict) else {}).items():
        target = _inside(root, str(relative))
        if target is None:
            print(f"demo agent: refusing to write outside the work tree: {relative!r}", flush=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(str(content), encoding="utf-8")
        print(f"demo agent: wrote {target.relative_to(root)}", flush=True)
    return True


def _failing_line(output: str) -> str:
    """The line of the failing output a person would quote: the error, else the verdict."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "exited with" in line]
    return (errors or lines or ["(no output)"])[-1][:200]


def _all_tasks(root: Path) -> list[dict]:
    """Every task of the tasks file in the work tree (any tag), or [] when there is none."""
    try:
        data = json.loads((root / ".taskmaster" / "tasks" / "tasks.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    tags = [data] if isinstance(data, dict) and "tasks" in data else list(data.values())
    return [
        task
        for tag in tags
        if isinstance(tag, dict) and isinstance(tag.get("tasks"), list)
        for task in tag["tasks"]
        if isinstance(task, dict)
    ]


def _demo_of(task: dict) -> dict:
    metadata = task.get("metadata") if isinstance(task.get("metadata"), dict) else {}
    demo = metadata.get("demo")
    return demo if isinstance(demo, dict) else {}


def repair_integration(attempt: str) -> int:
    """The checks fail on an integration branch after merging: apply the fixes the tasks
    declare for this failure (those whose `when` text the output holds)."""
    output = _check_output()
    branch = os.environ.get("CTO_MERGE_INTO", "")
    print(f"demo agent: repair {attempt} of {branch}: the checks fail after merging: "
          f"{_failing_line(output)}", flush=True)  # fmt: skip
    root = Path.cwd().resolve()
    fixed = False
    for task in _all_tasks(root):
        fix = _demo_of(task).get("integration_fix")
        when = fix.get("when") if isinstance(fix, dict) else None
        if isinstance(fix, dict) and isinstance(when, str) and when and when in output:
            print(f"demo agent: task {task.get('id')}'s code meets the failure", flush=True)
            if not _write_files(root, fix.get("files")):
                return 2
            fixed = True
    if not fixed:
        print("demo agent: no fix known for this failure", flush=True)
        return 1
    return 0


def repair_task(demo: dict, attempt: str) -> int:
    """The task's checks failed on its own work: write its `demo.repair.files`."""
    print(f"demo agent: repair {attempt}: the checks failed: {_failing_line(_check_output())}",
          flush=True)  # fmt: skip
    repair = demo.get("repair") if isinstance(demo.get("repair"), dict) else {}
    duration = repair.get("duration", 0)
    speed = float(os.environ.get("CTO_DEMO_SPEED", "1") or 1)
    if isinstance(duration, int | float) and duration > 0:
        time.sleep(duration * speed)
    if not repair.get("files"):
        print("demo agent: no repair known for this failure", flush=True)
        return 0
    return 0 if _write_files(Path.cwd().resolve(), repair.get("files")) else 2


def main() -> int:
    conflicted = [f for f in os.environ.get("CTO_CONFLICT_FILES", "").splitlines() if f]
    if conflicted:
        return resolve(conflicted)
    attempt = os.environ.get("CTO_REPAIR_ATTEMPT", "")
    if attempt and os.environ.get("CTO_MERGE_INTO"):
        return repair_integration(attempt)
    task_id = os.environ.get("CTO_TASK_ID", "unknown")
    title = os.environ.get("CTO_TASK_TITLE", "")
    task = _task()
    metadata = task.get("metadata") if isinstance(task.get("metadata"), dict) else {}
    demo = metadata.get("demo") if isinstance(metadata.get("demo"), dict) else {}
    print(f"demo agent: task {task_id}: {title}", flush=True)
    if attempt:
        return repair_task(demo, attempt)

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

    if not _write_files(root, demo.get("files")):
        return 2

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
