"""The header space the symbolic analyses reason about: its dimensions, its packet kinds, and
the frame a match's constraint is computed in.

A Box gives some dimensions a set of values (model.ranges Ranges; a dimension left out
admits any value): protocol, source and destination address, ports, ICMP type*256+code,
input and output interface (indices into the names the rules mention, cells only) and
the packet kind (an index into the frame's kinds: conntrack state plus TCP flags). Each
match extension states the packets it admits as a Box (`Extension.constraint`); cells
(diff, findings) cut the space into classes with them and the service matrix (analyze)
projects them onto one service. This module sits below the extensions so they may use it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .netfilter import ACK, SYN
from .ranges import Ranges, complement, difference, normalize
from .ruleset import Family, IPSet

PROTO, SRC, DST, SPORT, DPORT, ICMP, IIF, OIF, KIND = "proto", "src", "dst", "sport", "dport", "icmp", "iif", \
    "oif", "kind"
DIMS = (PROTO, KIND, IIF, OIF, SRC, DST, ICMP, DPORT, SPORT)  # split order: coarse first
XMAS = 0x3F  # every flag iptables can name

Box = dict[str, Ranges]


@dataclass(frozen=True)
class AnyOf:
    """Packets in any of `boxes` (e.g. `--ports`: either port); cells keep it as a residual test."""

    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class Kind:
    """A packet kind: the conntrack state a rule sees it in (None: unknown), the TCP flags it carries,
    and what is known of its conntrack entry: the SNAT/DNAT bits and the entry's layer-4 protocol
    (None: unknown)."""

    label: str
    state: str | None
    flags: int
    nat: frozenset[str] | None = None
    ctproto: int | None = None


KINDS = (Kind("NEW", "NEW", SYN), Kind("ESTABLISHED", "ESTABLISHED", ACK), Kind("RELATED", "RELATED", SYN),
         Kind("INVALID", "INVALID", XMAS), Kind("UNTRACKED", "UNTRACKED", SYN),
         Kind("NEW without SYN", "NEW", ACK), Kind("INVALID NULL", "INVALID", 0))
TCP_ONLY = {"NEW without SYN", "INVALID NULL"}  # kinds that differ from others only by TCP flags

_FIXED = {PROTO: ((0, 255),), SPORT: ((0, 65535),), DPORT: ((0, 65535),), ICMP: ((0, 65535),)}


@dataclass(eq=False)
class Frame:
    """What a match's constraint may ask of the space it is computed in: the family, the packet
    kinds the KIND dimension indexes, and the ruleset's ipsets (for -m set)."""

    family: Family
    kinds: tuple[Kind, ...] = KINDS
    sets: Mapping[str, IPSet] = field(default_factory=dict)

    @property
    def bits(self) -> int:
        return 32 if self.family is Family.IPV4 else 128

    def universe(self, dim: str) -> Ranges:
        if dim in (SRC, DST):
            return ((0, (1 << self.bits) - 1),)
        if dim == KIND:
            return ((0, len(self.kinds) - 1),)
        return _FIXED[dim]

    def within(self, dim: str, inside: Ranges, invert: bool = False) -> Ranges:
        """`inside` (normalized), or with `invert` the rest of the dimension."""
        inside = normalize(inside)
        if not invert:
            return inside
        return complement(inside, self.bits) if dim in (SRC, DST) else difference(self.universe(dim), inside)

    def kinds_where(self, test: Callable[[Kind], bool | None]) -> Ranges | None:
        """The kinds passing `test`; None if it cannot tell for one of them (the constraint is then
        no box in this frame)."""
        hits = []
        for i, k in enumerate(self.kinds):
            got = test(k)
            if got is None:
                return None
            if got:
                hits.append((i, i))
        return normalize(hits)
