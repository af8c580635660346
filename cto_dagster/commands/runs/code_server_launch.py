"""Runs started from the command line are runs of the code location, like the UI's.

`dagster job execute` runs a job inside the command's own process: the run has no code-location
origin, so the UI lists it under no job, leaves it off the timeline and cannot re-execute it. Here
the code location is loaded the way the UI loads it (`workspace.yaml`'s location `cto_dagster`,
a code server of its own, started first: `code_server.py`), the run is created from that
location's job, and the instance's run launcher starts it, exactly as the launchpad does. While a
daemon serves the instance (`dg dev`, `./scripts/ui`) the run goes through its run queue;
otherwise it is launched at once and this command keeps the code server up until the run ends.

Dagster has no public Python API for this (`dagster job launch` only queues the run, and nothing
dequeues it without a daemon), so this module uses the workspace classes the CLI itself uses; the
browser test (a command-line run re-executed from the UI) fails if an upgrade breaks it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from cto_dagster.commands.runs.code_server import (
    LOCATION_NAME,
    CodeServer,
    CodeServerFailed,
    new_log_file,
    start_code_server,
)
from cto_dagster.core.metrics.progress import RunProgress, format_duration
from cto_dagster.defs.run_records import agent_slots, task_steps
from cto_dagster.defs.translator import TAG_PREDICTED, TAG_PROJECT

DAEMON_FRESH_SECONDS = 60
POLL_SECONDS = 0.5


def log_path(instance: dg.DagsterInstance) -> Path:
    """Where the code server and the runs it starts write their own output (the terminal shows
    progress; the UI shows every event)."""
    return new_log_file(instance.root_directory)


@contextmanager
def code_location(
    instance: dg.DagsterInstance, output: Path, server: CodeServer | None = None
) -> Iterator[object]:
    """A workspace holding this package's code location, served by `server`, or by one started
    here (its output, and its runs', goes to `output`; it stops on the way out, once its runs
    have ended). A server given is its caller's to stop."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import GrpcServerTarget

    owned = server is None
    server = server or start_code_server(output)
    try:
        try:
            server.wait_ready()
        except CodeServerFailed as exc:
            raise LaunchError(f"❌ the code server did not start:\n{exc}") from None
        target = GrpcServerTarget(
            host="localhost", port=None, socket=server.socket, location_name=LOCATION_NAME
        )
        with WorkspaceProcessContext(instance, target) as process_context:
            workspace = process_context.create_request_context()
            errors = workspace.get_code_location_error(LOCATION_NAME)
            if errors:
                raise LaunchError(f"❌ the code location did not load:\n{errors.message.strip()}")
            yield workspace
    finally:
        if owned:
            server.stop()


class LaunchError(Exception):
    """A run could not be started; the message says why."""


def _remote_job(workspace, job_name: str):
    from dagster._core.definitions.selector import JobSubsetSelector

    location = workspace.get_code_location(LOCATION_NAME)
    repositories = location.get_repositories()
    repository = next(iter(repositories.values()))
    if not repository.has_job(job_name):
        jobs = ", ".join(sorted(j.name for j in repository.get_all_jobs()))
        raise LaunchError(f"❌ no job {job_name!r} in the code location; jobs: {jobs}")
    selector = JobSubsetSelector(
        location_name=LOCATION_NAME,
        repository_name=repository.name,
        job_name=job_name,
        op_selection=None,
    )
    return location, repository, location.get_job(selector)


def _daemon_serves(instance: dg.DagsterInstance) -> bool:
    """True when a daemon's run queue has sent a heartbeat in the last minute."""
    try:
        beats = instance.get_daemon_heartbeats()
    except Exception:  # an instance without daemon storage answers nothing useful
        return False
    beat = beats.get("QUEUED_RUN_COORDINATOR")
    return bool(beat) and time.time() - beat.timestamp < DAEMON_FRESH_SECONDS


_GOING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


class ProjectBusy(LaunchError):
    """Another run of the same project is in progress; without a daemon's queue to hold this
    one, it is not started."""


