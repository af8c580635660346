"""`play_multiprocess`: Dagster's multiprocess executor with the guide's `parallel_execution`
switch, a limit on agent slots, fast step start-up, and the plan written to the run's log.

Steps start through a forkserver that has already imported Dagster's storage and this code
location and done the start-up work every step would repeat (`step_warmup`), so a task whose
dependencies are done starts in well under a second instead of 4 to 8.
"""

import base64
import multiprocessing
import os
import pickle
import time
from collections import defaultdict
from collections.abc import Mapping
from multiprocessing import forkserver, resource_tracker

import dagster as dg
from dagster._core.definitions.executor_definition import (
    get_retries_config,
    multiple_process_executor_requirements,
)
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.multiprocess import MultiprocessExecutor

from cto_dagster.core.names import id_sort_key
from cto_dagster.core.predictions import DEFAULT_AGENT_SLOTS, LEARNED_ENV, learned_pin
from cto_dagster.core.processes import ProcessIdentity
from cto_dagster.core.progress import RunProgress
from cto_dagster.core.settings import PINNED_COMMITS_ENV, planned_commits_pin
from cto_dagster.defs.start_notes import SERVER_FORKSERVER_ENV, resolved_before_fork, start_note
from cto_dagster.defs.step_polling import collective_polling
from cto_dagster.defs.translator import TAG_LEVEL, TAG_TASK_ID

PRELOAD = [
    "dagster._core.executor.multiprocess",
    "dagster._core.execution.api",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "sqlalchemy",
    "alembic",
    "cto_dagster.core.task_run",
    "cto_dagster.defs.step_warmup",
]

CONFIG_SCHEMA = {
    "parallel_execution": dg.Field(
        bool,
        default_value=True,
        description="false: one task at a time (dependencies first, the critical chain first).",
    ),
    "max_concurrent": dg.Field(
        int,
        default_value=DEFAULT_AGENT_SLOTS,
        description="How many task steps (agents) may run at once.",
    ),
    "start_method": dg.Field(
        dg.Enum("StartMethod", [dg.EnumValue("forkserver"), dg.EnumValue("spawn")]),
        default_value="forkserver",
        description="forkserver starts steps fast; spawn is Dagster's default.",
    ),
    "preload_modules": dg.Field(
        [str], is_required=False, description="Extra modules for the forkserver to import once."
    ),
    "tag_concurrency_limits": dg.Field(
        [dict],
        is_required=False,
        description="Dagster's step limits by tag, e.g. [{key: cto/level, value: '0', limit: 2}].",
    ),
    "retries": get_retries_config(),
}


def pin_planned_commits() -> None:
    """Steps (forked by a forkserver this process starts) plan from the commits this process
    planned from: no fetch per run, and the same tasks even if the branch moved meanwhile; and
    they predict from the durations it learned, so their priorities and tags are the run's."""
    pin = planned_commits_pin()
    if pin:
        os.environ[PINNED_COMMITS_ENV] = pin
    learned = learned_pin()
    if learned:
        os.environ[LEARNED_ENV] = learned


def instance_modules(instance: dg.DagsterInstance) -> list[str]:
    """The modules of the storages, log manager, launcher... each step process will open."""
    ref = instance.get_ref()
    found = []
    for field in ref._fields:
        data = getattr(ref, field)
        module = getattr(data, "module_name", None)
        if field.endswith("_data") and isinstance(module, str) and module not in found:
            found.append(module)
    return found


def plan_log_lines(execution_plan) -> list[str]:
    """The run's tasks by level, in the original guide's words, read from the steps' tags."""
    levels: dict[int, list[str]] = defaultdict(list)
    for key in execution_plan.step_keys_to_execute:
        tags = execution_plan.get_step_by_key(key).tags or {}
        if TAG_TASK_ID in tags and TAG_LEVEL in tags:
            levels[int(tags[TAG_LEVEL])].append(tags[TAG_TASK_ID])
    lines = []
    for level in sorted(levels):
        lines += ["", f"📊 LEVEL {level}", "═" * 40, f"🚀 Launching tasks for level {level}:"]
        lines += [f"  → Task {task_id}" for task_id in sorted(levels[level], key=id_sort_key)]
    return lines


WARM_JOB_ENV = "CTO_DAGSTER_WARM_JOB"


# A selection of up to this many steps forks them from the code server's forkserver, each
# narrowing the job it finds resolved there (0.02 s at 500 tasks); a larger one starts a
# forkserver of its own with the narrowed job resolved once (0.9 s a step at 500 tasks).
SMALL_SELECTION_STEPS = 20


def adopt_inherited_forkserver(steps: int, job_def: object | None = None) -> bool:
    """In a run's process that the code server's forkserver forked: fork the steps from that
    forkserver rather than start another, when the run's job is the one resolved there or the
    run selects a few steps. Python's forked child knows its forkserver's address and holds its
    "alive" pipe, but not its process id, so `ensure_running` would start a new one: here it only
    checks the resource tracker."""
    if os.environ.get(SERVER_FORKSERVER_ENV) != "1":
        return False
    if not resolved_before_fork(job_def) and steps > SMALL_SELECTION_STEPS:
        return False
    server = forkserver._forkserver
    if server._forkserver_pid is not None:  # this process started a forkserver itself
        return False
    if not server._forkserver_address or server._forkserver_alive_fd is None:
        return False
    server.ensure_running = resource_tracker.ensure_running  # type: ignore[method-assign]
    return True


def job_for_steps(job) -> str:
    """The run's `ReconstructableJob` (or a list of them) for the forkserver's
    `step_warmup.warm_job` (an environment variable: the forkserver starts with the environment
    of the process that starts it)."""
    return base64.b64encode(pickle.dumps(job)).decode("ascii")


