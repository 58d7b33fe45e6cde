"""Extensions stockade does not know: kept as the words that were written, never dropped.

Analyses treat an opaque match as "may or may not match" (three-valued logic). What their kernel
modules are known to do is declared here by name, as a modelled extension declares it on itself
(extensions/base.py); the registry answers for both.
"""
from __future__ import annotations

from dataclasses import dataclass

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
