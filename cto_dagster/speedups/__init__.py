"""Speed-ups: every hook into Dagster's and CPython's private internals, in one optional layer.

The product is correct without any of them (CI runs the end-to-end tests with the layer off);
each makes runs start or proceed sooner, measured in docs/internals.md ("Dagster's private APIs"):

- `code_server_forkserver`: a code server forks its runs, and their steps, from a forkserver it
  starts with the location built (`DagsterApiServer._mp_ctx`, the server found through
  `sys._getframe`);
- `early_forkserver`: a run a code server spawned starts its steps' forkserver while it loads
  (`multiprocessing.current_process()._target/_args` recognise Dagster's run process);
- `forkservers`: a run forked from the code server's forkserver forks its steps from the same
  server (the standard library's `forkserver._forkserver` state, `ensure_running` replaced);
- `step_polling`: one wait on every running step (`child_process_executor._poll_for_event`);
- `step_warmup`: the forkserver imports what steps import late, shares alembic's parsed
  migration scripts (`ScriptDirectory.from_config`) and resolves the run's job;
- `event_log`: a new run's planned events stored in one transaction per database (a subclass of
  Dagster's `SqliteEventLogStorage`).

`switch.enabled()` decides for all of them: `CTO_DAGSTER_SPEEDUPS=off` turns them off, and they
are off where the installed Dagster or Python was not verified (`switch.VERIFIED_*`). Each entry
point checks it and, when off, does nothing: Dagster's own behaviour stays.
"""

from cto_dagster.speedups.switch import SWITCH_ENV, enabled

__all__ = ["SWITCH_ENV", "enabled"]
