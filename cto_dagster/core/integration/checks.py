"""The project's checks on an integration branch, and the agent that repairs a failing merge.

Tasks that each pass their checks alone can break together (one renames a function the other
calls). So once a stage's task branches are merged, the merged head is checked out in a work
tree of its own and the project's setup and checks run there, in the project agent's sandbox
with no secret, as a task's do. With `verify.integration_repair: agent` a failure goes to the
resolver agent (`conflicts.agent`, else the project's agent) with the failing command and its
output, in that work tree; what it leaves is recorded by the orchestrator (the agent's `.git`
is never given to git, no link in its tree is followed, the work limits hold, no conflict
marker may be added) and committed on top of the merge, and the checks run again, up to
`verify.repair_attempts` times. The caller decides what is pushed: a repaired head only when it
passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cto_dagster.core.agents import AgentSpec, Sandbox, SandboxUnavailable, sandbox_for
from cto_dagster.core.git.agent_work import record_work_tree
from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import GitError
from cto_dagster.core.git.worktree import AgentWorkTree
from cto_dagster.core.support.safe_fs import TreeProblem, remove_tree
from cto_dagster.core.support.workspaces import new_workspace
from cto_dagster.core.task_run.agent_session import AgentUnavailable, run_agent_in_tree
from cto_dagster.core.task_run.conflict_resolution import DETAILS_SHOWN, FILES_SHOWN, SideTask
from cto_dagster.core.task_run.repository import Repository
from cto_dagster.core.task_run.verify import (
    CheckRound,
    CheckRunner,
    CommandResult,
    RepairAttempt,
    Verification,
    VerifyPolicy,
    shown,
)
from cto_dagster.core.taskmaster import Task

Log = Callable[[str], None]
RECORD = ("(the agent's changes)",)  # the pseudo-command of a repair that could not be recorded


class IntegrationCheckUnavailable(Exception):
    """The checks cannot run here (the agent's sandbox cannot be had): nothing was checked."""


@dataclass(frozen=True)
class IntegrationTarget:
    """The merged head being checked: its stage, branch and the tasks merged into it."""

    label: str  # "level 1", "levels 0-4"
    branch: str
    level: int
    name: str  # a slug: the checks' CTO_TASK_ID, the work folder's name
    tasks: tuple[SideTask, ...] = ()


@dataclass
class IntegrationFix:
    """What an agent changed so the merged branch passes its checks: for reviewers."""

    agent: str
    commit: str
    files: list[str] = field(default_factory=list)
    insertions: int = 0
    deletions: int = 0

    def summary(self) -> str:
        listed = ", ".join(f"`{f}`" for f in self.files[:FILES_SHOWN])
        more = f" and {len(self.files) - FILES_SHOWN} more" if len(self.files) > FILES_SHOWN else ""
        return (
            f"the {self.agent} agent changed {listed}{more} (+{self.insertions} "
            f"-{self.deletions}) in commit {self.commit[:12]}"
        )


@dataclass
class IntegrationCheck:
    """The outcome: the head to push (the merge, or the fix on top of it), the verdict, and
    the agent's fix when there is one."""

    head: str
    verification: Verification
    fix: IntegrationFix | None = None


def repair_prompt(
    target: IntegrationTarget, failure: str, attempt: int, checks: Sequence[Sequence[str]]
) -> str:
    """The repairing agent's instructions: Markdown, for an agent nobody will answer."""
    names = ", ".join(f"`{shown(argv)}`" for argv in checks)
    parts = [
        f"# Make the integration branch `{target.branch}` pass the project's checks",
        "",
        f"The work tree holds `{target.branch}`: the task branches of {target.label} merged "
        "together. Each task passed the checks on its own branch; merged, they fail "
        f"(repair attempt {attempt}):",
        "",
        failure,
        "## The merged tasks",
        "",
    ]
    for task in target.tasks or (SideTask("-", "(none)"),):
        parts.append(f"### Task {task.task_id}: {task.title}")
        if task.details:
            text = task.details[:DETAILS_SHOWN]
            parts += ["", text + (" …" if len(task.details) > DETAILS_SHOWN else "")]
        if task.files:
            more = len(task.files) - FILES_SHOWN
            listed = ", ".join(task.files[:FILES_SHOWN]) + (
                f" (and {more} more)" if more > 0 else ""
            )
            parts += ["", f"Files changed: {listed}"]
        parts.append("")
    parts += [
        "## Working agreement",
        "",
        "- Fix the cause where the tasks meet (a renamed name, a changed signature, a duplicate "
        "registration), keeping the intent of every task; do not weaken, skip or delete the "
        "checks.",
        "- Change only what the fix needs.",
        f"- Do not commit, switch branches, push or rewrite history: your changes are committed "
        f"for you on top of the merge once {names} pass on them.",
        "- You work alone and unattended: no one will answer questions.",
        "",
    ]
    return "\n".join(parts)


class IntegrationChecker:
    """Checks one merged head (and has it repaired), in a work tree removed afterwards.
    `check_agent` is the project's agent (its sandbox runs the checks), `repair_agent` the
    resolver."""

    def __init__(
        self,
        policy: VerifyPolicy,
        check_agent: AgentSpec,
        repair_agent: AgentSpec,
        repo: Repository,
        log: Log,
    ):
        self.policy = policy
        self.check_agent = check_agent
        self.repair_agent = repair_agent
        self.repo = repo
        self.log = log

    @property
    def repairing(self) -> bool:
        return self.policy.integration_repair == "agent" and self.policy.repair_attempts > 0

    def check(self, cache: ObjectCache, head: str, target: IntegrationTarget) -> IntegrationCheck:
        """Run the checks on `head` (and repairs); raise `IntegrationCheckUnavailable` when the
        sandbox cannot be had, `GitError` when the work tree cannot be made."""
        try:
            sandbox = sandbox_for(self.check_agent)
        except SandboxUnavailable as exc:
            raise IntegrationCheckUnavailable(
                f"the checks of {target.label} cannot run: {exc}"
            ) from None
        verification = Verification(self.policy)
        folder = new_workspace("integration", target.name, self.repo.workspace_root)
        started = time.monotonic()
        try:
            outcome = self._check_in(folder, cache, head, target, sandbox, verification)
        finally:
            verification.seconds_after_agent = time.monotonic() - started
            remove_tree(folder)
        mark = "✅" if verification.passed else "❌"
        self.log(f"{mark} {target.label.capitalize()} integration: checks {verification.summary()}")
        if outcome.fix:
            self.log(f"🩹 {target.label.capitalize()} integration fixed: {outcome.fix.summary()}")
        return outcome

    def _check_in(
        self,
        folder: Path,
        cache: ObjectCache,
        head: str,
        target: IntegrationTarget,
        sandbox: Sandbox,
        verification: Verification,
    ) -> IntegrationCheck:
        work = AgentWorkTree(folder / "work", cache, target.branch, head)
        work.create(self.repo.commit_exclude)
        runner = CheckRunner(
            self.policy, self.check_agent, self.repo, folder, work.path, sandbox, target.name,
            self.log,
        )  # fmt: skip
        self.log(f"🧪 {target.label.capitalize()} integration: the checks run on the merge")
        attempt = 0
        while True:
            label = "integration" if attempt == 0 else f"integration after repair {attempt}"
            checked = runner.run(label)
            verification.rounds.append(checked)
            if verification.passed or not self.repairing or attempt >= self.policy.repair_attempts:
                break
            attempt += 1
            failure = checked.failure_text()
            if not self._repair(folder, work, target, failure, attempt, verification):
                break
        _settle_repair_results(verification)
        if not verification.repairs or not verification.passed:
            return IntegrationCheck(head, verification)
        return self._record_fix(folder, cache, work, head, target, verification)

    def _repair(
        self,
        folder: Path,
        work: AgentWorkTree,
        target: IntegrationTarget,
        failure: str,
        attempt: int,
        verification: Verification,
    ) -> bool:
        """One run of the repairing agent with the failure; False when it did not finish
        cleanly (its changes are then not checked again, nor used)."""
        self.log(
            f"🩹 {target.label.capitalize()} integration: checks failed; the "
            f"{self.repair_agent.label} agent repairs it (attempt {attempt} of "
            f"{self.policy.repair_attempts})"
        )
        try:
            _, agent = run_agent_in_tree(
                self.repair_agent,
                self.repo,
                folder,
                work.path,
                task=Task(id=target.name, title=f"Fix the integration of {target.label}"),
                level=target.level,
                branch=target.branch,
                prompt=repair_prompt(target, failure, attempt, self.policy.checks),
                label=f"{target.label} integration (repair {attempt})",
                log=self.log,
                extra_env={"CTO_REPAIR_ATTEMPT": str(attempt), "CTO_MERGE_INTO": target.branch},
                extra_files={"CTO_CHECK_OUTPUT_FILE": failure},
                attempt=attempt,
            )
        except AgentUnavailable as exc:
            why = self.repo.redact(f"the agent could not start: {exc}")
            verification.repairs.append(RepairAttempt(attempt, 0.0, None, why))
            return False
        cost = agent.usage.cost_usd if agent.usage else None
        repair = RepairAttempt(attempt, agent.duration_seconds, cost, "ran")
        verification.repairs.append(repair)
        if agent.problem is not None:
            repair.result = self.repo.redact(f"the agent: {agent.problem.message}")
        elif agent.timed_out:
            repair.result = (
                f"the agent exceeded its timeout of {self.repair_agent.timeout_seconds:g} s"
            )
        elif agent.exit_code != 0:
            repair.result = f"the agent exited with code {agent.exit_code}"
        else:
            try:
                problem = work.problem_after_agent()
            except GitError as exc:
                problem = str(exc)
            if problem:
                repair.result = self.repo.redact(problem)
        return repair.result == "ran"

    def _record_fix(
        self,
        folder: Path,
        cache: ObjectCache,
        work: AgentWorkTree,
        head: str,
        target: IntegrationTarget,
        verification: Verification,
    ) -> IntegrationCheck:
        """What the agent left, recorded by us and committed on top of the merge; a tree that
        passes the limits or gained conflict markers is not used (the verdict becomes failed)."""
        try:
            recorded = record_work_tree(
                cache,
                work.path,
                head,
                folder,
                self.repo.commit_exclude,
                limits=self.repair_agent.limits,
            )
            problem = (
                f"conflict markers were added to {', '.join(recorded.conflict_markers[:20])}"
                if recorded.conflict_markers
                else ""
            )
        except (GitError, TreeProblem) as exc:
            problem = str(exc)
        if problem:
            why = self.repo.redact(f"its changes cannot be used: {problem}")
            failed = CommandResult("record", RECORD, 1, 0.0, "", problem=why)
            verification.rounds.append(CheckRound("recording the repair", [failed]))
            verification.repairs[-1].result = why
            return IntegrationCheck(head, verification)
        if recorded.tree == cache.tree_of(head):  # nothing changed: the checks were flaky
            return IntegrationCheck(head, verification)
        commit = cache.commit_tree(recorded.tree, [head], self._message(target, verification))
        stats = cache.diff_stats(head, commit)
        fix = IntegrationFix(
            agent=self.repair_agent.label,
            commit=commit,
            files=list(stats["files"]),  # type: ignore[arg-type]
            insertions=int(stats["insertions"]),  # type: ignore[arg-type]
            deletions=int(stats["deletions"]),  # type: ignore[arg-type]
        )
        return IntegrationCheck(commit, verification, fix)

    def _message(self, target: IntegrationTarget, verification: Verification) -> str:
        names = ", ".join(f"`{shown(argv)}`" for argv in self.policy.checks)
        first = verification.rounds[0].failed
        why = (
            f"`{shown(first.argv)}` {first.verdict(self.policy.timeout_seconds)}"
            if first is not None
            else "the checks failed"
        )
        return (
            f"Fix integration of {target.label}: checks {names} pass (repaired by the "
            f"{self.repair_agent.label} agent)\n\n"
            f"On the merge of {target.label}'s task branches into {target.branch}, {why}; the "
            f"agent was given its output ({len(verification.repairs)} attempt(s)), and the "
            "checks passed on its result (cto-dagster).\n"
        )


def _settle_repair_results(verification: Verification) -> None:
    """Each attempt that ran says what the checks made of it (as a task's repairs do)."""
    for number, repair in enumerate(verification.repairs, start=1):
        if repair.result != "ran":
            continue
        last = number == len(verification.repairs)
        repair.result = "passed" if last and verification.passed else "checks failed"


def verification_report(check: IntegrationCheck | None) -> str:
    """Markdown for the PR: what was verified, and what an agent fixed (to review first)."""
    if check is None:
        return ""
    verification = check.verification
    policy = verification.policy
    names = ", ".join(f"`{shown(argv)}`" for argv in policy.checks)
    setup = ", ".join(f"`{shown(argv)}`" for argv in policy.setup)
    after = f" (after the setup {setup})" if setup else ""
    if not verification.passed:
        return f"❌ The project's checks fail on this branch{after}: {verification.summary()}"
    lines = [f"✅ The project's checks pass on this branch{after}: {names}."]
    if check.fix is not None:
        first = verification.rounds[0].failed
        failed = f"`{shown(first.argv)}` failed on the merge" if first else "they failed"
        lines += [
            "",
            f"🩹 Repaired by an agent ({failed}): {check.fix.summary()}. Review this commit.",
        ]
    return "\n".join(lines)
