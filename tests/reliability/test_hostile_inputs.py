"""Hostile tasks files: every input ends in a valid plan or exit 1 with a message; never a
traceback, never a hang, never a file written outside the workspace."""

import json
import subprocess
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cto_dagster.cli import main
from tests.helpers import FIXTURES, REPO_ROOT, corpus_files

NASTY_IDS = [
    "../../x",
    "--upload-pack=evil",
    "-rf",
    "a\nb",
    "ملف-١",
    "\u202eevil",
    "$(id)",
    "x; rm -rf /",
    "",
    " ",
    "1.2.3",
    "feature/../../main",
    "a" * 300,
    10**30,
    -5,
    1.5,
    float("inf"),
    None,
    True,
    [],
    {},
    "HEAD",
    "@{0}",
    "x.lock",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(NASTY_IDS),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
task_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(scalars, json_values),
        "title": json_values,
        "status": st.one_of(
            st.sampled_from(["done", "pending", "cancelled", "deferred", "todo"]), json_values
        ),
        "dependencies": st.one_of(
            st.lists(st.one_of(st.integers(0, 12), scalars), max_size=6), json_values
        ),
        "dependsOn": json_values,
        "subtasks": st.one_of(st.lists(json_values, max_size=3), json_values),
        "metadata": json_values,
        "priority": json_values,
    },
)
files = st.one_of(
    json_values,
    st.lists(task_like, max_size=12),
    st.builds(lambda tasks: {"master": {"tasks": tasks}}, st.lists(task_like, max_size=12)),
    st.builds(
        lambda tasks, tag: {tag: {"tasks": tasks}, "other": {"tasks": []}},
        st.lists(task_like, max_size=8),
        st.text(max_size=12),
    ),
    st.builds(lambda tasks: {"tasks": tasks, "metadata": {}}, st.lists(task_like, max_size=8)),
)


def plan_exit_code(path, capsys) -> tuple[int, str]:
    code = main(["plan", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 1)
    assert "Traceback" not in out + err
    if code == 1:
        assert err.startswith("❌ ")
    else:
        assert isinstance(json.loads(out)["levels"], list)
    return code, err


@settings(
    max_examples=300,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=files)
def test_generated_files_plan_or_fail_cleanly(data, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("hostile")
    path = folder / "tasks.json"
    path.write_text(json.dumps(data, allow_nan=True))
    before = sorted(p.name for p in folder.iterdir())
    plan_exit_code(path, capsys)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


@settings(
    max_examples=150,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(index=st.integers(0, 96), cut=st.floats(0, 1), noise=st.binary(max_size=8))
def test_truncated_and_corrupted_corpus_files(index, cut, noise, tmp_path_factory, capsys):
    sources = sorted(FIXTURES.glob("*.json")) + corpus_files()  # the real corpus when present
    raw = sources[index % len(sources)].read_bytes()
    position = int(len(raw) * cut)
    path = tmp_path_factory.mktemp("cut") / "tasks.json"
    path.write_bytes(raw[:position] + noise + raw[position + len(noise) :])
    plan_exit_code(path, capsys)


def test_deep_nesting_and_huge_strings(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    assert plan_exit_code(deep, capsys)[0] == 1
    huge = tmp_path / "huge.json"
    huge.write_text(
        json.dumps(
            {
                "master": {
                    "tasks": [
                        {
                            "id": 1,
                            "title": "x" * 5_000_000,
                            "details": "y" * 5_000_000,
                            "dependencies": [],
                        }
                    ]
                }
            }
        )
    )
    assert plan_exit_code(huge, capsys)[0] == 0


def test_nasty_ids_are_refused_with_a_message(tmp_path, capsys):
    tasks = [{"id": value, "title": "t"} for value in NASTY_IDS]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"master": {"tasks": tasks}}, allow_nan=True))
    code, err = plan_exit_code(path, capsys)
    assert code == 1
    assert "'--upload-pack=evil'" in err and "'../../x'" in err and "not a usable name" in err


def test_one_hundred_thousand_tasks_plan_in_bounded_time(tmp_path):
    tasks = [
        {"id": i, "title": f"t{i}", "dependencies": [i - 1] if (i - 1) % 50 else []}
        for i in range(1, 100_001)
    ]
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"master": {"tasks": tasks}}))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "cto_dagster.cli", "plan", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["stats"]["total_tasks"] == 100_000 and data["stats"]["total_levels"] == 50
    print(f"100,000 tasks planned in {elapsed:.1f} s (subprocess, start-up included)")


def test_hostile_tag_names_are_only_looked_up(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tasks.json"
    evil = "$(touch pwned); `touch pwned2` --upload-pack=x ../../etc"
    path.write_text(
        json.dumps(
            {
                "master": {"tasks": [{"id": 1, "title": "t"}]},
                evil: {"tasks": [{"id": 2, "title": "u"}]},
            }
        )
    )
    assert main(["plan", str(path), "--json", "--tag", evil]) == 0
    assert json.loads(capsys.readouterr().out)["levels"] == [["2"]]
    assert main(["plan", str(path), "--tag", evil + "x"]) == 1
    assert "tags present: master, $(touch pwned)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.json"]
