"""The findings stockade reports, each with a stable id: scripts and CI may key on the id.

Ids are never reused or renumbered; a retired finding keeps its number unused.
STK2xx: what the rules do (coverage, hygiene, access); parse defects have their own codes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...model import Origin


@dataclass(frozen=True)
class Kind:
    id: str
    name: str
    severity: str  # error, warning or info


KINDS = {k.name: k for k in (
    Kind("STK201", "shadowed-rule", "warning"),
    Kind("STK202", "redundant-rule", "info"),
    Kind("STK203", "after-match-all", "warning"),
    Kind("STK204", "jump-to-empty-chain", "warning"),
    Kind("STK205", "maybe-shadowed", "info"),
    Kind("STK206", "unloadable", "error"),
    Kind("STK211", "limited-accept-any-port", "error"),
    Kind("STK212", "global-limit", "warning"),
    Kind("STK213", "fragment-rule-never-matches", "warning"),
    Kind("STK214", "log-without-limit", "warning"),
    Kind("STK215", "source-port-accept", "warning"),
    Kind("STK216", "block-after-accept", "warning"),
    Kind("STK221", "no-established", "warning"),
    Kind("STK222", "no-loopback", "warning"),
    Kind("STK223", "ipv6-open", "error"),
    Kind("STK224", "reject-drop-mixed", "info"),
    Kind("STK225", "no-admin-path", "warning"),
    Kind("STK226", "ssh-open-to-all", "warning"),
    Kind("STK227", "default-open", "error"),
    Kind("STK290", "analysis-limited", "info"),
)}


@dataclass(frozen=True)
class Finding:
    """One problem with the rules, in the diagnostics' `file:line:col: severity: message` form."""

    id: str
    name: str
    severity: str
    message: str
    origin: Origin
    fix: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.severity}: {self.message} [{self.id} {self.name}]\n  hint: {self.fix}"

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "severity": self.severity, "file": self.origin.file,
                "line": self.origin.line, "col": self.origin.col, "message": self.message, "hint": self.fix,
                "fix": self.fix}


def finding(name: str, message: str, origin: Origin, fix: str, severity: str | None = None) -> Finding:
    k = KINDS[name]
    return Finding(k.id, k.name, severity or k.severity, message, origin, fix)
