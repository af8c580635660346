"""`cto-dagster launch` starts its code server first, so the server loads while the command
imports Dagster; the server says why when it cannot start, and is gone when the command ends."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cto_dagster.commands.runs.code_server import CodeServer, CodeServerFailed
from tests.conftest import demo_task

EARLY = """
import sys
from cto_dagster.commands import launch as launch_command
from cto_dagster.commands.runs import code_server


class Started(Exception):
    pass


def record(output):
    print("dagster imported when the code server started:", "dagster" in sys.modules)
    raise Started


code_server.start_code_server = record
try:
    launch_command.run_launch("play_project", [], None)
except Started:
    pass
"""


def test_launch_starts_the_code_server_before_importing_dagster(make_project):
    """Guard: the 3-4 s the command spends importing Dagster and opening the instance overlap
    the server's own start; fails if the launch imports Dagster first."""
    project = make_project([demo_task(1)])
    done = subprocess.run(
        [sys.executable, "-c", EARLY],
        env=project.env(),
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "dagster imported when the code server started: False" in done.stdout, (
        done.stdout + done.stderr
    )


def test_a_server_that_ends_before_answering_says_why(tmp_path):
    output = tmp_path / "server.log"
    with output.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('cannot serve: port taken'); sys.exit(3)"],
            stdout=log,
            stderr=log,
        )
    server = CodeServer(process, str(tmp_path / "socket-folder"), output)
    with pytest.raises(CodeServerFailed) as failed:
        server.wait_ready(timeout=60)
    assert "cannot serve: port taken" in str(failed.value)
    server.stop()


@pytest.mark.slow
def test_the_launchs_code_server_is_gone_when_the_command_ends(make_project):
    project = make_project([demo_task(1)])
    done = project.cli("launch")
    assert done.returncode == 0, done.stdout + done.stderr
    servers = subprocess.run(
        ["pgrep", "-f", f"api grpc .*--working-directory {project.root}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert servers.stdout.strip() == "", "the code server outlived the command"
    logs = list((project.home / "logs").glob("launch-*.log"))
    assert logs, "the server's output has no file under the instance's logs/"
