"""The layout docs/internals.md describes holds: the core imports no Dagster and its packages
import one another in one direction only, and every `CTO_` variable the package names is either
internal (`CTO_DAGSTER_*`) or part of the agent's documented contract."""

import ast
import re
from collections import defaultdict

from tests.helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "cto_dagster"
CORE = PACKAGE / "core"
INTERNALS = REPO_ROOT / "docs" / "internals.md"


def _module_name(path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> set[str]:
    """Every module `path` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _core_package(module: str) -> str | None:
    """`cto_dagster.core.planning.planner` -> `planning`."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["cto_dagster", "core"] else None


def test_the_core_imports_no_dagster_and_nothing_above_it():
    above = ("dagster", "dagster_", "cto_dagster.defs", "cto_dagster.commands", "cto_dagster.cli")
    wrong = {
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path in CORE.rglob("*.py")
        for name in _imports(path)
        if name.startswith(above) or name in ("cto_dagster.definitions", "cto_dagster.speedups")
    }
    assert not wrong, sorted(wrong)


def test_the_core_packages_import_one_another_in_one_direction():
    edges: dict[str, set[str]] = defaultdict(set)
    for path in CORE.rglob("*.py"):
        source = _core_package(_module_name(path))
        for name in _imports(path):
            target = _core_package(name)
            if source and target and target != source and (CORE / target).is_dir():
                edges[source].add(target)
    # a package graph with no cycle empties when the packages nothing else needs are removed
    remaining = {package: set(targets) for package, targets in edges.items()}
    while True:
        leaves = {t for targets in remaining.values() for t in targets} - set(remaining)
        leaves |= {p for p, targets in remaining.items() if not targets}
        if not leaves:
            break
        remaining = {p: t - leaves for p, t in remaining.items() if p not in leaves}
    assert not remaining, f"the core's packages import one another in a cycle: {remaining}"


def agent_contract() -> tuple[set[str], tuple[str, ...]]:
    """The names (and `CTO_X_*` prefixes) docs/internals.md lists as the agent's contract."""
    text = INTERNALS.read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("- **The agent's contract"))
    names = re.findall(r"`(CTO_[A-Z0-9_]+\*?)`", line)
    return (
        {n for n in names if not n.endswith("*")},
        tuple(n[:-1] for n in names if n.endswith("*")),
    )


def test_every_cto_variable_the_package_names_is_internal_or_the_agents_contract():
    exact, prefixes = agent_contract()
    assert {"CTO_TASK_ID", "CTO_PROMPT_FILE", "CTO_MERGE_INTO"} <= exact
    wrong = set()
    for path in PACKAGE.rglob("*.py"):
        # (a bare `CTO_*` names them all, no variable)
        for name in re.findall(r"\bCTO_[A-Z0-9_]+", path.read_text(encoding="utf-8")):
            if name.startswith("CTO_DAGSTER_") or name in exact or name.startswith(prefixes):
                continue
            wrong.add(f"{path.relative_to(REPO_ROOT)}: {name}")
    assert not wrong, (
        "an internal variable must be named CTO_DAGSTER_*; CTO_ alone is the agent's contract "
        f"(docs/internals.md, 'Environment variables'): {sorted(wrong)}"
    )
