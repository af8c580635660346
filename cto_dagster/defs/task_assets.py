"""The task asset factory: one asset per task, upstream deps = the task's dependencies."""

import os
from typing import NamedTuple

import dagster as dg

from cto_dagster.core.integration.level_merge import resolution_report
from cto_dagster.core.planning.planner import ExecutionPlan, weights
from cto_dagster.core.planning.predictions import Prediction
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.support.graphs import remaining_path_lengths
from cto_dagster.core.task_run.conflict_resolution import Resolution
from cto_dagster.core.task_run.step import (
    DependencyHead,
    TaskFailed,
    TaskRunRequest,
    TaskRunResult,
    run_task,
)
from cto_dagster.core.task_run.verify import Verification, VerifyPolicy
from cto_dagster.defs.k8s_tags import K8S_CONFIG_TAG, task_k8s_config
from cto_dagster.defs.process_origin import start_note
from cto_dagster.defs.resources import agent_key, git_key
from cto_dagster.defs.translator import TAG_LEVEL, TAG_TASK_ID, TaskTranslator, project_op_tags

HEAD_COMMIT = "head_commit"
RESOLVED_CHECK = "resolved_conflicts"  # WARN: files a conflict resolver changed, to review
RESOLVED_COUNT = "conflicts_resolved"
RESOLVED_FILES = "files_resolved_by_agent"
PUSHING_COMMIT = "pushing_commit"  # observed just before a push, in case the step dies after it
VERIFIED_CHECK = "verified"  # ERROR, blocking: the project's checks passed on the task's branch
VERIFIED = "verified"  # metadata: passed | failed (absent: not configured)
OUTPUT_EACH = 1500  # characters of each command's output in the `verified` check


class Recorded(NamedTuple):
    head: str | None  # the head commit of the latest materialization
    pushing: str | None  # a later announced push that no materialization followed
    files: tuple[str, ...] = ()  # what the latest materialization changed
    resolved: tuple[str, ...] = ()  # files in it that a conflict resolver changed
    verified: str | None = None  # passed | failed | None (no checks configured)


def recorded_resolutions(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey]
) -> dict[dg.AssetKey, tuple[str, ...]]:
    """Files an agent resolved in each asset's latest materialization (empty: none)."""
    return {key: found.resolved for key, found in _recorded(instance, keys).items()}


def recorded_heads(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey]
) -> dict[dg.AssetKey, str | None]:
    """The head commit each asset's latest materialization recorded, in one query."""
    return {key: found.head for key, found in _recorded(instance, keys).items()}


def recorded_verdicts(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey]
) -> dict[dg.AssetKey, str | None]:
    """Each asset's latest `verified` verdict: passed, failed, or None (no checks ran)."""
    return {key: found.verified for key, found in _recorded(instance, keys).items()}


def _changed_files(metadata) -> tuple[str, ...]:
    value = metadata.get("changed_files")
    text = getattr(value, "value", value) or getattr(value, "md_str", "") or ""
    return tuple(
        line[3:-1]
        for line in str(text).splitlines()
        if line.startswith("- `") and line.endswith("`")
    )


def _recorded(instance, keys) -> dict[dg.AssetKey, Recorded]:
    """key -> what this instance recorded of it (one query for all keys)."""
    found: dict[dg.AssetKey, Recorded] = dict.fromkeys(keys, Recorded(None, None))
    for record in instance.get_asset_records(keys) if keys else ():
        entry = record.asset_entry
        if entry.asset_key not in found:
            continue
        event = entry.last_materialization
        materialization = event.asset_materialization if event else None
        value = materialization.metadata.get(HEAD_COMMIT) if materialization else None
        head = str(value.value) if value is not None else None
        files = _changed_files(materialization.metadata) if materialization else ()
        resolved_value = materialization.metadata.get(RESOLVED_FILES) if materialization else None
        resolved = tuple(filter(None, str(getattr(resolved_value, "value", "")).split(", ")))
        pushing = None
        observation_id = entry.last_observation_storage_id
        if observation_id and observation_id > (entry.last_materialization_storage_id or 0):
            observed = entry.last_observation.asset_observation
            announced = observed.metadata.get(PUSHING_COMMIT) if observed else None
            pushing = str(announced.value) if announced is not None else None
        verified = materialization.metadata.get(VERIFIED) if materialization else None
        found[entry.asset_key] = Recorded(
            head, pushing, files, resolved, str(verified.value) if verified is not None else None
        )
    return found


