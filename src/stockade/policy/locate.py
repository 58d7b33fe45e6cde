"""Where each key of a TOML file was written, so schema errors can say `file:line:col`.

tomllib returns plain data without positions; this scanner reads the same text line by
line, following `[table]` and `[[array-of-tables]]` headers, and records the position of
every `key =`. It handles the layouts a policy file uses (dotted keys, multi-line arrays
and inline tables on one line); anything it cannot place falls back to the nearest
enclosing key or header.
"""
from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")


def key_positions(text: str) -> dict[tuple, tuple[int, int]]:
    """Map key paths, e.g. ("allow", 1, "service"), to 1-based (line, column)."""
    out: dict[tuple, tuple[int, int]] = {}
    counts: dict[tuple, int] = {}
    base: tuple = ()
    depth = 0  # open brackets of a multi-line value
    for lineno, line in enumerate(text.splitlines(), 1):
        if depth > 0:
            depth += _balance(line)
            continue
        m = _HEADER.match(line)
        if m and not _KEY.match(line):
            path = tuple(p.strip().strip('"') for p in m.group(2).split("."))
            if m.group(1) == "[[":
                counts[path] = counts.get(path, -1) + 1
                base = path + (counts[path],)
            else:
                base = path
            out.setdefault(base, (lineno, line.index(m.group(1)) + 1))
            continue
        m = _KEY.match(line)
        if m:
            keys = tuple(k.strip() for k in m.group(2).split("."))
            out[base + keys] = (lineno, len(m.group(1)) + 1)
            depth = _balance(line[m.end():])
    return out


def _brackets(line: str):
    """(column, +1 or -1) for each bracket of one line outside strings and comments."""
    quote, escaped = None, False
    for col, c in enumerate(line, 1):
        if quote:
            if escaped:
                escaped = False
            elif c == "\\" and quote == '"':
                escaped = True
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            return
        elif c in "[{":
            yield col, 1
        elif c in "]}":
            yield col, -1


def _balance(text: str) -> int:
    """Net count of opening brackets in a value, ignoring those inside strings and comments."""
    return sum(step for _, step in _brackets(text))


def position(positions: dict[tuple, tuple[int, int]], path: tuple) -> tuple[int, int]:
    """The position of `path`, or of its nearest enclosing key; (1, 1) if none is known."""
    for n in range(len(path), 0, -1):
        if path[:n] in positions:
            return positions[path[:n]]
    return (1, 1)


def nesting_beyond(text: str, limit: int) -> tuple[int, int] | None:
    """Where brackets first nest deeper than `limit` (line, column), outside strings and comments; None if
    they never do. Checked before tomllib, which recurses once per level. (A basic string ends with its
    line; multi-line strings hold no brackets that count.)"""
    depth = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        for col, step in _brackets(line):
            depth = max(0, depth + step)
            if depth > limit:
                return lineno, col
    return None
