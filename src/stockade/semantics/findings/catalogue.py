"""The findings stockade reports, each with a stable id: scripts and CI may key on the id.

Ids are never reused or renumbered; a retired finding keeps its number unused.
STK2xx: what the rules do (coverage, hygiene, access); parse defects have their own codes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...model import Origin


@dataclass(frozen=True)
class FindingKind:
    id: str
    name: str
    severity: str  # error, warning or info


KINDS = {k.name: k for k in (
    FindingKind("STK201", "shadowed-rule", "warning"),
    FindingKind("STK202", "redundant-rule", "info"),
    FindingKind("STK203", "after-match-all", "warning"),
    FindingKind("STK204", "jump-to-empty-chain", "warning"),
    FindingKind("STK205", "maybe-shadowed", "info"),
    FindingKind("STK206", "unloadable", "error"),
    FindingKind("STK207", "empty-set", "warning"),
    FindingKind("STK208", "accept-dropped-elsewhere", "warning"),
    FindingKind("STK211", "limited-accept-any-port", "error"),
    FindingKind("STK212", "global-limit", "warning"),
    FindingKind("STK213", "fragment-rule-never-matches", "warning"),
    FindingKind("STK214", "log-without-limit", "warning"),
    FindingKind("STK215", "source-port-accept", "warning"),
    FindingKind("STK216", "block-after-accept", "warning"),
    FindingKind("STK221", "no-established", "warning"),
    FindingKind("STK222", "no-loopback", "warning"),
    FindingKind("STK223", "ipv6-open", "error"),
    FindingKind("STK224", "reject-drop-mixed", "info"),
    FindingKind("STK225", "no-admin-path", "warning"),
    FindingKind("STK226", "ssh-open-to-all", "warning"),
    FindingKind("STK227", "default-open", "error"),
    FindingKind("STK290", "analysis-limited", "info"),
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
