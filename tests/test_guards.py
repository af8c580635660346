"""Guards for promises no other test would notice breaking (issue 19's mutations): priority
ordering, in the plan and in a real run with one agent slot; dependencies merged at the commits
their materializations recorded, not at their branches' heads."""

import subprocess

import pytest

from cto_dagster.core.planning.planner import build_plan
from cto_dagster.core.task_run.step import DependencyHead, TaskFailed, run_task
from cto_dagster.core.taskmaster import TaskList, parse_tasks
from cto_dagster.defs.task_assets import task_priorities
from tests.conftest import demo_task
from tests.helpers import REPO_ROOT, script_result
from tests.test_task_run import git_remote, make_task, remote, request, someone_commits

__all__ = ["remote"]  # the fixture, used by name


def plan_of(raw: list[dict]):
    tasks = parse_tasks(raw, [])
    listing = TaskList(path=None, tag="master", tags=("master",), file_format="tagged", tasks=tasks)
    return build_plan(listing)


CHAIN = [  # 2 -> 3 -> 4 is the long chain; 1 and 5 stand alone
    {"id": 1, "title": "alone"},
    {"id": 2, "title": "head of the chain"},
    {"id": 3, "title": "middle", "dependencies": [2]},
    {"id": 4, "title": "tail", "dependencies": [3]},
    {"id": 5, "title": "alone, long", "metadata": {}},
]


def test_the_longest_remaining_chain_gets_the_highest_priority(monkeypatch):
    monkeypatch.delenv("CTO_DAGSTER_PRIORITIES", raising=False)
    priorities = task_priorities(plan_of(CHAIN))
    assert priorities["2"] > priorities["3"] > priorities["4"]
    assert priorities["2"] > priorities["1"] and priorities["2"] > priorities["5"]
    assert priorities["1"] == priorities["5"] == priorities["4"] > 0
    # with durations, the heavier path wins even when it has fewer tasks
    seconds = [1, 1, 1, 1, 10]
    timed = [dict(t, metadata={"duration": d}) for t, d in zip(CHAIN, seconds, strict=True)]
    weighted = task_priorities(plan_of(timed))
    assert weighted["5"] > weighted["2"]
    monkeypatch.setenv("CTO_DAGSTER_PRIORITIES", "off")
    assert set(task_priorities(plan_of(CHAIN)).values()) == {0}


