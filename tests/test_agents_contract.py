"""Every agent preset against its real CLI: the release the preset was verified with, installed
from the npm registry or PyPI (`scripts/install-agent-clis`; `.ci/run` runs it), run end to end by
a real `play_project` run (the code location, the multiprocess executor, the sandbox) against a
local stand-in of its model API that asks it to write a file with its own tool.

Pass: the task is green, the file is on the pushed branch, and the CLI's own account of tokens
(and cost, where it gives one) is in the materialization. A CLI that is not installed is SKIPPED
with the reason, never passed.
"""

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cto_dagster.core.agents.presets import PRESETS
from tests.helpers import REPO_ROOT
from tests.model_standins import FILE_CONTENT, USAGE, Conversation, StandIn

pytestmark = pytest.mark.slow
CLI_DIR = Path(os.environ.get("CTO_TEST_AGENT_CLIS") or REPO_ROOT / ".tools" / "agents" / "bin")


def cli_version(binary: Path | str) -> str:
    """What `binary --version` prints (its last line), or why it could not say."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no version ({exc})"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1].strip() if lines else f"no version (exit code {done.returncode})"


def verified_cli(
    name: str, cli_dir: Path | None = None, path: str | None = None
) -> tuple[Path | None, str]:
    """The CLI at the release its preset was verified with, from `cli_dir` (the pinned CLIs that
    `./scripts/install-agent-clis` puts in `.tools/agents/bin`), never one found elsewhere on
    `path`: a machine's own install at another version is not what the preset promises. None
    with the reason to skip, which names the version found when there is only another one."""
    cli_dir = CLI_DIR if cli_dir is None else cli_dir
    path = os.environ.get("PATH", "") if path is None else path
    wanted = PRESETS[name].verified_version
    install = (
        f"./scripts/install-agent-clis installs {PRESETS[name].install.split()[-1]} "
        f"into {cli_dir}; .ci/run does it"
    )
    pinned = shutil.which(name, path=str(cli_dir))
    if pinned:
        found = cli_version(pinned)
        if wanted in found:
            return Path(pinned), ""
        return None, f"{pinned} is {found}, not the verified {wanted}: {install}"
    elsewhere = shutil.which(name, path=path)
    if elsewhere:
        found = cli_version(elsewhere)
        return (
            None,
            f"only {elsewhere} ({found}) is installed, not the verified {wanted}: {install}",
        )
    return None, f"the {name} CLI is not installed ({install})"


def cli_path(name: str) -> str | None:
    found, _reason = _verified(name)
    return str(found) if found else None


@functools.cache
def _verified(name: str) -> tuple[Path | None, str]:
    return verified_cli(name)


def installed(name: str):
    found, reason = _verified(name)
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