def _project_run_in_progress(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    project = run.tags.get(TAG_PROJECT)
    if not project:
        return None
    busy = instance.get_run_records(
        dg.RunsFilter(tags={TAG_PROJECT: project}, statuses=_GOING),
        limit=5,
    )
    others = [r.dagster_run.run_id for r in busy if r.dagster_run.run_id != run.run_id]
    return others[0] if others else None


def _start(instance: dg.DagsterInstance, run: dg.DagsterRun, workspace) -> str:
    """Through the daemon's queue when one serves the instance (its `cto/project` limit holds a
    second run of a project); otherwise launched here, unless the project has a run going."""
    if _daemon_serves(instance):
        instance.submit_run(run.run_id, workspace)
        return "queued (a daemon serves this instance)"
    other = _project_run_in_progress(instance, run)
    if other:
        instance.report_run_canceled(run, "another run of the project is in progress")
        raise ProjectBusy(
            f"❌ run {other} of project {run.tags[TAG_PROJECT]} is still in progress: one run of "
            "a project at a time (they would build on each other's half-done branches). Wait "
            f"for it, or stop it (`dagster run delete {other}` after it ended, or Terminate in "
            "the UI); a stale one whose process died is failed by `cto-dagster resume`."
        )
    instance.launch_run(run.run_id, workspace)
    return "launched"


def create_run(
    instance: dg.DagsterInstance,
    workspace,
    job_name: str,
    run_config: Mapping[str, object] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.DagsterRun:
    """A run of the code location's job, as the launchpad creates it."""
    location, repository, remote_job = _remote_job(workspace, job_name)
    config = dict(run_config or {})
    plan = location.get_execution_plan(
        remote_job, config, step_keys_to_execute=None, known_state=None, instance=instance
    )
    return instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=config,
        resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.tags, **(tags or {})},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )


def create_reexecution_from_failure(
    instance: dg.DagsterInstance, workspace, parent: dg.DagsterRun
) -> dg.DagsterRun:
    """The UI's "Re-execute from failure": only what failed or did not run, same config."""
    from dagster._core.execution.plan.resume_retry import ReexecutionStrategy

    location, _repository, remote_job = _remote_job(workspace, parent.job_name)
    return instance.create_reexecuted_run(
        request_context=workspace,
        parent_run=parent,
        code_location=location,
        remote_job=remote_job,
        strategy=ReexecutionStrategy.FROM_FAILURE,
        use_parent_run_tags=True,
    )


@dataclass
class RunOutcome:
    run_id: str
    status: dg.DagsterRunStatus

    @property
    def success(self) -> bool:
        return self.status == dg.DagsterRunStatus.SUCCESS


def sandbox_lines() -> list[str]:
    """What isolates each project's agents, said before a run starts (never silently none)."""
    from cto_dagster.core.agents import SandboxUnavailable, sandbox_for
    from cto_dagster.core.agents.network import NetworkUnavailable, network_for
    from cto_dagster.core.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError:
        return []  # the load itself reports it
    lines = []
    for project in settings.projects:
        try:
            spec = project.agent.spec()
            sandbox = sandbox_for(spec)
            mark = "🔒" if sandbox.isolates else "⚠️ "
            lines.append(f"{mark} Agents of project {project.name}: {sandbox.reason}")
            network = network_for(project.agent.spec(), sandbox)
            mark = "🔒" if network.isolated else "⚠️ "
            lines.append(f"{mark} Network of project {project.name}'s agents: {network.reason}")
        except (SandboxUnavailable, NetworkUnavailable) as exc:
            lines.append(f"❌ Agents of project {project.name}: {exc}")
    return lines


def start_and_follow(
    instance: dg.DagsterInstance,
    make_run: Callable[[object], dg.DagsterRun],
    say: Callable[[str], None] = print,
    server: CodeServer | None = None,
) -> RunOutcome:
    """Create a run with `make_run(workspace)`, start it, and print its progress until it ends.
    Ctrl-C stops the run (and its agents) before returning. `server`: a code server the command
    started early (else one is started here)."""
    for line in sandbox_lines():
        say(line)
    output = server.output if server else log_path(instance)
    began = time.monotonic()
    say("⏳ Loading the code location (a large project takes a while)...")
    with code_location(instance, output, server) as workspace:
        say(f"⏳ Loaded in {time.monotonic() - began:.1f} s; creating the run...")
        run = make_run(workspace)
        how = _start(instance, run, workspace)
        say(f"▶️  Run {run.run_id} of {run.job_name} {how}; it is listed under the job in the UI")
        predicted = run.tags.get(TAG_PREDICTED)
        if predicted:
            shown = format_duration(float(predicted))
            say(f"🔮 Predicted makespan: {shown} (from the job's description)")
        say(f"   (the run's own output: {output})")
        try:
            status = follow(instance, run.run_id, say)
        except KeyboardInterrupt:
            say(f"⏹️  Stopping run {run.run_id} (Ctrl-C)...")
            instance.run_launcher.terminate(run.run_id)
            status = follow(instance, run.run_id, say, timeout=120)
            return RunOutcome(run.run_id, status)
        if status == dg.DagsterRunStatus.FAILURE:
            _report_failed_run(instance, workspace, run, say)
    return RunOutcome(run.run_id, status)