def task_priorities(plan: ExecutionPlan, prediction: Prediction | None = None) -> dict[str, int]:
    """Longest remaining path, in tenths: predicted seconds when there is a prediction (the
    tasks file's durations, earlier runs' agent times), else complexity-weighted task counts.
    With fewer agent slots than ready tasks, the critical chain goes first.
    `CTO_DAGSTER_PRIORITIES=off` gives every task the same priority (for comparisons; see
    benchmarks/goals.py)."""
    if os.environ.get("CTO_DAGSTER_PRIORITIES", "on").lower() in ("off", "0", "false"):
        return dict.fromkeys(plan.task_ids, 0)
    if prediction is not None:
        durations = prediction.durations
        remaining = remaining_path_lengths(plan.dependencies, plan.task_ids, durations.__getitem__)
    else:
        weight, _ = weights(plan.tasks, plan.task_ids)
        remaining = remaining_path_lengths(plan.dependencies, plan.task_ids, weight)
    return {task_id: round(value * 10) for task_id, value in remaining.items()}


def result_metadata(result: TaskRunResult, level: int) -> dict[str, object]:
    files = result.files_changed
    shown = "\n".join(f"- `{path}`" for path in files[:200])
    if len(files) > 200:
        shown += f"\n- … and {len(files) - 200} more"
    return {
        "task_id": result.task_id,
        "branch": result.branch,
        "base_branch": result.base_branch,
        "base_commit": result.base_commit,
        HEAD_COMMIT: result.head_commit,
        "merged_dependencies": ", ".join(result.merged_dependencies) or "(none)",
        "files_changed": len(files),
        "changed_files": dg.MetadataValue.md(shown or "(no files changed)"),
        "insertions": result.insertions,
        "deletions": result.deletions,
        "started_at": dg.MetadataValue.timestamp(result.started_at),
        "finished_at": dg.MetadataValue.timestamp(result.finished_at),
        "duration_seconds": round(result.duration_seconds, 3),
        "agent_seconds": round(result.agent_seconds, 3),
        "prepare_seconds": round(result.prepare_seconds, 3),
        "publish_seconds": round(result.publish_seconds, 3),
        "execution_level": level,
        "agent_exit_code": result.agent_exit_code,
        "agent_log_tail": dg.MetadataValue.md(f"```\n{result.agent_log_tail}\n```"),
        "replaced_commit": result.replaced_commit or "(new branch)",
        "backup_ref": result.backup_ref or "(nothing replaced)",
        "agent_sandbox": result.sandbox,
        "nested_repositories_flattened": ", ".join(result.flattened_repositories) or "(none)",
        "taskmaster_edits_left_out": ", ".join(result.taskmaster_edits) or "(none)",
        "status_set_by_agent": result.status_set_by_agent or "(not set)",
        **(result.usage.metadata() if result.usage else {}),
        **resolution_metadata(result.resolutions),
        **verification_metadata(result.verification),
    }


def verification_metadata(verification: Verification | None) -> dict[str, object]:
    """The split of the task's time (setup, checks, repairs) and the verdict, for run_metrics
    and the Gantt chart; nothing when the project configures no checks."""
    if verification is None:
        return {}
    data = verification.metadata()
    return {
        VERIFIED: data["verified"],
        "setup_seconds": data["setup_seconds"],
        "check_seconds": data["check_seconds"],
        "repair_seconds": data["repair_seconds"],
        "repair_attempts": data["repair_attempts"],
        **({"repairs": repairs_table(verification)} if verification.repairs else {}),
    }


def repairs_table(verification: Verification) -> dg.MetadataValue:
    """Each repair attempt: its number, seconds, cost and result."""
    rows = [
        f"| {r.attempt} | {r.seconds:.1f} | "
        f"{'n/a' if r.cost_usd is None else f'${r.cost_usd:.4f}'} | {r.result} |"
        for r in verification.repairs
    ]
    return dg.MetadataValue.md(
        "| attempt | seconds | cost | result |\n|---|---|---|---|\n" + "\n".join(rows)
    )


def verified_check(key: dg.AssetKey, name: str = VERIFIED_CHECK) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=key,
        blocking=True,
        description="The project's checks (`verify.checks`) pass on this branch",
    )


