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
        # Verbatim; quoted only where the word would not read back as one word (blanks, quotes).
        return [save_string(w) if not w or any(c.isspace() or c in "\"'\\" for c in w) else w
                for w in self.words]
