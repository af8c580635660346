"""What a run's checks said, in one line: `✅ Verified: 9/9 tasks (1 after repair), 3/3 levels`.

Read from what each task and integration materialization recorded (`verified`,
`repair_attempts`, `repaired_by_agent`), so the demo's closing lines, `cto-dagster report` and
`run_metrics` say the same thing. No Dagster here: the callers hand in plain metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cto_dagster.core.support.names import sorted_ids

PASSED, REPAIRED, FAILED = "passed", "repaired", "failed"


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def task_verdict(status: str, metadata: Mapping[str, object]) -> str | None:
    """passed | repaired | failed for a task whose checks ran, None where none were configured.

    A task whose checks still fail is materialized (its work is pushed for people to see) with
    `verified: failed`; a task whose checks already failed before its agent (the baseline) fails
    its step with the verification in the failure's metadata."""
    verified = metadata.get("verified")
    if verified == PASSED:
        return REPAIRED if _number(metadata.get("repair_attempts")) > 0 else PASSED
    if verified == FAILED or (status == "failed" and "verification" in metadata):
        return FAILED
    return None


def level_verdict(metadata: Mapping[str, object]) -> str | None:
    """The same for an integration branch (`repaired_by_agent`: the resolver fixed it there)."""
    verified = metadata.get("verified")
    if verified == PASSED:
        return REPAIRED if metadata.get("repaired_by_agent") is True else PASSED
    if verified == FAILED:
        return FAILED
    return None


@dataclass(frozen=True)
class VerifiedCounts:
    """How many tasks and integration branches passed their checks, of how many."""

    tasks_passed: int
    tasks_total: int
    tasks_repaired: int
    levels_passed: int
    levels_total: int
    levels_repaired: int
    failing: list[str] = field(default_factory=list)  # "task 6", "level 1"

    @property
    def all_passed(self) -> bool:
        return self.tasks_passed == self.tasks_total and self.levels_passed == self.levels_total

    def figures(self) -> dict[str, int]:
        """For the metrics asset's figures (plotted across runs in the UI)."""
        return {
            "tasks_verified": self.tasks_passed,
            "tasks_repaired": self.tasks_repaired,
            "levels_verified": self.levels_passed,
            "levels_repaired": self.levels_repaired,
        }


def count_verified(
    tasks: Mapping[str, str | None],
    levels: Mapping[int, str | None],  # first level of each integration branch -> verdict
    tasks_planned: Sequence[str] = (),
    levels_planned: int = 0,
) -> VerifiedCounts | None:
    """None when no check ran anywhere (the project configures none: nothing to say). A planned
    task or level that never got its checks (it failed earlier, or did not run) counts as not
    verified, so `9/9` means every one of them passed."""
    if not any(v is not None for v in [*tasks.values(), *levels.values()]):
        return None
    task_ids = sorted_ids({*tasks, *tasks_planned})
    ok = (PASSED, REPAIRED)
    failing = [f"task {t}" for t in task_ids if tasks.get(t) == FAILED]
    failing += [f"level {lv}" for lv in sorted(levels) if levels[lv] == FAILED]
    return VerifiedCounts(
        tasks_passed=sum(1 for t in task_ids if tasks.get(t) in ok),
        tasks_total=len(task_ids),
        tasks_repaired=sum(1 for t in task_ids if tasks.get(t) == REPAIRED),
        levels_passed=sum(1 for v in levels.values() if v in ok),
        # integration branches are counted only where their checks run (`verify.integration`)
        levels_total=max(levels_planned, len(levels)) if any(levels.values()) else 0,
        levels_repaired=sum(1 for v in levels.values() if v == REPAIRED),
        failing=failing,
    )


def verified_line(counts: VerifiedCounts | None) -> str | None:
    """`✅ Verified: 9/9 tasks (1 after repair), 3/3 levels (1 repaired by an agent)`; ❌ and the
    failing ones when not all passed; None when no checks are configured."""
    if counts is None:
        return None
    tasks = f"{counts.tasks_passed}/{counts.tasks_total} tasks"
    if counts.tasks_repaired:
        tasks += f" ({counts.tasks_repaired} after repair)"
    if counts.levels_total:
        tasks += f", {counts.levels_passed}/{counts.levels_total} levels"
    if counts.levels_repaired:
        tasks += f" ({counts.levels_repaired} repaired by an agent)"
    mark = "✅" if counts.all_passed else "❌"
    line = f"{mark} Verified: {tasks}"
    if counts.failing:
        line += f"; checks failed: {', '.join(counts.failing)}"
    return line
