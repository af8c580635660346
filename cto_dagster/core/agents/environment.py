"""The agent's environment, built from an allowlist: never the step's whole environment.

What passes: the basics programs need (PATH, locale, time zone, proxies, CA files), the names the
agent's preset reads (its API key, its base URL), the names the project lists in
`agent.pass_env`, values the project maps from other variables (`agent.env_from`), literal
`agent.env`, and the task's own `CTO_*` variables. Anything else in the step's environment, such as
the git token or another project's keys, never reaches the agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from cto_dagster.core.git.command import Identity
from cto_dagster.core.taskmaster import Task

ENV_VALUE_LIMIT = 32_000  # Linux refuses a single environment string over 128 KiB
BASICS = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TERM",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    # where the machine's certificate authorities are, for tools that do not read SSL_CERT_FILE
    # (behind a company proxy with its own CA, an install in a setup fails without them)
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
    "UV_SYSTEM_CERTS",
    "UV_NATIVE_TLS",
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The step's own credentials, never an agent's, whatever a project's settings name: the
# instance's PostgreSQL password (dagster-k8s puts it in every step pod's environment).
STEP_ONLY = ("DAGSTER_PG_PASSWORD",)


def _env_value(text: str) -> str:
    clean = text.replace("\x00", "")
    return clean if len(clean) <= ENV_VALUE_LIMIT else clean[:ENV_VALUE_LIMIT] + "…"


def task_environment(
    task: Task, level: int, branch: str, base_branch: str, prompt_file: Path, task_file: Path
) -> dict[str, str]:
    return {
        "CTO_TASK_ID": task.id,
        "CTO_TASK_TAG": task.tag or "",
        "CTO_TASK_TITLE": _env_value(task.title),
        "CTO_TASK_DESCRIPTION": _env_value(task.description),
        "CTO_TASK_DETAILS": _env_value(task.details),
        "CTO_TASK_TEST_STRATEGY": _env_value(task.test_strategy),
        "CTO_TASK_PRIORITY": task.priority,
        "CTO_TASK_LEVEL": str(level),
        "CTO_TASK_DEPENDENCIES": ",".join(task.dependencies),
        "CTO_BRANCH": branch,
        "CTO_BASE_BRANCH": base_branch,
        "CTO_PROMPT_FILE": str(prompt_file),
        "CTO_TASK_FILE": str(task_file),
    }


def agent_environment(
    parent: Mapping[str, str],
    *,
    preset_names: Iterable[str] = (),
    pass_env: Iterable[str] = (),
    env_from: Mapping[str, str] | None = None,
    literal: Mapping[str, str] | None = None,
    task_env: Mapping[str, str] | None = None,
    identity: Identity | None = None,
    home: Path | None = None,
    denied: Iterable[str] = (),
) -> dict[str, str]:
    """The agent's whole environment. `denied` names (the git token variables of every
    project) and the step's own credentials (`STEP_ONLY`) never pass, whatever asks for them."""
    blocked = {*denied, *STEP_ONLY}
    env: dict[str, str] = {}
    for name in (*BASICS, *preset_names, *pass_env):
        if name in parent and name not in blocked and _NAME.match(name):
            env[name] = parent[name]
    for name, source in (env_from or {}).items():
        if source in parent and source not in blocked and name not in blocked:
            env[name] = parent[source]
    env.update({k: v for k, v in (literal or {}).items() if k not in blocked})
    env.update(task_env or {})
    # agents may commit on their own: they get an identity, never credentials
    env.update((identity or Identity()).environment())
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1")
    if home is not None:
        env["HOME"] = str(home)
        env["XDG_CONFIG_HOME"] = str(home / ".config")
        env["XDG_CACHE_HOME"] = str(home / ".cache")
        env["XDG_DATA_HOME"] = str(home / ".local" / "share")
        env["TMPDIR"] = "/tmp"  # noqa: S108 - the sandbox's private /tmp
    return env
