"""One integration asset per level (or per stage of levels: `integration.granularity`), stacked
on the previous one, with its asset checks: overlapping files (WARN), merge conflicts (ERROR,
blocking the next stage) and, when the project has checks, `integration_verified` (ERROR,
blocking: the project's checks pass on the merged branch)."""

from dataclasses import dataclass

import dagster as dg

from cto_dagster.core.git.command import GitError
from cto_dagster.core.integration.branch_pruning import prune_integration_branches
from cto_dagster.core.integration.checks import IntegrationCheckUnavailable, verification_report
from cto_dagster.core.integration.level_merge import (
    IntegrationRequest,
    IntegrationResult,
    StatusWriteBack,
    conflict_report,
    integrate_level,
    overlap_report,
    resolution_report,
)
from cto_dagster.core.integration.level_stages import IntegrationStage
from cto_dagster.core.integration.pull_requests import ForgeError, pr_body, pr_title
from cto_dagster.core.planning.mermaid import mermaid_block
from cto_dagster.core.planning.planner import ExecutionPlan
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.support.names import task_branch
from cto_dagster.core.task_run.conflict_resolution import ConflictPolicy
from cto_dagster.core.task_run.verify import VerifyPolicy
from cto_dagster.defs.k8s_tags import K8S_CONFIG_TAG, bookkeeping_k8s_config
from cto_dagster.defs.resources import (
    GitHubResource,
    PlayParameters,
    agent_key,
    git_key,
    github_key,
)
from cto_dagster.defs.run_records import older_integration_heads
from cto_dagster.defs.step_priority import run_in_background
from cto_dagster.defs.task_assets import (
    HEAD_COMMIT,
    recorded_heads,
    recorded_resolutions,
    recorded_verdicts,
    resolution_check,
    resolution_check_result,
    resolution_metadata,
    step_logger,
    verified_check,
    verified_check_result,
)
from cto_dagster.defs.translator import TAG_LEVEL, TaskTranslator, project_op_tags

OVERLAP_CHECK = "file_overlap"
CONFLICT_CHECK = "merge_conflicts"
VERIFIED_CHECK = "integration_verified"  # ERROR, blocking: the project's checks pass on it


def integration_key(project: ProjectSettings, stage: IntegrationStage) -> dg.AssetKey:
    return dg.AssetKey([project.name, stage.asset_name])


def run_token(context: dg.AssetExecutionContext) -> str:
    """Short and unique per run; a re-execution keeps its root run's, so it reuses the branches."""
    return (context.run.tags.get("dagster/root_run_id") or context.run.run_id)[:8]


def _resolved_section(result: IntegrationResult, by_task: dict[str, tuple[str, ...]]) -> str:
    """The PR's section for reviewers: this level's resolutions, and the task branches whose
    dependencies an agent merged."""
    lines = [resolution_report(result.resolutions)] if result.resolutions else []
    for task_id, files in sorted(by_task.items()):
        if files:
            lines.append(
                f"- {task_branch(task_id)}: its dependencies' conflict in "
                f"{', '.join(f'`{f}`' for f in files)} was resolved by an agent"
            )
    return "\n".join(lines)


def _prune_older_runs(context, project, repository, result, stage, plan, token) -> dict:
    """After the run's last level is pushed: the integration branches of runs older than the
    project's last `integration.keep_runs` are deleted (those still where their run left them)."""
    keep = project.integration.keep_runs
    if not keep or stage.last != len(plan.levels) - 1 or not result.pushed:
        return {}
    heads = older_integration_heads(context.instance, project.name, token, keep)
    try:
        deleted, kept = prune_integration_branches(repository.cache(), heads, step_logger(context))
    except GitError as exc:
        context.log.warning(f"🧹 could not prune older integration branches: {exc}")
        return {}
    return {
        "pruned_branches": ", ".join(deleted) or "(none)",
        "older_branches_kept": ", ".join(kept) or "(none)",
    }


def _open_pr(
    github: GitHubResource, project, play, result, stage, previous, plan, token, resolved=""
) -> tuple[str, str]:
    """The stage's PR (opened, or the open one reused), and what became of older runs' PRs of
    the same stage (closed as superseded by it)."""
    if not result.pushed:
        return "no PR: the integration branch was not pushed", ""
    if not github.repository:
        return "no PR: the repository is not on GitHub (the branch is the result)", ""
    if not github.token():
        return f"no PR: no token (set {github.token_env or 'git.token_env'})", ""
    base = (
        previous.branch(token)
        if previous
        else (play.integration_base_branch or project.base_branch)
    )
    rows = [(t, plan.tasks[t].title, task_branch(t)) for t in stage.task_ids(plan.levels)]
    pull = github.open_pull_request(
        head=result.branch,
        base=base,
        title=pr_title(stage.label, token),
        body=pr_body(
            stage.label,
            rows,
            result.missing,
            chart=mermaid_block(plan),
            status_note=_status_note(project, result),
            resolved=resolved,
            verified=verification_report(result.checked),
        ),
    )
    try:
        closed = github.supersede(
            pull, lambda head: head != result.branch and stage.is_branch_of_any_run(head)
        )
    except ForgeError as exc:  # the new PR stands; the older ones stay open
        return pull.url, f"(older runs' PRs left open: {exc})"
    return pull.url, ", ".join(f"#{n}" for n in closed)


