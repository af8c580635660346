"""The agent contract: a command run in the task's work tree, inside a sandbox, told about the
task through environment variables and a prompt file."""

from cto_dagster.core.agents.environment import agent_environment, task_environment
from cto_dagster.core.agents.presets import PRESETS
from cto_dagster.core.agents.prompt import render_prompt
from cto_dagster.core.agents.runner import AgentPlace, AgentRun, build_argv, run_agent
from cto_dagster.core.agents.sandbox import (
    Sandbox,
    SandboxUnavailable,
    choose_sandbox,
    sandbox_for,
)
from cto_dagster.core.agents.spec import AgentConfigError, AgentSpec

__all__ = [
    "PRESETS",
    "AgentConfigError",
    "AgentPlace",
    "AgentRun",
    "AgentSpec",
    "Sandbox",
    "SandboxUnavailable",
    "agent_environment",
    "build_argv",
    "choose_sandbox",
    "render_prompt",
    "run_agent",
    "sandbox_for",
    "task_environment",
]
