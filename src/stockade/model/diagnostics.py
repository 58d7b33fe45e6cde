"""Diagnostics in the compiler form `file:line:col: severity: message` plus a hint."""
from __future__ import annotations

from dataclasses import dataclass

from .ruleset import Origin


@dataclass(frozen=True, init=False)
class Token:
    """A word of input and where it starts, so every complaint can point at it."""

    text: str
    origin: Origin

    def __init__(self, text: str, origin: Origin):
        d = self.__dict__  # as Origin.__init__: one Token per word read
        d["text"], d["origin"] = text, origin


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


class StockadeError(Exception):
    """The base of every error stockade raises on purpose: a message for the user, a stable code and
    a hint. Anything else that escapes is a bug."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint
        if code is not None:
            self.code = code


class ParseError(StockadeError):
    """A defect that stops one rule or line from loading, as the real tool would refuse it."""

    code = "syntax"

    def __init__(self, message: str, *, hint: str | None = None, code: str = "syntax",
                 token: Token | None = None):
        super().__init__(message, hint=hint, code=code)
        self.token = token

    def diagnostic(self, fallback: Origin) -> Diagnostic:
        origin = self.token.origin if self.token else fallback
        return Diagnostic("error", self.code, self.message, origin, self.hint)


class DiagnosedError(StockadeError):
    """A deliberate error that points into the input: its diagnostics say where and why, each printed
    as `file:line:col: error: message` with its hint."""

    def __init__(self, diagnostics: list[Diagnostic]):
        first = diagnostics[0] if diagnostics else None
        super().__init__(first.message if first else "invalid input", hint=first and first.hint,
                         code=first.code if first else None)
        self.diagnostics = list(diagnostics)

    def __str__(self) -> str:
        return "\n".join(map(str, self.diagnostics)) or self.message


class Unreadable(DiagnosedError):
    """Input stockade cannot use at all (exit 2): not UTF-8 text, or a dump iptables-restore would refuse
    whole; its diagnostics say where and why."""

    code = "unreadable"

    def __init__(self, *diagnostics: Diagnostic):
        super().__init__(list(diagnostics))
        self.diagnostic = diagnostics[0]
