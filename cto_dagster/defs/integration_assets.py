"""One integration asset per level, stacked on the previous level's, with two asset checks:
overlapping files (WARN) and merge conflicts (ERROR, blocking the next level)."""

import dagster as dg

from cto_dagster.core.forge import ForgeError, open_or_reuse_pull_request, pr_body, pr_title
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
from cto_dagster.core.names import integration_branch, task_branch
from cto_dagster.core.planner import ExecutionPlan
from cto_dagster.core.pruning import prune_integration_branches
from cto_dagster.core.secrets import SecretNames
from cto_dagster.core.settings import ProjectSettings
from cto_dagster.defs.background import run_in_background
from cto_dagster.defs.k8s_tags import K8S_CONFIG_TAG, bookkeeping_k8s_config
from cto_dagster.defs.resources import PlayParameters
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
from cto_dagster.defs.wiring import project_token, repository_for

OVERLAP_CHECK = "file_overlap"
CONFLICT_CHECK = "merge_conflicts"


def integration_key(project: ProjectSettings, level: int) -> dg.AssetKey:
    return dg.AssetKey([project.name, f"integration_level_{level}"])


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


def _prune_older_runs(context, project, repository, result, level, plan, token) -> dict:
    """After the run's last level is pushed: the integration branches of runs older than the
    project's last `integration.keep_runs` are deleted (those still where their run left them)."""
    keep = project.integration.keep_runs
    if not keep or level != len(plan.levels) - 1 or not result.pushed:
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


def _open_pr(project, play, result, level, token, plan, context_token, resolved="") -> str:
    if not result.pushed:
        return "no PR: the integration branch was not pushed"
    if not project.github_repository:
        return "no PR: the repository is not on GitHub (the branch is the result)"
    secret = project_token(project)
    if not secret:
        return f"no PR: no token (set {project.git.token_env or 'git.token_env'})"
    base = (
        integration_branch(level - 1, context_token)
        if level
        else (play.integration_base_branch or project.base_branch)
    )
    rows = [(t, plan.tasks[t].title, task_branch(t)) for t in plan.levels[level]]
    pull = open_or_reuse_pull_request(
        project.github.api_url,
        secret,
        project.github_repository,
        head=result.branch,
        base=base,
        title=pr_title(level, context_token),
        body=pr_body(
            level,
            rows,
            result.missing,
            chart=mermaid_block(plan),
            status_note=_status_note(project, result),
            resolved=resolved,
        ),
    )
    return pull.url


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
    project: ProjectSettings, plan: ExecutionPlan, level: int
) -> StatusWriteBack | None:
    """The tasks file edit this level's integration branch carries (None when turned off)."""
    if project.status_write_back == "off":
        return None
    names = {t: (plan.tasks[t].tag or plan.tag, plan.tasks[t].file_id) for t in plan.levels[level]}
    return StatusWriteBack(project.tasks_file, project.status_write_back, names)


def _listed(ids: list[str], limit: int = 12) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def build_integration_asset(
    project: ProjectSettings,
    plan: ExecutionPlan,
    level: int,
    translator: TaskTranslator,
    secrets: SecretNames,
) -> dg.AssetsDefinition:
    key = integration_key(project, level)
    task_keys = {t: translator.asset_key(project, t) for t in plan.levels[level]}
    previous_key = integration_key(project, level - 1) if level else None
    write_back = status_write_back(project, plan, level)
    conflicts = project.conflicts.policy()
    agent = project.agent.spec()

    @dg.asset(
        key=key,
        deps=[*task_keys.values(), *([previous_key] if previous_key else [])],
        group_name=translator.integration_group(project, plan, level),
        description=(
            f"Level {level} integration: integration/level-{level}-<run> stacks the branches of "
            f"tasks {_listed(plan.levels[level])} on "
            + (f"level {level - 1}'s integration branch." if level else "the base branch.")
        ),
        tags={TAG_LEVEL: str(level)},
        op_tags={
            TAG_LEVEL: str(level),
            TAG_PROJECT: project.name,
            K8S_CONFIG_TAG: bookkeeping_k8s_config(project, "integration"),
        },
        kinds={"git", "github"} if project.github_repository else {"git"},
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
    def _integration(context: dg.AssetExecutionContext, play: PlayParameters):
        run_in_background()
        token = run_token(context)
        heads = recorded_heads(
            context.instance, [*task_keys.values(), *([previous_key] if previous_key else [])]
        )
        previous = heads[previous_key] if previous_key else None
        if previous_key and play.integration_pr_enabled and not previous:
            raise dg.Failure(
                f"level {level - 1} has no integration branch to stack on: materialize "
                f"{previous_key.to_user_string()} first",
                allow_retries=False,
            )
        repository = repository_for(project, secrets)
        request = IntegrationRequest(
            level=level,
            run_token=token,
            repository=repository,
            base_branch=play.integration_base_branch or project.base_branch,
            previous_commit=previous,
            tasks={t: heads[k] for t, k in task_keys.items()},
            build_branch=play.integration_pr_enabled,
            detect_overlaps=play.conflict_detection,
            write_back=write_back,
            conflicts=conflicts,
            agent=agent,
            task_info={t: plan.tasks[t] for t in plan.levels[level]},
        )
        try:
            result = integrate_level(request, log=step_logger(context))
        except GitError as exc:
            raise dg.Failure(repository.redact(str(exc)), allow_retries=True) from None
        if not play.integration_pr_enabled:
            pr = "integration disabled: integration_pr_enabled is false, no branch was built"
        else:
            try:
                by_task = recorded_resolutions(context.instance, list(task_keys.values()))
                resolved = _resolved_section(result, {t: by_task[k] for t, k in task_keys.items()})
                pr = _open_pr(project, play, result, level, token, plan, token, resolved)
            except ForgeError as exc:
                pr = f"no PR: {exc}"
                context.log.warning(pr)
        pruned = _prune_older_runs(context, project, repository, result, level, plan, token)
        if result.missing:
            context.log.warning(
                f"Level {level} is incomplete: tasks {', '.join(result.missing)} have no branch"
            )
        if result.overlaps:
            context.log.warning(overlap_report(level, result.overlaps))
        if result.conflict_branch:
            context.log.error(conflict_report(result))
        overlap_text = (
            overlap_report(level, result.overlaps)
            if result.overlaps
            else (
                "No file is changed by two tasks of this level."
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
            metadata={**_metadata(result, pr), **pruned},
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
