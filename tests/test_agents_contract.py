"""Every agent preset against its real CLI: the release the preset was verified with, installed
from the npm registry or PyPI (`scripts/install-agent-clis`; `.ci/run` runs it), run end to end by
a real `play_project` run (the code location, the multiprocess executor, the sandbox) against a
local stand-in of its model API that asks it to write a file with its own tool.

Pass: the task is green, the file is on the pushed branch, and the CLI's own account of tokens
(and cost, where it gives one) is in the materialization. A CLI that is not installed is SKIPPED
with the reason, never passed.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cto_dagster.core.agents.presets import PRESETS
from tests.helpers import REPO_ROOT
from tests.model_standins import FILE_CONTENT, USAGE, Conversation, StandIn

pytestmark = pytest.mark.slow
CLI_DIR = Path(os.environ.get("CTO_AGENT_CLIS") or REPO_ROOT / ".tools" / "agents" / "bin")


def cli_path(name: str) -> str | None:
    return shutil.which(name, path=f"{CLI_DIR}{os.pathsep}{os.environ.get('PATH', '')}")


def installed(name: str):
    found = cli_path(name)
    reason = (
        f"the {name} CLI is not installed (./scripts/install-agent-clis installs "
        f"{PRESETS[name].install.split()[-1]}; .ci/run does it)"
    )
    return pytest.mark.skipif(found is None, reason=reason)


# what each CLI needs to talk to the stand-in instead of its vendor's API
ENDPOINTS = {
    "claude": lambda url: {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-ant-standin"},
    "codex": lambda url: {"OPENAI_BASE_URL": f"{url}/v1", "CODEX_API_KEY": "sk-standin"},
    "gemini": lambda url: {"GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": "standin-key"},
    "aider": lambda url: {
        "OPENAI_API_BASE": f"{url}/v1",
        "OPENAI_API_KEY": "sk-standin",
        "AIDER_MODEL": "openai/standin",
        "AIDER_EDIT_FORMAT": "whole",
    },
}


def agent_settings(preset: str, standin: StandIn) -> dict:
    """The preset, with the stand-in's port on this machine's loopback allowed to the agent (its
    network namespace reaches no other port of this machine)."""
    return {
        "agent": {
            "preset": preset,
            "timeout_seconds": 300,
            "network": {"allow_host_ports": [standin.port]},
        },
        "max_retries": 0,
    }


@pytest.mark.parametrize(
    "preset",
    [pytest.param(name, marks=installed(name)) for name in ("claude", "codex", "gemini", "aider")],
)
def test_preset_runs_its_real_cli_end_to_end(make_project, preset):
    conversation = Conversation(path="hello.txt")
    binary_dir = str(Path(cli_path(preset)).parent)
    with StandIn(conversation) as standin:
        project = make_project(
            [{"id": 1, "title": "Say hello", "description": "Write hello.txt", "dependencies": []}],
            settings=agent_settings(preset, standin),
        )
        conversation.workspaces = str(project.root / "workspaces")
        env = {**ENDPOINTS[preset](standin.url), "PATH": f"{binary_dir}:{os.environ['PATH']}"}
        launched = project.cli("launch", timeout=600, **env)
    output = launched.stdout[-4000:] + launched.stderr[-4000:]
    assert launched.returncode == 0, output
    assert conversation.tool_calls >= 1, conversation.requests
    assert project.git("show", "feature/task-1-implementation:hello.txt") == FILE_CONTENT
    record = project.records()["1"]
    assert record.status == "materialized"
    metadata = record.metadata
    if preset == "aider":  # aider counts tokens with its own tokenizer, not the API's usage
        assert metadata["agent_input_tokens"] > 0 and metadata["agent_output_tokens"] > 0
    else:
        assert metadata["agent_input_tokens"] >= USAGE["input"], metadata
        assert metadata["agent_output_tokens"] >= USAGE["output"], metadata
    assert metadata["agent_turns"] >= 1
    if preset == "claude":
        assert metadata["agent_cost_usd"] > 0
    assert metadata["agent_sandbox"] in ("bwrap", "user")
    version = subprocess.run([cli_path(preset), "--version"], capture_output=True, text=True)
    assert PRESETS[preset].verified_version in version.stdout + version.stderr


@installed("aider")
def test_aider_whose_model_calls_fail_fails_its_task(make_project):
    """aider exits 0 after its model calls failed (it printed the errors): no false green."""
    conversation = Conversation(path="hello.txt", refuse=True)
    with StandIn(conversation) as standin:
        project = make_project(
            [{"id": 1, "title": "Say hello", "description": "Write hello.txt", "dependencies": []}],
            settings=agent_settings("aider", standin),
        )
        env = {**ENDPOINTS["aider"](standin.url), "PATH": f"{CLI_DIR}:{os.environ['PATH']}"}
        launched = project.cli("launch", timeout=600, **env)
    assert launched.returncode == 1, launched.stdout[-3000:]
    record = project.records()["1"]
    assert record.status == "failed"
    assert "aider's model calls were refused: check the API key" in record.error
    assert "not retried" in record.error
    assert "feature/task-1-implementation" not in project.git("branch", "--list")
