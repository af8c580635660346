"""Each project's git repository, GitHub and agent as Dagster resources: configured from its
settings only, shown by name (never a secret's value); a run may choose only what changes no
security setting (another allowed preset, timeouts), and a run config naming anything else is
refused when the run is launched."""

import sys

import dagster as dg
import pytest
import yaml

from cto_dagster.core.settings import load_settings
from cto_dagster.defs.loader import build_definitions
from cto_dagster.defs.resources import (
    RUN_AGENT_CHOICES,
    AgentResource,
    GitHubResource,
    GitRepositoryResource,
)
from tests.conftest import demo_task
from tests.helpers import tagged, task
from tests.test_definitions import configure

TOKEN = "ghp_ResourceT0kenNeverInConfig99"


def shop_definitions(monkeypatch, tmp_path, agent: dict | None = None) -> dg.Definitions:
    config = configure(monkeypatch, tmp_path, {"shop": tagged(task(1), task(2, [1]))})
    data = yaml.safe_load(config.read_text())
    data["projects"][0].update(
        git={"token_env": "SHOP_TOKEN"},
        github={"repository": "acme/shop", "api_url": "http://127.0.0.1:9"},
        agent=agent
        or {"preset": "claude", "env_from": {"ANTHROPIC_API_KEY": "SHOP_ANTHROPIC_KEY"}},
    )
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SHOP_TOKEN", TOKEN)
    return build_definitions()


def resource_value(definition):
    with dg.build_resources({"r": definition}) as built:
        return built.r


def test_each_project_has_its_git_github_and_agent_resources(monkeypatch, tmp_path):
    defs = shop_definitions(monkeypatch, tmp_path)
    resources = defs.resources
    assert {"play", "shop_git", "shop_github", "shop_agent"} <= set(resources)
    git = resource_value(resources["shop_git"])
    github = resource_value(resources["shop_github"])
    agent = resources["shop_agent"]
    assert isinstance(git, GitRepositoryResource) and git.token_env == "SHOP_TOKEN"
    assert git.git_token_names == ["SHOP_TOKEN"]
    assert isinstance(github, GitHubResource) and github.repository == "acme/shop"
    assert isinstance(agent, AgentResource) and agent.preset == "claude"
    # the UI's resource view says where the code location's settings point, by name
    assert "$SHOP_TOKEN" in resources["shop_git"].description
    assert "acme/shop" in resources["shop_github"].description
    # configuration holds names; the token is read when a step needs it
    assert TOKEN not in repr(resources) and TOKEN not in resources["shop_git"].description
    assert github.token() == TOKEN and TOKEN in git.repository().secrets  # read at use, redacted
    # the task and integration steps ask for them
    graph = defs.resolve_asset_graph()
    task_node = graph.get(dg.AssetKey(["shop", "task_001"]))
    integration = graph.get(dg.AssetKey(["shop", "integration_level_0"]))
    assert {"shop_git", "shop_agent"} <= set(task_node.assets_def.required_resource_keys)
    assert {"play", "shop_git", "shop_github"} <= set(integration.assets_def.required_resource_keys)


# Each field that decides where code goes, with which credentials, or what the agent runs and
# reaches: a run config naming it must not launch.
SECURITY_OVERRIDES = [
    ("shop_git", "url", "http://127.0.0.1:9/attacker.git"),
    ("shop_git", "token_env", "OTHER_TOKEN"),
    ("shop_git", "token_file", "/etc/shadow"),
    ("shop_git", "git_token_names", []),
    ("shop_git", "secret_names", []),
    ("shop_git", "secret_files", []),
    ("shop_git", "workspace_root", "/"),
    ("shop_git", "adopt_existing_branches", True),
    ("shop_github", "api_url", "http://127.0.0.1:9"),
    ("shop_github", "repository", "attacker/shop"),
    ("shop_github", "token_file", "/etc/shadow"),
    ("shop_agent", "command", ["/bin/sh", "-c", "env"]),
    ("shop_agent", "sandbox", "none"),
    ("shop_agent", "sandbox_user", "root"),
    ("shop_agent", "sandbox_read_only", ["/root"]),
    ("shop_agent", "pass_env", ["SHOP_TOKEN"]),
    ("shop_agent", "env_from", {"STOLEN": "SHOP_TOKEN"}),
    ("shop_agent", "env", {"LD_PRELOAD": "/tmp/evil.so"}),
    ("shop_agent", "run_presets", ["codex"]),
    ("shop_agent", "limits", {"max_files": 10_000_000}),
]


