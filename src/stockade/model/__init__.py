"""The netfilter model: see ruleset.py."""
from .address import Address, parse_address
from .ruleset import (
    BUILTIN_CHAINS,
    TABLES,
    VERDICTS,
    AddrMatch,
    Chain,
    Counters,
    Family,
    Iface,
    IPSet,
    Match,
    Origin,
    Proto,
    Rule,
    Ruleset,
    Table,
    Target,
    comment_tag,
)

__all__ = [
    "Address", "parse_address", "BUILTIN_CHAINS", "TABLES", "VERDICTS", "AddrMatch", "Chain",
    "Counters", "Family", "Iface", "IPSet", "Match", "Origin", "Proto", "Rule", "Ruleset",
    "Table", "Target", "comment_tag",
]
