"""A run started through a code server (the UI's launches, `cto-dagster launch`) plans what the
server planned; its process and its steps fork from the server's own warm forkserver (or, when
spawned, its steps fork from a forkserver its process started while it loaded)."""

from __future__ import annotations

import json
import sys

import pytest

from cto_dagster.defs.code_server_pins import export_pins_for_runs
from cto_dagster.defs.process_origin import OFF_NOTE, start_note
from cto_dagster.speedups import SWITCH_ENV
from cto_dagster.speedups.early_forkserver import code_server_run, start_forkserver_early
from tests.conftest import demo_task
from tests.helpers import push_to_main, script_result

LAUNCH_AFTER_THE_BRANCH_MOVED = """
import json, sys, time
import dagster as dg
from cto_dagster.commands.runs import code_server_launch as launch
from cto_dagster.commands.runs.instance_home import open_instance, resolve_home


def finished(instance, run_id):  # (status, the steps' start-up notes) once the run ended
    deadline = time.time() + 240
    while not instance.get_run_by_id(run_id).is_finished and time.time() < deadline:
        time.sleep(0.5)
    notes = [
        r.event_log_entry.user_message
        for r in instance.get_records_for_run(run_id, limit=10_000).records
        if r.event_log_entry.user_message.startswith(("run process:", "step process:"))
    ]
    return instance.get_run_by_id(run_id).status.value, notes


remote, moved_to = sys.argv[1], sys.argv[2]
with open_instance(resolve_home()) as instance:
    with launch.code_location(instance, launch.log_path(instance)) as workspace:
        location = workspace.get_code_location("cto_dagster")
        repository = next(iter(location.get_repositories().values()))
        shown = {
            node.key.to_user_string(): node.code_version
            for node in repository.asset_graph.asset_nodes
            if node.code_version
        }
        # the tasks branch moves after the location loaded, before someone clicks Materialize
        import subprocess
        subprocess.run(["git", f"--git-dir={remote}", "update-ref", "refs/heads/main", moved_to],
                       check=True)
        run = launch.create_run(instance, workspace, "play_project")
        instance.launch_run(run.run_id, workspace)
        status, notes = finished(instance, run.run_id)
        ran = {}
        for key in shown:
            event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
            if event is not None and event.run_id == run.run_id:
                ran[key] = event.asset_materialization.tags.get("dagster/code_version")
        # the asset graph's "Materialize selected": a run of the implicit job, one asset selected
        from dagster._core.definitions.selector import JobSubsetSelector
        selected = dg.AssetKey.from_user_string(sorted(shown)[-1])
        subset = location.get_job(JobSubsetSelector(
            location_name="cto_dagster", repository_name=repository.name,
            job_name="__ASSET_JOB", op_selection=None, asset_selection=[selected]))
        plan = location.get_execution_plan(
            subset, {}, step_keys_to_execute=None, known_state=None, instance=instance)
        again = instance.create_run(
            job_name="__ASSET_JOB", run_id=None, run_config={}, resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None, status=None, root_run_id=None, parent_run_id=None, tags={},
            job_snapshot=subset.job_snapshot, execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=subset.parent_job_snapshot,
            remote_job_origin=subset.get_remote_origin(),
            job_code_origin=subset.get_python_origin(),
            asset_selection=frozenset([selected]), asset_check_selection=None,
            asset_graph=repository.asset_graph)
        instance.launch_run(again.run_id, workspace)
        selected_status, selected_notes = finished(instance, again.run_id)
print(json.dumps({"status": status, "shown": shown, "ran": ran, "notes": notes,
                  "selected_status": selected_status, "selected_notes": selected_notes}))
"""


def _commit_with_new_details(project) -> str:
    """A commit on top of the tasks branch (not on it yet) where task 1 reads differently."""
    before = project.git("rev-parse", "main").strip()
    data = json.loads(project.git("show", "main:.taskmaster/tasks/tasks.json"))
    data["master"]["tasks"][0]["details"] = "Rewritten after the location loaded."
    files = {".taskmaster/tasks/tasks.json": json.dumps(data)}
    push_to_main(project.remote, project.root / "moved", files, "moved")
    moved = project.git("rev-parse", "main").strip()
    project.git("update-ref", "refs/heads/main", before)  # the script moves it at the right time
    return moved


