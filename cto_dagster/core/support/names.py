"""Task ids, and the git branch and Dagster asset names derived from them.

Task ids come from a file anyone can edit, so every name built from one is validated here, in one
place: a branch name must stay under `feature/` or `integration/`, never look like a git option, and
an asset name must be one Dagster accepts.
"""

from __future__ import annotations

import hashlib
import math
import re

_NUMERIC = re.compile(r"^\d{1,18}$")
_SUBTASK_REF = re.compile(r"^(\d{1,18})\.(\d{1,18})$")
# A slug id: letters, digits, `-` and `_`, starting with a letter or digit. No dots (they would be
# read as subtask references), no slashes (paths), no leading `-` (git options).
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_ASSET_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
# A tag name (TaskMaster's own rule is looser; these are the ones that make safe branch names)
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_RUN_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PROJECT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

TASK_BRANCH_PREFIX = "feature/task-"
TASK_BRANCH_SUFFIX = "-implementation"
INTEGRATION_BRANCH_PREFIX = "integration/level-"
STAGE_BRANCH_PREFIX = "integration/levels-"  # one branch for several levels (`granularity`)


class InvalidName(ValueError):
    """A name built from task data that cannot be used safely."""


def canonical_id(value: object) -> str | None:
    """The canonical string form of a task id, or None when the value is not a usable id.

    `7`, `"7"`, `"007"` and `7.0` are one task, written `7`; slugs are kept as written.
    """
    if type(value) is int:  # the common case first: most files use int ids
        return str(value) if 0 <= value < 10**18 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(int(value)) if 0 <= value < 10**18 else None
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and 0 <= value < 1e18:
            return str(int(value))
        return None
    if isinstance(value, str):
        text = value.strip()
        if _NUMERIC.match(text):
            return str(int(text))
        if _SLUG.match(text):
            return text
    return None


def qualified_id(tag: str, task_id: str) -> str:
    """A task's name in a plan of several tags: `api.3`. Ids never hold a dot, so the name is
    unambiguous, and it is a valid branch name, label and (once mapped) asset name."""
    if not _TAG.match(tag):
        raise InvalidName(f"tag {describe_bad_id(tag)} cannot name branches")
    if canonical_id(task_id) != task_id:
        raise InvalidName(f"task id {describe_bad_id(task_id)} is not a usable name")
    return f"{tag}.{task_id}"


def is_task_name(name: str) -> bool:
    """A plain id (`7`, `auth-api`) or a tag-qualified one (`api.7`)."""
    if canonical_id(name) == name:
        return True
    tag, dot, task_id = name.partition(".")
    return bool(dot) and bool(_TAG.match(tag)) and canonical_id(task_id) == task_id


def valid_tag_name(tag: str) -> bool:
    return bool(_TAG.match(tag))


def subtask_reference(value: object) -> tuple[str, str] | None:
    """`(parent, sub)` when a dependency value names a subtask (`"3.2"` or the float `3.2`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    match = _SUBTASK_REF.match(text)
    if not match:
        return None
    return str(int(match.group(1))), str(int(match.group(2)))


def id_sort_key(task_id: str) -> tuple[str, int, int, str]:
    """Numeric ids by value first, then slugs by text; mixing both never fails. Tag-qualified
    ids (`api.7`) sort by tag, then by id."""
    tag, _, local = task_id.rpartition(".")
    if local.isdigit():
        return (tag, 0, int(local), "")
    return (tag, 1, 0, local)


def sorted_ids(ids) -> list[str]:
    return sorted(ids, key=id_sort_key)


def describe_bad_id(value: object) -> str:
    """A short, safe rendering of an unusable id for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


ASSET_ID_DIGITS = 3  # numeric ids are zero-padded so that asset lists sort 1, 2, ..., 10, 100


