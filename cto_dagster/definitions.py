"""The code location, for `dagster dev`, `dagster job execute -m cto_dagster.definitions` and
`dg check defs`.

Projects come from `CTO_DAGSTER_CONFIG` (YAML), `CTO_REPOSITORY` (env), or the embedded demo; see
`cto_dagster.core.settings`. A tasks file that cannot be planned stops the load with the planner's
message.
"""

from cto_dagster.defs.loader import ProjectLoadError, build_definitions

defs = build_definitions()

__all__ = ["ProjectLoadError", "build_definitions", "defs"]
