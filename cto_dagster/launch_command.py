"""`cto-dagster launch`: the command-line launch of a job, as a run of the code location."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from cto_dagster.core.mappings import deep_merge

if TYPE_CHECKING:
    from cto_dagster.code_server import CodeServer


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
    from cto_dagster.code_server import new_log_file, start_code_server
    from cto_dagster.instance_home import NoInstance, prepare_home, resolve_home

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
        from cto_dagster.remote_launch import LOCAL_UI

        print(f"🖥️  The UI at {LOCAL_UI} serves this instance: the run is submitted there")
        return _launch_on(LOCAL_UI, job_name, run_config, tags)
    server = start_code_server(new_log_file(home))  # loads while this command imports Dagster
    try:
        return _launch(home, server, job_name, run_config, tags)
    finally:
        server.stop()


def _local_ui_serves(home: Path) -> bool:
    from cto_dagster.remote_launch import LOCAL_UI, serves_instance

    return serves_instance(LOCAL_UI, home)


def _launch_on(url: str, job_name: str, run_config: dict, tags: dict) -> int:
    """A run of the webserver's code location (it is loaded already), followed from here."""
    from cto_dagster.remote_launch import RemoteLaunchError, launch_remote

    try:
        outcome = launch_remote(url, job_name, run_config, tags)
    except RemoteLaunchError as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 1
    print(f"Run {outcome.run_id}: {outcome.status.lower()} (open it in the UI: {url})")
    return 0 if outcome.success else 1


def _launch(home: Path, server: CodeServer, job_name: str, run_config: dict, tags: dict) -> int:
    from cto_dagster.dead_runs import settle_dead_runs
    from cto_dagster.instance_home import open_instance
    from cto_dagster.launch import LaunchError, create_run, start_and_follow
    from cto_dagster.summary import print_run_summary

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
