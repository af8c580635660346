"""The built-in agent: writes real files deterministically, may sleep; no network needed."""

from __future__ import annotations

import sys

from cto_dagster.core.agents.presets.base import LaunchContext, Preset


class Demo(Preset):
    def argv(self, ctx: LaunchContext) -> list[str]:
        return [sys.executable, "-m", "cto_dagster.core.demo.agent"]


DEMO = Demo(name="demo", binary=sys.executable, env_names=("CTO_DEMO_SPEED", "CTO_DEMO_FAIL_TASKS"))
