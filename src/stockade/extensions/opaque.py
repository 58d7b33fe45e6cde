"""Extensions stockade does not know, and words it cannot read: kept as written, never dropped.

Analyses treat an opaque match as "may or may not match" (three-valued logic). What their kernel
modules are known to do is declared here by name, as a modelled extension declares it on itself
(extensions/base.py); the registry answers for both.

`Unread` is the stand-in for what stockade cannot read or know: a value an anonymised dump blanked
(`--mac-source XX:XX:XX:XX:XX:XX`), a word a script computes when it runs (`-s $(curl ...)`), or
whatever a program stockade cannot look into did to the firewall. It stays in the model at its
place, as a match that may or may not hold or a target that may do anything, so every answer that
depends on it says so. No kernel holds such a rule as written: iptables-save rendering leaves it
out (render.save.kernel_rules), and the reader's diagnostic says why.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Match, Rule, Ruleset, Target
from .values import save_string

# The target extensions iptables 1.8.9 ships (libxt_/libipt_/libip6t_ upper-case names). Any other
# name after -j is a chain: a jump to one that does not exist is refused, never kept as a target.
XTABLES_TARGETS = frozenset({
    "AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNMARK", "CONNSECMARK", "CT", "DNAT", "DNPT", "DSCP",
    "ECN", "HL", "HMARK", "IDLETIMER", "LED", "LOG", "MARK", "MASQUERADE", "NETMAP", "NFLOG", "NFQUEUE",
    "NOTRACK", "RATEEST", "REDIRECT", "REJECT", "SECMARK", "SET", "SNAT", "SNPT", "SYNPROXY", "TCPMSS",
    "TCPOPTSTRIP", "TEE", "TOS", "TPROXY", "TRACE", "TTL", "ULOG",
})
UNMODELLED_TERMINAL = frozenset({"NFQUEUE", "TARPIT", "NETMAP"})
UNMODELLED_NON_TERMINAL = frozenset({
    "ULOG", "TTL", "HL", "CLASSIFY", "SET", "AUDIT", "CHECKSUM", "TCPMSS", "SECMARK", "CONNSECMARK", "IDLETIMER",
    "LED", "RATEEST", "TEE", "HMARK", "TCPOPTSTRIP"})
UNMODELLED_CONNTRACK = frozenset({"connbytes", "connlabel", "helper", "cluster", "CONNSECMARK", "NETMAP"})
UNMODELLED_LOGS = frozenset({"ULOG"})


@dataclass(frozen=True)
class Opaque:
    words: tuple[str, ...]

    def save(self) -> list[str]:
        # Verbatim; quoted only where the word would not read back as one word (blanks, quotes).
        return [save_string(w) if not w or any(c.isspace() or c in "\"'\\" for c in w) else w
                for w in self.words]


@dataclass(frozen=True)
class Unread(Opaque):
    """What stockade could not read (`words`, as written) and why, naming the line (`why`)."""

    why: str = ""
    command: bool = False  # stands for what a command may have done, not for a rule the file wrote
    kernel: bool = False  # the rule is loaded as read (under a condition read as true): only the analyses doubt it

    def save(self) -> list[str]:
        return list(self.words)  # shown in messages as written; never rendered for a kernel


# The name of a stand-in target, as analyses list it among the verdicts a packet may get (a user chain of
# that name is never its meaning: compile and flatten read the stand-in first).
UNKNOWN_TARGET = "UNKNOWN"


def unread_match(words: list[str] | tuple[str, ...], why: str, name: str = "unread") -> Match:
    return Match(name, Unread(tuple(words), why))


def stand_in(words: list[str] | tuple[str, ...], why: str, origin=None, command: bool = False) -> Rule:
    """A rule that may match any packet and may do anything with it (`command`: what a command stockade
    cannot look into may have done to a chain)."""
    return Rule(matches=[Match("unread", Unread(tuple(words), why, command))],
                target=Target(UNKNOWN_TARGET, Unread((), why, command)), origin=origin)


def by_command(rule: Rule) -> bool:
    """Whether the rule stands for what an unknown command may have done (findings are not about it)."""
    return rule.target is not None and isinstance(rule.target.data, Unread) and rule.target.data.command


def unread_parts(rule: Rule) -> list[Unread]:
    """The stand-ins a rule holds (its matches', then its target's)."""
    parts = [m.data for m in rule.matches if isinstance(m.data, Unread)]
    if rule.target is not None and isinstance(rule.target.data, Unread):
        parts.append(rule.target.data)
    return parts


def loadable(rule: Rule) -> bool:
    """Whether a kernel holds the rule as read: it has no stand-in but for a condition read as true
    (unread_parts, unrolled: asked of every rule rendered)."""
    for m in rule.matches:
        if isinstance(m.data, Unread) and not m.data.kernel:
            return False
    t = rule.target
    return t is None or not isinstance(t.data, Unread) or t.data.kernel


def unread_rules(rs: Ruleset):
    """(table, chain, 1-based number, rule, its stand-ins) of every rule holding one."""
    for t in rs.tables.values():
        for c in t.chains.values():
            for n, r in enumerate(c.rules, 1):
                if parts := unread_parts(r):
                    yield t.name, c.name, n, r, parts
