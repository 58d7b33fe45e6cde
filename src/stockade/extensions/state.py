"""-m state: the packet's connection-tracking state (iptables implements it with the conntrack match)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part
from ..model.space import KIND
from .base import Extension, Option, register
from .ct import TEMPLATE_NOTE

# The order in which iptables tries a word: a word matches the first name it is a case-insensitive
# prefix of (`E` is ESTABLISHED, `S` is SNAT).
STATE_NAMES = ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED")
# The order iptables-save prints them in.
PRINT_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
NO_ENTRY = frozenset({"INVALID", "UNTRACKED"})  # states of packets without a conntrack entry


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


def ct_state(pkt, env) -> str | None:
    """The state conntrack_mt (xt_conntrack.c) derives from what the packet carries at the asking rule.

    The raw table runs before conntrack (priority -300 against -200): there a packet carries no entry
    yet and reads INVALID, UNTRACKED once a raw rule did `-j CT --notrack`, or NEW once one attached a
    template (`-j CT --zone ...`: xt_ct_target sets IP_CT_NEW). Two raw cases are left open (None): a
    packet on `lo` still carries the entry its output path attached, which the model does not follow;
    and a packet given as UNTRACKED, where a notrack that already ran cannot be told from one still
    to come. Elsewhere the state is the one conntrack attached (env.ctstate); None there means no
    conntrack ran at all, which leaves the packet without an entry: INVALID. (All measured.)
    """
    if env.key and env.key[0] == "raw":
        if pkt.hook == "INPUT" and pkt.iif == "lo":
            return None
        if env.ctstate == "UNTRACKED":
            return None if pkt.state == "UNTRACKED" else "UNTRACKED"
        return "NEW" if template(env) else "INVALID"
    return env.ctstate or "INVALID"


def template(env) -> bool:
    """Whether the packet carries a raw-table conntrack template rather than an entry."""
    return bool(env.key) and env.key[0] == "raw" and TEMPLATE_NOTE in env.notes


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


def nft_states(names, invert: bool) -> str:
    """`ct state [! ]a,b`, in iptables' print order."""
    return f"ct state {'! ' if invert else ''}{','.join(n.lower() for n in PRINT_ORDER if n in names)}"


@register
class StateMatch(Extension):
    name = "state"
    classwise = True
    conntrack = True
    options = (Option("--state", invertible=True, type=lambda word: parse_names(word, STATE_NAMES, "state"),
                      required=True, hint="e.g. `--state ESTABLISHED,RELATED`"),)

    def finish(self, acc, ctx):
        invert, names = acc["state"]
        return States(names, invert)

    def holds(self, d: States, pkt, env) -> bool | None:
        """iptables-nft loads -m state as xt_conntrack revision 3 with only its state test."""
        state = ct_state(pkt, env)
        return None if state is None else (state in d.names) != d.invert

    def constraint(self, d: States, frame):
        kinds = frame.kinds_where(lambda k: None if k.state is None else (k.state in d.names) != d.invert)
        return None if kinds is None else {KIND: kinds}

    def save(self, d: States) -> list[str]:
        return d.save("--state")

    def nft(self, d: States, ctx) -> list[Part]:
        return [Part(nft_states(d.names, d.invert))]
