#!/usr/bin/env python3
"""Validate Helm values for the official Dagster chart, offline.

    uv run python scripts/validate_helm_values.py helm-values/values.yaml [--chart DIR]

The values are merged over the chart's own `values.yaml` the way Helm merges them (maps merge,
everything else replaces), then validated against the chart's `values.schema.json`. The schema's
Kubernetes `$ref`s point at a remote `_definitions.json`; they are resolved against the copy that
the PyPI package `kubernetes-validate` bundles, so nothing is fetched.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path

import yaml

K8S_DEFINITIONS_PREFIX = "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/"
# The pinned chart's values.yaml and values.schema.json, carried in the repository (see SOURCE.md)
DEFAULT_CHART = Path(__file__).resolve().parent.parent / "helm-values" / "chart"


def merge(base, override):
    """Helm's coalescing: maps merge key by key; a null in the override deletes the key."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = merge(base.get(key), value)
        return merged
    return override


@cache
def kubernetes_definitions() -> dict:
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = sorted(
        (p for p in root.iterdir() if p.name.endswith("-local")),
        key=lambda p: tuple(int(x) for x in p.name[1:].split("-")[0].split(".")),
    )
    document = json.loads((versions[-1] / "_definitions.json").read_text())
    definitions = document["$defs"]
    # the chart refers to `#/definitions/...`; the bundled file keeps them under `$defs`
    return {"definitions": definitions, "$defs": definitions}


def validator_for(schema: dict):
    from jsonschema import Draft7Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    definitions = Resource(contents=kubernetes_definitions(), specification=DRAFT7)

    def retrieve(uri: str):
        if uri.startswith(K8S_DEFINITIONS_PREFIX):
            return definitions
        raise LookupError(f"refusing to fetch {uri}: only the bundled Kubernetes schema is used")

    return Draft7Validator(schema, registry=Registry(retrieve=retrieve))


def validate_values(values_path: Path, chart: Path = DEFAULT_CHART) -> list[str]:
    """Every schema error, as `path.to.field: message`; empty when valid."""
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    values = yaml.safe_load(values_path.read_text()) or {}
    schema = json.loads((chart / "values.schema.json").read_text())
    merged = merge(defaults, values)
    errors = []
    for error in sorted(validator_for(schema).iter_errors(merged), key=lambda e: list(e.path)):
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        errors.append(f"{where}: {error.message[:300]}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("values", type=Path)
    parser.add_argument(
        "--chart",
        type=Path,
        default=DEFAULT_CHART,
        help="folder with the chart's values.yaml and values.schema.json",
    )
    args = parser.parse_args()
    errors = validate_values(args.values, args.chart)
    for line in errors:
        print(f"❌ {line}", file=sys.stderr)
    if not errors:
        print(f"✅ {args.values} is valid for the Dagster chart in {args.chart}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
