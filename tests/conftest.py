"""Fixtures for tests that need a real repository, a real Dagster instance and real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cto_dagster.commands.demo import job_execute_command
from cto_dagster.commands.runs.instance_home import prepare_home
from cto_dagster.core.demo.sample_repository import create_sample_repository

TEST_ENV_DROP = (
    "CTO_DAGSTER_CONFIG",
    "CTO_DAGSTER_REPOSITORY",
    "CTO_DEMO_FAIL_TASKS",
    "TASKMASTER_TAG",
    # set in this process by in-process runs of the executor: never a project's own settings
    "CTO_DAGSTER_TASKS_COMMITS",
    "CTO_DAGSTER_LEARNED_DURATIONS",
)


class Project:
    """A sample repository with a bare remote, its YAML config, and a DAGSTER_HOME."""

    def __init__(
        self,
        root: Path,
        tasks: list[dict] | dict | str,
        settings: dict | None = None,
        files: dict[str, str] | None = None,
    ):
        self.root = root
        if isinstance(tasks, str):  # a whole tasks file, as written
            text = tasks
        elif isinstance(tasks, dict):  # several tags
            text = json.dumps(tasks, indent=2) + "\n"
        else:
            text = json.dumps({"master": {"tasks": tasks}})
        self.remote = create_sample_repository(root / "repo", text, extra_files=files)
        self.home = root / "dagster_home"
        prepare_home(self.home)
        project = {
            "name": "proj",
            "repository": str(self.remote),
            "workspace_root": str(root / "workspaces"),
            "max_retries": 0,
            **(settings or {}),
        }
        self.config = root / "cto-dagster.yaml"
        self.config.write_text(yaml.safe_dump({"projects": [project]}), encoding="utf-8")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in TEST_ENV_DROP}
        env.update(
            DAGSTER_HOME=str(self.home),
            CTO_DAGSTER_CONFIG=str(self.config),
            CTO_DAGSTER_CACHE=str(self.root / "cache"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def execute(
        self,
        *args: str,
        run_config: dict | None = None,
        timeout: float = 300,
        job: str = "play_project",
        **env,
    ):
        command = job_execute_command(*args, job=job)
        if run_config is not None:
            config_file = self.root / "run-config.yaml"
            config_file.write_text(yaml.safe_dump(run_config), encoding="utf-8")
            command += ["-c", str(config_file)]
        return self._run(command, timeout, env)

    def cli(self, *args: str, timeout: float = 300, **env):
        return self._run([sys.executable, "-m", "cto_dagster.cli", *args], timeout, env)

    def _run(self, command: list[str], timeout: float, env: dict[str, str]):
        return subprocess.run(
            command,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={self.remote}", *args], capture_output=True, text=True, check=True
        ).stdout

    def runs(self):
        import dagster as dg

        from cto_dagster.commands.runs.instance_home import open_instance

        with open_instance(self.home) as instance:
            return [r.dagster_run for r in instance.get_run_records(dg.RunsFilter())]

    def records(self, run_id: str | None = None) -> dict:
        """Task records of a run (default: the latest run of play_project)."""
        from cto_dagster.commands.runs.instance_home import open_instance
        from cto_dagster.defs.run_records import task_records

        run_id = run_id or next(r.run_id for r in self.runs() if r.job_name.startswith("play_"))
        with open_instance(self.home) as instance:
            return {r.task_id: r for r in task_records(instance, run_id)}


@pytest.fixture
def make_project(tmp_path):
    def _make(
        tasks: list[dict] | dict | str,
        settings: dict | None = None,
        name: str = "p",
        files: dict[str, str] | None = None,
    ) -> Project:
        return Project(tmp_path / name, tasks, settings, files)

    return _make


def demo_task(task_id, deps=(), duration=0.0, files=None, exit_code=0, title=None, **extra) -> dict:
    demo = {}
    if files:
        demo["files"] = files
    if exit_code:
        demo["exit_code"] = exit_code
    return {
        "id": task_id,
        "title": title or f"Task {task_id}",
        "status": "pending",
        "dependencies": list(deps),
        "metadata": {"duration": duration, "demo": demo},
        **extra,
    }


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.speedups` tests guard the speed-up layer: skipped where it is off
    (`CTO_DAGSTER_SPEEDUPS=off`, as CI's second pass runs, or an unverified version)."""
    from cto_dagster.speedups import SWITCH_ENV, enabled

    if enabled():
        return
    skip = pytest.mark.skip(reason=f"the speed-ups are off here ({SWITCH_ENV} or the versions)")
    for item in items:
        if "speedups" in item.keywords:
            item.add_marker(skip)
