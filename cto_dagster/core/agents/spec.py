"""How a project runs its agent: a preset or an argv list, its environment, timeout, sandbox and
network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cto_dagster.core.agents.network import NETWORK_MODES
from cto_dagster.core.agents.presets import PRESETS, Preset
from cto_dagster.core.agents.sandbox import SANDBOX_MODES
from cto_dagster.core.support.limits import WorkLimits

PLACEHOLDERS = ("{prompt_file}", "{prompt}", "{task_id}", "{task_file}", "{workdir}")


class AgentConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentSpec:
    preset: str | None = "demo"
    command: tuple[str, ...] = ()  # an argv list; overrides the preset
    env: Mapping[str, str] = field(default_factory=dict)  # literal values (no secrets here)
    env_from: Mapping[str, str] = field(default_factory=dict)  # NAME -> variable holding it
    pass_env: tuple[str, ...] = ()  # names passed from the step's environment as they are
    timeout_seconds: float = 3600.0
    heartbeat_seconds: float = 300.0  # a log line when the agent has been silent this long
    sandbox: str = "auto"
    sandbox_user: str | None = None
    sandbox_read_only: tuple[str, ...] = ()  # extra folders the sandboxed agent may read
    allow_no_changes: bool = False  # a task whose agent changed nothing is green anyway
    limits: WorkLimits = field(default_factory=WorkLimits)  # what a task may add
    container_image: str | None = None  # the `container` sandbox's image
    container_network: str = "bridge"  # the `container` sandbox's network: bridge | none
    network: str = "internet"  # internet | none | host (see network.py)
    network_allow_host_ports: tuple[int, ...] = ()  # the host's loopback ports it may reach
    network_required: bool = False  # no task starts without the network isolation asked for

    @property
    def preset_definition(self) -> Preset | None:
        """The preset that starts the agent (None: a custom command)."""
        return None if self.command else PRESETS.get(self.preset or "")

    def argv_template(self) -> list[str]:
        if self.command:
            return list(self.command)
        raise AgentConfigError("a preset builds its own command; argv_template is for commands")

    @property
    def trusted_program(self) -> bool:
        """The built-in demo agent: our own code, no model-chosen commands."""
        return not self.command and self.preset == "demo"

    @property
    def preset_env_names(self) -> tuple[str, ...]:
        preset = self.preset_definition
        return preset.env_names if preset else ()

    @property
    def step_env_names(self) -> tuple[str, ...]:
        """The step's variables this agent may read (its preset's names, `pass_env`, the sources
        of `env_from`): on Kubernetes its pod gets these keys of the project's Secret, no more."""
        names = (*self.preset_env_names, *self.pass_env, *self.env_from.values())
        return tuple(dict.fromkeys(names))

    @property
    def label(self) -> str:
        return self.preset if self.preset_definition else "custom command"

    def validate(self) -> AgentSpec:
        if isinstance(self.command, str):
            raise AgentConfigError("the agent command must be a list of arguments, not a string")
        if self.command:
            if not all(isinstance(a, str) and a for a in self.command):
                raise AgentConfigError("the agent command must be a non-empty list of strings")
        elif self.preset not in PRESETS:
            raise AgentConfigError(
                f"unknown agent preset {self.preset!r}; choose one of {', '.join(PRESETS)} "
                "or give `command` as a list of arguments"
            )
        if not (0 < self.timeout_seconds <= 7 * 24 * 3600):
            raise AgentConfigError("timeout_seconds must be between 0 and one week")
        if self.sandbox not in SANDBOX_MODES:
            raise AgentConfigError(f"sandbox must be one of {', '.join(SANDBOX_MODES)}")
        if self.network not in NETWORK_MODES:
            raise AgentConfigError(f"network must be one of {', '.join(NETWORK_MODES)}")
        if not all(0 < port < 65536 for port in self.network_allow_host_ports):
            raise AgentConfigError("network_allow_host_ports are TCP ports (1-65535)")
        return self
