"""OpenAI Codex CLI (`@openai/codex`): `codex exec` with the prompt on stdin, JSONL events, and
its own `workspace-write` sandbox (writes in the work tree only). Codex's sandbox cannot write
under /tmp (it mounts its own /tmp over it): there, inside our sandbox, Codex runs with
`danger-full-access`, its documented mode for "environments that are externally sandboxed".
`OPENAI_BASE_URL` becomes a model provider of Codex's own configuration (the CLI does not read
that variable)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cto_dagster.core.agents.presets.base import (
    LaunchContext,
    Preset,
    Problem,
    Sign,
    Usage,
    json_lines,
    short,
)

TOOL_ITEMS = ("command_execution", "file_change", "mcp_tool_call", "web_search", "custom_tool_call")


def _under_tmp(path: Path) -> bool:
    tmp = Path(tempfile.gettempdir()).resolve()
    return tmp == path.resolve() or tmp in path.resolve().parents


class Codex(Preset):
    def argv(self, ctx: LaunchContext) -> list[str]:
        sandbox = "danger-full-access" if _under_tmp(ctx.work) else "workspace-write"
        argv = [self.binary, "exec", "--json", "--skip-git-repo-check", "--sandbox", sandbox]
        base_url = ctx.env.get("OPENAI_BASE_URL")
        if base_url:
            key = "CODEX_API_KEY" if ctx.env.get("CODEX_API_KEY") else "OPENAI_API_KEY"
            provider = (
                "{name="
                + json.dumps("cto-dagster")
                + ",base_url="
                + json.dumps(base_url)
                + ",env_key="
                + json.dumps(key)
                + ',wire_api="responses"}'
            )
            argv += [
                "-c",
                'model_provider="cto_dagster"',
                "-c",
                f"model_providers.cto_dagster={provider}",
            ]
        if ctx.env.get("CODEX_MODEL"):
            argv += ["--model", ctx.env["CODEX_MODEL"]]
        return [*argv, "-"]

    def preflight(self, ctx: LaunchContext, as_root: bool) -> Problem | None:
        if _under_tmp(ctx.work) and not ctx.isolated:
            return Problem(
                f"Codex's sandbox cannot write under {tempfile.gettempdir()}, where this task's "
                "work tree is, and no sandbox of ours surrounds it: set the project's "
                "workspace_root elsewhere (the default is under /var/tmp), or install bubblewrap"
            )
        return super().preflight(ctx, as_root)

    def usage(self, lines: Iterable[str]) -> Usage | None:
        tokens_in = tokens_out = tools = 0
        seen = False
        for event in json_lines(lines):
            if event.get("type") == "turn.completed":
                usage = event.get("usage") or {}
                tokens_in += int(usage.get("input_tokens") or 0)
                tokens_out += int(usage.get("output_tokens") or 0)
                seen = True
            elif event.get("type") == "item.completed":
                if (event.get("item") or {}).get("type") in TOOL_ITEMS:
                    tools += 1
        if not seen:
            return None
        return Usage(input_tokens=tokens_in, output_tokens=tokens_out, turns=tools + 1)

    def events(self, line: str) -> list[str]:
        found = []
        for event in json_lines([line]):
            if event.get("type") != "item.started" and event.get("type") != "item.completed":
                continue
            item = event.get("item") or {}
            if event["type"] == "item.started" and item.get("type") == "command_execution":
                found.append(f"running {short(item.get('command'))}")
            elif event["type"] == "item.completed" and item.get("type") == "file_change":
                paths = [c.get("path") for c in item.get("changes") or [] if isinstance(c, dict)]
                found.append(f"editing {short(', '.join(filter(None, paths)))}")
        return found


CODEX = Codex(
    name="codex",
    binary="codex",
    verified_version="0.171.0",
    install="npm install -g @openai/codex@0.171.0",
    env_names=("CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_MODEL"),
    credentials=("CODEX_API_KEY", "OPENAI_API_KEY"),
    stdin_prompt=True,
    signs=(
        Sign(
            re.compile(r"unexpected argument|unrecognized subcommand", re.IGNORECASE),
            "the installed codex does not take the preset's flags: install the verified version",
        ),
        Sign(
            re.compile(r"401 Unauthorized|invalid_api_key|Incorrect API key", re.IGNORECASE),
            "the OpenAI API refused the key: check CODEX_API_KEY",
        ),
    ),
)
