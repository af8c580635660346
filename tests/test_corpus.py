"""Every tasks file plans, or fails with a clear message: the fixtures the project wrote (one per
shape real projects have, always run) and the team's corpus of 97 real files (run when present).

Levels are checked against an independent computation: the original's round-by-round method on
the raw JSON, parsed here without the project's reader.
"""

import json
import re

import pytest

from cto_dagster.cli import main
from cto_dagster.core.planning.planner import plan_tasks_file
from cto_dagster.core.taskmaster import TasksFileError
from tests.helpers import FIXTURES, corpus_files, corpus_skip_reason

FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
EXPECTED = json.loads((FIXTURES.parent / "taskmaster-expected.json").read_text(encoding="utf-8"))
CORPUS_FILES = corpus_files()
CORPUS_PARAMS = [pytest.param(p, id=p.name) for p in CORPUS_FILES] or [
    pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(reason=corpus_skip_reason()))
]


def _norm(value):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+\.\d+", text):
        text = text.split(".")[0]
    return str(int(text)) if text.isdigit() else text


def independent_levels(raw_tasks):
    """Round by round, over the tasks that are neither done nor held nor blocked."""
    tasks = {_norm(t["id"]): t for t in raw_tasks}
    deps = {}
    for tid, t in tasks.items():
        values = []
        for key in ("dependencies", "dependsOn", "depends_on"):
            value = t.get(key)
            values += value if isinstance(value, list) else [] if value is None else [value]
        deps[tid] = {_norm(v) for v in values} - {tid}
    status = {tid: str(t.get("status") or "pending").strip().lower() for tid, t in tasks.items()}
    done = {t for t, s in status.items() if s in ("done", "completed")}
    review = {t for t, s in status.items() if s == "review"}
    held = {t for t, s in status.items() if s in ("cancelled", "deferred", "blocked")}

    def through_review(tid, seen=()):
        """A review task is not run: its dependents wait for what it waits for."""
        found = set()
        for dep in deps[tid] - done - held:
            found |= through_review(dep, (*seen, dep)) if dep in review else {dep}
        return found

    deps = {
        tid: (deps[tid] - review).union(*(through_review(r) for r in deps[tid] & review))
        for tid in tasks
    }
    blocked = set(held)
    changed = True
    while changed:
        changed = False
        for tid in tasks:
            if tid not in blocked and tid not in done | review and deps[tid] & blocked:
                blocked.add(tid)
                changed = True
    remaining = set(tasks) - done - blocked - review
    placed, levels = set(), []
    while remaining:
        level = {t for t in remaining if (deps[t] - done) <= placed}
        assert level, "independent check found a cycle the planner accepted"
        levels.append(level)
        placed |= level
        remaining -= level
    return levels


def check_plans_or_fails_cleanly(path, capsys):
    code = main(["plan", str(path), "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code == 1:
        assert err.startswith("❌ ") and len(err.splitlines()) >= 2
        return None
    assert code == 0
    data = json.loads(out)
    plan = plan_tasks_file(path, environ={})
    assert data["levels"] == plan.levels
    raw = json.loads(path.read_text(encoding="utf-8-sig"))
    if isinstance(raw, dict) and isinstance(raw.get(plan.tag), dict):
        raw_tasks = raw[plan.tag]["tasks"]
    elif isinstance(raw, dict) and isinstance(raw.get("tasks"), list):
        raw_tasks = raw["tasks"]
    elif isinstance(raw, dict):
        raw_tasks = raw[plan.tag]
    else:
        raw_tasks = raw
    assert [set(level) for level in data["levels"]] == independent_levels(raw_tasks)
    stats = data["stats"]
    assert stats["total_tasks"] == sum(len(level) for level in data["levels"])
    if stats["total_levels"]:
        assert stats["theoretical_speedup"] == round(
            stats["total_tasks"] / stats["total_levels"], 2
        )
    return data


def test_every_fixture_has_an_expectation():
    assert sorted(p.name for p in FIXTURE_FILES) == sorted(EXPECTED)
    assert len(FIXTURE_FILES) >= 20


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.name for p in FIXTURE_FILES])
def test_fixture_plans_as_expected(path, capsys):
    expected = EXPECTED[path.name]
    data = check_plans_or_fails_cleanly(path, capsys)
    if "error" in expected:
        assert data is None, f"{path.name} should fail"
        with pytest.raises(TasksFileError) as failure:
            plan_tasks_file(path, environ={})
        for fragment in expected["error"]:
            assert fragment in failure.value.render()
        return
    assert data is not None, f"{path.name} should plan"
    assert data["levels"] == expected["levels"]
    assert sorted(s["id"] for s in data["skipped"]) == sorted(expected.get("skipped", []))
    assert sorted(b["id"] for b in data["blocked"]) == sorted(expected.get("blocked", []))


@pytest.mark.parametrize("path", CORPUS_PARAMS)
def test_corpus_file_plans_or_fails_cleanly(path, capsys):
    check_plans_or_fails_cleanly(path, capsys)


@pytest.mark.skipif(not CORPUS_FILES, reason=corpus_skip_reason())
def test_corpus_failures_are_the_expected_ones():
    """The corpus holds real mistakes; each is named, not hidden."""
    assert len(CORPUS_FILES) >= 97
    failures = {}
    for path in CORPUS_FILES:
        try:
            plan_tasks_file(path, environ={})
        except TasksFileError as exc:
            failures[path.name] = exc.render()
    assert all(
        ("cycle" in text) or ("tags present" in text) or ("does not exist" in text)
        for text in failures.values()
    ), failures
    assert len(failures) < len(CORPUS_FILES) // 10
