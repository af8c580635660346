"""aider (`aider-chat` on PyPI): the prompt from a file, every question answered yes, no commits
of its own (we commit), its `.gitignore` left alone, no analytics, update checks or model price
downloads, and no browser login. aider exits 0 even when every model call failed: its output is
read, and a failed call fails the task."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cto_dagster.core.agents.presets.base import LaunchContext, Preset, Sign, Usage, short

_TOKENS = re.compile(r"Tokens: ([\d.]+)(k?) sent, ([\d.]+)(k?) received")
_COST = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session")


def _count(number: str, thousands: str) -> int:
    return round(float(number) * (1000 if thousands else 1))


class Aider(Preset):
    def argv(self, ctx: LaunchContext) -> list[str]:
        return [
            self.binary,
            "--yes-always",
            "--no-auto-commits",
            "--no-dirty-commits",
            "--no-gitignore",
            "--analytics-disable",
            "--no-check-update",
            "--no-show-model-warnings",
            "--no-show-release-notes",
            "--no-pretty",
            "--no-fancy-input",
            "--no-auto-lint",
            "--no-detect-urls",
            "--message-file",
            str(ctx.prompt_file),
        ]

    def prepare_home(self, ctx: LaunchContext) -> None:
        # aider downloads a model price list from GitHub when its cached copy is missing (a new
        # home each task); an empty, fresh cache makes it use litellm's bundled list instead
        caches = ctx.home / ".aider" / "caches"
        caches.mkdir(parents=True, exist_ok=True)
        (caches / "model_prices_and_context_window.json").write_text("{}", encoding="utf-8")

    def usage(self, lines: Iterable[str]) -> Usage | None:
        sent = received = calls = 0
        cost = None
        for line in lines:
            tokens = _TOKENS.search(line)
            if tokens:
                sent += _count(tokens.group(1), tokens.group(2))
                received += _count(tokens.group(3), tokens.group(4))
                calls += 1
            money = _COST.search(line)
            if money:
                cost = float(money.group(2))
        if not calls:
            return None
        return Usage(cost_usd=cost, input_tokens=sent, output_tokens=received, turns=calls)

    def events(self, line: str) -> list[str]:
        if line.startswith("Applied edit to "):
            return [f"editing {short(line[len('Applied edit to ') :])}"]
        if line.startswith("Running "):
            return [f"running {short(line[len('Running ') :])}"]
        return []


AIDER = Aider(
    name="aider",
    binary="aider",
    verified_version="0.86.2",
    install="pip install aider-chat==0.86.2",
    env_names=(
        "OPENAI_API_KEY",
        "OPENAI_API_BASE",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "OPENROUTER_API_KEY",
        "DEEPSEEK_API_KEY",
        "AIDER_MODEL",
        "AIDER_EDIT_FORMAT",
    ),
    credentials=(
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "OPENROUTER_API_KEY",
        "DEEPSEEK_API_KEY",
    ),
    fail_on_signs_even_if_exit_0=True,
    signs=(
        Sign(
            re.compile(r"litellm\.AuthenticationError|not able to authenticate", re.IGNORECASE),
            "aider's model calls were refused: check the API key",
        ),
        Sign(re.compile(r"litellm\.\w+Error"), "aider's model calls failed", retryable=True),
        Sign(
            re.compile(r"unrecognized arguments", re.IGNORECASE),
            "the installed aider does not take the preset's flags: install the verified version",
        ),
        Sign(
            re.compile(r"Login to OpenRouter|No LLM model was specified", re.IGNORECASE),
            "aider found no API key and offered a browser login: set a key",
        ),
    ),
    extra_env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "AIDER_ANALYTICS": "false"},
)
