"""A real Dagster webserver (and daemon) on loopback, as `./scripts/ui` starts them: for the UI's
browser tests and for what reaches its GraphQL endpoint (which has no login)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`dg dev` (webserver and daemon, as `./scripts/ui` starts them) or the webserver alone."""

    def __init__(self, env: dict[str, str], with_daemon: bool, port: int | None = None):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        bin_dir = Path(sys.executable).parent
        workspace = ["-w", str(REPO_ROOT / "workspace.yaml")]
        cwd = REPO_ROOT
        if with_daemon:  # from the instance's folder, as ./scripts/ui: no dagster.yaml warning
            command = [str(bin_dir / "dg"), "dev", *workspace, "--host", "127.0.0.1"]
            command += ["-p", str(self.port)]
            cwd = Path(env["DAGSTER_HOME"])
        else:
            command = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1"]
            command += ["-p", str(self.port), *workspace]
        self.log = Path(env["DAGSTER_HOME"]) / "server.log"
        self.process = subprocess.Popen(
            command,
            env={**env, "VIRTUAL_ENV": str(bin_dir.parent)},
            cwd=cwd,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/server_info", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the Dagster UI did not answer in time"
            time.sleep(0.5)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)  # the UI, the daemon, their code servers
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
