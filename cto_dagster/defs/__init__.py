"""The thin Dagster layer: the core's tasks, branches and agents as assets, checks and jobs."""
