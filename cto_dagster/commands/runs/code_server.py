"""The code server a command-line launch creates its run from, started before anything else.

`cto-dagster launch` spent 3-4 s importing Dagster and opening the instance before Dagster's
workspace started the code server, whose own start and load then took 6 s at 500 tasks. Started
first, as `dagster api grpc` exactly as Dagster's workspace starts it (`--lazy-load-user-code`:
a load error is reported through the API, not by a dead process), it loads while the command
imports. The command keeps it alive with heartbeats; without them (the command killed) it stops
once its runs end, as Dagster's own managed servers do.

Importing this module imports no Dagster: the point is to start before that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCATION_NAME = "cto_dagster"  # as in workspace.yaml and [tool.dg.project] code_location_name
DEFINITIONS_MODULE = "cto_dagster.definitions"
HEARTBEAT_SECONDS = 10
HEARTBEAT_TIMEOUT_SECONDS = 60
READY_TIMEOUT_SECONDS = 600


def new_log_file(home: str | os.PathLike[str] | None) -> Path:
    """A new file for the output of a command's code server and its runs, under the instance's
    `logs/` (the terminal shows progress; the UI shows every event)."""
    folder = Path(home) / "logs" if home else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"launch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


class CodeServerFailed(Exception):
    """The code server process ended before it answered; the message holds its last output."""


@dataclass
class CodeServer:
    process: subprocess.Popen
    folder: str
    output: Path
    _beating: threading.Event = field(default_factory=threading.Event)

    @property
    def socket(self) -> str:
        return os.path.join(self.folder, "grpc.sock")

    def client(self):
        from dagster._grpc.client import DagsterGrpcClient

        return DagsterGrpcClient(port=None, socket=self.socket)

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Until the server answers a ping; raises `CodeServerFailed` if it ended first."""
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            if self.process.poll() is not None:
                raise CodeServerFailed(self._last_output())
            if os.path.exists(self.socket) and _answers(client):
                break
            if time.monotonic() > deadline:
                raise CodeServerFailed(f"no answer in {timeout:.0f} s\n{self._last_output()}")
            time.sleep(0.05)
        threading.Thread(target=self._heartbeat, daemon=True, name="code-server-beat").start()

    def _heartbeat(self) -> None:
        client = self.client()
        while not self._beating.wait(HEARTBEAT_SECONDS):
            try:
                client.heartbeat("cto-dagster")
            except Exception:  # one missed beat is harmless; a server that ended needs none
                if self.process.poll() is not None:
                    return

    def stop(self) -> None:
        """Tell the server to stop (it waits for its runs) and remove its socket's folder."""
        self._beating.set()
        if self.process.poll() is None:
            try:
                self.client().shutdown_server(timeout=15)
                self.process.wait(30)
            except Exception:
                self.process.terminate()
                self.process.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _last_output(self, lines: int = 30) -> str:
        try:
            text = self.output.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])


def _answers(client) -> bool:
    try:
        client.ping("ready?")
    except Exception:  # not serving yet
        return False
    return True


def start_code_server(output: Path) -> CodeServer:
    """`dagster api grpc` for this package's code location, writing to `output`."""
    folder = tempfile.mkdtemp(prefix="cto-dagster-server-")
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "dagster",
        "api",
        "grpc",
        "--socket",
        os.path.join(folder, "grpc.sock"),
        "--lazy-load-user-code",
        "--heartbeat",
        "--heartbeat-timeout",
        str(HEARTBEAT_TIMEOUT_SECONDS),
        "--location-name",
        LOCATION_NAME,
        "--module-name",
        DEFINITIONS_MODULE,
        "--working-directory",
        os.getcwd(),
    ]
    with output.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    return CodeServer(process, folder, output)
