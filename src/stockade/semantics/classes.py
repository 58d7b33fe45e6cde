"""Packet classes explain's batch answers once: packets that every test of a ruleset that keeps to its
class treats alike, so a walk that met only such tests is the walk of every packet of its class.

A class is a spec's fields as given, except its addresses and ports, which count only by the interval
between the ruleset's boundaries they fall in: the rules' `-s`/`-d`, the constraints of the matches
declared `classwise` (extensions/base.py) and the martian sources routing drops. A walk that meets
anything else (a stateful match, a NAT target, a note naming the packet: `Env.classwise`) is not reused.
"""
from __future__ import annotations

from ..extensions import REGISTRY, Opaque, Unread
from ..model import Family, Ruleset
from ..model.netfilter import MARTIAN_V4, MARTIAN_V6, UNFORWARDED_V6
from ..model.space import DPORT, DST, SPORT, SRC, AnyOf, Box, Frame

DIMS = (SRC, DST, SPORT, DPORT)  # the fields a class holds as intervals; the others it holds as given
FRAMES = {fam: Frame(fam) for fam in Family}


def cuts(kind: str, name: str, data, family: Family) -> tuple[Box, ...] | None:
    """The boxes of a classwise match's constraint (a classwise target's: none), whose edges on DIMS are
    all it reads of addresses and ports; None when the match or target is not classwise."""
    ext = REGISTRY.find(kind, name, family)
    if ext is None or not ext.classwise or isinstance(data, (Opaque, Unread)):
        return None
    if kind == "target":
        return ()
    if ext.undecidable:
        return None
    got = ext.constraint(data, FRAMES[family])
    if got is None:
        return None
    return got.boxes if isinstance(got, AnyOf) else (got,)


class Classes:
    """One family's ruleset's boundaries per dimension of DIMS (sorted): a value's interval is its index
    among them (bisect_right). `usable` is False when a rule tests an address under a mask that is no prefix (its
    packets are no interval)."""

    def __init__(self, rs: Ruleset):
        full = (1 << (32 if rs.family is Family.IPV4 else 128)) - 1
        edges: dict[str, set[int]] = {dim: set() for dim in DIMS}
        martian = MARTIAN_V4 if rs.family is Family.IPV4 else MARTIAN_V6 + UNFORWARDED_V6
        edges[SRC].update(e for n in martian for e in (int(n.network_address), int(n.broadcast_address) + 1))
        self.usable = True
        for table in rs.tables.values():
            for chain in table.chains.values():
                for rule in chain.rules:
                    for am, dim in ((rule.src, SRC), (rule.dst, DST)):
                        if am is not None:
                            if am.addr.prefixlen is None:
                                self.usable = False
                            edges[dim].update((am.addr.addr, (am.addr.addr | full ^ am.addr.mask) + 1))
                    for m in rule.matches:
                        for box in cuts("match", m.name, m.data, rs.family) or ():
                            for dim in DIMS:
                                edges[dim].update(e for lo, hi in box.get(dim, ()) for e in (lo, hi + 1))
        self.src, self.dst, self.sport, self.dport = (sorted(edges[dim]) for dim in DIMS)