WARM = "forkserver of the code server"
RESOLVED = "job resolved before the fork"
OWN = "job resolved in this process"
EXPECTED_NOTES = {
    # the code server's forkserver forks the run's process and its steps
    # (speedups/code_server_forkserver.py)
    "warm": {
        "whole job": [
            f"run process: {WARM}; {RESOLVED}",
            *[f"step process: {WARM}; {RESOLVED}"] * 2,
        ],
        # a one-asset selection narrows the asset job the server's forkserver resolved
        "selection": [f"run process: {WARM}; {OWN}", f"step process: {WARM}; {OWN}"],
    },
    # runs spawned as Dagster does: their process starts the steps' forkserver while it loads
    "spawned": {
        "whole job": [
            f"run process: forkserver none (spawned, or in process); {OWN}",
            *[f"step process: forkserver started while the run loaded; {RESOLVED}"] * 2,
        ],
        "selection": [
            f"run process: forkserver none (spawned, or in process); {OWN}",
            f"step process: forkserver started while the run loaded; {RESOLVED}",
        ],
    },
    # `CTO_DAGSTER_SPEEDUPS=off`: Dagster's own start-up, no forkserver of ours
    "off": {
        "whole job": [f"run process: {OFF_NOTE}; {OWN}", *[f"step process: {OFF_NOTE}; {OWN}"] * 2],
        "selection": [f"run process: {OFF_NOTE}; {OWN}", f"step process: {OFF_NOTE}; {OWN}"],
    },
}
SWITCH = {"warm": {"CTO_DAGSTER_WARM_RUNS": "1"}, "spawned": {"CTO_DAGSTER_WARM_RUNS": "0"}}


@pytest.mark.slow
@pytest.mark.parametrize(
    "runs",
    [
        pytest.param("warm", marks=pytest.mark.speedups),
        pytest.param("spawned", marks=pytest.mark.speedups),
        "off",
    ],
)
def test_a_code_servers_run_plans_what_it_showed_and_starts_warm(make_project, runs):
    """Guards in one real run through a code server, then a run of one selected asset:
    - the run runs the tasks the location showed when it was created, though the tasks branch
      moved meanwhile (the server's pinned commit; fails if the server stops exporting its pins
      or its forkserver plans anew: task 1 would run the moved text);
    - "warm" (the default): the run's process and its steps fork from the code server's own
      forkserver with the job resolved before the fork (fails if Dagster's server stops taking
      its multiprocessing context from `_mp_ctx`, or a forked run starts a forkserver of its own);
    - "spawned" (`CTO_DAGSTER_WARM_RUNS=0`, and runs started before the server's forkserver is
      up): the steps fork from a forkserver the run's process started while it loaded, with
      their job (whole or narrowed) resolved before the fork (fails if Dagster renames
      `start_run_in_subprocess` or changes its arguments, or narrows a run's job otherwise);
    - "off" (`CTO_DAGSTER_SPEEDUPS=off`): the same run, green, plans what the UI showed with no
      forkserver of ours (the product on Dagster's public behaviour alone)."""
    project = make_project([demo_task(1), demo_task(2, deps=[1])])
    moved = _commit_with_new_details(project)
    env = {**project.env(), **SWITCH.get(runs, {SWITCH_ENV: "off"})}
    outcome = script_result(
        LAUNCH_AFTER_THE_BRANCH_MOVED, str(project.remote), moved, cwd=project.root, env=env
    )
    assert outcome["status"] == "SUCCESS", outcome
    assert set(outcome["ran"]) == set(outcome["shown"]) and outcome["ran"], outcome
    assert outcome["ran"] == outcome["shown"], "the run planned another commit than the UI showed"
    assert outcome["notes"] == EXPECTED_NOTES[runs]["whole job"], outcome
    assert outcome["selected_status"] == "SUCCESS", outcome
    assert outcome["selected_notes"] == EXPECTED_NOTES[runs]["selection"], outcome


def test_outside_a_code_servers_run_nothing_starts_early(monkeypatch):
    """Tests, `dagster job execute`, the code server itself: no forkserver, no pins exported."""
    monkeypatch.delenv("CTO_DAGSTER_TASKS_COMMITS", raising=False)
    assert code_server_run() is None
    assert start_forkserver_early() is False
    monkeypatch.setattr(sys, "argv", ["pytest"])
    export_pins_for_runs()
    import os

    assert "CTO_DAGSTER_TASKS_COMMITS" not in os.environ


def test_outside_a_code_server_runs_are_not_forked_and_steps_keep_their_own_forkserver(
    monkeypatch,
):
    """No server object loading us (tests, `dagster job execute`): nothing starts; a process
    not forked by a code server's forkserver does not adopt one (even with its variable set)."""
    from multiprocessing import forkserver

    from cto_dagster.speedups.code_server_forkserver import fork_runs_from_a_warm_server
    from cto_dagster.speedups.forkservers import SERVER_FORKSERVER_ENV, adopt_inherited_forkserver

    assert fork_runs_from_a_warm_server(is_code_server=False) is False
    assert fork_runs_from_a_warm_server(is_code_server=True) is False  # no DagsterApiServer
    assert adopt_inherited_forkserver(steps=1) is False
    monkeypatch.setenv(SERVER_FORKSERVER_ENV, "1")
    assert adopt_inherited_forkserver(steps=1) is False
    assert "ensure_running" not in vars(forkserver._forkserver)


def test_the_start_note_says_when_a_process_resolved_its_own_job():
    assert start_note("step process", None).endswith("job resolved in this process")
