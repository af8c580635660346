"""The guard map (tests/README.md), the README and the documents of docs/ name tests that exist:
a renamed or deleted test cannot leave a promise pointing at nothing. Their links, benchmarks and
source paths point at files that exist."""

import ast
import re

import pytest

from tests.helpers import REPO_ROOT

TESTS = REPO_ROOT / "tests"
# Every document that names guards: the guard map first, then the README and docs/.
DOCUMENTS = [
    TESTS / "README.md",
    REPO_ROOT / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
]
# `test_x.py::test_name`, `tests/reliability/test_x.py[param]`, `::test_name` and `..._suffix` (a
# name of the file just named)
REFERENCE = re.compile(
    r"`(?:tests/)?((?:reliability/)?test_\w+\.py)(?:::(\w+))?(?:\[[^\]`]*\])?`"
    r"|`::(test_\w+)(?:\[[^\]`]*\])?`|`\.\.\.(\w+)(?:\[[^\]`]*\])?`"
)
# [text](target): a relative target is a file of this repository, its #anchor one of its headings
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Written on another branch (issue 29, item 6: the "Dependencies" text); linked already. Remove
# once it is merged: from then on a missing file fails like any other.
PENDING: set[str] = set()
# `benchmarks/x.py`, `scripts/x`, `cto_dagster/a/b.py`, `helm-values/x.yaml`: files that exist
PATH = re.compile(
    r"`((?:benchmarks|scripts|cto_dagster|helm-values|examples|tests)/[\w./-]+?)"
    r"(?:::\w+)?(?:\[[^\]`]*\])?`"
)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces
    as hyphens (`## Verified work (`verify`)` -> `verified-work-verify`)."""
    found = set()
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)  # no code
    for heading in re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE):
        found.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return found


def _functions(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def missing_tests(text: str) -> list[str]:
    """The tests `text` names that do not exist (a `::name` or `...suffix` refers to the last
    file named before it in the same document)."""
    missing, current = [], None
    for line in text.splitlines():
        for match in REFERENCE.finditer(line):
            file, name, same_file, suffix = match.groups()
            if file:
                # a bare name beside a file of reliability/ just named is that folder's
                beside = current.parent / file if current is not None else None
                current = beside if beside is not None and beside.exists() else TESTS / file
                if not current.exists():
                    missing.append(file)
                    continue
            target = name or same_file
            if current is None or not current.exists():
                continue
            names = _functions(current)
            if target and target not in names:
                missing.append(f"{current.name}::{target}")
            if suffix and not any(n.endswith(suffix) for n in names):
                missing.append(f"{current.name}::...{suffix}")
    return missing


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_test_the_guard_map_names_exists(document):
    missing = missing_tests(document.read_text(encoding="utf-8"))
    assert not missing, (
        f"{document.relative_to(REPO_ROOT)} names tests that do not exist: {missing}"
    )


def test_a_test_that_does_not_exist_is_found():
    """The check itself: a misspelt test, a suffix nothing ends with, a missing file."""
    text = (
        "`test_guard_map.py::test_every_test_the_guard_map_names_exists`, `::test_no_such_test`\n"
        "`tests/test_guard_map.py` `..._no_such_suffix`, `tests/reliability/test_nowhere.py`"
    )
    assert missing_tests(text) == [
        "test_guard_map.py::test_no_such_test",
        "test_guard_map.py::..._no_such_suffix",
        "reliability/test_nowhere.py",
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_and_named_path_exists(document):
    """`](docs/x.md)`, `](../README.md#a-heading)`, `benchmarks/x.py`, `cto_dagster/speedups/x.py`:
    a file moved or renamed, or a heading reworded, cannot leave a document pointing at nothing."""
    text = document.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.exists():
            if str(file.relative_to(REPO_ROOT)) not in PENDING:
                broken.append(target)
            continue
        if anchor and (file.is_dir() or anchor not in anchors(file.read_text(encoding="utf-8"))):
            broken.append(target)
    for path in PATH.findall(text):
        if "<" in path or "*" in path:  # a pattern, not a file
            continue
        if not (REPO_ROOT / path.rstrip("/")).exists():
            broken.append(path)
    assert not broken, f"{document.relative_to(REPO_ROOT)} points at nothing: {broken}"
