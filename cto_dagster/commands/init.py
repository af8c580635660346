"""`cto-dagster init`: start using cto-dagster in a repository with one command.

It looks at the repository (its remote, the TaskMaster tasks file and tags, the agent CLIs on
PATH), asks what it cannot guess (nothing with `--yes`), writes a commented `cto-dagster.yaml` and
a `DAGSTER_HOME` with the local `dagster.yaml`, plans the tasks, and prints the next two commands.
It never overwrites a configuration without `--force`, and never writes a secret: the token is
named, not copied.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CONFIG_NAME = "cto-dagster.yaml"
HOME_DIR = ".cto-dagster/home"
AGENTS = ("claude", "codex", "gemini", "aider")
_GITHUB_SSH = re.compile(r"^(?:ssh://)?git@github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?$")
_CREDENTIALS = re.compile(r"^(https?://)[^/@]+@")


class InitError(Exception):
    pass


@dataclass
class Found:
    root: Path
    remote: str | None
    base_branch: str
    tasks_file: str | None
    tags: list[str]
    current_tag: str | None
    agents: list[str]


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def https_remote(url: str) -> str:
    """A GitHub SSH remote as https (agents push with a token, not the user's SSH agent); any
    credentials in an https URL are dropped (the token is named in the config instead)."""
    match = _GITHUB_SSH.match(url)
    if match:
        return f"https://github.com/{match.group(1)}.git"
    return _CREDENTIALS.sub(r"\1", url)


def inspect_repository(root: Path) -> Found:
    from cto_dagster.core.taskmaster import TasksFileError, find_tags, load_json

    top = _git(root, "rev-parse", "--show-toplevel")
    if not top:
        raise InitError(f"{root} is not a git repository: run `git init` (and add a remote) first")
    root = Path(top)
    remote_name = _git(root, "config", "--get", "branch.main.remote") or "origin"
    remote = _git(root, "remote", "get-url", remote_name) or None
    head = _git(root, "symbolic-ref", "--quiet", "--short", f"refs/remotes/{remote_name}/HEAD")
    base = head.split("/", 1)[1] if "/" in head else _git(root, "branch", "--show-current")
    tasks_file = next(
        (p for p in (".taskmaster/tasks/tasks.json", "tasks/tasks.json") if (root / p).is_file()),
        None,
    )
    tags: list[str] = []
    current = None
    if tasks_file:
        try:
            tags = list(find_tags(load_json(root / tasks_file))[1])
        except TasksFileError as exc:
            raise InitError(exc.render()) from None
        state = root / ".taskmaster" / "state.json"
        try:
            import json

            current = json.loads(state.read_text(encoding="utf-8")).get("currentTag")
        except (OSError, ValueError, AttributeError):
            current = None
    agents = [name for name in AGENTS if shutil.which(name)]
    return Found(root, remote, base or "main", tasks_file, tags, current, agents)


def _choose(question: str, options: list[str], default: str, ask: Callable[[str], str]) -> str:
    shown = "/".join(options)
    answer = ask(f"{question} [{shown}] (default {default}): ").strip()
    if not answer:
        return default
    if answer not in options:
        raise InitError(f"{answer!r} is not one of {shown}")
    return answer


def render_config(
    name: str,
    repository: str,
    base_branch: str,
    tasks_file: str,
    tags: list[str],
    agent: str,
    token_env: str | None,
) -> str:
    tag_lines = (
        f"    tag: {tags[0]}                        # the TaskMaster tag to run"
        if len(tags) == 1
        else f"    tags: [{', '.join(tags)}]          # several tags, their dependsOn kept"
    )
    git_block = (
        f"    git:\n      token_env: {token_env}           # the NAME of the variable holding the "
        "token (never the token)\n"
        if token_env
        else "    # git:\n    #   token_env: GITHUB_TOKEN   # for an https remote needing a token\n"
    )
    return (
        "# cto-dagster: run this repository's TaskMaster tasks in parallel with coding agents.\n"
        "# Written by `cto-dagster init`; all settings: examples/cto-dagster.yaml in cto-dagster.\n"
        "projects:\n"
        f"  - name: {name}                       # asset prefix and group\n"
        f"    repository: {repository}   # where task branches are pushed\n"
        f"    base_branch: {base_branch}                  # task branches start here\n"
        f"    tasks_file: {tasks_file}   # read from base_branch\n"
        f"{tag_lines}\n"
        "    status_write_back: review           # integration branches mark merged tasks\n"
        "    agent:\n"
        f"      preset: {agent}                    # demo | claude | codex | gemini | aider\n"
        "      timeout_seconds: 3600\n"
        "      sandbox: auto                     # bwrap when installed (docs/agents.md)\n"
        "    conflicts:\n"
        '      resolve: "off"                    # "agent": an agent resolves merge conflicts\n'
        "      # verify: [npm, test]             # argv that must pass on a resolved merge\n"
        "    integration:\n"
        "      granularity: level                # a branch + PR a level | run | every N levels\n"
        "      keep_runs: 5                      # older runs' integration branches are pruned\n"
        f"{git_block}"
        "    max_retries: 1\n"
    )


def _project_name(root: Path) -> str:
    name = re.sub(r"\W", "_", root.name).strip("_") or "project"
    return name if re.match(r"[A-Za-z_]", name) else f"p_{name}"


def run_init(
    path: str | None,
    agent: str | None,
    tags: list[str],
    yes: bool,
    force: bool,
    ask: Callable[[str], str] = input,
    say: Callable[[str], None] = print,
) -> int:
    try:
        return _init(Path(path or "."), agent, tags, yes, force, ask, say)
    except InitError as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 1


def _init(root, agent, tags, yes, force, ask, say) -> int:
    from cto_dagster.commands.runs.instance_home import prepare_home
    from cto_dagster.core.planning.plan_text import render_plan
    from cto_dagster.core.settings import SettingsError, load_yaml_settings, plan_project

    found = inspect_repository(root.resolve())
    config = found.root / CONFIG_NAME
    if config.exists() and not force:
        raise InitError(f"{config} exists: pass --force to overwrite it")
    if not found.tasks_file:
        raise InitError(
            f"no TaskMaster tasks file in {found.root} (.taskmaster/tasks/tasks.json): run "
            "`task-master init` and `task-master parse-prd` first"
        )
    say(f"🔎 Repository {found.root}")
    say(f"   remote: {found.remote or '(none: task branches are pushed to this repository)'}")
    say(f"   tasks: {found.tasks_file} (tags: {', '.join(found.tags) or 'none'})")
    say(f"   agent CLIs on PATH: {', '.join(found.agents) or 'none'}")
    if agent is None:
        default = found.agents[0] if found.agents else "demo"
        agent = default if yes else _choose("Agent", [*AGENTS, "demo"], default, ask)
    if not tags:
        default = found.current_tag if found.current_tag in found.tags else None
        default = default or ("master" if "master" in found.tags else found.tags[0])
        tags = [default] if yes else [_choose("Tag", found.tags, default, ask)]
    unknown = [t for t in tags if t not in found.tags]
    if unknown:
        raise InitError(f"tag {', '.join(unknown)} is not in {found.tasks_file}")
    repository = https_remote(found.remote) if found.remote else "."
    token_env = "GITHUB_TOKEN" if repository.startswith("https://github.com/") else None
    text = render_config(
        _project_name(found.root),
        repository,
        found.base_branch,
        found.tasks_file,
        tags,
        agent,
        token_env,
    )
    config.write_text(text, encoding="utf-8")
    try:
        project = load_yaml_settings(config).projects[0]
    except SettingsError as exc:
        raise InitError(f"the configuration written is not valid: {exc}") from None
    home = prepare_home(found.root / HOME_DIR)
    say(f"📝 Wrote {config} and DAGSTER_HOME {home}")
    if _ignore(found.root):
        say("   (.cto-dagster/ added to .gitignore)")
    try:
        plan = plan_project(project)
    except Exception as exc:  # the config is written: say what to fix, do not fail
        say(f"⚠️  The plan could not be made yet: {exc}")
    else:
        say("")
        say(render_plan(plan))
    env = f"CTO_DAGSTER_CONFIG={CONFIG_NAME} DAGSTER_HOME={HOME_DIR}"
    say("")
    say("Next:")
    say(f"  {env} cto-dagster doctor     # check the agent, the token, the remote")
    say(f"  {env} cto-dagster launch     # run the tasks (or ./scripts/ui for the UI)")
    return 0


def _ignore(root: Path) -> bool:
    """Keep the instance's files out of the repository (and out of the agents' commits)."""
    ignore = root / ".gitignore"
    lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else []
    if ".cto-dagster/" in lines:
        return False
    with ignore.open("a", encoding="utf-8") as handle:
        prefix = "\n" if lines and lines[-1] != "" else ""
        handle.write(f"{prefix}# cto-dagster's local Dagster instance\n.cto-dagster/\n")
    return True


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    init = subparsers.add_parser(
        "init",
        help="set up a repository: write cto-dagster.yaml and a DAGSTER_HOME, show the plan",
    )
    init.add_argument("path", nargs="?", default=None, help="the repository (default: .)")
    init.add_argument(
        "--agent",
        choices=("claude", "codex", "gemini", "aider", "demo"),
        help="the agent preset (default: the first CLI found on PATH)",
    )
    init.add_argument(
        "--tag", action="append", default=[], metavar="TAG", help="TaskMaster tag(s) to run"
    )
    init.add_argument("--yes", action="store_true", help="ask nothing: take the defaults")
    init.add_argument("--force", action="store_true", help="overwrite an existing config")
    init.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_init(args.path, args.agent, args.tag, yes=args.yes, force=args.force)
