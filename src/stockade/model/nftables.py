"""An nftables ruleset as the kernel holds it and `nft -j list ruleset` prints it (libnftables-json(5)).

Tables belong to a family; base chains are registered at a hook with a priority, regular chains are
only jumped to; named sets and maps hold elements. A rule's expressions stay in nft's own JSON
vocabulary (dicts, lists, strings, numbers): that vocabulary is exact and documented, so the reader
checks its shape and the simulator (semantics/nft.py) reads it directly rather than a translation.
Unlike model.Ruleset (one family's iptables tables), one NftRuleset holds every family at once:
an `inet` table sees IPv4 and IPv6 packets alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ruleset import Origin

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
ANALYSED = ("ip", "ip6", "inet")  # the families whose hooks are the IP stack's; the others are not simulated
HOOKS = ("prerouting", "input", "forward", "output", "postrouting")  # of ip, ip6 and inet (ingress: netdev)
CHAIN_TYPES = ("filter", "nat", "route")
# Priority names and their numbers for the ip, ip6 and inet families (nft's `priority filter`, ...).
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
# iptables-nft keeps each iptables table as an nft table of this name in family ip or ip6. nft 1.0.6
# and iptables 1.8.9 mark them in no other way, so a native table of such a name is taken for one.
IPTABLES_NFT = ("filter", "nat", "mangle", "raw", "security")


@dataclass(frozen=True)
class NftRule:
    """One rule: its statements in nft JSON, in order; `origin` is where it was read, if known."""

    handle: int | None
    expr: tuple[Any, ...]
    comment: str | None = None
    origin: Origin | None = None


@dataclass
class NftChain:
    name: str
    handle: int | None = None
    type: str | None = None  # base chains only: filter, nat, route
    hook: str | None = None
    prio: int | None = None
    policy: str = "accept"
    rules: list[NftRule] = field(default_factory=list)
    origin: Origin | None = None

    @property
    def base(self) -> bool:
        return self.hook is not None


@dataclass
class NftSet:
    """A named set (data None) or map (data: the value type, `verdict` for a verdict map).
    `key` holds one datatype name, or several for a concatenation; elements stay in nft JSON.
    `timeout` (seconds) is what an element the packets add lives by default, `size` how many it holds."""

    name: str
    key: tuple[str, ...]
    handle: int | None = None
    flags: frozenset[str] = frozenset()
    elements: list[Any] = field(default_factory=list)
    data: str | None = None
    origin: Origin | None = None
    timeout: int | None = None
    size: int | None = None


@dataclass
class NftTable:
    family: str
    name: str
    handle: int | None = None
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    origin: Origin | None = None

    @property
    def analysed(self) -> bool:
        return self.family in ANALYSED

    @property
    def label(self) -> str:
        return f"{self.family} {self.name}"


@dataclass
class NftRuleset:
    tables: list[NftTable] = field(default_factory=list)
    source: str = ""

    def table(self, family: str, name: str) -> NftTable | None:
        return next((t for t in self.tables if t.family == family and t.name == name), None)

    def native(self, keep: frozenset[tuple[str, str]] = frozenset()) -> NftRuleset:
        """The tables iptables-nft does not manage (read those with iptables-save, as model.Ruleset);
        `keep`: (family, name) of tables with such a name that iptables-nft-save calls incompatible."""
        return NftRuleset([t for t in self.tables if (t.family, t.name) in keep
                           or not (t.family in ("ip", "ip6") and t.name in IPTABLES_NFT)], self.source)

    def base_chains(self, hook: str) -> list[tuple[NftTable, NftChain]]:
        """The analysed base chains registered at `hook`, in priority order (ties in the order read)."""
        found = [(t, c) for t in self.tables if t.analysed for c in t.chains.values() if c.hook == hook]
        return sorted(found, key=lambda tc: tc[1].prio or 0)
