"""What every preset knows about its CLI: how to start it unattended, which environment names it
reads, what it needs in its home, how its machine-readable output reports cost and progress, and
which failures a retry cannot fix."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LaunchContext:
    """What a preset may look at to build its command."""

    isolated: bool  # the agent runs inside a sandbox of ours (bwrap or another user)
    env: Mapping[str, str]  # the agent's environment
    prompt_file: Path
    work: Path
    home: Path


@dataclass(frozen=True)
class Usage:
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    turns: int | None = None
    model: str | None = None

    def metadata(self) -> dict[str, object]:
        values = {
            "agent_cost_usd": self.cost_usd,
            "agent_input_tokens": self.input_tokens,
            "agent_output_tokens": self.output_tokens,
            "agent_turns": self.turns,
            "agent_model": self.model,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Problem:
    """A failure the exit code alone does not tell, or one a retry cannot fix."""

    message: str
    retryable: bool = False


@dataclass(frozen=True)
class Sign:
    """A line pattern in the CLI's output and what it means."""

    pattern: re.Pattern[str]
    message: str
    retryable: bool = False


@dataclass(frozen=True)
class Preset:
    name: str
    binary: str
    verified_version: str | None = None  # the CLI release the contract test runs
    install: str = ""  # how to install that release
    env_names: tuple[str, ...] = ()  # what the CLI reads: keys, base URLs, models
    credentials: tuple[str, ...] = ()  # at least one of these must be set (empty: none needed)
    stdin_prompt: bool = False  # the prompt goes to stdin (never past the argv limit)
    signs: tuple[Sign, ...] = ()
    fail_on_signs_even_if_exit_0: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)  # quiet, unattended settings

    def argv(self, ctx: LaunchContext) -> list[str]:
        raise NotImplementedError

    def prepare_home(self, ctx: LaunchContext) -> None:
        """Configuration files the CLI reads from its (private) home."""

    def preflight(self, ctx: LaunchContext, as_root: bool) -> Problem | None:
        """A problem known before starting (a missing key): not worth starting for."""
        if self.credentials and not any(ctx.env.get(name) for name in self.credentials):
            names = " or ".join(self.credentials)
            return Problem(
                f"the {self.name} agent needs {names} in its environment: set it for the step, "
                f"or map it from another variable with agent.env_from"
            )
        return None

    def usage(self, lines: Iterable[str]) -> Usage | None:
        return None

    def events(self, line: str) -> list[str]:
        """Short descriptions of what the agent does, from one line of its output."""
        return []

    def problem(self, exit_code: int, lines: Iterable[str]) -> Problem | None:
        """What the output says went wrong (checked when the exit code is not 0, and also on
        0 for CLIs that exit 0 after failed model calls)."""
        if exit_code == 0 and not self.fail_on_signs_even_if_exit_0:
            return None
        for line in lines:
            for sign in self.signs:
                if sign.pattern.search(line):
                    return Problem(f"{sign.message} ({line.strip()[:200]})", sign.retryable)
        return None


def json_lines(lines: Iterable[str]) -> Iterator[dict]:
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                yield data


def last_event(lines: Iterable[str], kind: str) -> dict | None:
    """The last JSON event of type `kind` (`result`: the summary Claude Code and Gemini CLI
    print when they end, with tokens and cost)."""
    found = None
    for event in json_lines(lines):
        if event.get("type") == kind:
            found = event
    return found


def short(text: object, limit: int = 120) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= limit else value[: limit - 1] + "…"
