"""Service matrices and open ports of any cell-analysis side (an nftables ruleset with whatever
iptables tables sit beside it, semantics/nftcells.py NftOracle), as `stockade analyze` prints them.

Where matrix.py reads one flattened iptables chain, this reads the whole path: the space, restricted
to the service (protocol, ports or ICMP type, packet kind), is cut by every test of every chain at
every hook (cells.refine) and each part's packet is run through the simulator. A part's source and
destination ranges then reach each other on the interfaces of the part; a pair is "always" when
every interface the rules tell apart (loopback aside) lets it through, "may" when some do or the
simulator says UNKNOWN (the reason is kept). Classes are elementary ranges with equal rows and
columns, as in matrix.py, so the output has matrix.Matrix's shape.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ..model import Family
from ..model.netfilter import PORT_PROTOS, SYN
from ..model.ranges import Ranges, normalize
from ..model.ranges import intersect as iv_and
from ..model.space import DPORT, ICMP, IIF, KIND, KINDS, PROTO, SPORT, SRC
from .cells import ICMP_GROUPS, PLAUSIBLE, Space, icmp_proto, refine
from .ipassmt import IpAssmt
from .matrix import Matrix, Service
from .ports import by_source


@dataclass
class Reach:
    """What the parts of one service say about (source piece, destination piece) pairs."""

    bounds: list[int]  # first address of each elementary piece
    ok: dict[tuple[int, int], set[int]] = field(default_factory=dict)  # interfaces that let the pair through
    seen: dict[tuple[int, int], set[int]] = field(default_factory=dict)
    why: dict[tuple[int, int], set[str]] = field(default_factory=dict)  # UNKNOWN reasons


def kind_index(state: str, proto: int) -> int:
    """The model.space packet kind of a service's first packet (a TCP one opens with a SYN)."""
    return next(i for i, k in enumerate(KINDS) if k.state == state and (proto != 6 or k.flags == SYN))


def service_boxes(space: Space, service: Service, hook: str, iif: str | None = None) -> list[dict]:
    """The start boxes of the hook narrowed to the service's packets (arriving on `iif`, if given; a name
    no rule tells apart from others is the space's other interface), loopback apart."""
    k = kind_index(service.state, service.proto)
    narrow = {PROTO: ((service.proto, service.proto),), KIND: ((k, k),)}
    if iif is not None:
        i = space.ifaces.index(iif) if iif in space.ifaces else len(space.ifaces) - 1
        narrow[IIF] = ((i, i),)
    if service.proto in PORT_PROTOS:
        narrow |= {DPORT: ((service.dport,) * 2,), SPORT: ((service.sport,) * 2,)}
    if service.icmp_type is not None:
        code = service.icmp_type * 256 + (service.icmp_code or 0)
        narrow |= {ICMP: ((code, code),)}
    lo = space.ifaces.index("lo")
    out = []
    for b in space.start_boxes(hook):
        if hook != "OUTPUT" and b[IIF] == ((lo, lo),):
            continue
        cut = {d: iv_and(b[d], v) for d, v in narrow.items()}
        if all(cut.values()):
            out.append(dict(b, **cut))
    return out


def arrivals(space: Space, amap: IpAssmt | None) -> list[Ranges | None]:
    """Per interface of the space, the sources whose packets arrive on it (None: any). An interface map
    (`--ipassmt`) gives those of the interfaces it names (a `+` name covers its prefix); when it is
    disjoint and names every interface the rules name, it is taken as the host's whole list (as
    matrix.setting reads `-i X` as `-s <addresses of X>`), so an interface no one names carries none."""
    if amap is None:
        return [None] * len(space.ifaces)

    def entry(name: str) -> Ranges | None:
        for key, ranges in amap.ifaces.items():
            if key == name or (key.endswith("+") and name.startswith(key[:-1])):
                return ranges
        return None
    named = {n for n in space.ifaces[1:-1] if n != "lo"}
    whole = amap.disjoint() and all(entry(n) is not None for n in named)
    out = [None if not n else entry(n) for n in space.ifaces]
    out[-1] = () if whole else None  # space.other_iface
    return out


