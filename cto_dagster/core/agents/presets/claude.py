"""Claude Code (`@anthropic-ai/claude-code`), headless: `--print` with the prompt on stdin,
`stream-json` output (tool calls as they happen, cost and tokens at the end), and permissions
that let it edit files and run commands without asking. It refuses that mode as root: inside our
sandbox it is an ordinary user, so the refusal only meets an unsandboxed root step."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cto_dagster.core.agents.presets.base import (
    LaunchContext,
    Preset,
    Problem,
    Sign,
    Usage,
    json_lines,
    last_event,
    short,
)

ROOT_REFUSAL = re.compile(r"cannot be used with root/sudo privileges", re.IGNORECASE)


class ClaudeCode(Preset):
    def argv(self, ctx: LaunchContext) -> list[str]:
        return [
            self.binary,
            "--print",
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
        ]

    def preflight(self, ctx: LaunchContext, as_root: bool) -> Problem | None:
        if as_root and not ctx.isolated:
            return Problem(
                "Claude Code refuses to run with permissions skipped as root, and this step runs "
                "as root without a sandbox: install bubblewrap (agent.sandbox: auto or bwrap), or "
                "use agent.sandbox: user, or run the step as an ordinary user"
            )
        return super().preflight(ctx, as_root)

    def usage(self, lines: Iterable[str]) -> Usage | None:
        result = last_event(lines, "result")
        if result is None:
            return None
        usage = result.get("usage") or {}
        models = list((result.get("modelUsage") or {}).keys())
        tokens_in = sum(
            int(usage.get(k) or 0)
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return Usage(
            cost_usd=result.get("total_cost_usd"),
            input_tokens=tokens_in,
            output_tokens=usage.get("output_tokens"),
            turns=result.get("num_turns"),
            model=models[0] if models else None,
        )

    def events(self, line: str) -> list[str]:
        found = []
        for event in json_lines([line]):
            message = event.get("message") if event.get("type") == "assistant" else None
            for part in (message or {}).get("content") or []:
                if isinstance(part, dict) and part.get("type") == "tool_use":
                    found.append(_describe(part.get("name"), part.get("input") or {}))
        return found

    def problem(self, exit_code: int, lines: Iterable[str]) -> Problem | None:
        lines = list(lines)
        for event in json_lines(lines):
            if event.get("type") == "result" and event.get("is_error"):
                said = short(event.get("result") or event.get("subtype"))
                return Problem(f"Claude Code ended in error: {said}", retryable=True)
        return super().problem(exit_code, lines)


def _describe(tool: object, data: dict) -> str:
    path = data.get("file_path") or data.get("path") or data.get("notebook_path")
    if tool in ("Write", "Edit", "MultiEdit", "NotebookEdit"):
        return f"editing {short(path)}"
    if tool == "Read":
        return f"reading {short(path)}"
    if tool == "Bash":
        return f"running {short(data.get('command'))}"
    return f"{tool} {short(path or data.get('pattern') or data.get('description') or '')}".strip()


CLAUDE = ClaudeCode(
    name="claude",
    binary="claude",
    verified_version="2.1.332",
    install="npm install -g @anthropic-ai/claude-code@2.1.332",
    env_names=(
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_MODEL",
        "ANTHROPIC_SMALL_FAST_MODEL",
    ),
    credentials=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"),
    stdin_prompt=True,
    signs=(
        Sign(ROOT_REFUSAL, "Claude Code refuses to skip permissions as root (use the sandbox)"),
        Sign(
            re.compile(r"invalid.{0,20}api.?key|authentication_error|401", re.IGNORECASE),
            "the Anthropic API refused the key: check ANTHROPIC_API_KEY",
        ),
        Sign(
            re.compile(r"unknown option|error: option", re.IGNORECASE),
            "the installed claude does not take the preset's flags: install the verified version",
        ),
    ),
    extra_env={
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    },
)