def test_run_config_cannot_name_a_security_setting(monkeypatch, tmp_path):
    """Dagster's own run config check (the launchpad's, GraphQL's, the CLI's) refuses each,
    naming the field; the per-run choices still validate."""
    job = shop_definitions(monkeypatch, tmp_path).resolve_job_def("play_project")
    for key, field, value in SECURITY_OVERRIDES:
        run_config = {"resources": {key: {"config": {field: value}}}}
        with pytest.raises(dg.DagsterInvalidConfigError, match=f'"{field}".*{key}'):
            dg.validate_run_config(job, run_config)
    choices = {"preset": "codex", "timeout_seconds": 60.0, "heartbeat_seconds": 5.0}
    dg.validate_run_config(job, {"resources": {"shop_agent": {"config": choices}}})
    assert set(RUN_AGENT_CHOICES) == set(AgentResource.model_fields)


def test_a_run_chooses_only_presets_the_project_allows(monkeypatch, tmp_path):
    shop_definitions(monkeypatch, tmp_path)
    project = load_settings().projects[0]
    resource = AgentResource.for_project(project)
    assert resource.spec(project) == project.agent.spec()
    chosen = AgentResource(preset="codex", timeout_seconds=60).settings(project)
    # the run's choices, on top of everything else the code location set
    assert (chosen.preset, chosen.timeout_seconds) == ("codex", 60)
    assert chosen.env_from == project.agent.env_from and chosen.sandbox == project.agent.sandbox
    limited = project.model_copy(
        update={"agent": project.agent.model_copy(update={"run_presets": ["claude"]})}
    )
    with pytest.raises(dg.Failure, match=r"shop_agent.preset to 'codex'.*run_presets: claude"):
        AgentResource(preset="codex").settings(limited)
    own_command = project.model_copy(
        update={"agent": project.agent.model_copy(update={"command": ["my-agent"]})}
    )
    with pytest.raises(dg.Failure, match="run_presets: none"):
        AgentResource(preset="demo").settings(own_command)
    with pytest.raises(dg.Failure, match="invalid"):
        AgentResource(preset="claude", timeout_seconds=-1).settings(project)


WRITE_OVERRIDE = "import pathlib; pathlib.Path('chosen_for_this_run.txt').write_text('override\\n')"


@pytest.mark.slow
def test_a_run_can_choose_another_allowed_preset_and_no_command(make_project):
    """A project whose agent is its own command allows the demo preset for a run; the run's
    command override is refused before it starts."""
    project = make_project(
        [demo_task(1, files={"demo.txt": "demo\n"})],
        settings={
            "agent": {
                "preset": None,
                "command": [sys.executable, "-c", WRITE_OVERRIDE],
                "run_presets": ["demo"],
            }
        },
    )
    result = project.execute(
        run_config={"resources": {"proj_agent": {"config": {"preset": "demo"}}}}
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = project.git("ls-tree", "--name-only", "feature/task-1-implementation").split()
    assert "demo.txt" in files and "chosen_for_this_run.txt" not in files
    refused = project.execute(
        run_config={"resources": {"proj_agent": {"config": {"command": ["/bin/true"]}}}}
    )
    assert refused.returncode != 0
    assert 'unexpected config entry "command"' in refused.stdout + refused.stderr
