"""`cto-dagster launch --url URL`: a run submitted to a running Dagster webserver (the local UI,
or the chart's on Kubernetes), through Dagster's public GraphQL API, and followed from here.

The webserver's code location is already loaded, so the run exists in a second or two, where a
launch of its own first starts and loads a code server. Submitting and stopping go through
`dagster_graphql.DagsterGraphQLClient`; following reads the run's plan and its events through
the same public GraphQL schema the UI reads (the client has no method for them), and prints the
progress line `cto-dagster launch` prints locally.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cto_dagster.core.metrics.progress import RunProgress

POLL_SECONDS = 1.0
PROBE_SECONDS = 0.5  # how long the automatic check of a local UI may take
# where `./scripts/ui` serves the UI (its PORT), checked before a launch starts a code server
LOCAL_UI = os.environ.get("CTO_DAGSTER_UI_URL", "http://127.0.0.1:3000")
TAG_TASK_ID = "cto/task_id"  # defs/translator.py's op tag (not imported: no Dagster load here)

_RUN_QUERY = """
query CtoRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      jobName
      executionPlan { steps { key metadata { key value } inputs { dependsOn { key } } } }
    }
    ... on PythonError { message }
  }
}
"""

_EVENTS_QUERY = """
query CtoEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp stepKey }
        ... on ExecutionStepFailureEvent { error { message } failureMetadata { label } }
      }
    }
    ... on PythonError { message }
  }
}
"""

_STATUS_QUERY = """
query CtoStatus($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } ... on PythonError { message } }
}
"""

_INSTANCE_QUERY = "query CtoInstance { instance { info } }"

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class RemoteLaunchError(Exception):
    """The webserver could not be reached, refused the run, or does not know the job."""


@dataclass(frozen=True)
class RemoteOutcome:
    run_id: str
    status: str  # SUCCESS | FAILURE | CANCELED | ...

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


def _endpoint(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RemoteLaunchError(f"--url must be an http(s) URL of the Dagster webserver: {url!r}")
    return urllib.parse.urljoin(url.rstrip("/") + "/", "graphql")


def graphql(url: str, query: str, variables: Mapping[str, object], timeout: float = 30) -> dict:
    """One query to the webserver's /graphql endpoint (the public schema the UI uses)."""
    body = json.dumps({"query": query, "variables": dict(variables)}).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked: http(s) only
        _endpoint(url), data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - http(s)
            data = json.loads(answer.read())
    except (OSError, ValueError) as exc:
        raise RemoteLaunchError(f"cannot reach the Dagster webserver at {url}: {exc}") from None
    if data.get("errors"):
        raise RemoteLaunchError(f"the webserver answered: {data['errors'][0].get('message')}")
    return data["data"]


def serves_instance(url: str, home: Path) -> bool:
    """Whether a webserver answers at `url` quickly and serves the instance at `home` (its
    storage lives there): then a launch there is a launch on this instance."""
    try:
        data = graphql(url, _INSTANCE_QUERY, {}, timeout=PROBE_SECONDS)
    except RemoteLaunchError:
        return False
    info = str((data.get("instance") or {}).get("info") or "")
    return str(home.resolve()) in info


def submit(url: str, job_name: str, run_config: dict, tags: Mapping[str, str]) -> str:
    """The new run's id; the job is found by name in whichever code location has it."""
    from dagster_graphql import DagsterGraphQLClientError

    graphql(url, "query CtoVersion { version }", {}, timeout=10)  # reachable, and Dagster's
    try:
        return _client(url).submit_job_execution(job_name, run_config=run_config, tags=dict(tags))
    except DagsterGraphQLClientError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RemoteLaunchError(f"the webserver refused the run of {job_name}: {first}") from None
    except Exception as exc:  # transport errors: requests' and gql's own classes
        raise RemoteLaunchError(f"cannot reach the Dagster webserver at {url}: {exc}") from None


def terminate(url: str, run_id: str) -> None:
    _client(url).terminate_run(run_id)


def _client(url: str):
    """Dagster's public GraphQL client for the webserver at `url` (checked: http(s))."""
    from dagster_graphql import DagsterGraphQLClient

    _endpoint(url)
    parsed = urllib.parse.urlparse(url)
    return DagsterGraphQLClient(
        parsed.hostname or "",
        port_number=parsed.port,
        use_https=parsed.scheme == "https",
        timeout=60,
    )


