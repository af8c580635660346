"""Running the agent: its command (a preset's, or an argv list with placeholders filled as
data), the sandbox, a timeout that ends everything the agent started, and its output kept in a
file, not in memory; afterwards what its output says (cost, tokens, failures a retry cannot fix).

Task text is data: it reaches the agent only as environment values, a file, standard input, or one
whole argv element (`{prompt}`, refused over a size Linux would refuse); never through a shell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from cto_dagster.core.agents.agent_users import agent_user
from cto_dagster.core.agents.container import remove_container
from cto_dagster.core.agents.follow import AgentWatch, OutputFollower
from cto_dagster.core.agents.network import NetworkUnavailable, confine, network_for
from cto_dagster.core.agents.presets import LaunchContext, Problem, Usage
from cto_dagster.core.agents.sandbox import (
    Sandbox,
    command_files,
    find_program,
    prepare_launch,
    readable_by,
)
from cto_dagster.core.agents.spec import PLACEHOLDERS, AgentSpec
from cto_dagster.core.support.workspaces import AGENT_FILE, write_identity

LOG_TAIL_BYTES = 4000
SIGNS_SCAN_BYTES = 256 * 1024  # failure signs are read from the end of the output
ARGUMENT_LIMIT = 100 * 1024  # Linux refuses one argument over 128 KiB


@dataclass(frozen=True)
class AgentRun:
    exit_code: int
    timed_out: bool
    duration_seconds: float
    log_tail: str
    log_bytes: int
    problem: Problem | None = None
    usage: Usage | None = None


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
    prompt_file: Path | None = None
    writable: tuple[Path, ...] = ()  # folders shared between steps it may write (a setup's caches)


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


def log_lines(path: Path, last_bytes: int | None = None) -> Iterator[str]:
    """The agent's output line by line (all of it, or its last bytes), never all in memory."""
    with path.open("rb") as handle:
        if last_bytes is not None:
            handle.seek(max(0, path.stat().st_size - last_bytes))
        for raw in handle:
            yield raw.decode("utf-8", "replace")


def _no_events(_line: str) -> list[str]:
    return []


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


def _not_started(log_path: Path, problem: Problem, exit_code: int = 127) -> AgentRun:
    log_path.write_text(problem.message + "\n", encoding="utf-8")
    return AgentRun(exit_code, False, 0.0, *_read_tail(log_path), problem=problem)


def _command(
    spec: AgentSpec, values: Mapping[str, str], place: AgentPlace, env: Mapping[str, str]
) -> tuple[list[str], dict[str, str], Problem | None]:
    """The argv and environment to start, or the problem that stops it before it starts."""
    preset = spec.preset_definition
    if preset is None:
        if "{prompt}" in "".join(spec.command) and len(values["prompt"]) > ARGUMENT_LIMIT:
            return (
                [],
                dict(env),
                Problem(
                    f"the task's prompt is {len(values['prompt'])} bytes, too long for one "
                    "argument ({prompt}): give the agent {prompt_file} instead"
                ),
            )
        return build_argv(spec.command, values), dict(env), None
    context = LaunchContext(
        isolated=place.sandbox.isolates,
        env=env,
        prompt_file=place.prompt_file or Path(values["prompt_file"]),
        work=place.work,
        home=place.home,
    )
    as_root = os.geteuid() == 0 and not place.sandbox.isolates
    problem = preset.preflight(context, as_root)
    if problem is None:
        preset.prepare_home(context)
    return preset.argv(context), {**preset.extra_env, **env}, problem


def _wait(process: subprocess.Popen, timeout: float, follower) -> tuple[int, bool]:
    """The agent's exit code and whether it timed out; whatever it started is ended either way."""
    timed_out = False
    try:
        exit_code = process.wait(timeout=timeout)
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
        if follower:
            follower.stop()
    return exit_code, timed_out


