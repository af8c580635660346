"""TaskMaster's complexity report: `.taskmaster/reports/task-complexity-report.json` for the
master tag, `task-complexity-report_<tag>.json` for the others:
`{"meta": {...}, "complexityAnalysis": [{"taskId", "taskTitle", "complexityScore", ...}]}`.
A score (1-10) is shown on each task and weighs its priority when no run has timed it yet."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from cto_dagster.core.support.names import canonical_id

REPORTS_DIR = ".taskmaster/reports"


def report_path(tag: str) -> str:
    """Where TaskMaster writes the report of a tag (its name slugified, as TaskMaster does)."""
    if tag == "master":
        return f"{REPORTS_DIR}/task-complexity-report.json"
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", tag).strip("-").lower()
    return f"{REPORTS_DIR}/task-complexity-report_{slug}.json"


def parse_report(text: str | bytes | None) -> dict[str, float]:
    """task id -> complexity score; anything unreadable reads as no report."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    entries = data.get("complexityAnalysis") if isinstance(data, dict) else None
    scores: dict[str, float] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        task_id = canonical_id(entry.get("taskId"))
        score = entry.get("complexityScore")
        if task_id and isinstance(score, int | float) and not isinstance(score, bool):
            scores[task_id] = float(score)
    return scores


def read_reports(project_root: Path, tags: list[str]) -> Mapping[str, dict[str, float]]:
    """tag -> scores, from the report files under a project folder (missing: empty)."""
    found = {}
    for tag in tags:
        path = project_root / report_path(tag)
        try:
            found[tag] = parse_report(path.read_bytes())
        except OSError:
            found[tag] = {}
    return found
