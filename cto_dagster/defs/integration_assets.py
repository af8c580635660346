"""One integration asset per level (or per stage of levels: `integration.granularity`), stacked
on the previous one, with two asset checks: overlapping files (WARN) and merge conflicts (ERROR,
blocking the next stage)."""

import dagster as dg

from cto_dagster.core.forge import ForgeError, pr_body, pr_title
from cto_dagster.core.git.command import GitError
from cto_dagster.core.integration import (
    IntegrationRequest,
    IntegrationResult,
    StatusWriteBack,
    conflict_report,
    integrate_level,
    overlap_report,
    resolution_report,
)
from cto_dagster.core.mermaid import mermaid_block
from cto_dagster.core.names import task_branch
from cto_dagster.core.planner import ExecutionPlan
from cto_dagster.core.pruning import prune_integration_branches
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.core.stages import IntegrationStage
from cto_dagster.defs.background import run_in_background
from cto_dagster.defs.k8s_tags import K8S_CONFIG_TAG, bookkeeping_k8s_config
from cto_dagster.defs.resources import (
    GitHubResource,
    PlayParameters,
    agent_key,
    git_key,
    github_key,
)
from cto_dagster.defs.run_records import older_integration_heads
from cto_dagster.defs.task_assets import (
    HEAD_COMMIT,
    recorded_heads,
    recorded_resolutions,
    resolution_check,
    resolution_check_result,
    resolution_metadata,
    step_logger,
)
from cto_dagster.defs.translator import TAG_LEVEL, TAG_PROJECT, TaskTranslator

OVERLAP_CHECK = "file_overlap"
CONFLICT_CHECK = "merge_conflicts"


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
        **(
            {"resolver_log_tail": dg.MetadataValue.md(f"```\n{result.resolver_log_tail}\n```")}
            if result.resolution_failure
            else {}
        ),
    }


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


def build_integration_asset(
    project: ProjectSettings,
    plan: ExecutionPlan,
    stage: IntegrationStage,
    previous: IntegrationStage | None,
    translator: TaskTranslator,
) -> dg.AssetsDefinition:
    key = integration_key(project, stage)
    task_ids = stage.task_ids(plan.levels)
    task_keys = {t: translator.asset_key(project, t) for t in task_ids}
    previous_key = integration_key(project, previous) if previous else None
    write_back = status_write_back(project, plan, stage)
    conflicts = project.conflicts.policy()
    level_tag = str(stage.first) if stage.single_level else f"{stage.first}-{stage.last}"
    name = (
        f"integration/level-{stage.first}-<run>"
        if stage.single_level
        else (f"integration/levels-{stage.first}-{stage.last}-<run>")
    )

    @dg.asset(
        key=key,
        deps=[*task_keys.values(), *([previous_key] if previous_key else [])],
        group_name=translator.integration_group(project, plan, stage.last),
        description=(
            f"{stage.label.capitalize()} integration: {name} stacks the branches of "
            f"tasks {_listed(task_ids)} on "
            + (f"{previous.label}'s integration branch." if previous else "the base branch.")
        ),
        tags={TAG_LEVEL: level_tag},
        op_tags={
            TAG_LEVEL: level_tag,
            TAG_PROJECT: project.name,
            K8S_CONFIG_TAG: bookkeeping_k8s_config(project, "integration"),
        },
        kinds={"git", "github"} if project.github_repository else {"git"},
        required_resource_keys={"play", git_key(project), github_key(project), agent_key(project)},
        check_specs=[
            dg.AssetCheckSpec(
                OVERLAP_CHECK, asset=key, description="Files changed by two or more tasks"
            ),
            dg.AssetCheckSpec(
                CONFLICT_CHECK,
                asset=key,
                blocking=True,
                description="Every task branch merges without conflict",
            ),
            *([resolution_check(key)] if conflicts.enabled else []),
        ],
    )
    def _integration(context: dg.AssetExecutionContext):
        play: PlayParameters = context.resources.play
        run_in_background()
        token = run_token(context)
        heads = recorded_heads(
            context.instance, [*task_keys.values(), *([previous_key] if previous_key else [])]
        )
        previous_head = heads[previous_key] if previous_key else None
        if previous_key and play.integration_pr_enabled and not previous_head:
            raise dg.Failure(
                f"{previous.label} has no integration branch to stack on: materialize "
                f"{previous_key.to_user_string()} first",
                allow_retries=False,
            )
        repository = getattr(context.resources, git_key(project)).repository()
        request = IntegrationRequest(
            level=stage.first,
            last_level=stage.last,
            run_token=token,
            repository=repository,
            base_branch=play.integration_base_branch or project.base_branch,
            previous_commit=previous_head,
            tasks={t: heads[k] for t, k in task_keys.items()},
            task_levels={t: plan.level_of[t] for t in task_ids},
            build_branch=play.integration_pr_enabled,
            detect_overlaps=play.conflict_detection,
            write_back=write_back,
            conflicts=conflicts,
            agent=getattr(context.resources, agent_key(project)).spec(),
            task_info={t: plan.tasks[t] for t in task_ids},
        )
        try:
            result = integrate_level(request, log=step_logger(context))
        except GitError as exc:
            raise dg.Failure(repository.redact(str(exc)), allow_retries=True) from None
        superseded = ""
        if not play.integration_pr_enabled:
            pr = "integration disabled: integration_pr_enabled is false, no branch was built"
        else:
            try:
                by_task = recorded_resolutions(context.instance, list(task_keys.values()))
                resolved = _resolved_section(result, {t: by_task[k] for t, k in task_keys.items()})
                github = getattr(context.resources, github_key(project))
                pr, superseded = _open_pr(
                    github, project, play, result, stage, previous, plan, token, resolved
                )
            except ForgeError as exc:
                pr = f"no PR: {exc}"
                context.log.warning(pr)
        if superseded.startswith("#"):
            context.log.info(f"🔁 Closed older runs' PRs of {stage.label}: {superseded}")
        elif superseded:
            context.log.warning(superseded)
        pruned = _prune_older_runs(context, project, repository, result, stage, plan, token)
        if result.missing:
            context.log.warning(
                f"{stage.label.capitalize()} is incomplete: tasks {', '.join(result.missing)} "
                "have no branch"
            )
        if result.overlaps:
            context.log.warning(overlap_report(stage.label, result.overlaps))
        if result.conflict_branch:
            context.log.error(conflict_report(result))
        overlap_text = (
            overlap_report(stage.label, result.overlaps)
            if result.overlaps
            else (
                f"No file is changed by two tasks of {stage.label}."
                if play.conflict_detection
                else "conflict_detection is false: not checked"
            )
        )
        conflict_text = (
            conflict_report(result)
            if result.conflict_branch
            else (
                (
                    f"Every branch merged; {len(result.resolutions)} conflicts were resolved by "
                    "an agent (see the resolved_conflicts check)"
                    if result.resolutions
                    else "Every branch merged cleanly."
                )
                if play.integration_pr_enabled
                else "integration_pr_enabled is false: nothing was merged"
            )
        )
        return dg.MaterializeResult(
            metadata={
                **_metadata(result, pr),
                "integrated_levels": stage.span,
                **({"superseded_pull_requests": superseded} if superseded else {}),
                **pruned,
            },
            check_results=[
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
                *([resolution_check_result(result.resolutions)] if conflicts.enabled else []),
            ],
        )

    return _integration
