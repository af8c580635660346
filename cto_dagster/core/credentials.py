"""Getting a token to git without ever putting it in a URL, an argument or a file.

git asks a credential helper (this module, run as `python -m cto_dagster.core.credentials get`);
the helper answers from the environment variable `CTO_GIT_TOKEN`, which only git's own processes
receive. The helper is configured through `GIT_CONFIG_*` environment variables, not a config file.
"""

from __future__ import annotations

import shlex
import sys

TOKEN_VARIABLE = "CTO_GIT_TOKEN"  # noqa: S105 - a variable name, not a secret


def credential_environment(token: str | None) -> dict[str, str]:
    if not token:
        return {}
    helper = f"!{shlex.quote(sys.executable)} -m cto_dagster.core.credentials"
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",  # forget helpers from other config: this one answers alone
        "GIT_CONFIG_KEY_1": "credential.helper",
        "GIT_CONFIG_VALUE_1": helper,
        TOKEN_VARIABLE: token,
    }


def redact(text: str, secrets: list[str | None]) -> str:
    """Replace every secret in `text`; for messages that quote what a tool printed."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def main(argv: list[str]) -> int:
    import os

    if argv[:1] != ["get"]:
        return 0  # `store` and `erase`: nothing is kept
    request = dict(line.split("=", 1) for line in sys.stdin.read().splitlines() if "=" in line)
    token = os.environ.get(TOKEN_VARIABLE)
    if token and request.get("protocol") in ("https", "http"):
        sys.stdout.write(f"username=x-access-token\npassword={token}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
