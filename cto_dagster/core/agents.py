"""The agent contract: a command run in the task's work tree, told about the task through
environment variables and a prompt file.

Task text is data: it reaches the agent only as environment values, a file, or one whole argv
element (`{prompt}`); it is never parsed by a shell. The agent runs in its own process group so a
timeout ends everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cto_dagster.core.taskmaster import Task
from cto_dagster.core.workspaces import AGENT_PGID_FILE

LOG_TAIL_BYTES = 4000
ENV_VALUE_LIMIT = 32_000  # Linux refuses a single environment string over 128 KiB
PLACEHOLDERS = ("{prompt_file}", "{prompt}", "{task_id}", "{task_file}", "{workdir}")

PRESETS: dict[str, list[str]] = {
    # The built-in agent: writes real files deterministically, may sleep; no network needed.
    "demo": [sys.executable, "-m", "cto_dagster.core.demo_agent"],
    # Claude Code, headless.
    "claude": ["claude", "--print", "--dangerously-skip-permissions", "{prompt}"],
    # OpenAI Codex CLI, non-interactive.
    "codex": ["codex", "exec", "--full-auto", "{prompt}"],
    # Gemini CLI.
    "gemini": ["gemini", "--yolo", "--prompt", "{prompt}"],
    # Aider: reads the prompt from a file and leaves committing to us.
    "aider": ["aider", "--yes-always", "--no-auto-commits", "--message-file", "{prompt_file}"],
}


class AgentConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentSpec:
    """How to run an agent: a preset name or an argv list, extra env, and a timeout."""

    preset: str | None = "demo"
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 3600.0

    def argv_template(self) -> list[str]:
        if self.command:
            return list(self.command)
        if self.preset in PRESETS:
            return list(PRESETS[self.preset])
        raise AgentConfigError(
            f"unknown agent preset {self.preset!r}; choose one of {', '.join(PRESETS)} "
            "or give `command` as a list of arguments"
        )

    def validate(self) -> AgentSpec:
        argv = self.argv_template()
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise AgentConfigError("the agent command must be a non-empty list of strings")
        if isinstance(self.command, str):
            raise AgentConfigError("the agent command must be a list of arguments, not a string")
        if not (0 < self.timeout_seconds <= 7 * 24 * 3600):
            raise AgentConfigError("timeout_seconds must be between 0 and one week")
        return self


@dataclass(frozen=True)
class AgentRun:
    exit_code: int
    timed_out: bool
    duration_seconds: float
    log_tail: str
    log_bytes: int


def render_prompt(task: Task, level: int, branch: str) -> str:
    """The task as the agent reads it; Markdown because every coding agent reads Markdown."""
    parts = [f"# Task {task.id}: {task.title}", ""]
    if task.description:
        parts += [task.description, ""]
    if task.details:
        parts += ["## Details", "", task.details, ""]
    if task.test_strategy:
        parts += ["## Test strategy", "", task.test_strategy, ""]
    if task.subtasks:
        parts += ["## Subtasks", ""]
        for sub in task.subtasks:
            after = f" (after {', '.join(sub.dependencies)})" if sub.dependencies else ""
            parts.append(f"- [{sub.id}] {sub.title}{after}")
            if sub.description:
                parts.append(f"  {sub.description}")
        parts.append("")
    parts += [
        "## Working agreement",
        "",
        f"- You are on branch `{branch}` (execution level {level}). Do not switch branches.",
        "- Leave your changes in the work tree; they are committed and pushed for you.",
        "- Do not push, and do not rewrite history.",
        "",
    ]
    return "\n".join(parts)


def _env_value(text: str) -> str:
    clean = text.replace("\x00", "")
    return clean if len(clean) <= ENV_VALUE_LIMIT else clean[:ENV_VALUE_LIMIT] + "…"


def task_environment(
    task: Task, level: int, branch: str, base_branch: str, prompt_file: Path, task_file: Path
) -> dict[str, str]:
    return {
        "CTO_TASK_ID": task.id,
        "CTO_TASK_TITLE": _env_value(task.title),
        "CTO_TASK_DESCRIPTION": _env_value(task.description),
        "CTO_TASK_DETAILS": _env_value(task.details),
        "CTO_TASK_TEST_STRATEGY": _env_value(task.test_strategy),
        "CTO_TASK_PRIORITY": task.priority,
        "CTO_TASK_LEVEL": str(level),
        "CTO_TASK_DEPENDENCIES": ",".join(task.dependencies),
        "CTO_BRANCH": branch,
        "CTO_BASE_BRANCH": base_branch,
        "CTO_PROMPT_FILE": str(prompt_file),
        "CTO_TASK_FILE": str(task_file),
    }


def build_argv(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Replace whole-placeholder elements and placeholders inside an element, literally: a value
    never becomes more than the one argument it is in."""
    argv = []
    for element in template:
        for placeholder in PLACEHOLDERS:
            if placeholder in element:
                element = element.replace(placeholder, values[placeholder.strip("{}")])
        argv.append(element.replace("\x00", ""))
    return argv


def _read_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> tuple[str, int]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - limit))
        data = handle.read()
    return data.decode("utf-8", "replace"), size


def _kill_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=5)
            if sig == signal.SIGTERM:
                # the leader is gone; make sure nothing it started lingers
                os.killpg(process.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def run_agent(
    spec: AgentSpec,
    argv_values: Mapping[str, str],
    workdir: Path,
    env: Mapping[str, str],
    log_path: Path,
) -> AgentRun:
    """Run the agent to completion or timeout; its output goes to `log_path`, not to memory."""
    argv = build_argv(spec.validate().argv_template(), argv_values)
    started = time.monotonic()
    timed_out = False
    with log_path.open("wb") as log:
        try:
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"cannot start agent {argv[0]!r}: {exc.strerror or exc}\n".encode())
            return AgentRun(127, False, 0.0, *_read_tail_after_close(log, log_path))
        # recorded so that a step killed with SIGKILL does not leave its agent running
        (log_path.parent / AGENT_PGID_FILE).write_text(str(process.pid))
        try:
            exit_code = process.wait(timeout=spec.timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
            exit_code = process.returncode if process.returncode is not None else -9
        finally:
            if process.poll() is None:
                _kill_group(process)
        # children that outlived a leader that exited normally are ended too
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    tail, size = _read_tail(log_path)
    return AgentRun(exit_code, timed_out, time.monotonic() - started, tail, size)


def _read_tail_after_close(log, path: Path) -> tuple[str, int]:
    log.flush()
    return _read_tail(path)
