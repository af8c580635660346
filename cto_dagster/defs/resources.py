"""The guide's run parameters that belong to integration, as a resource set per run."""

import dagster as dg
from pydantic import Field


class PlayParameters(dg.ConfigurableResource):
    """Set in the launchpad or `cto-dagster launch -c run.yaml` under `resources: play: config:`.
    (`parallel_execution` lives in the executor's config: it decides how steps are scheduled.)"""

    integration_pr_enabled: bool = Field(
        default=True,
        description="Build an integration branch per level (stacked on the previous level's) "
        "and open its pull request on GitHub. false: only check overlaps and conflicts.",
    )
    integration_base_branch: str | None = Field(
        default=None,
        description="Where level 0's integration branch starts, and the base of its pull "
        "request. Empty: the project's base branch.",
    )
    conflict_detection: bool = Field(
        default=True,
        description="Warn about files changed by two or more tasks of a level, and predict "
        "conflicts between their branches before merging.",
    )
