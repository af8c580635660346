"""Agent presets: how each coding agent CLI is started, and which environment names it reads."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    argv: tuple[str, ...]
    env_names: tuple[str, ...] = ()  # what the CLI reads: API keys, base URLs, model names


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # The built-in agent: writes real files deterministically, may sleep; no network needed.
        Preset(
            "demo",
            (sys.executable, "-m", "cto_dagster.core.demo_agent"),
            ("CTO_DEMO_SPEED", "CTO_DEMO_FAIL_TASKS"),
        ),
        Preset(
            "claude",
            ("claude", "--print", "--dangerously-skip-permissions", "{prompt}"),
            ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL"),
        ),
        Preset(
            "codex",
            ("codex", "exec", "--full-auto", "{prompt}"),
            ("CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
        ),
        Preset(
            "gemini",
            ("gemini", "--yolo", "--prompt", "{prompt}"),
            ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
        ),
        Preset(
            "aider",
            ("aider", "--yes-always", "--no-auto-commits", "--message-file", "{prompt_file}"),
            ("OPENAI_API_KEY", "OPENAI_API_BASE", "ANTHROPIC_API_KEY", "AIDER_MODEL"),
        ),
    )
}