def _plan(url: str, run_id: str) -> tuple[str, str, dict[str, str], RunProgress]:
    """The run's status, job, step -> task id, and the progress of its tasks."""
    run = graphql(url, _RUN_QUERY, {"runId": run_id})["runOrError"]
    if run["__typename"] != "Run":
        raise RemoteLaunchError(f"run {run_id}: {run.get('message') or run['__typename']}")
    steps = (run.get("executionPlan") or {}).get("steps") or []
    step_task = {}
    for step in steps:
        tags = {item["key"]: item["value"] for item in step.get("metadata") or []}
        if TAG_TASK_ID in tags:
            step_task[step["key"]] = tags[TAG_TASK_ID]
    dependencies = {
        step_task[step["key"]]: [
            step_task[d["key"]]
            for item in step.get("inputs") or []
            for d in item.get("dependsOn") or []
            if d["key"] in step_task
        ]
        for step in steps
        if step["key"] in step_task
    }
    return run["status"], run["jobName"], step_task, RunProgress(dependencies, slots=8)


def _status(url: str, run_id: str) -> str:
    """The run's status alone (the plan is read once: it is large at 500 tasks)."""
    run = graphql(url, _STATUS_QUERY, {"runId": run_id})["runOrError"]
    if run["__typename"] != "Run":
        raise RemoteLaunchError(f"run {run_id}: {run.get('message') or run['__typename']}")
    return run["status"]


def follow_remote(
    url: str, run_id: str, say: Callable[[str], None] = print, timeout: float | None = None
) -> str:
    """Print a run's task starts, finishes, failures and progress until it ends."""
    status, _job, step_task, progress = _plan(url, run_id)
    cursor = None
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        page = graphql(url, _EVENTS_QUERY, {"runId": run_id, "cursor": cursor})["logsForRun"]
        if page["__typename"] != "EventConnection":
            raise RemoteLaunchError(f"run {run_id}: {page.get('message') or page['__typename']}")
        for event in page["events"]:
            _show(event, step_task, progress, say)
        cursor = page["cursor"]
        status = _status(url, run_id) if not page["hasMore"] else status
        if status in FINISHED and not page["hasMore"]:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        if not page["hasMore"]:
            time.sleep(POLL_SECONDS)


def _show(event: dict, step_task: dict[str, str], progress: RunProgress, say) -> None:
    kind = event["__typename"]
    task_id = step_task.get(event.get("stepKey") or "")
    at = float(event.get("timestamp") or 0) / 1000 or time.time()
    message = (event.get("message") or "").strip()
    if kind == "ExecutionStepStartEvent" and task_id is not None:
        progress.start(task_id, at)
    elif kind == "ExecutionStepSuccessEvent" and task_id is not None:
        progress.finish(task_id, at)
        say(f"   {progress.line(at)}")
    elif kind == "ExecutionStepFailureEvent":
        error = (event.get("error") or {}).get("message") or message
        say(f"❌ {event.get('stepKey')}: {error.strip()}")
        if task_id is not None:
            progress.fail(task_id)
            say(f"   {progress.line(at)}")
    elif kind in ("RunSuccessEvent", "RunFailureEvent"):
        say(f"{'✅' if kind == 'RunSuccessEvent' else '❌'} {message}")
    elif kind == "RunCanceledEvent":
        say(f"⏹️  {message}")
    elif kind == "LogMessageEvent" and message.startswith(("🚀", "✅", "❌", "⏱️", "🩹", "🔀")):
        say(f"   {message}")


def launch_remote(
    url: str,
    job_name: str,
    run_config: dict,
    tags: Mapping[str, str],
    say: Callable[[str], None] = print,
) -> RemoteOutcome:
    """Submit, follow, and on Ctrl-C stop the run (and its agents) before returning."""
    began = time.monotonic()
    run_id = submit(url, job_name, run_config, tags)
    say(
        f"▶️  Run {run_id} of {job_name} submitted to {url} in "
        f"{time.monotonic() - began:.1f} s; it is listed under the job in the UI"
    )
    try:
        status = follow_remote(url, run_id, say)
    except KeyboardInterrupt:
        say(f"⏹️  Stopping run {run_id} (Ctrl-C)...")
        terminate(url, run_id)
        status = follow_remote(url, run_id, say, timeout=120)
    return RemoteOutcome(run_id, status)
