"""`cto-dagster init` in a fresh clone: a config `plan` and a demo-agent run accept, nothing
overwritten without --force, no secret written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cto_dagster.commands.init import https_remote, run_init
from cto_dagster.core.demo.sample_repository import create_sample_repository


def _clone(tmp_path: Path) -> Path:
    remote = create_sample_repository(tmp_path / "sample")
    clone = tmp_path / "shop"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    return clone


def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CTO_", "DAGSTER_HOME"))}
    return subprocess.run(
        [sys.executable, "-m", "cto_dagster.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_init_writes_a_config_and_home_then_refuses_to_overwrite(tmp_path):
    clone = _clone(tmp_path)
    lines: list[str] = []
    assert run_init(str(clone), "demo", [], yes=True, force=False, say=lines.append) == 0
    config = yaml.safe_load((clone / "cto-dagster.yaml").read_text())
    project = config["projects"][0]
    assert project["name"] == "shop" and project["tag"] == "master"
    assert project["repository"] == str(tmp_path / "sample" / "remote.git")
    assert project["agent"]["preset"] == "demo"
    assert (clone / ".cto-dagster" / "home" / "dagster.yaml").is_file()
    assert ".cto-dagster/" in (clone / ".gitignore").read_text()
    text = "\n".join(lines)
    assert "📊 Total tasks: 6" in text
    assert (
        "CTO_DAGSTER_CONFIG=cto-dagster.yaml DAGSTER_HOME=.cto-dagster/home cto-dagster launch"
        in text
    )
    assert run_init(str(clone), "demo", [], yes=True, force=False, say=lines.append) == 1
    assert run_init(str(clone), "claude", [], yes=True, force=True, say=lines.append) == 0
    assert "preset: claude" in (clone / "cto-dagster.yaml").read_text()


def test_init_asks_what_it_cannot_guess(tmp_path):
    clone = _clone(tmp_path)
    answers = iter(["aider", ""])
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return next(answers)

    assert run_init(str(clone), None, [], yes=False, force=False, ask=ask, say=lambda _l: None) == 0
    assert asked[0].startswith("Agent [claude/codex/gemini/aider/demo]")
    assert asked[1].startswith("Tag [master] (default master)")
    assert "preset: aider" in (clone / "cto-dagster.yaml").read_text()


def test_remotes_become_https_without_credentials():
    assert https_remote("git@github.com:acme/shop.git") == "https://github.com/acme/shop.git"
    assert https_remote("ssh://git@github.com/acme/shop") == "https://github.com/acme/shop.git"
    assert https_remote("https://x-access-token:ghp_abc@github.com/a/b.git") == (
        "https://github.com/a/b.git"
    )


def test_init_without_a_tasks_file_or_outside_git_says_what_to_do(tmp_path, capsys):
    assert run_init(str(tmp_path), "demo", [], yes=True, force=False) == 1
    assert "not a git repository" in capsys.readouterr().err
    subprocess.run(["git", "init", "-q", str(tmp_path / "empty")], check=True)
    assert run_init(str(tmp_path / "empty"), "demo", [], yes=True, force=False) == 1
    assert "task-master init" in capsys.readouterr().err


@pytest.mark.slow
def test_init_then_plan_and_launch_work_in_a_fresh_clone(tmp_path):
    clone = _clone(tmp_path)
    done = _cli("init", "--agent", "demo", "--tag", "master", "--yes", cwd=clone)
    assert done.returncode == 0, done.stderr
    env = {"CTO_DAGSTER_CONFIG": "cto-dagster.yaml", "DAGSTER_HOME": ".cto-dagster/home"}
    plan = _cli("plan", cwd=clone, env=env)
    assert plan.returncode == 0 and "Total tasks: 6" in plan.stdout
    run = _cli("launch", cwd=clone, env={**env, "CTO_DEMO_SPEED": "0.05"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "(SUCCESS)" in run.stdout
    branches = subprocess.run(
        ["git", f"--git-dir={tmp_path / 'sample' / 'remote.git'}", "branch", "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "feature/task-4-implementation" in branches and "integration/level-2-" in branches
