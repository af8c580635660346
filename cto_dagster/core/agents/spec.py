"""How a project runs its agent: a preset or an argv list, its environment, timeout and sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cto_dagster.core.agents.presets import PRESETS
from cto_dagster.core.agents.sandbox import SANDBOX_MODES

PLACEHOLDERS = ("{prompt_file}", "{prompt}", "{task_id}", "{task_file}", "{workdir}")


class AgentConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentSpec:
    preset: str | None = "demo"
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # literal values (no secrets here)
    env_from: Mapping[str, str] = field(default_factory=dict)  # NAME -> variable holding it
    pass_env: tuple[str, ...] = ()  # names passed from the step's environment as they are
    timeout_seconds: float = 3600.0
    sandbox: str = "auto"
    sandbox_user: str | None = None
    sandbox_read_only: tuple[str, ...] = ()  # extra folders the sandboxed agent may read

    def argv_template(self) -> list[str]:
        if self.command:
            return list(self.command)
        if self.preset in PRESETS:
            return list(PRESETS[self.preset].argv)
        raise AgentConfigError(
            f"unknown agent preset {self.preset!r}; choose one of {', '.join(PRESETS)} "
            "or give `command` as a list of arguments"
        )

    @property
    def preset_env_names(self) -> tuple[str, ...]:
        preset = PRESETS.get(self.preset or "")
        return preset.env_names if preset else ()

    def validate(self) -> AgentSpec:
        if isinstance(self.command, str):
            raise AgentConfigError("the agent command must be a list of arguments, not a string")
        argv = self.argv_template()
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise AgentConfigError("the agent command must be a non-empty list of strings")
        if not (0 < self.timeout_seconds <= 7 * 24 * 3600):
            raise AgentConfigError("timeout_seconds must be between 0 and one week")
        if self.sandbox not in SANDBOX_MODES:
            raise AgentConfigError(f"sandbox must be one of {', '.join(SANDBOX_MODES)}")
        return self
