"""Gemini CLI (`@google/gemini-cli`): the prompt on stdin, `--yolo` (no approval prompts), the
work tree trusted (every work tree is a new folder, which the CLI would refuse as untrusted),
`stream-json` events, and the API key's auth type chosen in the CLI's settings (a base URL alone
would select a gateway auth that headless runs reject)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from cto_dagster.core.agents.presets.base import (
    LaunchContext,
    Preset,
    Sign,
    Usage,
    json_lines,
    last_event,
    short,
)


class GeminiCli(Preset):
    def argv(self, ctx: LaunchContext) -> list[str]:
        argv = [self.binary, "--yolo", "--output-format", "stream-json"]
        if ctx.env.get("GEMINI_MODEL"):
            argv += ["--model", ctx.env["GEMINI_MODEL"]]
        return [*argv, "--prompt", "Do the task given above (from standard input)."]

    def prepare_home(self, ctx: LaunchContext) -> None:
        auth = (
            "vertex-ai"
            if ctx.env.get("GOOGLE_GENAI_USE_VERTEXAI") == "true"
            else ("gemini-api-key")
        )
        settings = {
            "security": {"auth": {"selectedType": auth}, "folderTrust": {"enabled": False}},
            "privacy": {"usageStatisticsEnabled": False},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        }
        folder = ctx.home / ".gemini"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "settings.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")

    def usage(self, lines: Iterable[str]) -> Usage | None:
        result = last_event(lines, "result")
        if result is None:
            return None
        stats = result.get("stats") or {}
        models = list((stats.get("models") or {}).keys())
        return Usage(
            input_tokens=stats.get("input_tokens"),
            output_tokens=stats.get("output_tokens"),
            turns=int(stats.get("tool_calls") or 0) + 1,
            model=models[0] if models else None,
        )

    def events(self, line: str) -> list[str]:
        found = []
        for event in json_lines([line]):
            if event.get("type") == "tool_use":
                data = event.get("parameters") or {}
                tool = event.get("tool_name")
                if tool in ("write_file", "replace"):
                    found.append(f"editing {short(data.get('file_path'))}")
                elif tool == "run_shell_command":
                    found.append(f"running {short(data.get('command'))}")
                elif tool == "read_file":
                    found.append(f"reading {short(data.get('file_path'))}")
                else:
                    found.append(short(f"{tool} {data.get('file_path') or ''}"))
        return found


GEMINI = GeminiCli(
    name="gemini",
    binary="gemini",
    verified_version="0.61.0",
    install="npm install -g @google/gemini-cli@0.61.0",
    env_names=(
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GEMINI_MODEL",
    ),
    credentials=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    stdin_prompt=True,
    signs=(
        Sign(
            re.compile(r"not running in a trusted directory", re.IGNORECASE),
            "Gemini CLI refused the work tree as untrusted",
        ),
        Sign(
            re.compile(
                r"Invalid auth method|must specify the GEMINI_API_KEY|API key not valid",
                re.IGNORECASE,
            ),
            "Gemini CLI has no usable key: check GEMINI_API_KEY",
        ),
        Sign(
            re.compile(r"Unknown argument", re.IGNORECASE),
            "the installed gemini does not take the preset's flags: install the verified version",
        ),
    ),
    extra_env={"GEMINI_CLI_TRUST_WORKSPACE": "true", "GEMINI_CLI_NO_RELAUNCH": "true"},
)
