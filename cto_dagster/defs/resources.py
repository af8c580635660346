"""The guide's run parameters that belong to integration, as a resource set per run."""

import dagster as dg


class PlayParameters(dg.ConfigurableResource):
    """Set in the launchpad or `dagster job execute -c` under `resources: play: config:`.
    (`parallel_execution` lives in the executor's config: it decides how steps are scheduled.)"""

    integration_pr_enabled: bool = True
    integration_base_branch: str | None = None  # default: the project's base branch
    conflict_detection: bool = True
