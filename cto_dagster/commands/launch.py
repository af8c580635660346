"""`cto-dagster launch`: the command-line launch of a job, as a run of the code location."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from cto_dagster.core.support.mappings import deep_merge

if TYPE_CHECKING:
    from cto_dagster.commands.runs.code_server import CodeServer


def _merged_config(files: list[str]) -> dict:
    """Run config from YAML files; later files override earlier keys (maps merge)."""
    config: dict = {}
    for name in files:
        data = yaml.safe_load(Path(name).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{name} must hold a mapping (the run config)")
        config = deep_merge(config, data)
    return config


def run_launch(
    job_name: str, config_files: list[str], tags_json: str | None, url: str | None = None
) -> int:
    from cto_dagster.commands.runs.code_server import new_log_file, start_code_server
    from cto_dagster.commands.runs.instance_home import NoInstance, prepare_home, resolve_home

    try:
        run_config = _merged_config(config_files)
        tags = json.loads(tags_json) if tags_json else {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ValueError("--tags must be a JSON object of strings")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 2
    if url and url != "local":
        return _launch_on(url, job_name, run_config, tags)
    try:
        home = prepare_home(resolve_home())
    except NoInstance as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if url is None and _local_ui_serves(home):
        from cto_dagster.commands.runs.webserver_launch import LOCAL_UI

        print(f"🖥️  The UI at {LOCAL_UI} serves this instance: the run is submitted there")
        return _launch_on(LOCAL_UI, job_name, run_config, tags)
    server = start_code_server(new_log_file(home))  # loads while this command imports Dagster
    try:
        return _launch(home, server, job_name, run_config, tags)
    finally:
        server.stop()


def _local_ui_serves(home: Path) -> bool:
    from cto_dagster.commands.runs.webserver_launch import LOCAL_UI, serves_instance

    return serves_instance(LOCAL_UI, home)


def _launch_on(url: str, job_name: str, run_config: dict, tags: dict) -> int:
    """A run of the webserver's code location (it is loaded already), followed from here."""
    from cto_dagster.commands.runs.webserver_launch import RemoteLaunchError, launch_remote

    try:
        outcome = launch_remote(url, job_name, run_config, tags)
    except RemoteLaunchError as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 1
    print(f"Run {outcome.run_id}: {outcome.status.lower()} (open it in the UI: {url})")
    return 0 if outcome.success else 1


def _launch(home: Path, server: CodeServer, job_name: str, run_config: dict, tags: dict) -> int:
    from cto_dagster.commands.runs.code_server_launch import (
        LaunchError,
        create_run,
        start_and_follow,
    )
    from cto_dagster.commands.runs.dead_runs import settle_dead_runs
    from cto_dagster.commands.runs.instance_home import open_instance
    from cto_dagster.commands.runs.run_summary import print_run_summary

    with open_instance(home) as instance:
        for settled in settle_dead_runs(instance):
            print(f"🪦 Run {settled}")
        try:
            outcome = start_and_follow(
                instance,
                lambda workspace: create_run(instance, workspace, job_name, run_config, tags),
                server=server,
            )
        except LaunchError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    print_run_summary(home, job_name, None, run_id=outcome.run_id)
    return 0 if outcome.success else 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    launch = subparsers.add_parser(
        "launch",
        help="launch a job as a run of the code location (listed in the UI, re-executable there) "
        "and follow it",
    )
    launch.add_argument("--job", default="play_project", help="job name (default: play_project)")
    launch.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="run config YAML (the launchpad's), may repeat",
    )
    launch.add_argument("--tags", default=None, help='run tags as JSON, e.g. \'{"team": "a"}\'')
    launch.add_argument(
        "--url",
        default=None,
        help="submit to the Dagster webserver at URL (the local UI, or the chart's) instead of "
        "starting a code server; default: the local UI at http://127.0.0.1:3000 when it serves "
        "this DAGSTER_HOME (--url local: never)",
    )
    launch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_launch(
        job_name=args.job, config_files=args.config, tags_json=args.tags, url=args.url
    )