PROGRESS_TAG = "cto/progress"


class RunProgressTag:
    """The run's progress as a run tag (`cto/progress`: done/total, what runs, time left), updated
    as task steps start and end, so the UI's run list and run page show it while the run goes."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, execution_plan, slots: int):
        self._instance = instance
        self._run_id = run_id
        self._task_of: dict[str, str] = {}
        for key in execution_plan.step_keys_to_execute:
            tags = execution_plan.get_step_by_key(key).tags or {}
            if TAG_TASK_ID in tags:
                self._task_of[key] = tags[TAG_TASK_ID]
        dependencies = {
            task_id: [
                self._task_of[u]
                for u in execution_plan.get_step_by_key(key).get_execution_dependency_keys()
                if u in self._task_of
            ]
            for key, task_id in self._task_of.items()
        }
        self._progress = RunProgress(dependencies=dependencies, slots=slots)
        if self._task_of:
            self._write(time.time())

    def see(self, event: DagsterEvent) -> None:
        task_id = self._task_of.get(event.step_key or "")
        if task_id is None:
            return
        now = time.time()
        if event.event_type == dg.DagsterEventType.STEP_START:
            self._progress.start(task_id, now)
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            self._progress.finish(task_id, now)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            self._progress.fail(task_id)
        else:
            return
        self._write(now)

    def _write(self, now: float) -> None:
        try:
            self._instance.add_run_tags(self._run_id, {PROGRESS_TAG: self._progress.line(now)})
        except Exception:  # noqa: S110 - progress is for people; it never fails a run
            pass


class PlayMultiprocessExecutor(MultiprocessExecutor):
    """Dagster's multiprocess executor, through its constructor's own arguments (agent slots,
    tag limits, forkserver and its preload list), plus what a run of tasks needs: the plan in the
    run's log, the planned commits pinned for the steps, progress, and the collective poll."""

    def __init__(self, parallel_execution: bool, slots: int, **kwargs):
        super().__init__(max_concurrent=slots, **kwargs)
        self._forkserver = kwargs.get("start_method") == "forkserver"
        self._parallel_execution = parallel_execution
        self._slots = slots

    def execute(self, plan_context, execution_plan):
        pin_planned_commits()
        job_def = plan_context.reconstructable_job.get_definition()
        plan_context.log.debug(start_note("run process", job_def))
        steps = len(execution_plan.step_keys_to_execute)
        if self._forkserver and not adopt_inherited_forkserver(steps, job_def):
            os.environ[WARM_JOB_ENV] = job_for_steps(plan_context.reconstructable_job)
            os.environ.pop(SERVER_FORKSERVER_ENV, None)  # its steps come from another forkserver
        lines = plan_log_lines(execution_plan)
        mode = (
            f"parallel, up to {self._slots} agents at once"
            if self._parallel_execution
            else "sequential (parallel_execution: false)"
        )
        header = f"Execution plan ({mode}); each task starts as soon as its dependencies are done"
        # who runs the run: `cto-dagster resume` tells a dead run from a running one by it
        identity = ProcessIdentity.current().as_metadata()
        yield DagsterEvent.engine_event(
            plan_context, "\n".join([header, *lines]), EngineEventData(metadata=identity)
        )
        progress = RunProgressTag(
            plan_context.instance, plan_context.run_id, execution_plan, self._slots
        )
        with collective_polling():
            for event in super().execute(plan_context, execution_plan):
                progress.see(event)
                yield event


def preload_modules(job_module: str | None, storages: list[str], extra: list[str]) -> list[str]:
    """What the forkserver imports once for every step: Dagster's executor and storages, this
    code location, the warm-up (`step_warmup`), and the modules the config adds."""
    return [*PRELOAD, *storages, *extra, *([job_module] if job_module else [])]


def start_forkserver(preload: list[str], environment: Mapping[str, str]) -> None:
    """Start Python's forkserver (one per process) importing `preload`, with `environment` added
    to its environment only (its children read it: the job to resolve, where it came from)."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        forkserver.ensure_running()  # the server starts with this process's environment
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def forkserver_preload(init_context: dg.InitExecutorContext, extra: list[str]) -> list[str]:
    get_module = getattr(init_context.job, "get_module", None)
    module = get_module() if callable(get_module) else None
    return preload_modules(module, instance_modules(init_context.instance), extra)


@dg.executor(
    name="play_multiprocess",
    config_schema=CONFIG_SCHEMA,
    requirements=multiple_process_executor_requirements(),
)
def play_multiprocess_executor(init_context: dg.InitExecutorContext) -> PlayMultiprocessExecutor:
    config = init_context.executor_config
    parallel = bool(config["parallel_execution"])
    start_method = config["start_method"]
    preload = list(config.get("preload_modules") or [])
    return PlayMultiprocessExecutor(
        parallel_execution=parallel,
        slots=max(1, int(config["max_concurrent"])) if parallel else 1,
        retries=RetryMode.from_config(config["retries"]),
        tag_concurrency_limits=list(config.get("tag_concurrency_limits") or []),
        start_method=start_method,
        explicit_forkserver_preload=forkserver_preload(init_context, preload)
        if start_method == "forkserver"
        else None,
    )


def executor_for(kind: str) -> dg.ExecutorDefinition:
    """The executor of a project's runs: task steps as processes here, or as pods (imported only
    when a project runs on Kubernetes)."""
    if kind == "kubernetes":
        from cto_dagster.defs.kubernetes import play_k8s_executor

        return play_k8s_executor
    return play_multiprocess_executor
