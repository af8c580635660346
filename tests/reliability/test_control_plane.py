"""The control plane: Dagster's webserver has no login, so whoever reaches its GraphQL endpoint can
launch runs. Such a run may not change where the orchestrator pushes, which token it sends, or what
the agent runs and may read: those are the code location's settings, and a launch whose run
config names them is refused (issue 27's first three rows).

Here an agent in a real `play_project` run really calls a real webserver (started as
`./scripts/ui` starts it) with the three launches the review reproduced; a test-owned attacker's
git server records whether anything reached it.
"""

import json
import sys

import dagster as dg
import pytest
import yaml

from tests.conftest import demo_task
from tests.dagster_ui import Server
from tests.git_http import RecordingServer

TOKEN = "ghp_ControlPlaneTestToken0042"

AGENT = """
import json, os, pathlib
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
client = DagsterGraphQLClient("127.0.0.1", port_number=int(os.environ["UI_PORT"]), timeout=60)
answers = {}
for name, run_config in json.loads(os.environ["ATTEMPTS"]).items():
    try:
        run_id = client.submit_job_execution("play_project", run_config=run_config)
        answers[name] = "launched " + run_id
    except DagsterGraphQLClientError as exc:
        errors = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], list) else []
        answers[name] = exc.args[0] + ": " + " | ".join(e.get("message", "") for e in errors)
    except Exception as exc:
        answers[name] = f"unreachable: {type(exc).__name__}"
pathlib.Path("graphql_answers.json").write_text(json.dumps(answers, indent=1))
"""


def attempts(attacker_url: str) -> dict[str, dict]:
    """The review's three launches (issue 27, rows 1-3)."""
    return {
        "push_to_attacker": {"resources": {"proj_git": {"config": {"url": attacker_url}}}},
        "token_from_any_file": {
            "resources": {"proj_git": {"config": {"token_file": "/etc/hostname"}}}
        },
        "unsandboxed_with_token": {
            "resources": {
                "proj_agent": {
                    "config": {
                        "sandbox": "none",
                        "command": ["/bin/sh", "-c", "env"],
                        "pass_env": ["CTO_TEST_GIT_TOKEN"],
                    }
                }
            }
        },
    }


REFUSED_FIELD = {
    "push_to_attacker": "url",
    "token_from_any_file": "token_file",
    "unsandboxed_with_token": "sandbox",
}


@pytest.mark.slow
def test_a_launch_through_the_webservers_graphql_cannot_change_security_settings(make_project):
    with RecordingServer() as attacker:
        tried = attempts(attacker.url)
        project = make_project(
            [demo_task(1)],
            settings={
                "git": {"token_env": "CTO_TEST_GIT_TOKEN"},
                "agent": {"preset": None, "command": [sys.executable, "-c", AGENT]},
            },
        )
        ui = Server(project.env(CTO_TEST_GIT_TOKEN=TOKEN), with_daemon=False)
        try:
            ui.wait_ready()
            set_agent_env(project, {"UI_PORT": str(ui.port), "ATTEMPTS": json.dumps(tried)})
            result = project.execute(CTO_TEST_GIT_TOKEN=TOKEN)
        finally:
            ui.stop()
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        answers = json.loads(
            project.git("show", "feature/task-1-implementation:graphql_answers.json")
        )
        assert set(answers) == set(tried)
        for name, answer in answers.items():
            # the webserver was reached, and refused the launch naming the field
            assert answer.startswith("RunConfigValidationInvalid"), (name, answer)
            assert "unexpected config entr" in answer and REFUSED_FIELD[name] in answer, answer
        runs = project.runs()
        assert [r.job_name for r in runs] == ["play_project"], "a refused launch created a run"
        assert attacker.recorder.requests == [], "something reached the attacker's server"
        assert TOKEN not in json.dumps(answers)


def set_agent_env(project, agent_env: dict[str, str]) -> None:
    """The agent's literal environment, in the project's settings (the code location's)."""
    data = yaml.safe_load(project.config.read_text())
    data["projects"][0]["agent"]["env"] = agent_env
    project.config.write_text(yaml.safe_dump(data))


def test_the_refusal_is_dagsters_own_config_check(make_project):
    """What the launchpad shows before the Launch button: the same check, without a server."""
    from cto_dagster.defs.loader import build_definitions

    project = make_project([demo_task(1)])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in project.env().items():
            patch.setenv(name, value)
        job = build_definitions().resolve_job_def("play_project")
    for name, run_config in attempts("http://127.0.0.1:9/x.git").items():
        with pytest.raises(dg.DagsterInvalidConfigError, match=REFUSED_FIELD[name]):
            dg.validate_run_config(job, run_config)
