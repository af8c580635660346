"""The embedded default: a sample repository holding the guide's example tasks, with a bare remote.

`cto-dagster demo`, `dagster dev` with no configuration, and the tests all start from it.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

from cto_dagster.core.git.command import Identity, git_environment, run_git

SAMPLE_README = """# Sample shop

A sample project planned with TaskMaster. cto-dagster runs its tasks in parallel with the demo
agent; each task leaves its work on `feature/task-<id>-implementation`.
"""


def guide_tasks_json() -> str:
    return resources.files("cto_dagster.sample_data").joinpath("guide_tasks.json").read_text()


def demo_tasks_json() -> str:
    """The guide's tasks plus a pair that both add the same file, and a task depending on both:
    the demo shows a conflict resolved by an agent (at the dependency merge and at integration)."""
    return resources.files("cto_dagster.sample_data").joinpath("demo_tasks.json").read_text()


def demo_repository_files() -> dict[str, str]:
    """The demo's code and its test suite (`sample_data/demo_repo/`: a small package and
    `unittest` tests that need nothing but the interpreter), {path: content}: the demo's checks
    run them, so a task can break them and be repaired."""
    root = resources.files("cto_dagster.sample_data").joinpath("demo_repo")
    files: dict[str, str] = {}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            if entry.name == "__pycache__":
                continue
            if entry.is_dir():
                pending.append((entry, f"{prefix}{entry.name}/"))
            else:
                files[f"{prefix}{entry.name}"] = entry.read_text(encoding="utf-8")
    return dict(sorted(files.items()))


def create_sample_repository(
    folder: Path,
    tasks_json: str | None = None,
    base_branch: str = "main",
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Create `folder/remote.git` (the repository agents push to) seeded with one commit holding
    `.taskmaster/tasks/tasks.json`; return the remote's path. Idempotent."""
    remote = folder / "remote.git"
    if (remote / "HEAD").exists():
        return remote
    folder.mkdir(parents=True, exist_ok=True)
    # Built in private folders and renamed into place in one step, so that processes creating
    # the same sample at once (parallel test workers, several `dagster` processes) never collide.
    # absolute: git runs in the seed with the seed named (a relative name would be nested in it,
    # and the commit would go to whatever repository holds `folder`)
    work = Path(tempfile.mkdtemp(prefix=".sample-", dir=folder)).resolve()
    try:
        seed = work / "seed"
        env = git_environment(Identity())
        seed.mkdir()
        run_git(["init", "--quiet", f"--initial-branch={base_branch}", str(seed)], env, cwd=seed)
        (seed / "README.md").write_text(SAMPLE_README, encoding="utf-8")
        tasks = seed / ".taskmaster" / "tasks" / "tasks.json"
        tasks.parent.mkdir(parents=True)
        tasks.write_text(
            tasks_json if tasks_json is not None else guide_tasks_json(), encoding="utf-8"
        )
        (seed / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
        for relative, content in (extra_files or {}).items():
            (seed / relative).parent.mkdir(parents=True, exist_ok=True)
            (seed / relative).write_text(content, encoding="utf-8")
        run_git(["add", "--all"], env, cwd=seed)
        run_git(["commit", "--quiet", "-m", "Initial commit: TaskMaster tasks"], env, cwd=seed)
        staging = work / "remote.git"
        run_git(["clone", "--quiet", "--bare", str(seed), str(staging)], env, cwd=work)
        try:
            staging.rename(remote)
        except OSError:
            if not (remote / "HEAD").exists():  # not another process's sample: a real error
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return remote
