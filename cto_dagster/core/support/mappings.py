"""Plain mappings merged the way Dagster's run config and Kubernetes config layer."""

from __future__ import annotations

from collections.abc import Mapping


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """`base` with `override`'s keys on top; where both hold a mapping, they merge the same way
    (any other value of `override`, a list included, replaces `base`'s). Neither is changed."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        out[key] = (
            deep_merge(old, value)
            if isinstance(value, Mapping) and isinstance(old, Mapping)
            else value
        )
    return out