def cell_matrix(side, space: Space, service: Service, hook: str = "INPUT", iif: str | None = None,
                amap: IpAssmt | None = None) -> Matrix:
    """The service matrix of `side` (an oracle: lists(space, hook) and run(pkt, box)) for one service,
    of packets arriving on any interface or on `iif`, from the sources `amap` lets arrive there."""
    lists = side.lists(space, hook)
    parts = []
    for start in service_boxes(space, service, hook, iif):
        for box, _ in refine(space, start, lists, lambda e: e.cons):
            verdict, _, depends, _ = side.run(space.packet(box, hook), box)
            parts.append((box, verdict, depends))
    top = space.universe[SRC][0][1]
    arrive = arrivals(space, amap)
    points = sorted({0} | {p for box, _, _ in parts for d in ("src", "dst") for lo, hi in box[d]
                           for p in (lo, hi + 1) if p <= top}
                    | {p for ranges in arrive if ranges for lo, hi in ranges for p in (lo, hi + 1) if p <= top})
    reach = Reach(points)
    for box, verdict, depends in parts:
        srcs = _pieces(points, box["src"])
        dsts = _pieces(points, box["dst"])
        ifaces = [i for lo, hi in box[IIF] for i in range(lo, hi + 1)]
        for s in srcs:
            here = [i for i in ifaces if arrive[i] is None or _inside(points[s], arrive[i])]
            if not here:
                continue  # no packet from these sources arrives where this part is
            for d in dsts:
                reach.seen.setdefault((s, d), set()).update(here)
                if verdict in ("ACCEPT", "UNKNOWN"):
                    reach.ok.setdefault((s, d), set()).update(here if verdict == "ACCEPT" else ())
                    if verdict == "UNKNOWN":
                        reach.why.setdefault((s, d), set()).update(depends[:1])
    return _matrix(space.family, service, reach, top, amap is not None)


