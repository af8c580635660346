"""Integration stages: which levels each integration branch merges.

The guide integrates every level: one branch (`integration/level-<L>-<run>`) and one PR a level,
each stacked on the one before. A 100-level project then pushes 100 branches and opens 100 PRs a
run, so a project may integrate every N levels (`integration/levels-<A>-<B>-<run>`), or once for
the whole run (`granularity: run`, one branch and PR covering every level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cto_dagster.core.support.names import id_sort_key, integration_branch

Granularity = str | int  # "level", "run", or levels per integration branch


@dataclass(frozen=True)
class IntegrationStage:
    """Levels `first`..`last` integrated by one branch, stacked on the previous stage's."""

    first: int
    last: int

    @property
    def single_level(self) -> bool:
        return self.first == self.last

    @property
    def label(self) -> str:
        """ "level 3" or "levels 0-4": how messages, PR titles and metadata name it."""
        return f"level {self.first}" if self.single_level else f"levels {self.first}-{self.last}"

    @property
    def span(self) -> str:
        """ "3" or "0-4", recorded as the materialization's `integrated_levels`."""
        return str(self.first) if self.single_level else f"{self.first}-{self.last}"

    @property
    def asset_name(self) -> str:
        if self.single_level:
            return f"integration_level_{self.first}"
        return f"integration_levels_{self.first}_{self.last}"

    def branch(self, run_token: str) -> str:
        return integration_branch(self.first, run_token, self.last)

    @property
    def branch_prefix(self) -> str:
        """The branch without its run token: `integration/level-3-`."""
        return self.branch("x")[:-1]

    def is_branch_of_any_run(self, branch: str) -> bool:
        """Whether `branch` is this stage's branch for some run (`...-<token>`)."""
        token = (
            branch.removeprefix(self.branch_prefix) if branch.startswith(self.branch_prefix) else ""
        )
        return bool(token) and self.branch(token) == branch

    def levels(self) -> range:
        return range(self.first, self.last + 1)

    def task_ids(self, levels: Sequence[Sequence[str]]) -> list[str]:
        """The stage's tasks in merge order: by level (dependencies before what builds on
        them), then by id."""
        return [t for lv in self.levels() for t in sorted(levels[lv], key=id_sort_key)]


def levels_per_stage(granularity: Granularity, level_count: int) -> int:
    if granularity == "level":
        return 1
    if granularity == "run":
        return max(1, level_count)
    if isinstance(granularity, int) and not isinstance(granularity, bool) and granularity >= 1:
        return granularity
    raise ValueError(
        f"integration granularity must be `level`, `run` or a number of levels, not {granularity!r}"
    )


def integration_stages(
    level_count: int, granularity: Granularity = "level"
) -> list[IntegrationStage]:
    """Consecutive stages covering levels 0..level_count-1 (none for an empty plan)."""
    size = levels_per_stage(granularity, level_count)
    return [
        IntegrationStage(first, min(first + size, level_count) - 1)
        for first in range(0, level_count, size)
    ]
