"""The script as its author meant it: the parse errors stockade knows how to repair, repaired.

A tutorial's typos (an en-dash for `--`, `-A CHAIN-p` with the space lost, a stray `[`, an
`x.x.x.x` placeholder) keep rules from loading, and so hide what those rules would do once
the admin fixes the typo. Reading the repaired text lets lint report both: what the kernel
would load now, and the problems waiting behind the errors. Placeholders become a
documentation address (192.0.2.10), and the message says so.
"""
from __future__ import annotations

import re
from dataclasses import replace

from ...model import Origin
from ...parse.command import Builder
from ...parse.read import read

PLACEHOLDER_ADDRESS = "192.0.2.10"
_TICKS = re.compile(r"`([^`]*)`")


def _edit(d) -> tuple[str, str] | None:
    """(text at the diagnostic's position, its repair) for the defects that have one."""
    ticks = _TICKS.findall(d.message)
    if d.code == "typographic-dash" and d.hint:
        fixed = _TICKS.findall(d.hint)
        return (ticks[0], fixed[0]) if ticks and fixed else None
    if d.code == "glued-option" and ticks:
        glued = d.message.split()[1]
        return glued, ticks[0]
    if d.code == "stray-character" and ticks:
        return ticks[0], " "
    if d.code == "placeholder" and ticks:
        return ticks[0], PLACEHOLDER_ADDRESS
    return None


class Repaired:
    """The repaired text's rulesets, and a map from its positions back to the original's."""

    def __init__(self, builder: Builder, shifts: dict[int, list[tuple[int, int]]], placeholders: bool):
        self.builder, self.shifts, self.placeholders = builder, shifts, placeholders

    def origin(self, o: Origin) -> Origin:
        col = o.col
        for at, delta in self.shifts.get(o.line, ()):
            if o.col > at:
                col -= delta
        return replace(o, col=max(col, 1))


def repaired(text: str, file: str, diagnostics: list) -> Repaired | None:
    """Re-read `text` with every repairable error repaired; None if there is none."""
    lines = text.split("\n")
    edits: dict[int, list[tuple[int, str, str]]] = {}
    placeholders = False
    for d in diagnostics:
        if d.severity != "error" or d.origin.file != file:
            continue
        got = _edit(d)
        if got is None:
            continue
        old, new = got
        row = lines[d.origin.line - 1] if 0 < d.origin.line <= len(lines) else ""
        if row[d.origin.col - 1:d.origin.col - 1 + len(old)] != old:
            continue  # the position does not hold the text the message names: leave it
        edits.setdefault(d.origin.line, []).append((d.origin.col, old, new))
        placeholders |= d.code == "placeholder"
    if not edits:
        return None
    shifts: dict[int, list[tuple[int, int]]] = {}
    for line, items in edits.items():
        row = lines[line - 1]
        delta = 0
        for col, old, new in sorted(set(items), reverse=True):
            row = row[:col - 1] + new + row[col - 1 + len(old):]
        for col, old, new in sorted(set(items)):
            delta_here = len(new) - len(old)
            shifts.setdefault(line, []).append((col + delta + len(old) - 1, delta_here))
            delta += delta_here
        lines[line - 1] = row
    return Repaired(read("\n".join(lines), file), shifts, placeholders)
