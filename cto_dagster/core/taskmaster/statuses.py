"""Statuses as TaskMaster means them, and what each means for a run (docs/planning.md, "Statuses"):

- done (`done`, `completed`): not run; dependents are free to run.
- review (`review`): implemented, awaiting review. Not run again (unless `--all`); dependents
  build on its existing branch `feature/task-<id>-implementation`.
- held (`cancelled`, `deferred`, `blocked`): not run; everything that depends on it is blocked.
- run (`pending`, `in-progress`, anything else such as `todo`): run.
"""

from __future__ import annotations

DONE = frozenset({"done", "completed"})
REVIEW = frozenset({"review"})
HOLD = frozenset({"cancelled", "deferred", "blocked"})


def status_group(status: str) -> str:
    """done | review | held | run"""
    if status in DONE:
        return "done"
    if status in REVIEW:
        return "review"
    if status in HOLD:
        return "held"
    return "run"
