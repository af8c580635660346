"""`cto-dagster demo`: the main job, start to finish, on a sample repository with the demo agent.

It runs `play_project` through `dagster job execute` (the multiprocess executor, a persistent
DAGSTER_HOME), shows progress as it goes, then prints what happened and how to see it in the UI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from cto_dagster.core.plan_text import summary_lines
from cto_dagster.core.settings import demo_settings, plan_project
from cto_dagster.summary import print_run_summary

_PROGRESS = re.compile(r"(📊|🚀|✅|❌|⏱️|  → |═|STEP_FAILURE|RUN_SUCCESS|RUN_FAILURE)")


def prepare_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        template = resources.files("cto_dagster.sample_data").joinpath("dagster.yaml").read_text()
        config.write_text(template, encoding="utf-8")


def job_execute_command(*extra: str, job: str = "play_project") -> list[str]:
    """`dagster job execute` of a job of this code location, with this interpreter."""
    return [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-m",
        "cto_dagster.definitions",
        "-j",
        job,
        *extra,
    ]


def _progress_line(line: str) -> str | None:
    if not _PROGRESS.search(line):
        return None
    parts = line.rstrip().split(" - ")
    if len(parts) >= 6 and parts[1].strip() == "dagster":
        event = parts[-2].strip() if len(parts) >= 7 else ""
        message = parts[-1].strip()
        if event in ("RUN_SUCCESS", "RUN_FAILURE"):
            return f"{'✅' if event == 'RUN_SUCCESS' else '❌'} {message}"
        if event == "STEP_FAILURE":
            return f"❌ {parts[-3].strip()}: {message}"
        return f"   {message}"
    return f"   {line.rstrip()}"


def run_job(env: dict[str, str], log_path: Path, extra_args: list[str] | None = None) -> int:
    command = job_execute_command(*(extra_args or []))
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            shown = _progress_line(line)
            if shown:
                print(shown, flush=True)
        return process.wait()


def run_demo(workdir: str, fresh: bool = False) -> int:
    folder = Path(workdir).resolve()
    if fresh and folder.exists():
        shutil.rmtree(folder)
    home = folder / "dagster_home"
    prepare_home(home)
    settings = demo_settings(folder)
    project = settings.projects[0]
    print(f"📁 Sample repository (bare remote): {project.repository}")
    plan = plan_project(project, environ={})
    print("\n".join(summary_lines(plan)))
    print("\n▶️  Running play_project with the multiprocess executor...", flush=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CTO_DAGSTER_DEMO_DIR": str(folder),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CTO_DAGSTER_CONFIG", None)
    env.pop("CTO_REPOSITORY", None)
    started = time.monotonic()
    code = run_job(env, folder / "last-run.log")
    print(
        f"\n⏱️  dagster job execute took {time.monotonic() - started:.1f} s "
        f"(full log: {folder / 'last-run.log'})"
    )
    print_run_summary(home, "play_project", plan.stats["theoretical_speedup"])
    default_dir = Path(".cto-dagster/demo").resolve() == folder
    ui = (
        "./scripts/ui"
        if default_dir
        else (f"DAGSTER_HOME={home} CTO_DAGSTER_DEMO_DIR={folder} ./scripts/ui")
    )
    print(
        "\n🔎 See it in the Dagster UI (asset graph, lineage, each task's timing history):\n"
        f"   {ui}    then open http://127.0.0.1:3000\n"
        f"🌿 Branches: git --git-dir={project.repository} branch --list 'feature/*' 'integration/*'"
    )
    return code
