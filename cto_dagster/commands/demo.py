"""`cto-dagster demo`: the main job, start to finish, on a sample repository with the demo agent.

It launches `play_project` as a run of the code location (the way the UI launches it, so the run is
listed under the job and can be re-executed from the UI), shows progress as it goes, then prints
what happened and the commands to look further: the UI, the report, the branches.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the main job on a sample repository and demo agent"
    )
    demo.add_argument(
        "--workdir",
        default=".cto-dagster/demo",
        help="where the sample repository and DAGSTER_HOME live (default: .cto-dagster/demo)",
    )
    demo.add_argument("--fresh", action="store_true", help="start again from a new sample repo")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_demo(workdir=args.workdir, fresh=args.fresh)


def job_execute_command(*extra: str, job: str = "play_project") -> list[str]:
    """`dagster job execute` of a job of this code location, with this interpreter (in-process
    runs: kept working, but such runs are not runs of the code location; see
    runs/code_server_launch.py)."""
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


def sample_is_current(folder: Path) -> bool:
    """Whether the demo folder's sample repository is this version's (its tasks file and test
    suite on the base branch as this version writes them). A sample made by an older version
    would fail this one's checks: the demo then starts over."""
    from cto_dagster.core.demo.sample_repository import demo_repository_files, demo_tasks_json
    from cto_dagster.core.git.command import Identity, git_environment, run_git

    remote = folder / "remote.git"
    if not (remote / "HEAD").exists():
        return True  # nothing yet: made now
    expected = {".taskmaster/tasks/tasks.json": demo_tasks_json(), **demo_repository_files()}
    env = git_environment(Identity())
    for path, content in expected.items():
        shown = run_git(["show", f"main:{path}"], env, git_dir=remote, check=False)
        if shown.returncode != 0 or shown.stdout != content:
            return False
    return True


def run_demo(workdir: str, fresh: bool = False) -> int:
    from cto_dagster.commands.runs.code_server_launch import (
        LaunchError,
        create_run,
        start_and_follow,
    )
    from cto_dagster.commands.runs.instance_home import open_instance, prepare_home
    from cto_dagster.commands.runs.run_summary import print_run_summary
    from cto_dagster.core.planning.plan_text import summary_lines
    from cto_dagster.core.settings import DEFAULT_DEMO_DIR, demo_settings, plan_project

    folder = Path(workdir).resolve()
    if not fresh and folder.exists() and not sample_is_current(folder):
        print(f"🧹 {folder} holds an older version's sample repository: starting over")
        fresh = True
    if fresh and folder.exists():
        shutil.rmtree(folder)
    home = prepare_home(folder / "dagster_home")
    settings = demo_settings(folder)
    project = settings.projects[0]
    print(f"📁 Sample repository (bare remote): {project.repository}")
    plan = plan_project(project, environ={})
    print("\n".join(summary_lines(plan)))
    print("\n▶️  Launching play_project (multiprocess executor)...", flush=True)
    os.environ.update(DAGSTER_HOME=str(home), CTO_DAGSTER_DEMO_DIR=str(folder))
    for name in ("CTO_DAGSTER_CONFIG", "CTO_DAGSTER_REPOSITORY"):
        os.environ.pop(name, None)
    started = time.monotonic()
    with open_instance(home) as instance:
        try:
            outcome = start_and_follow(
                instance, lambda workspace: create_run(instance, workspace, "play_project")
            )
        except LaunchError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    print(f"\n⏱️  The run took {time.monotonic() - started:.1f} s")
    print_run_summary(home, "play_project", plan.stats["theoretical_speedup"], outcome.run_id)
    default_dir = Path(DEFAULT_DEMO_DIR).resolve() == folder
    prefix = "" if default_dir else f"DAGSTER_HOME={home} CTO_DAGSTER_DEMO_DIR={folder} "
    print(
        "\n🔎 See it in the Dagster UI (asset graph, lineage, each task's timing history):\n"
        f"   {prefix}./scripts/ui    then open http://127.0.0.1:3000\n"
        f"📊 Performance report: {prefix}uv run cto-dagster report\n"
        f"🌿 Branches: git --git-dir={project.repository} branch --list 'feature/*' 'integration/*'"
    )
    if not outcome.success:
        print(f"↩️  Resume what failed: {prefix}uv run cto-dagster resume")
    return 0 if outcome.success else 1
