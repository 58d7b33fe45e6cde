"""Named sets as `ipset restore` input: create, then add every member (`-exist` keeps reloads idempotent)."""
from __future__ import annotations

from ..model import IPSet, Ruleset


def render_ipsets(rulesets: list[Ruleset]) -> str:
    lines: list[str] = []
    for rs in rulesets:
        for s in rs.sets.values():
            lines.append(" ".join(["create", s.name, s.type, *s.options, "-exist"]))
            lines += (f"add {s.name} {m} -exist" for m in s.members)
    return "\n".join(lines) + ("\n" if lines else "")


def render_ipset_save(sets: list[IPSet]) -> str:
    """Sets as `ipset save` prints them (a script's sets are kept in that form; the initval seed aside)."""
    lines: list[str] = []
    for s in sets:
        lines.append(" ".join(["create", s.name, s.type, *s.options]))
        lines += (f"add {s.name} {m}" for m in s.members)
    return "\n".join(lines) + ("\n" if lines else "")