def _status_note(project: ProjectSettings, result: IntegrationResult) -> str:
    if not result.statuses_written:
        return ""
    return (
        f"Merging this PR sets the status of tasks {', '.join(result.statuses_written)} to "
        f"`{project.status_write_back}` in `{project.tasks_file}`."
    )


def _metadata(result: IntegrationResult, pr: str) -> dict[str, object]:
    predicted = "\n".join(
        f"- tasks {a} and {b}: {', '.join(paths)}" for a, b, paths in result.predicted_conflicts
    )
    return {
        "integration_branch": result.branch if result.pushed else f"{result.branch} (not pushed)",
        HEAD_COMMIT: result.head_commit or "",
        "start_commit": result.start_commit,
        "merged_branches": ", ".join(result.merged) or "(none)",
        "missing_tasks": ", ".join(result.missing) or "(none)",
        "complete": result.complete,
        "files_changed": len(result.files_changed),
        "overlapping_files": len(result.overlaps),
        "predicted_conflicts": dg.MetadataValue.md(predicted or "(none)"),
        "pull_request": dg.MetadataValue.url(pr) if pr.startswith("http") else pr,
        "backup_ref": result.backup_ref or "(nothing replaced)",
        "statuses_written": (
            f"tasks {', '.join(result.statuses_written)}" if result.statuses_written else "(none)"
        ),
        "predicted_conflict_count": len(result.predicted_conflicts),
        "conflicts_left": 1 if result.conflict_branch else 0,
        **resolution_metadata(result.resolutions),
        **_verification_metadata(result),
        **(
            {"resolver_log_tail": dg.MetadataValue.md(f"```\n{result.resolver_log_tail}\n```")}
            if result.resolution_failure
            else {}
        ),
    }


def _verification_metadata(result: IntegrationResult) -> dict[str, object]:
    """The verdict of the project's checks on the branch and where its time went (run
    summaries read `verified`, `check_seconds`, `setup_seconds`, `repaired_by_agent`); nothing
    when the checks did not run."""
    checked = result.checked
    if checked is None:
        return {}
    data = checked.verification.metadata()
    metadata: dict[str, object] = {
        "verified": data["verified"],
        "check_seconds": data["check_seconds"],
        "setup_seconds": data["setup_seconds"],
        "repair_seconds": data["repair_seconds"],
        "repair_attempts": data["repair_attempts"],
        "repaired_by_agent": checked.fix is not None,
    }
    if checked.fix is not None:
        metadata["repair_commit"] = checked.fix.commit
        metadata["files_repaired_by_agent"] = ", ".join(checked.fix.files) or "(none)"
    return metadata


def status_write_back(
    project: ProjectSettings, plan: ExecutionPlan, stage: IntegrationStage
) -> StatusWriteBack | None:
    """The tasks file edit this stage's integration branch carries (None when turned off)."""
    if project.status_write_back == "off":
        return None
    names = {
        t: (plan.tasks[t].tag or plan.tag, plan.tasks[t].file_id)
        for t in stage.task_ids(plan.levels)
    }
    return StatusWriteBack(project.tasks_file, project.status_write_back, names)


def _listed(ids: list[str], limit: int = 12) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


@dataclass(frozen=True)
class StageStep:
    """What one integration step knows from the plan: its stage, the one before, the tasks it
    merges (asset keys by task id), and the project's policies."""

    project: ProjectSettings
    plan: ExecutionPlan
    stage: IntegrationStage
    previous: IntegrationStage | None
    key: dg.AssetKey
    task_keys: dict[str, dg.AssetKey]
    previous_key: dg.AssetKey | None
    write_back: StatusWriteBack | None
    conflicts: ConflictPolicy
    verify: VerifyPolicy

    @property
    def checks_integration(self) -> bool:
        """Whether the merged branch is checked: checks configured, `verify.integration` on."""
        return self.verify.enabled and self.verify.integration

    @property
    def upstream(self) -> list[dg.AssetKey]:
        return [*self.task_keys.values(), *([self.previous_key] if self.previous_key else [])]


