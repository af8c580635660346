"""`cto-dagster doctor`: every problem of a configured project found before a run, each with its
fix, secrets named and never shown."""

from pathlib import Path

import pytest

from cto_dagster.core.agents.presets import PRESETS
from tests.conftest import demo_task

pytestmark = pytest.mark.slow


def test_a_ready_project_is_ready(make_project):
    project = make_project([demo_task(1), demo_task(2, deps=[1])])
    done = project.cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✅ tasks file: tag master, 2 tasks to run in 2 levels" in done.stdout
    assert "✅ Ready." in done.stdout
    # which sandbox this machine gives the agent, and what it leaves open
    assert "sandbox: " in done.stdout and "it does not protect: " in done.stdout


def path_without_agents(tmp_path: Path) -> str:
    """A PATH of the system's programs without any agent CLI, whatever this machine installed
    in /usr/bin or /bin (a `claude` there made the doctor find one)."""
    folder = tmp_path / "system-bin"
    folder.mkdir()
    for system in (Path("/bin"), Path("/usr/bin")):
        for program in system.iterdir():
            target = folder / program.name
            if program.name not in PRESETS and not target.exists():
                target.symlink_to(program)
    return str(folder)


def test_each_problem_is_named_with_its_fix_and_no_secret_is_shown(make_project, tmp_path):
    project = make_project(
        [demo_task(1)],
        settings={
            "agent": {"preset": "claude"},
            "git": {"token_env": "SHOP_TOKEN"},
            "repository": str(tmp_path / "nowhere.git"),
        },
    )
    done = project.cli(
        "doctor", SHOP_TOKEN="ghp_doctorSecret123", PATH=path_without_agents(tmp_path)
    )
    out = done.stdout
    assert done.returncode == 1
    assert "❌ agent claude: claude not found on PATH" in out
    assert "npm install -g @anthropic-ai/claude-code@2.1.332" in out
    assert "❌ agent credentials: none of ANTHROPIC_API_KEY" in out
    assert "✅ git token: SHOP_TOKEN is set" in out and "ghp_doctorSecret123" not in out
    assert "❌ remote" in out and "check the URL and token" in out
    assert "problem(s) to fix first" in out


def test_an_instance_on_dagsters_own_sqlite_event_log_is_told_how_to_switch(make_project):
    """A warning, not a problem: the instance works, but creates runs one event at a time."""
    project = make_project([demo_task(1)])
    config = project.home / "dagster.yaml"
    text = config.read_text()
    block = text[text.index("event_log_storage:") : text.index("telemetry:")]
    config.write_text(text.replace(block, ""))
    done = project.cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "⚠️  event log: Dagster's SQLite class writes a new run's planned events" in done.stdout
    assert "add the event_log_storage block" in done.stdout
    config.write_text(text)
    again = project.cli("doctor")
    assert "event log:" not in again.stdout


def test_the_agents_network_is_said_and_a_missing_pasta_is_a_warning_or_required(
    make_project, tmp_path
):
    """What the agent's network reaches; without pasta, what is not protected (a warning), or a
    problem when the project requires the isolation."""
    import shutil

    from cto_dagster.core.agents.network import network_problem
    from cto_dagster.core.agents.sandbox import bubblewrap_problem

    if bubblewrap_problem() or network_problem():
        pytest.skip(
            f"no sandbox with its own network here: {bubblewrap_problem()} {network_problem()}"
        )
    tools = tmp_path / "bin"  # what the step needs, but not pasta
    tools.mkdir()
    for tool in ("git", "bwrap", "iptables-restore", "ip6tables-restore"):
        (tools / tool).symlink_to(shutil.which(tool))
    project = make_project([demo_task(1)])
    ready = project.cli("doctor")
    assert "✅ agent network: internet (own network namespace (pasta)" in ready.stdout, ready.stdout
    missing = project.cli("doctor", PATH=str(tools))
    assert missing.returncode == 0, missing.stdout + missing.stderr
    assert "⚠️  agent network: NO NETWORK ISOLATION: pasta is not installed" in missing.stdout
    assert "Dagster webserver's GraphQL" in missing.stdout
    assert "apt-get install passt iptables" in missing.stdout
    required = make_project(
        [demo_task(1)], settings={"agent": {"network": {"required": True}}}, name="q"
    )
    refused = required.cli("doctor", PATH=str(tools))
    assert refused.returncode == 1
    assert "❌ agent network: agent.network.mode is internet (required), but pasta is not" in (
        refused.stdout
    )
