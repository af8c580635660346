"""Integration pull requests on GitHub, through PyGithub. The token goes in an HTTP header only;
errors are redacted before anyone sees them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cto_dagster.core.git.credentials import redact

PR_BODY_LIMIT = 65_000  # GitHub refuses bodies over 65,536 characters


class ForgeError(Exception):
    pass


@dataclass(frozen=True)
class PullRequest:
    url: str
    number: int
    reused: bool


def _stage_words(level: int | str) -> str:
    """3 -> "level 3"; a stage's label ("levels 0-4") as it is."""
    return f"level {level}" if isinstance(level, int) else level


def pr_title(level: int | str, run_token: str) -> str:
    return f"Integration PR: {_stage_words(level).capitalize()} for {run_token}"


def pr_body(
    level: int | str,
    tasks: list[tuple[str, str, str]],
    missing: list[str],
    chart: str = "",
    status_note: str = "",
    resolved: str = "",
    verified: str = "",
) -> str:
    """The table of the level's tasks, what is missing, the statuses the merge records, what
    the project's checks said of the branch and what an agent fixed so they pass, the
    conflicts an agent resolved (for reviewers to read first), and the plan's chart (GitHub
    renders Mermaid blocks)."""
    lines = [
        f"Integration of execution {_stage_words(level)}, by cto-dagster.",
        "",
        "| Task | Title | Branch |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {_cell(title)} | `{branch}` |" for t, title, branch in tasks]
    if missing:
        lines += ["", f"⚠️ Incomplete: tasks {', '.join(missing)} produced no branch."]
    if status_note:
        lines += ["", status_note]
    if verified:
        lines += ["", "## Verified", "", verified]
    if resolved:
        lines += ["", "## Conflicts resolved by an agent", "", resolved]
    if chart:
        lines += ["", "<details><summary>The plan</summary>", "", chart, "", "</details>"]
    body = "\n".join(lines)
    return body if len(body) <= PR_BODY_LIMIT else body[: PR_BODY_LIMIT - 1] + "…"


RETRIES = 4
RETRY_BACKOFF = 0.5  # seconds, doubled each retry


def _cell(text: str) -> str:
    """Task text in a table cell: one line, no column breaks, no HTML."""
    clean = " ".join(text.split()).replace("|", "/").replace("<", "‹").replace(">", "›")
    return clean[:120]


@contextmanager
def _repository(api_url: str, token: str, repository: str) -> Iterator:
    """PyGithub's handle on `repository`; every GitHub or network error becomes a ForgeError
    whose message never holds the token."""
    from github import Auth, Github, GithubException, GithubRetry

    # PyGithub's own retry: 5xx and rate limits (waiting for their reset, up to a bound), so a
    # transient GitHub error does not leave a level without its PR
    retry = GithubRetry(total=RETRIES, backoff_factor=RETRY_BACKOFF, max_rate_limit_wait=300)
    client = Github(
        base_url=api_url.rstrip("/"), auth=Auth.Token(token), retry=retry, timeout=30, lazy=True
    )
    try:
        yield client.get_repo(repository)
    except GithubException as exc:
        message = exc.data.get("message") if isinstance(exc.data, dict) else str(exc.data)
        raise ForgeError(redact(f"GitHub answered {exc.status}: {message}", [token])) from None
    except Exception as exc:  # network errors: never let a token-bearing repr escape
        raise ForgeError(redact(f"cannot reach GitHub at {api_url}: {exc}", [token])) from None
    finally:
        client.close()


def open_or_reuse_pull_request(
    api_url: str, token: str, repository: str, head: str, base: str, title: str, body: str
) -> PullRequest:
    """Reuse the open PR from `head` into `base` if there is one; otherwise open it."""
    owner = repository.split("/", 1)[0]
    with _repository(api_url, token, repository) as repo:
        for pull in repo.get_pulls(state="open", head=f"{owner}:{head}", base=base):
            return PullRequest(pull.html_url, pull.number, reused=True)
        pull = repo.create_pull(title=title, body=body, head=head, base=base)
        return PullRequest(pull.html_url, pull.number, reused=False)


def supersede_older_pull_requests(
    api_url: str,
    token: str,
    repository: str,
    newer: PullRequest,
    same_stage: Callable[[str], bool],
) -> list[int]:
    """Close the open PRs of older runs for the same stage (`same_stage(head branch)`), each with
    a comment naming the PR that supersedes it. Returns their numbers. Branches stay (pruning
    removes them by `integration.keep_runs`)."""
    closed: list[int] = []
    with _repository(api_url, token, repository) as repo:
        for pull in repo.get_pulls(state="open"):
            if pull.number == newer.number or not same_stage(pull.head.ref):
                continue
            pull.create_issue_comment(
                f"Superseded by #{newer.number} ({newer.url}), a newer run's integration of the "
                "same levels. Closed by cto-dagster."
            )
            pull.edit(state="closed")
            closed.append(pull.number)
    return closed
