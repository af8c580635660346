"""Small builders shared by the tests."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = "".join(f"line {i}\n" for i in range(1, 21))  # a file two tasks may edit apart


def edited(line: int, text: str) -> str:
    """CONFIG with one line replaced."""
    lines = CONFIG.splitlines()
    lines[line - 1] = text
    return "\n".join(lines) + "\n"


# TaskMaster files the project wrote itself, one per shape real projects have: always present.
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "taskmaster"
GUIDE_EXAMPLE = REPO_ROOT / "examples" / "guide-project"
# The team's collection of 97 real tasks files: used when it is there (CTO_DAGSTER_CORPUS, or
# ../shared/taskmaster-corpus beside the repository), reported as skipped when it is not.
CORPUS = Path(
    os.environ.get("CTO_DAGSTER_CORPUS") or REPO_ROOT.parent / "shared" / "taskmaster-corpus"
)


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.json")) if CORPUS.is_dir() else []


def corpus_skip_reason() -> str:
    return (
        f"the real TaskMaster corpus is not at {CORPUS} "
        "(set CTO_DAGSTER_CORPUS to a folder of tasks files to run it)"
    )


def task(task_id, deps=(), status="pending", **extra) -> dict:
    return {
        "id": task_id,
        "title": f"Task {task_id}",
        "status": status,
        "dependencies": list(deps),
        **extra,
    }


def write_tasks(folder: Path, data, name: str = ".taskmaster/tasks/tasks.json") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def tagged(*tasks: dict, tag: str = "master") -> dict:
    return {tag: {"tasks": list(tasks), "metadata": {}}}


def push_to_main(remote: Path, workdir: Path, files: dict[str, str], message: str) -> None:
    """Someone else's commit on the remote's main branch (a clone, a commit, a push)."""
    subprocess.run(["git", "clone", "-q", str(remote), str(workdir)], check=True)
    for relative, content in files.items():
        (workdir / relative).write_text(content, encoding="utf-8")
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", *ident, "-C", str(workdir), "commit", "-qam", message], check=True)
    subprocess.run(["git", "-C", str(workdir), "push", "-q", "origin", "HEAD:main"], check=True)


def processes_matching(pattern: str, timeout: float = 10.0) -> str:
    """`pgrep -f pattern` once no process matches, or what still matches after `timeout`:
    a killed process group takes a moment to disappear, so poll rather than sleep-then-check."""
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    while True:
        left = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        if not left.strip() or time.monotonic() > deadline:
            return left.strip()
        time.sleep(0.1)


def check_evaluations(instance, run_id: str) -> dict:
    """(asset name, check name) -> the check's evaluation in the run."""
    import dagster as dg

    checks = {}
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=1000
    ).records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        checks[(evaluation.asset_key.path[-1], evaluation.check_name)] = evaluation
    return checks


def script_result(script: str, *args: str, env=None, cwd=None, timeout: float = 300):
    """Run `script` in a fresh interpreter (its own forkserver, modules and environment) and
    return the JSON object its last output line holds; its stderr tail when it fails."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# The container sandbox's tests run their agents in this image (python3 in it): .ci/run makes it
# with debootstrap (no image registry is reachable), `CTO_DAGSTER_AGENT_TEST_IMAGE` names another.
CONTAINER_TEST_IMAGE = os.environ.get("CTO_DAGSTER_AGENT_TEST_IMAGE", "cto-dagster-base:bookworm")


@functools.cache
def container_test_problem() -> str | None:
    """None when the container sandbox's tests can run here, else why not (their skip reason)."""
    from cto_dagster.core.agents.container import container_runtime

    runtime, problem = container_runtime()
    if runtime is None:
        return f"no container sandbox here: {problem} (.ci/run starts Docker)"
    if os.geteuid() != 0:
        return "the container sandbox needs the step to run as root"
    found = subprocess.run(
        [runtime, "image", "inspect", CONTAINER_TEST_IMAGE], capture_output=True, check=False
    )
    if found.returncode != 0:
        return f"no image {CONTAINER_TEST_IMAGE} (.ci/run makes it with debootstrap)"
    return None


def bare_git(remote, *args: str) -> str:
    """A git command's output on a bare remote (`--git-dir`), for what a test reads back."""
    return subprocess.run(
        ["git", f"--git-dir={remote}", *args], capture_output=True, text=True, check=True
    ).stdout
