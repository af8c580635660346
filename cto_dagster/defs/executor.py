"""`play_multiprocess`: Dagster's multiprocess executor with the guide's `parallel_execution`
switch, a limit on agent slots, fast step start-up, and the plan written to the run's log.

Steps start through a forkserver that has already imported Dagster's storage and this code
location (the executor's own `forkserver` start method and preload list); with the speed-ups on
(`cto_dagster.speedups`) it has also done the start-up work every step would repeat
(`step_warmup`), so a task whose dependencies are done starts in well under a second instead of
4 to 8.
"""

import time
from collections import defaultdict

import dagster as dg
from dagster._core.definitions.executor_definition import get_retries_config
from dagster._core.events import EngineEventData
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.multiprocess import MultiprocessExecutor

from cto_dagster.core.metrics.progress import RunProgress
from cto_dagster.core.planning.predictions import DEFAULT_AGENT_SLOTS
from cto_dagster.core.support.names import id_sort_key
from cto_dagster.core.support.processes import ProcessIdentity
from cto_dagster.defs.process_origin import start_note
from cto_dagster.defs.step_processes import instance_modules, pin_planned_commits, preload_modules
from cto_dagster.defs.translator import TAG_LEVEL, TAG_TASK_ID
from cto_dagster.speedups.forkservers import prepare_steps_forkserver, warmup_preload
from cto_dagster.speedups.step_polling import collective_polling

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

    def see(self, event: dg.DagsterEvent) -> None:
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
        if self._forkserver:  # speed-ups: the code server's forkserver, or the job warmed
            steps = len(execution_plan.step_keys_to_execute)
            prepare_steps_forkserver(plan_context.reconstructable_job, job_def, steps)
        lines = plan_log_lines(execution_plan)
        mode = (
            f"parallel, up to {self._slots} agents at once"
            if self._parallel_execution
            else "sequential (parallel_execution: false)"
        )
        header = f"Execution plan ({mode}); each task starts as soon as its dependencies are done"
        # who runs the run: `cto-dagster resume` tells a dead run from a running one by it
        identity = ProcessIdentity.current().as_metadata()
        yield dg.DagsterEvent.engine_event(
            plan_context, "\n".join([header, *lines]), EngineEventData(metadata=identity)
        )
        progress = RunProgressTag(
            plan_context.instance, plan_context.run_id, execution_plan, self._slots
        )
        with collective_polling():
            for event in super().execute(plan_context, execution_plan):
                progress.see(event)
                yield event


def forkserver_preload(init_context: dg.InitExecutorContext, extra: list[str]) -> list[str]:
    get_module = getattr(init_context.job, "get_module", None)
    module = get_module() if callable(get_module) else None
    return preload_modules(module, instance_modules(init_context.instance), extra, warmup_preload())


@dg.executor(
    name="play_multiprocess",
    config_schema=CONFIG_SCHEMA,
    requirements=dg.multiple_process_executor_requirements(),
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
