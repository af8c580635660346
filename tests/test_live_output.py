"""Following an agent while it runs: its output reaches the step's captured log (read through
Dagster's compute log manager mid-run) redacted, its tool calls and silences reach the run's
event log, and the run's progress is a run tag the UI shows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cto_dagster.commands.demo import job_execute_command
from cto_dagster.core.agents.follow import AgentWatch, OutputFollower
from cto_dagster.core.agents.presets import PRESETS

SECRET = "s3cr3t-live-0123456789abcdef"

AGENT = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    flag = pathlib.Path(sys.argv[1])
    print("agent: reading the task", flush=True)
    print("agent: the token is " + sys.argv[2], flush=True)
    while not flag.exists():
        time.sleep(0.1)
    pathlib.Path("live.txt").write_text("done\\n")
    print("agent: finished", flush=True)
    """
)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_agent_output_reaches_the_captured_log_while_it_runs_redacted(make_project, tmp_path):
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    script = tmp_path / "agent.py"
    script.write_text(AGENT, encoding="utf-8")
    flag = tmp_path / "flag"
    project = make_project(
        [{"id": 1, "title": "Live", "status": "pending", "dependencies": []}],
        settings={
            "agent": {
                "command": [sys.executable, str(script), str(flag), SECRET],
                "sandbox": "none",
                "heartbeat_seconds": 1,
            },
            "secret_env": ["CTO_TEST_LIVE_SECRET"],
        },
    )
    process = subprocess.Popen(
        job_execute_command(job="play_project"),
        env=project.env(CTO_TEST_LIVE_SECRET=SECRET),
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with open_instance(project.home) as instance:
            run = _wait(lambda: next(iter(project.runs()), None), 120, "the run")

            def captured():
                records = instance.get_records_for_run(
                    run.run_id, of_type=dg.DagsterEventType.LOGS_CAPTURED
                ).records
                for record in records:
                    data = record.event_log_entry.dagster_event.event_specific_data
                    if any("task_001" in key for key in data.step_keys):
                        return data.file_key
                return None

            file_key = _wait(captured, 120, "the task step's captured logs")
            log_key = instance.compute_log_manager.build_log_key_for_run(run.run_id, file_key)

            def stdout_text() -> str:
                data = instance.compute_log_manager.get_log_data(log_key)
                return (data.stdout or b"").decode("utf-8", "replace")

            text = _wait(
                lambda: (t := stdout_text()) and "agent: the token is" in t and t,
                120,
                "the agent's line in the captured stdout",
            )
            assert "[task 1] agent: reading the task" in text
            assert SECRET not in text and "agent: the token is ***" in text
            assert process.poll() is None and not flag.exists()  # the agent is still running

            def heartbeat():
                records = instance.get_records_for_run(run.run_id, limit=10_000).records
                return any(
                    "⏳ Task 1: agent silent for" in (r.event_log_entry.user_message or "")
                    for r in records
                )

            _wait(heartbeat, 60, "a heartbeat line in the run's event log")
            assert (
                instance.get_run_by_id(run.run_id)
                .tags.get("cto/progress", "")
                .startswith("[0/1 tasks done · running 1")
            )
            flag.write_text("go", encoding="utf-8")
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, output[-3000:]
            assert SECRET not in output
            final = instance.get_run_by_id(run.run_id).tags["cto/progress"]
            assert final.startswith("[1/1 tasks done")
            assert "agent: finished" in stdout_text()
    finally:
        flag.write_text("go", encoding="utf-8")
        if process.poll() is None:
            process.kill()


def test_the_follower_turns_tool_calls_into_lines_and_bounds_what_it_shows(tmp_path: Path):
    log = tmp_path / "agent.log"
    log.write_bytes(b"")
    shown: list[str] = []
    actions: list[str] = []
    watch = AgentWatch(
        output=shown.extend,
        activity=actions.append,
        silence=actions.append,
        redact=lambda text: text.replace(SECRET, "***"),
        heartbeat_seconds=0,
        live_limit_bytes=64 * 1024,
    )
    follower = OutputFollower(log, watch, PRESETS["claude"].events).start()
    tool = {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "tool_use", "name": "Edit", "input": {"file_path": f"/w/{SECRET}.py"}},
                {"type": "tool_use", "name": "Bash", "input": {"command": "npm test"}},
            ]
        },
    }
    with log.open("ab") as out:
        out.write((json.dumps(tool) + "\n").encode())
        out.flush()
        out.write(b"x" * 10_000 + b"\n")  # a long line: shown cut
        for index in range(20_000):  # 20,000 lines, more than the live limit
            out.write(f"line {index}\n".encode())
        out.write(b"no newline at the end")
    follower.stop()
    assert actions == ["editing /w/***.py", "running npm test"]
    assert SECRET not in "".join(shown)
    assert any(line.endswith(" …") and len(line) < 2100 for line in shown)
    assert shown[-1].startswith("… live output stops after")
    assert sum(len(line) for line in shown) < 70 * 1024


@pytest.mark.slow
def test_a_hundred_megabytes_of_output_neither_slows_the_agent_nor_grows_memory(tmp_path: Path):
    """The follower reads behind the agent in bounded chunks: the agent's time and the step's
    memory are those of a run without it (within noise)."""
    import resource

    log = tmp_path / "agent.log"
    writer = textwrap.dedent(
        """
        import sys
        line = b"y" * 99 + b"\\n"
        with open(sys.argv[1], "wb") as out:
            for _ in range(1_000_000):
                out.write(line)
        """
    )
    shown = [0]
    watch = AgentWatch(
        output=lambda lines: shown.__setitem__(0, shown[0] + len(lines)),
        activity=lambda _t: None,
        silence=lambda _t: None,
        heartbeat_seconds=0,
    )
    log.write_bytes(b"")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    follower = OutputFollower(log, watch, PRESETS["claude"].events).start()
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", writer, str(log)], check=True)
    with_follower = time.monotonic() - started
    follower.stop()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", writer, str(tmp_path / "plain.log")], check=True)
    alone = time.monotonic() - started
    assert log.stat().st_size == 100_000_000
    assert grown_kib < 64 * 1024, f"memory grew by {grown_kib} KiB"
    assert with_follower < alone * 3 + 2, (with_follower, alone)
    assert 200_000 <= shown[0] <= 220_000  # 20 MB shown live, then the note