def _description(step: StageStep) -> str:
    onto = f"{step.previous.label}'s integration branch." if step.previous else "the base branch."
    return (
        f"{step.stage.label.capitalize()} integration: {step.stage.branch_prefix}<run> stacks "
        f"the branches of tasks {_listed(list(step.task_keys))} on {onto}"
    )


def _check_specs(step: StageStep) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            OVERLAP_CHECK, asset=step.key, description="Files changed by two or more tasks"
        ),
        dg.AssetCheckSpec(
            CONFLICT_CHECK,
            asset=step.key,
            blocking=True,
            description="Every task branch merges without conflict",
        ),
        *([resolution_check(step.key)] if step.conflicts.enabled else []),
        *([verified_check(step.key, VERIFIED_CHECK)] if step.checks_integration else []),
    ]


def build_integration_asset(
    project: ProjectSettings,
    plan: ExecutionPlan,
    stage: IntegrationStage,
    previous: IntegrationStage | None,
    translator: TaskTranslator,
    other_tokens: tuple[str, ...] = (),
) -> dg.AssetsDefinition:
    step = StageStep(
        project=project,
        plan=plan,
        stage=stage,
        previous=previous,
        key=integration_key(project, stage),
        task_keys={t: translator.asset_key(project, t) for t in stage.task_ids(plan.levels)},
        previous_key=integration_key(project, previous) if previous else None,
        write_back=status_write_back(project, plan, stage),
        conflicts=project.conflict_policy(),
        verify=project.verify.policy(),
    )
    level_tag = stage.span

    @dg.asset(
        key=step.key,
        deps=step.upstream,
        group_name=translator.integration_group(project, plan, stage.last),
        description=_description(step),
        tags={TAG_LEVEL: level_tag},
        op_tags={
            TAG_LEVEL: level_tag,
            **project_op_tags(project),
            K8S_CONFIG_TAG: bookkeeping_k8s_config(project, "integration", other_tokens),
        },
        kinds={"git", "github"} if project.github_repository else {"git"},
        required_resource_keys={"play", git_key(project), github_key(project), agent_key(project)},
        check_specs=_check_specs(step),
        # a transient git or network error (raised as retryable) is tried again
        retry_policy=dg.RetryPolicy(
            max_retries=project.max_retries, delay=2, backoff=dg.Backoff.EXPONENTIAL
        )
        if project.max_retries
        else None,
    )
    def _integration(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return materialize_stage(context, step)

    return _integration


def materialize_stage(context: dg.AssetExecutionContext, step: StageStep) -> dg.MaterializeResult:
    """Merge the stage's task branches onto the previous stage's, push, open its PR, and say
    what it found (overlaps, conflicts, resolutions) as metadata and checks."""
    play: PlayParameters = context.resources.play
    run_in_background()
    token = run_token(context)
    request = _request(context, step, play, token)
    try:
        result = integrate_level(request, log=step_logger(context))
    except GitError as exc:
        raise dg.Failure(request.repository.redact(str(exc)), allow_retries=True) from None
    except IntegrationCheckUnavailable as exc:
        raise dg.Failure(request.repository.redact(str(exc)), allow_retries=False) from None
    pr, superseded = _publish(context, step, play, result, token)
    pruned = _prune_older_runs(
        context, step.project, request.repository, result, step.stage, step.plan, token
    )
    _log_findings(context, step.stage, result)
    return dg.MaterializeResult(
        metadata={
            **_metadata(result, pr),
            "integrated_levels": step.stage.span,
            **({"superseded_pull_requests": superseded} if superseded else {}),
            **pruned,
        },
        check_results=_check_results(step, play, result),
    )


def _request(context, step: StageStep, play: PlayParameters, token: str) -> IntegrationRequest:
    heads = recorded_heads(context.instance, step.upstream)
    previous_head = heads[step.previous_key] if step.previous_key else None
    if step.previous and play.integration_pr_enabled and not previous_head:
        raise dg.Failure(
            f"{step.previous.label} has no integration branch to stack on: materialize "
            f"{step.previous_key.to_user_string()} first",
            allow_retries=False,
        )
    _refuse_unverified_previous(context, step)
    project, plan = step.project, step.plan
    return IntegrationRequest(
        level=step.stage.first,
        last_level=step.stage.last,
        run_token=token,
        repository=getattr(context.resources, git_key(project)).repository(),
        base_branch=play.integration_base_branch or project.base_branch,
        previous_commit=previous_head,
        tasks={t: heads[k] for t, k in step.task_keys.items()},
        task_levels={t: plan.level_of[t] for t in step.task_keys},
        build_branch=play.integration_pr_enabled,
        detect_overlaps=play.conflict_detection,
        write_back=step.write_back,
        conflicts=step.conflicts,
        agent=getattr(context.resources, agent_key(project)).spec(project),
        task_info={t: plan.tasks[t] for t in step.task_keys},
        verify=step.verify,
    )


def _refuse_unverified_previous(context, step: StageStep) -> None:
    """A stage never stacks on a branch whose checks failed (as a task never builds on an
    unverified dependency); within a run the blocking check stops it already, this holds for a
    stage materialized on its own afterwards."""
    if step.previous_key is None:
        return
    verdict = recorded_verdicts(context.instance, [step.previous_key])[step.previous_key]
    if verdict == "failed":
        raise dg.Failure(
            f"{step.previous.label if step.previous else 'the previous stage'}'s integration "
            f"branch did not pass the project's checks (its `{VERIFIED_CHECK}` check failed): "
            f"fix it and re-materialize {step.previous_key.to_user_string()} first",
            allow_retries=False,
        )


def _publish(context, step: StageStep, play, result: IntegrationResult, token) -> tuple[str, str]:
    """The PR (or why there is none), and the older runs' PRs it closed."""
    if not play.integration_pr_enabled:
        return "integration disabled: integration_pr_enabled is false, no branch was built", ""
    try:
        by_task = recorded_resolutions(context.instance, list(step.task_keys.values()))
        resolved = _resolved_section(result, {t: by_task[k] for t, k in step.task_keys.items()})
        github = getattr(context.resources, github_key(step.project))
        pr, superseded = _open_pr(
            github, step.project, play, result, step.stage, step.previous, step.plan, token,
            resolved,
        )  # fmt: skip
    except ForgeError as exc:
        context.log.warning(f"no PR: {exc}")
        return f"no PR: {exc}", ""
    if superseded.startswith("#"):
        context.log.info(f"🔁 Closed older runs' PRs of {step.stage.label}: {superseded}")
    elif superseded:
        context.log.warning(superseded)
    return pr, superseded


def _log_findings(context, stage: IntegrationStage, result: IntegrationResult) -> None:
    if result.missing:
        context.log.warning(
            f"{stage.label.capitalize()} is incomplete: tasks {', '.join(result.missing)} "
            "have no branch"
        )
    if result.overlaps:
        context.log.warning(overlap_report(stage.label, result.overlaps))
    if result.conflict_branch:
        context.log.error(conflict_report(result))


def _check_results(step: StageStep, play, result: IntegrationResult) -> list:
    if result.overlaps:
        overlap_text = overlap_report(step.stage.label, result.overlaps)
    elif play.conflict_detection:
        overlap_text = f"No file is changed by two tasks of {step.stage.label}."
    else:
        overlap_text = "conflict_detection is false: not checked"
    if result.conflict_branch:
        conflict_text = conflict_report(result)
    elif not play.integration_pr_enabled:
        conflict_text = "integration_pr_enabled is false: nothing was merged"
    elif result.resolutions:
        conflict_text = (
            f"Every branch merged; {len(result.resolutions)} conflicts were resolved by an "
            "agent (see the resolved_conflicts check)"
        )
    else:
        conflict_text = "Every branch merged cleanly."
    return [
        dg.AssetCheckResult(
            check_name=OVERLAP_CHECK,
            passed=not result.overlaps,
            severity=dg.AssetCheckSeverity.WARN,
            description=overlap_text,
            metadata={"files": len(result.overlaps)},
        ),
        dg.AssetCheckResult(
            check_name=CONFLICT_CHECK,
            passed=result.conflict_branch is None,
            severity=dg.AssetCheckSeverity.ERROR,
            description=conflict_text,
            metadata={
                "conflicting_paths": ", ".join(result.conflict_paths) or "(none)",
                "tasks_involved": ", ".join(result.conflict_tasks) or "(none)",
                "predicted_conflicts": len(result.predicted_conflicts),
                "conflicts_resolved": len(result.resolutions),
            },
        ),
        *([resolution_check_result(result.resolutions)] if step.conflicts.enabled else []),
        *([_verified_result(play, result)] if step.checks_integration else []),
    ]


def _verified_result(play, result: IntegrationResult) -> dg.AssetCheckResult:
    """The project's checks on the merged branch; when they could not run (nothing was
    merged, or the merge stopped at a conflict) the check says why."""
    if result.verification is not None:
        return verified_check_result(result.verification, VERIFIED_CHECK)
    if not play.integration_pr_enabled:
        passed, why = True, "integration_pr_enabled is false: nothing was merged to check"
    elif result.conflict_branch:
        passed, why = False, "not checked: the merge stopped at a conflict (see merge_conflicts)"
    else:
        passed, why = False, "not checked"
    return dg.AssetCheckResult(
        check_name=VERIFIED_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=why,
    )