def _report_failed_run(instance, workspace, run: dg.DagsterRun, say) -> None:
    """A failed run skips its metrics; the failure sensor reports it when a daemon runs. With
    no daemon, this command launches the metrics job for the run itself."""
    from cto_dagster.defs.metrics_assets import (
        METRICS_FOR_RUN_TAG,
        metrics_job_name,
        metrics_run_exists,
    )
    from cto_dagster.defs.translator import TAG_PROJECT

    project = run.tags.get(TAG_PROJECT)
    if not project or _daemon_serves(instance) or metrics_run_exists(instance, run.run_id):
        return
    location, repository, _ = _remote_job(workspace, run.job_name)
    del location
    names = [metrics_job_name(project, True), metrics_job_name(project, False)]
    job = next((name for name in names if repository.has_job(name)), None)
    if job is None:
        return
    metrics_run = create_run(instance, workspace, job, tags={METRICS_FOR_RUN_TAG: run.run_id})
    instance.launch_run(metrics_run.run_id, workspace)
    status = follow(instance, metrics_run.run_id, lambda _line: None, timeout=300)
    say(f"📊 Metrics of the failed run: {status.value.lower()} (run {metrics_run.run_id[:8]})")


_SHOWN_LOG_MARKS = ("🚀", "✅", "❌", "⏱️", "⚠️", "🔧", "🧩", "⏳", "🔀")


def _progress_for(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunProgress:
    wanted = set(run.step_keys_to_execute or ())
    steps = {
        key: step for key, step in task_steps(instance, run).items() if not wanted or key in wanted
    }
    dependencies = {
        step.task_id: [steps[u].task_id for u in step.upstream if u in steps]
        for step in steps.values()
    }
    return RunProgress(dependencies=dependencies, slots=agent_slots(run))


def follow(
    instance: dg.DagsterInstance,
    run_id: str,
    say: Callable[[str], None] = print,
    timeout: float | None = None,
) -> dg.DagsterRunStatus:
    """Print what a run does as it happens (its plan, tasks starting and finishing, failures,
    progress with an estimate of the time left) until it ends; returns its final status."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    progress = _progress_for(instance, run)
    step_task = {key: step.task_id for key, step in task_steps(instance, run).items()}
    cursor = None
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        result = instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
        cursor = result.cursor
        for record in result.records:
            _show(record.event_log_entry, progress, step_task, say)
        run = instance.get_run_by_id(run_id)
        assert run is not None
        if run.is_finished and not result.has_more:
            return run.status
        if deadline is not None and time.monotonic() > deadline:
            return run.status
        if not result.has_more:
            time.sleep(POLL_SECONDS)


def _show(entry, progress: RunProgress, step_task: dict[str, str], say) -> None:
    event = entry.dagster_event
    if event is None:
        message = (entry.user_message or "").strip()
        if message.startswith(_SHOWN_LOG_MARKS):
            say(f"   {message}")
        return
    kind = event.event_type
    task_id = step_task.get(event.step_key or "")
    if kind == dg.DagsterEventType.ENGINE_EVENT and entry.user_message.startswith("Execution plan"):
        for line in entry.user_message.splitlines():
            say(f"   {line}")
    elif kind == dg.DagsterEventType.STEP_START and task_id is not None:
        progress.start(task_id, entry.timestamp)
    elif kind == dg.DagsterEventType.STEP_SUCCESS and task_id is not None:
        progress.finish(task_id, entry.timestamp)
        say(f"   {progress.line(entry.timestamp)}")
    elif kind == dg.DagsterEventType.STEP_FAILURE:
        data = event.event_specific_data
        failure = getattr(data, "user_failure_data", None)
        text = (failure.description if failure and failure.description else None) or (
            data.error.message.strip() if getattr(data, "error", None) else entry.user_message
        )
        say(f"❌ {event.step_key}: {text}")
        if task_id is not None:
            progress.fail(task_id)
            say(f"   {progress.line(entry.timestamp)}")
    elif kind in (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
        mark = "✅" if kind == dg.DagsterEventType.RUN_SUCCESS else "❌"
        say(f"{mark} {entry.user_message}")
    elif kind == dg.DagsterEventType.RUN_CANCELED:
        say(f"⏹️  {entry.user_message}")
