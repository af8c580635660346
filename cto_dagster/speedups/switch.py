"""The one switch of the speed-up layer, and the versions its hooks were verified with.

Every hook in `cto_dagster.speedups` reaches into Dagster's or CPython's private internals. Each
is guarded by a test, but an upgrade that changes what a hook relies on could break runs, so
the layer runs only where it was verified: the installed Dagster and the Python minor version
must be ones the guard tests passed with. Anywhere else it stays off (the product then runs on
Dagster's public behaviour alone) and each process says so once.

`CTO_DAGSTER_SPEEDUPS`:
- unset or `on`: on where verified, off elsewhere (one warning line per process);
- `off` (also `0`, `false`, `no`): off everywhere (what CI runs the end-to-end tests with too);
- `force`: on even where unverified (to run the guard tests against a new version).

This module imports no Dagster: it reads the installed version from the package metadata.
"""

from __future__ import annotations

import logging
import os
import sys
from functools import cache
from importlib import metadata

SWITCH_ENV = "CTO_DAGSTER_SPEEDUPS"
OFF_VALUES = frozenset({"off", "0", "false", "no"})
FORCE = "force"

# The versions the guard tests (tests/test_guards.py, test_run_processes.py,
# test_step_startup.py, test_event_log_storage.py) passed with. Add a version only after they
# pass on it with the layer forced on (`CTO_DAGSTER_SPEEDUPS=force`).
VERIFIED_DAGSTER = frozenset({"1.13.27"})
VERIFIED_PYTHON = frozenset({(3, 11)})

log = logging.getLogger("cto_dagster.speedups")
_said_off = False  # the one line per process


@cache
def installed_versions() -> tuple[str, tuple[int, int]]:
    """(the installed Dagster's version, this Python's major and minor version)."""
    try:
        dagster = metadata.version("dagster")
    except metadata.PackageNotFoundError:
        dagster = "none"
    return dagster, (sys.version_info.major, sys.version_info.minor)


def unverified_reason() -> str | None:
    """Why the installed versions are not ones the hooks were verified with, or None."""
    dagster, python = installed_versions()
    if dagster not in VERIFIED_DAGSTER:
        return f"Dagster {dagster} (verified: {', '.join(sorted(VERIFIED_DAGSTER))})"
    if python not in VERIFIED_PYTHON:
        verified = ", ".join(f"{major}.{minor}" for major, minor in sorted(VERIFIED_PYTHON))
        return f"Python {python[0]}.{python[1]} (verified: {verified})"
    return None


def enabled() -> bool:
    """Whether this process uses the speed-ups (read at each call: tests and processes may set
    the switch; cheap, the versions are read once)."""
    global _said_off
    value = os.environ.get(SWITCH_ENV, "on").strip().lower()
    if value in OFF_VALUES:
        return False
    if value == FORCE:
        return True
    reason = unverified_reason()
    if reason is None:
        return True
    if not _said_off:
        _said_off = True
        log.warning(
            "cto-dagster speed-ups off: not verified with %s; runs use Dagster's own start-up "
            "and event log (set %s=force to try them)",
            reason,
            SWITCH_ENV,
        )
    return False