def asset_name_for(task_id: str) -> str:
    """`7` -> `task_007`, `rust-data-models` -> `task_rust_data_models`, `api.7` ->
    `task_api_007`: a valid Dagster asset name that sorts in task order in the UI's lists."""
    if not is_task_name(task_id):
        raise InvalidName(f"task id {describe_bad_id(task_id)} is not a usable name")
    tag, _, local = task_id.rpartition(".")
    prefix = f"task_{_ASSET_UNSAFE.sub('_', tag)}_" if tag else "task_"
    if local.isdigit():
        return prefix + local.zfill(ASSET_ID_DIGITS)
    return prefix + _ASSET_UNSAFE.sub("_", local)


def task_branch(task_id: str) -> str:
    """The guide's branch name for a task, refusing anything that is not a plain id."""
    if not is_task_name(task_id):
        raise InvalidName(f"task id {describe_bad_id(task_id)} cannot be used in a branch name")
    return f"{TASK_BRANCH_PREFIX}{task_id}{TASK_BRANCH_SUFFIX}"


def integration_branch(level: int, run_token: str, last_level: int | None = None) -> str:
    """The guide's `integration/level-<L>-<run>`; a branch integrating levels A to B at once
    (integration `granularity`) is `integration/levels-<A>-<B>-<run>`."""
    for value in (level, last_level if last_level is not None else level):
        if not isinstance(value, int) or value < 0:
            raise InvalidName(f"bad level {value!r}")
    if not _RUN_TOKEN.match(run_token):
        raise InvalidName(f"run token {describe_bad_id(run_token)} cannot be used in a branch name")
    if last_level is None or last_level == level:
        return f"{INTEGRATION_BRANCH_PREFIX}{level}-{run_token}"
    if last_level < level:
        raise InvalidName(f"bad level range {level}-{last_level}")
    return f"{STAGE_BRANCH_PREFIX}{level}-{last_level}-{run_token}"


def check_branch_name(name: str) -> str:
    """Accept only branch names this tool creates: `feature/task-*`, `integration/level-*` or
    `integration/levels-*`."""
    if name.startswith(TASK_BRANCH_PREFIX) and name.endswith(TASK_BRANCH_SUFFIX):
        task_id = name[len(TASK_BRANCH_PREFIX) : -len(TASK_BRANCH_SUFFIX)]
        if is_task_name(task_id):
            return name
    if name.startswith(INTEGRATION_BRANCH_PREFIX):
        rest = name[len(INTEGRATION_BRANCH_PREFIX) :]
        level, _, token = rest.partition("-")
        if level.isdigit() and _RUN_TOKEN.match(token):
            return name
    if name.startswith(STAGE_BRANCH_PREFIX):
        first, _, rest = name[len(STAGE_BRANCH_PREFIX) :].partition("-")
        last, _, token = rest.partition("-")
        if first.isdigit() and last.isdigit() and _RUN_TOKEN.match(token):
            return name
    raise InvalidName(f"refusing branch name {describe_bad_id(name)}")


def check_base_branch(name: str) -> str:
    """A user-supplied base branch: a plain ref name, never an option or a path trick."""
    if (
        not name
        or len(name) > 200
        or name.startswith(("-", "/"))
        or name.endswith(("/", ".lock", "."))
        or ".." in name
        or "@{" in name
        or any(ch in name for ch in " ~^:?*[\\\x7f")
        or any(ord(ch) < 32 for ch in name)
    ):
        raise InvalidName(f"base branch {describe_bad_id(name)} is not a valid branch name")
    return name


def check_project_name(name: str) -> str:
    """Project names become asset key prefixes, job names and group names."""
    if not _PROJECT_NAME.match(name):
        raise InvalidName(
            f"project name {describe_bad_id(name)} must start with a letter or `_` and hold only "
            "letters, digits and `_` (at most 64 characters)"
        )
    return name


def label_value(text: str) -> str:
    """A valid Kubernetes label (and Dagster tag) value: at most 63 of [A-Za-z0-9_.-],
    alphanumeric at both ends. A longer value is cut and ends with a hash of the whole, so that
    two long task ids never share a label."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    if len(clean) > 63 or clean != text:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        clean = clean if len(clean) <= 63 else f"{clean[:54].strip('-_.')}-{digest}"
    return clean or "none"