@pytest.mark.slow
def test_with_one_agent_slot_the_critical_chain_starts_first(make_project):
    """The executor honours the priorities: with one slot, task 2 (heading the long chain) runs
    before task 1, although task 1 sorts first."""
    tasks = [demo_task(1), demo_task(2), demo_task(3, deps=[2]), demo_task(4, deps=[3])]
    project = make_project(tasks, settings={"max_retries": 0})
    result = project.execute(
        run_config={"execution": {"config": {"max_concurrent": 1}}}, CTO_DEMO_SPEED="0"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = project.records()
    order = sorted(records, key=lambda t: float(records[t].metadata["started_at"]))
    assert order[0] == "2", order  # without priorities (or with all of them 0): task 1


def test_dependencies_merge_at_their_recorded_commits_not_their_heads(remote, tmp_path):
    one = run_task(request(remote, tmp_path, make_task(1)))
    # after the materialization, someone pushes to the dependency's branch
    later = someone_commits(remote, tmp_path / "clone", "feature/task-1-implementation")
    assert later != one.head_commit
    two = run_task(
        request(
            remote, tmp_path, make_task(2, deps=[1]), deps=[DependencyHead("1", one.head_commit)]
        )
    )

    def contains(commit: str) -> bool:
        return (
            subprocess.run(
                [
                    "git",
                    f"--git-dir={remote}",
                    "merge-base",
                    "--is-ancestor",
                    commit,
                    two.head_commit,
                ]
            ).returncode
            == 0
        )

    assert contains(one.head_commit) and not contains(later)
    assert "theirs.txt" not in git_remote(remote, "ls-tree", "-r", "--name-only", two.head_commit)


def test_a_recorded_commit_no_longer_in_the_repository_fails_clearly(remote, tmp_path):
    with pytest.raises(TaskFailed) as info:
        run_task(
            request(remote, tmp_path, make_task(2, deps=[1]), deps=[DependencyHead("1", "f" * 40)])
        )
    assert "its recorded commit ffffffffffff is no longer in the repository" in info.value.message
    assert not info.value.retryable


def test_the_instance_queues_one_run_of_a_project_at_a_time(tmp_path):
    """The run queue's limit on the `cto/project` tag, as DAGSTER_HOME gets it from the
    sample dagster.yaml (and the chart's values, checked in test_kubernetes)."""
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import prepare_home

    home = prepare_home(tmp_path / "home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": "cto/project", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in [
        dict(limit) for limit in limits
    ]


@pytest.mark.slow
def test_launch_without_a_daemon_refuses_a_second_run_of_the_project(make_project):
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    project = make_project([demo_task(1)])
    with open_instance(project.home) as instance:
        going = instance.add_run(
            dg.DagsterRun(
                job_name="play_project",
                run_id="0" * 8 + "-0000-0000-0000-" + "0" * 12,
                status=dg.DagsterRunStatus.STARTED,
                tags={"cto/project": "proj"},
            )
        )
    launched = project.cli("launch")
    assert launched.returncode == 1, launched.stdout[-2000:]
    assert f"run {going.run_id} of project proj is still in progress" in launched.stderr
    assert "feature/task-1-implementation" not in project.git("branch", "--list")


PRIVATE_HOOKS = """Each private Dagster hook, with a guard that fails if an upgrade disables it:
- forkserver preload of `step_warmup` (constructor argument `explicit_forkserver_preload`):
  the step process must find the warm-up already imported;
- alembic's parsed migration scripts shared (`step_warmup.share_migration_scripts`): the step
  inherits the shared parser, and Dagster's storages still go through it;
- the collective poll (`child_process_executor._poll_for_event` replaced during a run): Dagster's
  loop must still call it."""


GUARD_RUN = """
import json, sys, tempfile
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from cto_dagster.speedups import step_polling

polls = []
original = step_polling._poll_for_event

def counting(process, event_queue):
    polls.append(1)
    return original(process, event_queue)

step_polling._poll_for_event = counting
job = ReconstructableJob(
    ReconstructableRepository.for_module("tests.guard_jobs", "defs", working_directory=sys.argv[1]),
    "guard_job",
)
with dg.instance_for_test(temp_dir=tempfile.mkdtemp()) as instance:
    with dg.execute_job(job, instance) as result:
        inherited = result.output_for_node("what_the_step_inherited") if result.success else None
print(json.dumps({"inherited": inherited, "polled": bool(polls)}))
"""


@pytest.mark.speedups
@pytest.mark.slow
def test_the_private_hooks_still_take_effect_in_a_real_run():
    """In a fresh interpreter: the forkserver is one per process, and one another test started
    (without the executor's preload list) would serve this run's steps."""
    outcome = script_result(GUARD_RUN, str(REPO_ROOT), cwd=REPO_ROOT)
    assert outcome["inherited"] == {
        "warm_up_preloaded": True,
        "migrations_shared": True,
        "job_resolved_before_fork": True,
        "heap_frozen": True,
    }, outcome
    assert outcome["polled"], "Dagster's loop no longer calls _poll_for_event: the hook is dead"


def test_dagsters_storages_still_parse_migrations_through_the_shared_parser(tmp_path):
    """The alembic hook pays only while Dagster's SQLite storages ask alembic for their scripts
    when an instance opens (`ScriptDirectory.from_config`)."""
    import dagster as dg
    from alembic.script import ScriptDirectory

    from cto_dagster.speedups.step_warmup import share_migration_scripts

    share_migration_scripts()
    shared = ScriptDirectory.from_config
    calls = []

    def counting(cls, config):
        calls.append(config.get_main_option("script_location"))
        return shared.__func__(cls, config)

    ScriptDirectory.from_config = classmethod(counting)
    try:
        with dg.instance_for_test(temp_dir=str(tmp_path)):
            pass
    finally:
        ScriptDirectory.from_config = shared
    assert calls, "Dagster no longer builds alembic ScriptDirectory objects: drop the hook"


@pytest.mark.slow
def test_the_failure_sensor_reports_a_failed_run_through_a_real_daemon(make_project):
    """A failed run skips `run_metrics`; the daemon's sensor runs the metrics job for it. Here
    the run is queued through the daemon of `dg dev` (as `./scripts/ui` starts it) by
    `cto-dagster launch`, which then leaves the metrics to the sensor."""
    import time

    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance
    from tests.test_ui_browser import Server

    project = make_project([demo_task(1), demo_task(2, exit_code=3), demo_task(3, deps=[2])])
    server = Server(project.env(), with_daemon=True)
    try:
        server.wait_ready()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the daemon is up: its queue and its sensors
            with open_instance(project.home) as instance:
                beats = instance.get_daemon_heartbeats()
            if {"QUEUED_RUN_COORDINATOR", "SENSOR"} <= set(beats):
                break
            time.sleep(1)
        launched = project.cli("launch")
        assert launched.returncode == 1, launched.stdout[-2000:] + launched.stderr[-2000:]
        assert "queued (a daemon serves this instance)" in launched.stdout
        run_id = launched.stdout.split("▶️  Run ", 1)[1].split()[0]
        failed = next(r for r in project.runs() if r.run_id == run_id)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        metrics_run = None
        while time.monotonic() < deadline + 120 and metrics_run is None:
            with open_instance(project.home) as instance:
                found = instance.get_run_records(
                    dg.RunsFilter(
                        job_name="run_metrics_job", tags={"cto/metrics_for_run": failed.run_id}
                    )
                )
                done = [r for r in found if r.dagster_run.is_finished]
                metrics_run = done[0].dagster_run if done else None
            time.sleep(2)
    finally:
        server.stop()
    assert metrics_run is not None, "the sensor never ran the metrics job for the failed run"
    assert metrics_run.status == dg.DagsterRunStatus.SUCCESS
