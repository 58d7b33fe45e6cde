"""A rule's tests as Boxes over model.space's dimensions: the one symbolic reading that cells
(diff, findings) and the service matrix (analyze) share.

Header tests (source, destination, protocol, fragment) are read here, their `!` folded
in; a match is read by its extension's own `constraint`. Interfaces are not: cells index
the names the rules mention, the matrix maps them to addresses.
"""
from __future__ import annotations

from ..extensions import REGISTRY, Opaque
from ..model import Match
from ..model.ranges import complement, of_address
from ..model.space import DST, PROTO, SRC, AnyOf, Box, Frame
from .flatten import Lit

NOTHING: Box = {PROTO: ()}  # no packet: the analyses consider unfragmented packets only (see cells, matrix)


def header_box(lit: Lit, frame: Frame) -> Box | None:
    """A src, dst, proto or fragment test as a Box; None for a non-contiguous mask with too many ranges."""
    k, v, neg = lit.kind, lit.value, lit.negated
    if k == "src" or k == "dst":
        r = of_address(v)
        if r is None:
            return None
        return {SRC if k == "src" else DST: complement(r, frame.bits) if neg else r}
    if k == "proto":
        return {PROTO: frame.within(PROTO, ((v, v),), neg)}
    if k == "fragment":
        return {} if neg else NOTHING
    raise ValueError(f"{k} tests are read by each analysis")


def match_box(m: Match, frame: Frame) -> Box | AnyOf | None:
    """The match's own constraint, its `!` not folded in; None if it is undecidable or not modelled."""
    if isinstance(m.data, Opaque):
        return None
    ext = REGISTRY.find("match", m.name, frame.family)
    return None if ext.undecidable else ext.constraint(m.data, frame)


def empty(box: Box) -> bool:
    """Whether the box admits no packet."""
    return any(not v for v in box.values())
