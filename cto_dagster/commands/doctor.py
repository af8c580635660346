"""`cto-dagster doctor`: check a configured project before anyone spends an hour on a run.

For each project: the agent's binary and its version, each credential by NAME (never a value),
the sandbox, the remote reachable with the token and the base branch on it, the tasks file there
and its plan valid; then the Dagster instance. Every problem comes with what to do about it; the
exit status is 1 when there is any.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Finding:
    ok: bool
    what: str
    fix: str = ""
    warning: bool = False

    def line(self) -> str:
        mark = "✅" if self.ok else ("⚠️ " if self.warning else "❌")
        what = self.what.strip().replace("\n", "\n       ")
        return f"  {mark} {what}" + (f"\n       → {self.fix}" if self.fix else "")


def _agent_findings(project) -> list[Finding]:
    from cto_dagster.core.agents import SandboxUnavailable, sandbox_for

    spec = project.agent.spec()
    preset = spec.preset_definition
    found: list[Finding] = []
    binary = preset.binary if preset else spec.command[0]
    path = shutil.which(binary)
    if path is None:
        install = preset.install if preset and preset.install else "install it"
        found.append(Finding(False, f"agent {spec.label}: {binary} not found on PATH", install))
    elif preset is not None and preset.verified_version:
        version = _version(path)
        same = preset.verified_version in version
        found.append(
            Finding(
                same,
                f"agent {spec.label}: {path} ({version or 'version unknown'})",
                "" if same else f"verified with {preset.verified_version}: {preset.install}",
                warning=not same,
            )
        )
    else:
        found.append(Finding(True, f"agent {spec.label}: {path}"))
    if preset is not None and preset.credentials:
        names = [n for n in preset.credentials if os.environ.get(n)]
        mapped = [n for n, source in spec.env_from.items() if os.environ.get(source)]
        present = names + [n for n in mapped if n in preset.credentials]
        shown = (
            f"{', '.join(present)} set" if present else "none of " + ", ".join(preset.credentials)
        )
        found.append(
            Finding(
                bool(present),
                f"agent credentials: {shown}",
                ""
                if present
                else f"set {' or '.join(preset.credentials)} (by name, or "
                "agent.env_from: {NAME: OTHER_VARIABLE})",
            )
        )
    try:
        sandbox = sandbox_for(spec)
        found.append(
            Finding(
                sandbox.isolates,
                f"sandbox: {sandbox.mode} ({sandbox.reason}); it does not protect: "
                f"{sandbox.leaves_open}",
                ""
                if sandbox.isolates
                else "install bubblewrap (Debian: apt-get install bubblewrap)",
                warning=not sandbox.isolates,
            )
        )
    except SandboxUnavailable as exc:
        found.append(Finding(False, f"sandbox: {exc}", "choose another agent.sandbox"))
        return found
    return [*found, _network_finding(spec, sandbox)]


def _network_finding(spec, sandbox) -> Finding:
    """What the agent's network reaches; a warning when this machine's services are in reach."""
    from cto_dagster.core.agents.network import NetworkUnavailable, network_for

    fix = (
        "install passt and iptables (Debian: apt-get install passt iptables) where the step "
        "may make namespaces; on Kubernetes, a NetworkPolicy for the task pods"
    )
    try:
        network = network_for(spec, sandbox)
    except NetworkUnavailable as exc:
        return Finding(False, f"agent network: {exc}", fix)
    if network.isolated:
        return Finding(True, f"agent network: {network.mode} ({network.reason})")
    return Finding(False, f"agent network: {network.reason}", fix, warning=True)


def _version(path: str) -> str:
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1].strip()[:80] if lines else ""


def _repository_findings(project) -> list[Finding]:
    from cto_dagster.core.git.command import GitError
    from cto_dagster.core.settings import SettingsError, plan_project
    from cto_dagster.core.task_run.step import Repository
    from cto_dagster.core.taskmaster import TasksFileError
    from cto_dagster.defs.project_credentials import git_env_for, project_token

    found: list[Finding] = []
    if project.git.token_env or project.git.token_file:
        token = project_token(project)
        name = project.git.token_env or project.git.token_file
        found.append(
            Finding(
                bool(token),
                f"git token: {name} {'is set' if token else 'is empty or missing'}",
                "" if token else f"export {name}=... (or mount the file)",
            )
        )
    repository = Repository(url=project.repository, git_env=git_env_for(project))
    try:
        heads = repository.cache().remote_heads([project.base_branch])
    except GitError as exc:
        return [
            *found,
            Finding(False, f"remote {project.repository}: {exc}", "check the URL and token"),
        ]
    if heads[project.base_branch] is None:
        fix = "push it, or set base_branch"
        return [
            *found,
            Finding(False, f"base branch {project.base_branch} is not on the remote", fix),
        ]
    found.append(
        Finding(
            True, f"remote reachable; {project.base_branch} at {heads[project.base_branch][:12]}"
        )
    )
    try:
        plan = plan_project(project, git_env_for(project))
    except (SettingsError, TasksFileError) as exc:
        return [*found, Finding(False, str(exc).replace("\n", "\n       "), "fix the tasks file")]
    found.append(
        Finding(
            True,
            f"tasks file: tag {plan.tag}, {len(plan.task_ids)} tasks to run in "
            f"{len(plan.levels)} levels",
        )
    )
    return found


def _instance_findings() -> list[Finding]:
    from cto_dagster.commands.runs.instance_home import (
        NoInstance,
        open_instance,
        prepare_home,
        resolve_home,
    )

    try:
        home = prepare_home(resolve_home(say=lambda _line: None))
        with open_instance(home) as instance:
            instance.get_run_records(limit=1)
            event_log = type(instance.event_log_storage).__name__
    except NoInstance as exc:
        return [Finding(False, str(exc).removeprefix("❌ "), "export DAGSTER_HOME=$PWD/.dagster")]
    except Exception as exc:  # a broken instance says so here rather than mid-run
        return [Finding(False, f"Dagster instance: {exc}", "check DAGSTER_HOME and dagster.yaml")]
    return [Finding(True, f"Dagster instance at {home}"), *_event_log_findings(event_log)]


def _event_log_findings(event_log: str) -> list[Finding]:
    """An instance made before the batched event log creates runs one planned event at a time
    (a 500-task run: 11-16 s instead of 2 s); say how to switch."""
    if event_log != "SqliteEventLogStorage":
        return []
    fix = (
        "add the event_log_storage block that `cto-dagster init` writes (EVENT_LOG_STORAGE in "
        "cto_dagster/commands/runs/instance_home.py) to your dagster.yaml (same files, planned "
        "events in one batch)"
    )
    return [
        Finding(
            False,
            "event log: Dagster's SQLite class writes a new run's planned events one at a time",
            fix,
            warning=True,
        )
    ]


def run_doctor() -> int:
    from cto_dagster.core.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    problems = 0
    for project in settings.projects:
        print(f"Project {project.name} ({project.repository})")
        findings = _agent_findings(project) + _repository_findings(project)
        for finding in findings:
            print(finding.line())
        problems += sum(1 for f in findings if not f.ok and not f.warning)
    print("Instance")
    for finding in _instance_findings():
        print(finding.line())
        problems += 0 if finding.ok or finding.warning else 1
    print("\n" + ("✅ Ready." if not problems else f"❌ {problems} problem(s) to fix first."))
    return 1 if problems else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help="check the configured projects (agent, credentials by name, remote, tasks file, "
        "instance) before a run",
    )
    doctor.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_doctor()
