"""Extensions stockade does not know: kept as the words that were written, never dropped.

Analyses treat an opaque match as "may or may not match" (three-valued logic).
"""
from __future__ import annotations

from dataclasses import dataclass

from .values import save_string


@dataclass(frozen=True)
class Opaque:
    words: tuple[str, ...]

    def save(self) -> list[str]:
        return [w if w == "!" or w.startswith("-") else save_string(w) for w in self.words]
