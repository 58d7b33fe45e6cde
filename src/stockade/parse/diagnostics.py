"""Diagnostics in the compiler form `file:line:col: severity: message` plus a hint."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Origin


@dataclass(frozen=True)
class Token:
    """A word of input and where it starts, so every complaint can point at it."""

    text: str
    origin: Origin


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error", "warning" or "note"
    code: str  # stable id, e.g. "en-dash", "unknown-chain"
    message: str
    origin: Origin
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.origin}: {self.severity}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def to_json(self) -> dict:
        return {
            "file": self.origin.file, "line": self.origin.line, "col": self.origin.col,
            "severity": self.severity, "code": self.code, "message": self.message, "hint": self.hint,
        }


class ParseError(Exception):
    """A defect that stops one rule or line from loading, as the real tool would refuse it."""

    def __init__(self, message: str, *, hint: str | None = None, code: str = "syntax",
                 token: Token | None = None):
        super().__init__(message)
        self.message, self.hint, self.code, self.token = message, hint, code, token

    def diagnostic(self, fallback: Origin) -> Diagnostic:
        origin = self.token.origin if self.token else fallback
        return Diagnostic("error", self.code, self.message, origin, self.hint)


DASHES = {"\u2013": "en-dash", "\u2014": "em-dash", "\u2010": "hyphen", "\u2011": "non-breaking hyphen",
          "\u2012": "figure dash", "\u2212": "minus sign"}


def dash_defect(tok: Token) -> ParseError | None:
    """An option typed with a typographic dash (word processors turn `--` into `–`)."""
    text = tok.text
    if not text or text[0] not in DASHES:
        return None
    kind = DASHES[text[0]]
    rest = text.lstrip("".join(DASHES))
    fixed = ("-" + rest) if len(rest) == 1 else ("--" + rest)
    return ParseError(f"`{text}` starts with an {kind} (U+{ord(text[0]):04X}), not `-`",
                      hint=f"write `{fixed}`; the text was probably pasted from a web page",
                      code="typographic-dash", token=tok)
