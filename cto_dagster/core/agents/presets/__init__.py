"""Agent presets, one module per CLI; each records the CLI release it was verified with (the
contract tests run that release against a local stand-in of its model API)."""

from cto_dagster.core.agents.presets.aider import AIDER
from cto_dagster.core.agents.presets.base import LaunchContext, Preset, Problem, Usage
from cto_dagster.core.agents.presets.claude import CLAUDE
from cto_dagster.core.agents.presets.codex import CODEX
from cto_dagster.core.agents.presets.demo import DEMO
from cto_dagster.core.agents.presets.gemini import GEMINI

PRESETS: dict[str, Preset] = {p.name: p for p in (DEMO, CLAUDE, CODEX, GEMINI, AIDER)}
# Where each CLI comes from, at the version its preset was verified with.
NPM_PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
}
PYPI_PACKAGES = {"aider": "aider-chat"}


def install_specs(registry: str) -> list[str]:
    """`npm`: `@scope/package@version` specs; `pypi`: `package==version` requirements."""
    if registry == "npm":
        return [f"{pkg}@{PRESETS[name].verified_version}" for name, pkg in NPM_PACKAGES.items()]
    return [f"{pkg}=={PRESETS[name].verified_version}" for name, pkg in PYPI_PACKAGES.items()]


__all__ = [
    "NPM_PACKAGES",
    "PRESETS",
    "PYPI_PACKAGES",
    "LaunchContext",
    "Preset",
    "Problem",
    "Usage",
    "install_specs",
]
