"""The `container` sandbox (issue 27, item 7), for where bubblewrap cannot run: the agent in a
container of its own (Docker here, Debian's docker.io, with an image made by debootstrap). Agents
here really try: the host's loopback services, the image's files, capabilities, outliving a
timeout."""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.agents.container import (
    OWNER_LABEL,
    container_runtime,
    owner_label,
    reap_orphan_containers,
    remove_container,
)
from cto_dagster.core.task_run.step import TaskFailed, TaskRunRequest, run_task
from tests.helpers import CONTAINER_TEST_IMAGE
from tests.reliability.test_untrusted_agent import (  # noqa: F401 - the fixture
    bare_git,
    http_remote,
    needs_container,
    run,
    task,
)

pytestmark = needs_container


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"the control plane")

    def log_message(self, *_args):
        pass


TRY_EVERYTHING = """
import json, os, socket, urllib.request
tried = {{}}
try:
    answer = urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=3)
    tried["loopback"] = answer.read().decode()
except Exception as exc:
    tried["loopback"] = "refused: " + type(exc).__name__
for name, attempt in (
    ("write_image", lambda: open("/usr/bin/planted", "w")),
    ("chown", lambda: os.chown("probe.txt", 0, 0)),
    ("setuid", lambda: os.setuid(0)),
):
    try:
        attempt()
        tried[name] = "done"
    except OSError as exc:
        tried[name] = "refused: " + type(exc).__name__
open("tried.json", "w").write(json.dumps(tried))
"""


def test_the_agent_reaches_no_host_loopback_no_image_file_no_capability(http_remote):  # noqa: F811
    _server, repository, bare = http_remote
    control = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    try:
        code = "open('probe.txt', 'w').write('x')\n" + TRY_EVERYTHING.format(
            port=control.server_address[1]
        )
        result = run(repository, 1, code, "container")
    finally:
        control.shutdown()
    assert result.sandbox == "container"
    tried = json.loads(bare_git(bare, "show", f"{result.branch}:tried.json"))
    assert all(value.startswith("refused") for value in tried.values()), tried


def test_a_timed_out_container_is_removed(http_remote):  # noqa: F811
    _server, repository, _bare = http_remote
    runtime, _problem = container_runtime()
    spec = AgentSpec(
        preset=None,
        command=("python3", "-c", "import time; time.sleep(600)"),
        timeout_seconds=3,
        sandbox="container",
        container_image=CONTAINER_TEST_IMAGE,
    )
    request = TaskRunRequest(task=task(1), level=0, repository=repository, agent=spec)
    with pytest.raises(TaskFailed, match=r"timed out|timeout"):
        run_task(request, log=lambda _line: None)
    left = subprocess.run(
        [runtime, "ps", "--all", "--quiet", "--filter", "label=cto-dagster.agent=1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == "", "a timed-out agent's container was left"


def test_containers_of_a_killed_step_are_removed_by_the_next(tmp_path):
    """A step killed with SIGKILL cannot remove its agent's container; the next one does, and
    leaves the containers of living steps alone."""
    runtime, _problem = container_runtime()
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = owner_label().split()
    owners = {"orphan": [me[0], str(dead.pid), me[2], "1"], "alive": me}
    names = {}
    for kind, owner in owners.items():
        names[kind] = f"cto-agent-test-{kind}-{tmp_path.name[-8:]}"
        labels = ["--label", "cto-dagster.agent=1", "--label", f"{OWNER_LABEL}={' '.join(owner)}"]
        command = [runtime, "run", "--detach", "--rm", "--name", names[kind], *labels]
        started = subprocess.run(
            [*command, CONTAINER_TEST_IMAGE, "sleep", "300"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert started.returncode == 0, started.stderr
    try:
        assert reap_orphan_containers(runtime) == [names["orphan"]]
    finally:
        remove_container(runtime, names["alive"])
        remove_container(runtime, names["orphan"])
