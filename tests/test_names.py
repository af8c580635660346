import pytest

from cto_dagster.core.support.names import (
    InvalidName,
    asset_name_for,
    canonical_id,
    check_base_branch,
    check_branch_name,
    integration_branch,
    sorted_ids,
    subtask_reference,
    task_branch,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (7, "7"),
        ("7", "7"),
        ("007", "7"),
        (7.0, "7"),
        ("rust-data-models", "rust-data-models"),
        ("vmlx_001", "vmlx_001"),
        (0, "0"),
    ],
)
def test_canonical_ids(raw, expected):
    assert canonical_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        True,
        None,
        -1,
        2.5,
        float("nan"),
        "../../x",
        "--upload-pack=evil",
        "-rf",
        "a b",
        "a\nb",
        "",
        "x" * 101,
        "3.1",
        [],
        {},
        "ملف",
        "a/b",
        "$(touch pwned)",
    ],
)
def test_unusable_ids(raw):
    assert canonical_id(raw) is None


def test_subtask_references():
    assert subtask_reference("3.2") == ("3", "2")
    assert subtask_reference(29.1) == ("29", "1")
    assert subtask_reference("3") is None
    assert subtask_reference(3) is None


def test_names_from_ids():
    assert asset_name_for("rust-data-models") == "task_rust_data_models"
    assert task_branch("12") == "feature/task-12-implementation"
    assert integration_branch(0, "abc12345") == "integration/level-0-abc12345"
    with pytest.raises(InvalidName):
        task_branch("--upload-pack=evil")
    with pytest.raises(InvalidName):
        integration_branch(1, "../x")


def test_branch_guard_accepts_only_our_namespaces():
    assert check_branch_name("feature/task-3-implementation")
    assert check_branch_name("integration/level-2-abcd1234")
    for bad in ["main", "feature/task-../x-implementation", "--force", "integration/level-x-1"]:
        with pytest.raises(InvalidName):
            check_branch_name(bad)


@pytest.mark.parametrize("bad", ["-x", "a..b", "a b", "x.lock", "", "a~1", "/abs"])
def test_base_branch_guard(bad):
    with pytest.raises(InvalidName):
        check_base_branch(bad)
    assert check_base_branch("release/2.0") == "release/2.0"


def test_mixed_sorting_numeric_then_slugs():
    assert sorted_ids(["b", "10", "2", "a"]) == ["2", "10", "a", "b"]