def verified_check_result(
    verification: Verification, name: str = VERIFIED_CHECK
) -> dg.AssetCheckResult:
    """Each command, its exit code, seconds and the end of its output (redacted)."""
    data = verification.metadata()
    rows = data["commands"]
    table = "\n".join(
        f"| {r['round']} | {r['kind']} | `{r['command']}` | {r['exit_code']} | {r['seconds']} "
        f"| {r['result']} |"
        for r in rows  # type: ignore[union-attr]
    )
    failing = next((r for r in reversed(rows) if r["result"] != "passed"), None)  # type: ignore[arg-type]
    metadata: dict[str, object] = {
        "commands": dg.MetadataValue.md(
            "| round | kind | command | exit code | seconds | result |\n|---|---|---|---|---|---|\n"
            + table
        ),
        "check_seconds": data["check_seconds"],
        "setup_seconds": data["setup_seconds"],
        "repair_attempts": data["repair_attempts"],
        "baseline": data["baseline"],
    }
    if verification.repairs:
        metadata["repairs"] = repairs_table(verification)
    # each command's output (its end, redacted), not only the failing one's: what a setup
    # installed, and from where, is what people ask when a check passes where it should not
    metadata["outputs"] = dg.MetadataValue.md(
        "\n\n".join(
            f"**{r['round']} · {r['kind']} `{r['command']}`: {r['result']}**\n\n"
            f"```\n{str(r['output_tail'])[-OUTPUT_EACH:]}\n```"
            for r in rows  # type: ignore[union-attr]
        )
    )
    if failing is not None:
        metadata["failing_output_tail"] = dg.MetadataValue.md(f"```\n{failing['output_tail']}\n```")
    return dg.AssetCheckResult(
        check_name=name,
        passed=verification.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verification.summary()[:2000],
        metadata=metadata,
    )


def resolution_metadata(resolutions: list[Resolution]) -> dict[str, object]:
    if not resolutions:
        return {RESOLVED_COUNT: 0}
    return {
        RESOLVED_COUNT: len(resolutions),
        "conflict_resolutions": dg.MetadataValue.md(resolution_report(resolutions)),
        RESOLVED_FILES: ", ".join(sorted({f for r in resolutions for f in r.files})),
    }


def resolution_check(key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        RESOLVED_CHECK,
        asset=key,
        description="Merge conflicts an agent resolved: review these files",
    )


def resolution_check_result(resolutions: list[Resolution]) -> dg.AssetCheckResult:
    files = sorted({f for r in resolutions for f in r.files})
    return dg.AssetCheckResult(
        check_name=RESOLVED_CHECK,
        passed=not resolutions,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"resolved by an agent: review these files: {', '.join(files)}"
            if resolutions
            else "No conflict needed resolving."
        ),
        metadata={"conflicts_resolved": len(resolutions), "files": ", ".join(files) or "(none)"},
    )


