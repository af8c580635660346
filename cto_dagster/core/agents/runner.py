"""Running the agent: argv placeholders filled as data, the sandbox, a timeout that ends
everything the agent started, and its output kept in a file, not in memory.

Task text is data: it reaches the agent only as environment values, a file, or one whole argv
element (`{prompt}`); it is never parsed by a shell.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cto_dagster.core.agents.sandbox import Sandbox, prepare_launch
from cto_dagster.core.agents.spec import PLACEHOLDERS, AgentSpec
from cto_dagster.core.workspaces import AGENT_PGID_FILE

LOG_TAIL_BYTES = 4000


@dataclass(frozen=True)
class AgentRun:
    exit_code: int
    timed_out: bool
    duration_seconds: float
    log_tail: str
    log_bytes: int


@dataclass(frozen=True)
class AgentPlace:
    """Where the agent runs: its step's private folder, work tree, home and the files it may
    read (prompt, task), and the sandbox around it."""

    step_folder: Path
    work: Path
    home: Path
    read_only: tuple[Path, ...]
    sandbox: Sandbox
    masked: tuple[Path, ...] = ()  # files the agent must not read even where shown (tokens)


def build_argv(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Replace whole-placeholder elements and placeholders inside an element, literally: a value
    never becomes more than the one argument it is in."""
    argv = []
    for element in template:
        for placeholder in PLACEHOLDERS:
            if placeholder in element:
                element = element.replace(placeholder, values[placeholder.strip("{}")])
        argv.append(element.replace("\x00", ""))
    return argv


def _read_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> tuple[str, int]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - limit))
        data = handle.read()
    return data.decode("utf-8", "replace"), size


def _kill_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=5)
            if sig == signal.SIGTERM:
                # the leader is gone; make sure nothing it started lingers
                os.killpg(process.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def run_agent(
    spec: AgentSpec,
    argv_values: Mapping[str, str],
    place: AgentPlace,
    env: Mapping[str, str],
    log_path: Path,
) -> AgentRun:
    """Run the agent to completion or timeout; its output goes to `log_path`, not to memory."""
    argv = build_argv(spec.validate().argv_template(), argv_values)
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        log_path.write_text(f"cannot start agent {argv[0]!r}: not found on PATH\n")
        return AgentRun(127, False, 0.0, *_read_tail(log_path))
    launch = prepare_launch(
        place.sandbox,
        argv,
        place.step_folder,
        place.work,
        place.home,
        [*place.read_only, *(Path(p) for p in spec.sandbox_read_only)],
        env,
        place.masked,
    )
    started = time.monotonic()
    timed_out = False
    with log_path.open("wb") as log:
        try:
            process = subprocess.Popen(
                launch.argv,
                cwd=place.work,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **launch.popen,  # type: ignore[arg-type]
            )
        except OSError as exc:
            log.write(f"cannot start agent {argv[0]!r}: {exc.strerror or exc}\n".encode())
            log.flush()
            return AgentRun(127, False, 0.0, *_read_tail(log_path))
        # recorded so that a step killed with SIGKILL does not leave its agent running
        (place.step_folder / AGENT_PGID_FILE).write_text(str(process.pid))
        try:
            exit_code = process.wait(timeout=spec.timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
            exit_code = process.returncode if process.returncode is not None else -9
        finally:
            if process.poll() is None:
                _kill_group(process)
        # children that outlived a leader that exited normally are ended too
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    tail, size = _read_tail(log_path)
    return AgentRun(exit_code, timed_out, time.monotonic() - started, tail, size)