def run_agent(
    spec: AgentSpec,
    argv_values: Mapping[str, str],
    place: AgentPlace,
    env: Mapping[str, str],
    log_path: Path,
    watch: AgentWatch | None = None,
) -> AgentRun:
    """Run the agent to completion or timeout; its output goes to `log_path`, not to memory,
    and, while it runs, to `watch` (redacted lines, tool calls, heartbeats)."""
    preset = spec.validate().preset_definition
    argv, env, problem = _command(spec, argv_values, place, env)
    if problem is not None:
        return _not_started(log_path, problem, exit_code=-1)
    if place.sandbox.mode != "container" and find_program(argv[0], env, place.work) is None:
        hint = f" (install it: {preset.install})" if preset and preset.install else ""
        return _not_started(
            log_path, Problem(f"cannot start agent {argv[0]!r}: not found on PATH{hint}")
        )
    try:
        network = network_for(spec, place.sandbox)
    except NetworkUnavailable as exc:
        return _not_started(log_path, Problem(str(exc)), exit_code=-1)
    read_only = [*place.read_only, *(Path(p) for p in spec.sandbox_read_only)]
    named = _named_files(spec, place)
    # `user`/`container`: a uid of this agent's own; leaving the block ends all its processes
    # and takes its trees back before the uid is free again
    with _own_user(place.sandbox, (place.work, place.home, *place.writable)) as owner:
        unreadable = [p for p in named if owner and not readable_by(p, owner.uid, owner.gid)]
        if unreadable:
            return _not_started(log_path, _unreadable(unreadable, place.sandbox), exit_code=-1)
        launch = prepare_launch(
            place.sandbox,
            argv,
            place.step_folder,
            place.work,
            place.home,
            read_only,
            env,
            place.masked,
            owner,
            place.writable,
            named,
        )
        launch = confine(launch, network, place.step_folder)  # its own network namespace
        outcome = _start_and_wait(spec, preset, launch, argv, place, env, log_path, watch)
    return outcome


def _named_files(spec: AgentSpec, place: AgentPlace) -> list[Path]:
    """Files a custom command names (`command_files`), from the literal elements of its
    configuration after the program only: an element with a placeholder holds task text, which
    never picks a file for the sandbox to show. A preset's argv names only what the step made
    for it."""
    if spec.preset_definition is not None or not place.sandbox.isolates:
        return []
    # the program itself is found on PATH and shown with its folders (`program_paths`)
    literal = [e for e in spec.command[1:] if not any(p in e for p in PLACEHOLDERS)]
    return command_files(literal, place.step_folder, place.masked)


def _unreadable(paths: Sequence[Path], sandbox: Sandbox) -> Problem:
    """Why an agent of a uid of its own cannot start: files its command names are not readable
    by that uid (a retry cannot change that; the files' modes can)."""
    names = ", ".join(str(p) for p in paths)
    return Problem(
        f"agent.command names {names}, which the agent cannot read in the {sandbox.mode} "
        "sandbox (it runs as a uid of its own): make each readable by others (chmod o+r) and "
        "its folders searchable (o+x)"
    )


def _own_user(sandbox: Sandbox, trees: tuple[Path, ...]):
    return agent_user(sandbox.user, trees) if sandbox.own_user else nullcontext(None)


def _start_and_wait(spec, preset, launch, argv, place, env, log_path, watch) -> AgentRun:
    """Start the launch with its output to `log_path`; wait for it (or its timeout)."""
    prompt = place.prompt_file if preset is not None and preset.stdin_prompt else None
    started = time.monotonic()
    with (
        log_path.open("wb") as log,
        prompt.open("rb") if prompt else open(os.devnull, "rb") as stdin,
    ):
        try:
            process = subprocess.Popen(
                launch.argv,
                cwd=place.work,
                env=env,
                stdin=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **launch.popen,  # type: ignore[arg-type]
            )
        except OSError as exc:
            log.write(f"cannot start agent {argv[0]!r}: {exc.strerror or exc}\n".encode())
            log.flush()
            return AgentRun(
                127, False, 0.0, *_read_tail(log_path), problem=Problem(f"cannot start {argv[0]!r}")
            )
        # recorded so that a step killed with SIGKILL does not leave its agent running
        write_identity(place.step_folder, AGENT_FILE, process.pid)
        follower = (
            OutputFollower(log_path, watch, preset.events if preset else _no_events).start()
            if watch
            else None
        )
        try:
            exit_code, timed_out = _wait(process, spec.timeout_seconds, follower)
        finally:
            if launch.container:  # its client may have ended before it (a timeout)
                remove_container(*launch.container)
    return _finished(preset, exit_code, timed_out, time.monotonic() - started, log_path)


def _finished(preset, exit_code: int, timed_out: bool, seconds: float, log_path: Path) -> AgentRun:
    """What the agent's exit code and output say: usage, and a problem the CLI reported."""
    tail, size = _read_tail(log_path)
    usage = preset.usage(log_lines(log_path)) if preset else None
    problem = None
    if preset:
        problem = preset.problem(exit_code, log_lines(log_path, SIGNS_SCAN_BYTES))
    elif exit_code in (126, 127):
        problem = Problem(f"the agent's command could not run (exit code {exit_code})")
    return AgentRun(exit_code, timed_out, seconds, tail, size, problem, usage)
