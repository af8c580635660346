"""The reader: every file shape, id form, alias and tag rule of TASKMASTER-FORMAT.md section 6."""

import json

import pytest

from cto_dagster.core.planning.planner import build_plan
from cto_dagster.core.taskmaster import TasksFileError, read_task_list
from tests.helpers import tagged, task, write_tasks


def read(tmp_path, data, **kwargs):
    kwargs.setdefault("environ", {})
    return read_task_list(write_tasks(tmp_path, data), **kwargs)


def test_tagged_legacy_list_and_tag_to_list_shapes(tmp_path):
    tasks = [task(1), task(2, [1])]
    for data, fmt in [
        (tagged(*tasks), "tagged"),
        ({"tasks": tasks, "metadata": {"projectName": "x"}}, "legacy"),
        (tasks, "list"),
        ({"master": tasks}, "tag-list"),
    ]:
        result = read(tmp_path, data)
        assert result.file_format == fmt
        assert list(result.tasks) == ["1", "2"]
        assert result.tasks["2"].dependencies == ("1",)


def test_id_forms_are_one_task(tmp_path):
    data = tagged(task("007"), task(2.0, ["7"]), task(3, [7.0, 2]), task("rust-models", [3]))
    result = read(tmp_path, data)
    assert list(result.tasks) == ["2", "3", "7", "rust-models"]
    assert result.tasks["3"].dependencies == ("7", "2")
    assert result.tasks["rust-models"].dependencies == ("3",)


def test_dependency_aliases_and_subtask_references(tmp_path):
    data = tagged(
        {"id": 1, "title": "a"},
        {"id": 2, "title": "b", "dependsOn": [1]},
        {"id": 3, "title": "c", "depends_on": ["2.1"], "dependencies": None},
        {"id": 4, "title": "d", "dependencies": ["4.1", 29.0]},
        {"id": 29, "title": "e"},
    )
    result = read(tmp_path, data)
    assert result.tasks["2"].dependencies == ("1",)
    assert result.tasks["3"].dependencies == ("2",)  # "p.s" waits for task p
    assert result.tasks["4"].dependencies == ("29",)  # its own subtask is internal ordering


def test_subtasks_are_kept_with_their_task(tmp_path):
    data = tagged(
        task(
            5,
            subtasks=[
                {"id": 1, "title": "first", "dependencies": []},
                {"id": "5.2", "title": "second", "dependencies": ["5.1"]},
                {"id": 3.0, "title": "third", "dependencies": [2]},
            ],
        )
    )
    subtasks = read(tmp_path, data).tasks["5"].subtasks
    assert [s.id for s in subtasks] == ["5.1", "5.2", "5.3"]
    assert subtasks[1].dependencies == ("5.1",)


def test_status_and_priority_are_normalised(tmp_path):
    data = tagged(task(1, status=" Done "), {"id": 2, "title": "x"}, task(3, priority="HIGH"))
    result = read(tmp_path, data)
    assert result.tasks["1"].is_done
    assert result.tasks["2"].status == "pending"
    assert result.tasks["3"].priority_rank == 3


def test_tag_choice_order(tmp_path, monkeypatch):
    data = {
        "master": {"tasks": [task(1)]},
        "feat": {"tasks": [task(9)]},
        "other": {"tasks": [task(8)]},
    }
    path = write_tasks(tmp_path, data)
    assert read_task_list(path, environ={}).tag == "master"
    (tmp_path / ".taskmaster/config.json").write_text(
        json.dumps({"global": {"defaultTag": "other"}})
    )
    assert read_task_list(path, environ={}).tag == "other"
    (tmp_path / ".taskmaster/state.json").write_text(json.dumps({"currentTag": "feat"}))
    assert read_task_list(path, environ={}).tag == "feat"
    assert read_task_list(path, environ={"TASKMASTER_TAG": "other"}).tag == "other"
    assert read_task_list(path, tag="master", environ={"TASKMASTER_TAG": "other"}).tag == "master"


def test_only_tag_is_chosen_without_master(tmp_path):
    assert read(tmp_path, tagged(task(1), tag="mvp")).tag == "mvp"


def test_unknown_tag_lists_tags(tmp_path):
    with pytest.raises(TasksFileError) as info:
        read(tmp_path, tagged(task(1)), tag="nope")
    assert "tags present: master" in info.value.render()


def test_several_tags_and_none_chosen(tmp_path):
    with pytest.raises(TasksFileError, match="several tags"):
        read(tmp_path, {"a": {"tasks": []}, "b": {"tasks": []}})


def test_project_folder_and_legacy_location(tmp_path):
    write_tasks(tmp_path, {"tasks": [task(1)]}, name="tasks/tasks.json")
    assert read_task_list(tmp_path, environ={}).path.name == "tasks.json"
    write_tasks(tmp_path, tagged(task(2)))
    assert list(read_task_list(tmp_path, environ={}).tasks) == ["2"]


def test_missing_file_message(tmp_path):
    with pytest.raises(TasksFileError) as info:
        read_task_list(tmp_path, environ={})
    assert info.value.render().startswith(
        f"❌ TaskMaster tasks.json not found: {tmp_path}/.taskmaster/tasks/tasks.json"
    )


def test_invalid_json_names_line_and_column(tmp_path):
    with pytest.raises(TasksFileError) as info:
        read(tmp_path, '{\n  "master": {"tasks": [\n    {"id": 1,,}\n')
    assert "line 3 column" in str(info.value)


@pytest.mark.parametrize("text", ["", "   ", "[[[[" * 10000, "42", '"x"', "{}", '{"a": 1}'])
def test_not_a_tasks_file(tmp_path, text):
    with pytest.raises(TasksFileError):
        read(tmp_path, text)


def test_every_problem_is_reported_at_once(tmp_path):
    data = tagged(
        task(1),
        task(1),
        task(2, [2]),
        task(3, [99]),
        task("../x"),
        "oops",
        {"title": "no id"},
        task(4, ["bad id!"]),
        {"id": 5, "title": "x", "dependencies": {"a": 1}},
    )
    with pytest.raises(TasksFileError) as info:
        build_plan(read(tmp_path, data))
    problems = info.value.problems
    text = "\n".join(problems)
    assert "duplicate id: 1" in text
    assert "task 2 depends on itself" in text
    assert "task 3 depends on 99, which does not exist" in text
    assert "'../x'" in text and "not a usable name" in text
    assert "entry #6 is a str" in text
    assert "has no `id`" in text
    assert "task 4 has dependency 'bad id!'" in text
    assert "task 5: `dependencies` must be a list" in text
    assert len(problems) == 8
    assert "validate-dependencies" in info.value.render()


def test_content_hash_follows_the_work_not_the_status(tmp_path):
    base = read(tmp_path, tagged(task(1, details="x"))).tasks["1"].content_hash
    assert (
        read(tmp_path, tagged(task(1, details="x", status="done"))).tasks["1"].content_hash == base
    )
    assert read(tmp_path, tagged(task(1, details="y"))).tasks["1"].content_hash != base
