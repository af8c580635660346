"""The guard map (tests/README.md) names tests that exist: a renamed or deleted test cannot leave
a promise pointing at nothing."""

import ast
import re

from tests.helpers import REPO_ROOT

TESTS = REPO_ROOT / "tests"
# `test_x.py::test_name`, `reliability/test_x.py`, `..._suffix` (a name of the file just named)
REFERENCE = re.compile(r"`((?:reliability/)?test_\w+\.py)(?:::(\w+))?`|`::(\w+)`|`\.\.\.(\w+)`")


def _functions(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_test_the_guard_map_names_exists():
    missing, current = [], None
    for line in (TESTS / "README.md").read_text(encoding="utf-8").splitlines():
        for match in REFERENCE.finditer(line):
            file, name, same_file, suffix = match.groups()
            if file:
                current = TESTS / file
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
    assert not missing, f"tests/README.md names tests that do not exist: {missing}"
