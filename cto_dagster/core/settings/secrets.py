"""Secrets are named, never written: which environment variables hold secrets, so that their
values can be kept from agents and redacted from every log, metadata value and error."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cto_dagster.core.git.credentials import redact

SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$", re.IGNORECASE)
MIN_LENGTH = 4  # shorter values would redact ordinary words


@dataclass(frozen=True)
class SecretNames:
    """`git_tokens`: every project's git token variable (never given to any agent);
    `others`: variables holding agents' keys and other secrets (given only to the agent whose
    project names them; redacted everywhere)."""

    git_tokens: frozenset[str] = frozenset()
    others: frozenset[str] = frozenset()
    files: frozenset[str] = frozenset()  # every project's token file

    @classmethod
    def of(
        cls, git_tokens: Iterable[str | None], others: Iterable[str], files: Iterable[str] = ()
    ) -> SecretNames:
        return cls(
            frozenset(n for n in git_tokens if n),
            frozenset(n for n in others if n),
            frozenset(f for f in files if f),
        )

    def values(self, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
        environ = os.environ if environ is None else environ
        found = {environ.get(name) for name in self.git_tokens | self.others}
        for path in self.files:
            try:
                found.add(Path(path).read_text(encoding="utf-8").strip())
            except OSError:
                pass
        return tuple(sorted(v for v in found if v and len(v) >= MIN_LENGTH))

    def redact(self, text: str, environ: Mapping[str, str] | None = None) -> str:
        return redact(text, self.values(environ))
