"""Open ports as a scanner would see them: for each class of sources, the TCP and UDP ports and ICMP
types whose new connections the chain lets through.

Ports (and ICMP types) the rules never name behave alike, so the port space is cut at
every port the rules name and one service matrix is computed per piece; sources are
then grouped by what they see on every piece. "open" means surely let through to at
least one destination, "maybe" that it depends on a test stockade cannot decide.
"""
from __future__ import annotations

import bisect

from ..model import Family
from ..model.ranges import format_range, normalize
from ..model.space import DPORT, AnyOf, Frame
from .boxes import match_box
from .flatten import Flat
from .matrix import Matrix, Service, Setting, service_matrix


def _port_cuts(flat: Flat) -> list[int]:
    """Ports where the chain's behaviour may change: every edge of a destination-port range its
    match constraints (semantics.boxes) name."""
    frame = Frame(flat.family)
    matches = {id(lit.value): lit.value for r in flat.rules for lit in r.conds if lit.kind == "match"}
    cuts = {0}
    for m in matches.values():
        box = match_box(m, frame)
        for b in box.boxes if isinstance(box, AnyOf) else (box,) if box else ():
            for lo, hi in b.get(DPORT, ()):
                cuts.update((lo, hi + 1))
    return sorted(c for c in cuts if c <= 65535)


def _icmp_types(flat: Flat) -> list[tuple[int, str]]:
    """ICMP types the rules name, plus one they do not, labelled "other" (it stands for the rest)."""
    named = {lit.value.data.type for r in flat.rules for lit in r.conds
             if lit.kind == "match" and lit.value.name in ("icmp", "icmp6", "icmpv6", "ipv6-icmp")}
    named.discard(255)
    other = next(t for t in range(256) if t not in named)
    return [(t, str(t)) for t in sorted(named)] + [(other, "other")]


def open_ports(flat: Flat, s: Setting, sport: int, state: str = "NEW") -> list[dict]:
    """Per source group: {"sources": [...], "open": {proto: [...]}, "maybe": {proto: [...]}}."""
    icmp = 1 if flat.family is Family.IPV4 else 58
    cuts = _port_cuts(flat)
    pieces: list[tuple[str, object, Matrix]] = []  # (protocol, port range or ICMP label, matrix)
    for proto, name in ((6, "tcp"), (17, "udp")):
        for i, lo in enumerate(cuts):
            hi = (cuts[i + 1] - 1) if i + 1 < len(cuts) else 65535
            pieces.append((name, (lo, hi), service_matrix(flat, Service(proto, lo, sport, state=state), s=s)))
    for t, label in _icmp_types(flat):
        pieces.append(("icmp", label, service_matrix(flat, Service(icmp, icmp_type=t, icmp_code=0, state=state),
                                                     s=s)))
    return by_source(pieces, flat.family)


def by_source(pieces: list[tuple[str, object, Matrix]], family: Family) -> list[dict]:
    """Sources grouped by the status every piece (protocol, port range or ICMP label, its matrix) gives them."""
    # one status per piece for every elementary source range
    bounds = sorted({lo for _, _, m in pieces for c in m.classes for lo, _ in c})
    starts = [[lo for c in m.classes for lo, _ in c] for _, _, m in pieces]
    owner = [[i for i, c in enumerate(m.classes) for _ in c] for _, _, m in pieces]
    order = [sorted(range(len(st)), key=st.__getitem__) for st in starts]
    sorted_starts = [[st[k] for k in o] for st, o in zip(starts, order)]
    status_of: dict[int, list] = {}
    top = (1 << (32 if family is Family.IPV4 else 128)) - 1
    for b, lo in enumerate(bounds):
        hi = bounds[b + 1] - 1 if b + 1 < len(bounds) else top
        vec = []
        for p, (_, _, m) in enumerate(pieces):
            k = order[p][bisect.bisect_right(sorted_starts[p], lo) - 1]
            a = owner[p][k]
            outs = [bb for (aa, bb) in m.may if aa == a]
            sure = any((a, bb) in m.always for bb in outs)
            vec.append("open" if sure else "maybe" if outs else "closed")
        status_of.setdefault(tuple(vec), []).append((lo, hi))
    out = []
    v = int(family)
    for vec, ranges in status_of.items():
        entry: dict = {"sources": [format_range(v, r) for r in normalize(ranges)], "open": {}, "maybe": {}}
        for kind in ("open", "maybe"):
            for (proto, span, _), st in zip(pieces, vec):
                if st == kind:
                    entry[kind].setdefault(proto, []).append(span)
            for proto, spans in entry[kind].items():
                if proto != "icmp":
                    entry[kind][proto] = [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in normalize(spans)]
        out.append(entry)
    out.sort(key=lambda e: _first(e["sources"], v))
    return out


def _first(sources: list[str], v: int) -> int:
    from ..model.ranges import parse_range

    return parse_range(v, sources[0])[0]
