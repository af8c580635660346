"""The code location, for `dagster dev`, `dagster job execute -m cto_dagster.definitions` and
`dg check defs`.

Projects come from `CTO_DAGSTER_CONFIG` (YAML), `CTO_REPOSITORY` (env), or the embedded demo; see
`cto_dagster.core.settings`. A tasks file that cannot be planned stops the load with the planner's
message.

Importing this module does nothing: the definitions are built when Dagster loads them (reading
each project's tasks file from its repository), once per process.
"""

from functools import cache

import dagster as dg

from cto_dagster.defs.loader import ProjectLoadError, build_definitions
from cto_dagster.defs.run_processes import export_pins_for_runs


@cache
def _built() -> dg.Definitions:
    built = build_definitions()
    export_pins_for_runs()  # in a code server: its runs plan what it planned
    return built


@dg.definitions
def defs() -> dg.Definitions:
    """The configured projects' assets, jobs, sensors, resources and executor."""
    return _built()


__all__ = ["ProjectLoadError", "build_definitions", "defs"]
