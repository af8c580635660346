"""One agent run in a prepared work tree, for a task or for a merge conflict: the sandbox, the
agent's private home, the prompt and task files, its environment (no secret of any project), and
its output followed live. What the agent left is judged by the caller, never by the agent."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from cto_dagster.core.agents import (
    AgentPlace,
    AgentRun,
    AgentSpec,
    Sandbox,
    SandboxUnavailable,
    agent_environment,
    run_agent,
    sandbox_for,
    task_environment,
)
from cto_dagster.core.agents.follow import AgentWatch
from cto_dagster.core.agents.network import NetworkUnavailable, network_for
from cto_dagster.core.task_run.repository import Repository
from cto_dagster.core.taskmaster import Task

Log = Callable[[str], None]


class AgentUnavailable(Exception):
    """The sandbox the project asks for cannot be had here: nothing was started."""


def watch_for(label: str, repo: Repository, spec: AgentSpec, log: Log) -> AgentWatch:
    """The agent's output, live, on the step's stdout (the UI's captured log, the pod's log),
    each line prefixed with `label`; its tool calls and silences in the run's event log."""

    def output(lines: list[str]) -> None:
        sys.stdout.write("".join(f"[{label}] {line}\n" for line in lines))
        sys.stdout.flush()

    name = label[:1].upper() + label[1:]
    return AgentWatch(
        output=output,
        activity=lambda text: log(f"🔧 {name}: {text}"),
        silence=lambda text: log(f"⏳ {name}: {text}"),
        redact=repo.redact,
        heartbeat_seconds=spec.heartbeat_seconds,
    )


def run_agent_in_tree(
    spec: AgentSpec,
    repo: Repository,
    folder: Path,
    work: Path,
    *,
    task: Task,
    level: int,
    branch: str,
    prompt: str,
    label: str,
    log: Log,
    extra_env: Mapping[str, str] | None = None,
    extra_files: Mapping[str, str] | None = None,
    attempt: int = 0,
) -> tuple[Sandbox, AgentRun]:
    """Run `spec` in `work` (inside `folder`, the step's private folder) with `prompt`; raise
    `AgentUnavailable` when its sandbox or its network isolation cannot be had. `extra_files`
    (variable -> content) are written beside the prompt, readable by the agent, their paths
    in those variables; `attempt` > 0 runs it again in the same work tree and home (a repair),
    with files of its own."""
    try:
        sandbox = sandbox_for(spec)
        network = network_for(spec, sandbox)
    except (SandboxUnavailable, NetworkUnavailable) as exc:
        raise AgentUnavailable(str(exc)) from None
    mark = "🔒" if sandbox.isolates else "⚠️"
    name = label[:1].upper() + label[1:]
    log(f"{mark} {name}: agent sandbox: {sandbox.reason}")
    log(f"{'🔒' if network.isolated else '⚠️'} {name}: agent network: {network.reason}")
    home = folder / "home"
    home.mkdir(exist_ok=True)
    suffix = f"-{attempt}" if attempt else ""
    prompt_file = folder / f"prompt{suffix}.md"
    prompt_file.write_text(prompt, encoding="utf-8")
    task_file = folder / f"task{suffix}.json"
    task_file.write_text(json.dumps(dict(task.raw), default=str), encoding="utf-8")
    given: list[Path] = []
    for number, (variable, content) in enumerate((extra_files or {}).items()):
        path = folder / f"given{suffix}-{number}.txt"
        path.write_text(content, encoding="utf-8")
        given.append(path)
        extra_env = {**(extra_env or {}), variable: str(path)}
    task_env = {
        **task_environment(task, level, branch, repo.base_branch, prompt_file, task_file),
        **(extra_env or {}),
    }
    env = agent_environment(
        os.environ,
        preset_names=spec.preset_env_names,
        pass_env=spec.pass_env,
        env_from=spec.env_from,
        literal=spec.env,
        task_env=task_env,
        identity=repo.identity,
        home=home,
        denied=repo.denied_env,
    )
    values = {
        "prompt_file": str(prompt_file),
        "prompt": prompt,
        "task_id": task.id,
        "task_file": str(task_file),
        "workdir": str(work),
    }
    # the agent's repository borrows the cache's objects: readable, never writable
    readable = (prompt_file, task_file, *given, repo.cache().objects)
    masked = tuple(Path(f) for f in repo.secret_files)
    place = AgentPlace(folder, work, home, readable, sandbox, masked, prompt_file)
    watch = watch_for(label, repo, spec, log)
    return sandbox, run_agent(spec, values, place, env, folder / f"agent{suffix}.log", watch)
