"""The code location, for `dagster dev`, `dagster job execute -m cto_dagster.definitions` and
`dg check defs`.

Projects come from `CTO_DAGSTER_CONFIG` (YAML), `CTO_DAGSTER_REPOSITORY` (env), or the embedded
demo; see `cto_dagster.core.settings`. A tasks file that cannot be planned stops the load with
the planner's message.

Importing this module does nothing: the definitions are built when Dagster loads them (reading
each project's tasks file from its repository), once per process.
"""

from functools import cache

import dagster as dg

from cto_dagster.defs.code_server_pins import export_pins_for_runs, is_code_server
from cto_dagster.defs.executor import play_multiprocess_executor
from cto_dagster.defs.loader import ProjectLoadError, build_definitions
from cto_dagster.speedups.code_server_forkserver import fork_runs_from_a_warm_server


@cache
def _built() -> dg.Definitions:
    built = build_definitions()
    export_pins_for_runs()  # in a code server: its runs plan what it planned
    if built.executor is play_multiprocess_executor:  # every project runs on this machine
        fork_runs_from_a_warm_server(is_code_server())  # its runs start ready to execute
    return built


@dg.definitions
def defs() -> dg.Definitions:
    """The configured projects' assets, jobs, sensors, resources and executor."""
    return _built()


__all__ = ["ProjectLoadError", "build_definitions", "defs"]