def _inside(point: int, ranges: Ranges) -> bool:
    i = bisect.bisect_right(ranges, (point, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= point <= ranges[i][1]


def _pieces(points: list[int], ranges: Ranges) -> list[int]:
    out = []
    for lo, hi in ranges:
        i = bisect.bisect_right(points, lo) - 1
        while i < len(points) and points[i] <= hi:
            out.append(i)
            i += 1
    return out


def _matrix(family: Family, service: Service, reach: Reach, top: int, mapped: bool = False) -> Matrix:
    n = len(reach.bounds)

    def status(s: int, d: int) -> int:  # 2 always, 1 may, 0 never
        ok = reach.ok.get((s, d))
        if (s, d) in reach.why or (ok is not None and ok != reach.seen[(s, d)]):
            return 1
        return 2 if ok else 0

    rows = {s: tuple(status(s, d) for d in range(n)) for s in range(n)}
    cols = {d: tuple(status(s, d) for s in range(n)) for d in range(n)}
    groups: dict[tuple, list[int]] = {}
    for i in range(n):
        groups.setdefault((rows[i], cols[i]), []).append(i)
    members = list(groups.values())
    classes = [normalize([(reach.bounds[i], (reach.bounds[i + 1] - 1) if i + 1 < n else top) for i in g])
               for g in members]
    may, always, undecided = set(), set(), {}
    for a, ga in enumerate(members):
        for b, gb in enumerate(members):
            st = status(ga[0], gb[0])
            if st:
                may.add((a, b))
            if st == 2:
                always.add((a, b))
            elif st == 1:
                reasons = reach.why.get((ga[0], gb[0])) or {
                    "the input interface (the interface map lets these sources arrive on more than one)" if mapped
                    else "the input interface (no interface map is given)"}
                undecided[(a, b)] = sorted(reasons)
    return Matrix(family, service, classes, may, always, undecided, list(reach.bounds))


def port_pieces(side, space: Space, proto: int) -> list[tuple[int, int]]:
    """The destination ports of `proto` cut wherever some test of the side tells them apart."""
    cuts = {0}
    for lst in side.lists(space, "INPUT"):
        for e in lst:
            dims = e.cons.dims
            if DPORT in dims and (PROTO not in dims or iv_and(dims[PROTO], ((proto, proto),))):
                cuts.update(p for lo, hi in dims[DPORT] for p in (lo, hi + 1) if p <= 65535)
    ordered = sorted(cuts)
    return [(lo, (ordered[i + 1] - 1) if i + 1 < len(ordered) else 65535) for i, lo in enumerate(ordered)]


def icmp_types(side, space: Space, state: str = "NEW") -> list[tuple[int, str]]:
    """ICMP types some test names, plus one none names ("other"), of a group conntrack gives `state`."""
    named: set[int] = set()
    ip = icmp_proto(space.family)
    for lst in side.lists(space, "INPUT"):
        for e in lst:
            dims = e.cons.dims
            if ICMP in dims and dims[ICMP] != ((0, 65535),) and \
                    (PROTO not in dims or iv_and(dims[PROTO], ((ip, ip),))):
                named.update(lo // 256 for lo, _ in dims[ICMP] if len(dims[ICMP]) < 64)
    plausible = {t for g in PLAUSIBLE.get(state, ()) for t in ICMP_GROUPS[space.family].get(g, ())}
    other = min((t for t in range(256) if t not in named), key=lambda t: (t not in plausible, t))
    return [(t, str(t)) for t in sorted(named)] + [(other, "other")]


def default_services(side, space: Space) -> list[str]:
    """Single TCP/UDP ports some test names, plus ssh (matrix.py's defaults, read from the cuts)."""
    seen: list[str] = []
    for lst in side.lists(space, "INPUT"):
        for e in lst:
            dims = e.cons.dims
            if DPORT in dims and len(dims[DPORT]) == 1 and dims[DPORT][0][0] == dims[DPORT][0][1] \
                    and PROTO in dims and dims[PROTO] in (((6, 6),), ((17, 17),), ((6, 6), (17, 17))):
                for lo, _ in dims[PROTO]:
                    label = f"{'tcp' if lo == 6 else 'udp'}/{dims[DPORT][0][0]}"
                    if label not in seen:
                        seen.append(label)
    return seen


def cell_open_ports(side, space: Space, sport: int, state: str = "NEW", amap: IpAssmt | None = None) -> list[dict]:
    """Open ports as ports.open_ports reports them, each piece's matrix from cells."""
    ip = icmp_proto(space.family)
    pieces = [(name, span, cell_matrix(side, space, Service(proto, span[0], sport, state=state), amap=amap))
              for proto, name in ((6, "tcp"), (17, "udp")) for span in port_pieces(side, space, proto)]
    pieces += [("icmp", label, cell_matrix(side, space, Service(ip, icmp_type=t, icmp_code=0, state=state),
                                           amap=amap))
               for t, label in icmp_types(side, space, state)]
    return by_source(pieces, space.family)


def analyze_side(side, family: Family, opts, amap: IpAssmt | None = None) -> dict:
    """analyze.analyze_ruleset's result for a cell-analysis side (an nft ruleset): every chain at every
    hook of the path to opts.chain (INPUT, FORWARD or OUTPUT), composed as the kernel runs them; with an
    interface map, the sources arriving on each interface it names are its addresses."""
    from .matrix import parse_service

    mapped = [n[:-1] + "stk9" if n.endswith("+") else n for n in (amap.ifaces if amap else ())]
    space = Space(family, side.rulesets(family), [*side.names(), *mapped])
    space.other_tables = space.other_tables or side.nat()
    hook = opts.chain.upper()
    labels = opts.services or default_services(side, space)[:12] or ["tcp/22", "tcp/80", "tcp/443", "tcp/25",
                                                                   "udp/53"]
    if not opts.services and "tcp/22" not in labels:
        labels = ["tcp/22", *labels[:11]]
    services = [parse_service(label, family, opts.sport, opts.state) for label in labels]
    matrices = {sv.label: cell_matrix(side, space, sv, hook, amap=amap) for sv in services}
    sport = opts.sport or 40000
    out: dict = {"service_matrix": {label: m.to_json() for label, m in matrices.items()}}
    if opts.ports if opts.ports is not None else hook == "INPUT":
        out["open_ports"] = cell_open_ports(side, space, sport, opts.state, amap)
    out["family"] = int(family)
    out["chain"] = f"every chain at the hooks to {hook}"
    out["flat_rules"] = sum(len(c.rules) for t in side.nft.tables for c in t.chains.values())
    out["services_chosen"] = "given" if opts.services else "default"
    out["assumptions"] = [f"new connections (state {opts.state}); TCP ones open with a SYN from source port {sport}",
                          "martian sources dropped as the kernel drops them; loopback traffic left out",
                          "an edge that only some input interfaces let through is marked ? (no interface map)"
                          if amap is None else f"{amap.describe()}: a source arrives only on the interfaces whose "
                          "addresses hold it" + ("" if arrivals(space, amap)[-1] is None else
                                                 "; the map is disjoint and names every interface the rules name, "
                                                 "so no packet arrives on another")]
    out["undecided_rules"] = {}
    return out