def build_task_asset(
    project: ProjectSettings,
    plan: ExecutionPlan,
    task_id: str,
    translator: TaskTranslator,
    priority: int,
    extra_op_tags: dict[str, object] | None = None,
    other_tokens: tuple[str, ...] = (),
) -> dg.AssetsDefinition:
    task = plan.tasks[task_id]
    level = plan.level_of[task_id]
    key = translator.asset_key(project, task_id)
    dependency_keys = {
        d: translator.asset_key(project, d) for d in plan.dependencies_to_run(task_id)
    }
    conflicts = project.conflict_policy()
    verify, verify_problem = _task_verify_policy(project, task)
    checks = [
        *([resolution_check(key)] if conflicts.enabled else []),
        *([verified_check(key)] if verify.enabled else []),
    ]
    op_tags = _task_op_tags(project, plan, task_id, priority, other_tokens, extra_op_tags)

    @dg.asset(
        key=key,
        deps=list(dependency_keys.values()),
        group_name=translator.task_group(project, plan, task),
        tags=translator.tags(project, task, level),
        description=translator.description(task),
        metadata=translator.metadata(plan, task, level),
        code_version=task.content_hash,
        op_tags=op_tags,
        kinds=translator.kinds(project),
        pool=project.pool,
        required_resource_keys={git_key(project), agent_key(project)},
        check_specs=checks or None,
        retry_policy=_retry_policy(project),
    )
    def _task(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        context.log.debug(start_note("step process", context.job_def))
        if verify_problem:
            raise dg.Failure(f"Task {task_id}: {verify_problem}", allow_retries=False)
        heads = _recorded(context.instance, [key, *dependency_keys.values()])
        _refuse_unverified_dependencies(task_id, dependency_keys, heads)
        request = TaskRunRequest(
            task=task,
            level=level,
            repository=getattr(context.resources, git_key(project)).repository(),
            agent=getattr(context.resources, agent_key(project)).spec(project),
            dependencies=_dependency_heads(plan, task_id, dependency_keys, heads),
            previous_head=heads[key].head,
            pushing_head=heads[key].pushing,
            before_push=_announcer(context, key),
            conflicts=conflicts,
            verify=verify,
        )
        result = _run_task_or_fail(request, context)
        return _materialize_result(result, level, resolutions_checked=conflicts.enabled)

    return _task


def _task_op_tags(
    project: ProjectSettings,
    plan: ExecutionPlan,
    task_id: str,
    priority: int,
    other_tokens: tuple[str, ...],
    extra_op_tags: dict[str, object] | None,
) -> dict[str, object]:
    level = plan.level_of[task_id]
    return {
        "dagster/priority": str(priority),
        TAG_TASK_ID: task_id,
        TAG_LEVEL: str(level),
        **project_op_tags(project),
        # read only by k8s_job_executor
        K8S_CONFIG_TAG: task_k8s_config(project, plan.tasks[task_id], level, other_tokens),
        **(extra_op_tags or {}),
    }


def _announcer(context: dg.AssetExecutionContext, key: dg.AssetKey):
    """Records, just before a push, the commit being pushed (in case the step dies after it)."""

    def announce(commit: str) -> None:
        context.log_event(dg.AssetObservation(asset_key=key, metadata={PUSHING_COMMIT: commit}))

    return announce


def _run_task_or_fail(request: TaskRunRequest, context: dg.AssetExecutionContext) -> TaskRunResult:
    try:
        return run_task(request, log=step_logger(context))
    except TaskFailed as exc:
        metadata = {k: _metadata_value(v) for k, v in exc.details.items()}
        raise dg.Failure(
            description=exc.message, metadata=metadata, allow_retries=exc.retryable
        ) from None


def _retry_policy(project: ProjectSettings) -> dg.RetryPolicy | None:
    if not project.max_retries:
        return None
    return dg.RetryPolicy(max_retries=project.max_retries, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def _refuse_unverified_dependencies(
    task_id: str, dependency_keys: dict[str, dg.AssetKey], heads: dict[dg.AssetKey, Recorded]
) -> None:
    """A task does not start on dependencies whose `verified` check failed."""
    unverified = [d for d, k in dependency_keys.items() if heads[k].verified == "failed"]
    if unverified:
        raise dg.Failure(
            f"Task {task_id}: dependency tasks {', '.join(unverified)} did not pass the "
            "project's checks (their `verified` check failed): fix and re-materialize them "
            "first",
            allow_retries=False,
        )


def _dependency_heads(
    plan: ExecutionPlan,
    task_id: str,
    dependency_keys: dict[str, dg.AssetKey],
    heads: dict[dg.AssetKey, Recorded],
) -> tuple[DependencyHead, ...]:
    """What the task's branch starts from: each dependency that runs, at its recorded head, then
    the dependencies in review (named in the prompt, not merged)."""
    return tuple(
        DependencyHead(
            dep_id,
            heads[dep_key].head,
            plan.tasks[dep_id].title,
            heads[dep_key].files,
            details=plan.tasks[dep_id].details,
        )
        for dep_id, dep_key in dependency_keys.items()
    ) + tuple(
        DependencyHead(dep_id, None, plan.tasks[dep_id].title, in_review=True)
        for dep_id in plan.review_dependencies(task_id)
    )


def _materialize_result(
    result: TaskRunResult, level: int, *, resolutions_checked: bool
) -> dg.MaterializeResult:
    results = [
        *([resolution_check_result(result.resolutions)] if resolutions_checked else []),
        *([verified_check_result(result.verification)] if result.verification else []),
    ]
    return dg.MaterializeResult(
        metadata=result_metadata(result, level),
        data_version=dg.DataVersion(result.head_commit),
        check_results=results or None,
    )


def _task_verify_policy(project: ProjectSettings, task) -> tuple[VerifyPolicy, str]:
    """The task's checks (its `metadata.verify` over the project's), or why they are wrong:
    said when the task's step starts, not when the code location loads (one bad task must not
    stop the others)."""
    try:
        return project.verify.for_task(task.raw.get("metadata")), ""
    except ValueError as exc:
        return project.verify.policy(), str(exc)


def step_logger(context: dg.AssetExecutionContext):
    """The step's lines into the run's log; warnings (no sandbox) at WARNING."""

    def log(line: str) -> None:
        (context.log.warning if line.startswith("⚠️") else context.log.info)(line)

    return log


def _metadata_value(value: object) -> object:
    if isinstance(value, str) and "\n" in value:
        return dg.MetadataValue.md(f"```\n{value}\n```")
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return value
