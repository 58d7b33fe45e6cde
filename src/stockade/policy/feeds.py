"""A feed's list as fetched: its format read, every entry checked, bad lines skipped and counted.

A feed is someone else's file, fetched every hour: one bad line must not cost the whole list (as a
bad line of a group file, which the admin keeps, does). The good entries are kept; each bad line is
reported with its `file:line:col`. Lists run to millions of lines, so a list without a bad line is
checked in bulk (compile.py's group-file reader); only a list with bad lines is read line by line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from ..model import Origin
from ..model.diagnostics import Diagnostic
from ..parse.read import decode
from .compile import Members, _entry, _read_bulk, quoted

# What starts a comment, per format: Spamhaus DROP/EDROP lines are `NET ; SBLnnn`, with `;` comment lines;
# `ip;comment` lists put a note after the address; FireHOL netsets and plain lists use `#`.
COMMENTS = {"plain": "#", "netset": "#", "ip-comment": "#;", "spamhaus": "#;"}


@dataclass
class FeedList:
    members: Members
    bad: list[Diagnostic] = field(default_factory=list)  # one per bad line, in order

    @cached_property
    def count(self) -> int:
        return sum(len(set(v)) for v in self.members.values())  # a list may repeat an entry


def read_feed(data: bytes, fmt: str, name: str) -> FeedList:
    """The feed's entries; `name` (the URL or file) is where its bad lines are reported. Unreadable
    if the bytes are not text at all (NUL, not UTF-8)."""
    text = decode(data, name)
    marks = COMMENTS[fmt]
    cut = re.compile(f"[{re.escape(marks)}][^\\n]*")
    bulk = _read_bulk(cut.sub("", text) if any(m in text for m in marks) else text)
    if bulk is not None:
        return FeedList(bulk)
    out: Members = {}
    bad = []
    for n, line in enumerate(text.splitlines(), 1):
        entry = cut.sub("", line).strip()
        if not entry:
            continue
        words = entry.split()
        try:
            if len(words) > 1:
                raise ValueError(f"{quoted(words[1])}: one address or network per line",
                                 f"format {fmt}: comments start with {' or '.join(marks)}")
            key, canonical = _entry(entry)
        except ValueError as e:
            message, hint = e.args
            word = words[1] if len(words) > 1 else entry
            bad.append(Diagnostic("warning", "feed-line", f"{message}; line skipped",
                                  Origin(name, n, line.index(word) + 1), hint))
            continue
        out.setdefault(key, []).append(canonical)
    return FeedList(out, bad)

