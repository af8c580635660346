"""Getting a token to git without ever putting it in a URL, an argument or a file.

git asks a credential helper (this module, run as `python -m cto_dagster.core.git.credentials
get`), which answers from the environment variable `CTO_DAGSTER_GIT_TOKEN` and only for the one
host the project is configured with: a push redirected to another server gets nothing. The helper is
configured through `GIT_CONFIG_*` environment variables on the orchestrator's own git calls, never
in a configuration file anything else reads.
"""

from __future__ import annotations

import shlex
import sys
from urllib.parse import urlsplit

TOKEN_VARIABLE = "CTO_DAGSTER_GIT_TOKEN"  # noqa: S105 - a variable name, not a secret
HOST_VARIABLE = "CTO_DAGSTER_GIT_HOST"


def url_host(url: str) -> str | None:
    """`host[:port]` of an http(s) URL, as git names it to credential helpers."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname


def has_embedded_credentials(url: str) -> bool:
    """True for `https://user:secret@host/...` (a password or token inside the URL)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.password is not None


def credential_environment(token: str | None, url: str) -> dict[str, str]:
    """The git environment that lets the helper answer for `url`'s host, and nothing else."""
    host = url_host(url)
    if not token or host is None:
        return {}
    helper = f"!{shlex.quote(sys.executable)} -m cto_dagster.core.git.credentials"
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",  # forget helpers from other config: this one answers alone
        "GIT_CONFIG_KEY_1": "credential.helper",
        "GIT_CONFIG_VALUE_1": helper,
        TOKEN_VARIABLE: token,
        HOST_VARIABLE: host,
    }


def redact(text: str, secrets) -> str:
    """Replace every secret in `text`; for messages that quote what a tool printed."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def answer(request: dict[str, str], environ) -> str:
    """The helper's answer to git's request: the token for the configured host only."""
    token = environ.get(TOKEN_VARIABLE)
    allowed = environ.get(HOST_VARIABLE)
    if not token or not allowed:
        return ""
    if request.get("protocol") not in ("https", "http") or request.get("host") != allowed:
        return ""
    return f"username=x-access-token\npassword={token}\n"


def main(argv: list[str]) -> int:
    import os

    if argv[:1] != ["get"]:
        return 0  # `store` and `erase`: nothing is kept
    request = dict(line.split("=", 1) for line in sys.stdin.read().splitlines() if "=" in line)
    sys.stdout.write(answer(request, os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
