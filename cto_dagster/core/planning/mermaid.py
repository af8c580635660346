"""The plan as a Mermaid flowchart: levels as subgraphs, the critical path highlighted, tasks that
do not run (done, review, held) and blocked tasks styled apart. GitHub renders it in PR bodies.

Edges point from a dependency to its dependent. Solid edges (`-->`) are exactly the plan's
dependencies between tasks that run (`parse_edges` reads them back); dotted ones (`-.->`) lead
from tasks that do not run. Task text is data: labels are escaped, node ids are generated.
"""

from __future__ import annotations

import re

from cto_dagster.core.planning.planner import ExecutionPlan

MAX_NODES = 200  # beyond this, one node per level: a PR body holds 65,536 characters
_LABEL_WIDTH = 48
_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "`": "'", "\\": "/"}
_STYLES = (
    "classDef critical stroke:#d9480f,stroke-width:3px",
    "classDef notrun fill:#f1f3f5,stroke:#adb5bd,color:#868e96,stroke-dasharray:4 3",
    "classDef review fill:#e7f5ff,stroke:#4dabf7,color:#1864ab,stroke-dasharray:4 3",
    "classDef blocked fill:#fff5f5,stroke:#fa5252,color:#c92a2a",
)


def _label(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _LABEL_WIDTH:
        text = text[: _LABEL_WIDTH - 1] + "…"
    return "".join(_ESCAPES.get(ch, ch) for ch in text if ch.isprintable())


def _node(node_id: str, task_id: str, title: str, note: str = "") -> str:
    label = _label(f"{task_id}: {title}" if title else task_id)
    return f'{node_id}["{label}{"<br/>" + _label(note) if note else ""}"]'


def render_mermaid(plan: ExecutionPlan, max_nodes: int = MAX_NODES) -> str:
    """A `flowchart TD` of the plan (a level summary when it has more than `max_nodes` tasks)."""
    not_run = [s["id"] for s in plan.skipped] + [b["id"] for b in plan.blocked]
    if len(plan.task_ids) + len(not_run) > max_nodes:
        return _render_levels(plan)
    ids = {task_id: f"t{index}" for index, task_id in enumerate([*plan.task_ids, *not_run])}
    lines = ["flowchart TD"]
    for level, members in enumerate(plan.levels):
        lines.append(f'  subgraph L{level}["Level {level}"]')
        for task_id in members:
            lines.append("    " + _node(ids[task_id], task_id, plan.tasks[task_id].title))
        lines.append("  end")
    if not_run:
        lines.append('  subgraph NR["Not run"]')
        for skipped in plan.skipped:
            task = plan.tasks[skipped["id"]]
            lines.append("    " + _node(ids[task.id], task.id, task.title, skipped["status"]))
        for blocked in plan.blocked:
            task = plan.tasks[blocked["id"]]
            lines.append("    " + _node(ids[task.id], task.id, task.title, "blocked"))
        lines.append("  end")
    for task_id in plan.task_ids:
        for dep in plan.dependencies_to_run(task_id):
            lines.append(f"  {ids[dep]} --> {ids[task_id]}")
    for task_id in not_run:
        for dep in plan.tasks[task_id].dependencies:
            if dep in ids:
                lines.append(f"  {ids[dep]} -.-> {ids[task_id]}")
    for task_id in plan.task_ids:  # done and review dependencies: satisfied, not run
        running = set(plan.dependencies[task_id])
        for dep in plan.tasks[task_id].dependencies:
            if dep in ids and dep not in running:
                lines.append(f"  {ids[dep]} -.-> {ids[task_id]}")
    lines += [f"  {style}" for style in _STYLES]
    _classes(lines, "critical", [ids[t] for t in plan.critical_path])
    review = [ids[s["id"]] for s in plan.skipped if s.get("group") == "review"]
    _classes(lines, "review", review)
    _classes(lines, "notrun", [ids[s["id"]] for s in plan.skipped if s.get("group") != "review"])
    _classes(lines, "blocked", [ids[b["id"]] for b in plan.blocked])
    return "\n".join(lines)


def _classes(lines: list[str], name: str, node_ids: list[str]) -> None:
    if node_ids:
        lines.append(f"  class {','.join(node_ids)} {name}")


def _render_levels(plan: ExecutionPlan) -> str:
    """One node per level, with its task count: the shape of a plan too big to draw."""
    lines = ["flowchart TD"]
    for level, members in enumerate(plan.levels):
        shown = ", ".join(members[:5]) + (f" … +{len(members) - 5}" if len(members) > 5 else "")
        lines.append(f'  L{level}["Level {level}: {len(members)} tasks<br/>{_label(shown)}"]')
        if level:
            lines.append(f"  L{level - 1} --> L{level}")
    if plan.skipped or plan.blocked:
        lines.append(f'  NR["Not run: {len(plan.skipped)}, blocked: {len(plan.blocked)}"]')
        lines.append(f"  {_STYLES[1]}")
        lines.append("  class NR notrun")
    return "\n".join(lines)


_NODE = re.compile(r'^\s*(t\d+)\["([^"]*)"\]\s*$')
_EDGE = re.compile(r"^\s*(t\d+) --> (t\d+)\s*$")


def parse_edges(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Read a rendered chart back: node id -> task id, and the solid edges as
    (task, dependency) pairs. For tests and tools that check a chart against a plan."""
    nodes: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    for line in text.splitlines():
        if match := _NODE.match(line):
            nodes[match.group(1)] = match.group(2).split(": ", 1)[0].split("<br/>", 1)[0]
        elif match := _EDGE.match(line):
            edges.add((match.group(2), match.group(1)))
    return nodes, {(nodes[t], nodes[d]) for t, d in edges}


def mermaid_block(plan: ExecutionPlan) -> str:
    """The chart as a fenced block, for Markdown (PR bodies, the job's description)."""
    return f"```mermaid\n{render_mermaid(plan)}\n```"
