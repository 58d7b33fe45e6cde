"""-m state: the packet's connection-tracking state (iptables implements it with the conntrack match)."""
from __future__ import annotations

from dataclasses import dataclass

from ..parse.diagnostics import ParseError
from .base import Extension, Option, register

# The order in which iptables tries a word: a word matches the first name it is a case-insensitive
# prefix of (`E` is ESTABLISHED, `S` is SNAT).
STATE_NAMES = ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED")
# The order iptables-save prints them in.
PRINT_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")


@dataclass(frozen=True)
class States:
    """Packets whose conntrack state is one of `names` (with `invert`: none of them).
    NEW: a packet of a connection not yet seen in both directions; ESTABLISHED: one of a connection that
    has (the first reply included); RELATED: one of a connection expected by another (FTP data) or an
    ICMP error about one; INVALID: one conntrack could not place; UNTRACKED: one exempted in the raw
    table (`-j CT --notrack`). With -m conntrack also SNAT/DNAT: NAT rewrote the connection's source/
    destination (these add to the packet's other state)."""

    names: frozenset[str]
    invert: bool = False

    def save(self, flag: str) -> list[str]:
        return (["!"] if self.invert else []) + [flag, ",".join(n for n in PRINT_ORDER if n in self.names)]


def parse_names(word: str, names: tuple[str, ...], what: str) -> frozenset[str]:
    """A comma-separated list, each item a case-insensitive prefix of one of `names`."""
    out = set()
    for item in word.split(","):
        hit = next((n for n in names if item and n.startswith(item.upper())), None)
        if hit is None:
            raise ParseError(f"bad {what} `{item}` in `{word}`" if item else f"empty {what} in `{word}`",
                             code="bad-value", hint=f"a comma-separated list, no spaces, of {', '.join(names)}")
        out.add(hit)
    return frozenset(out)


@register
class StateMatch(Extension):
    name = "state"
    options = (Option("--state", invertible=True),)

    def convert(self, opt, args, ctx):
        return parse_names(args[0], STATE_NAMES, "state")

    def finish(self, acc, ctx):
        if "state" not in acc:
            raise ParseError("state: --state is required", code="missing-option",
                             hint="e.g. `--state ESTABLISHED,RELATED`")
        invert, names = acc["state"]
        return States(names, invert)

    def save(self, d: States) -> list[str]:
        return d.save("--state")
