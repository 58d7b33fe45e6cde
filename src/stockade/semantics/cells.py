"""Header space cut into classes that every rule treats alike, for exact whole-space answers.

A packet class (a Box, model.space) gives each dimension a set of integers (model.ranges):
protocol, source and destination address, ports, ICMP type*256+code, input and
output interface (indices into the interface names the rules mention, 0 being "no
device"), and the packet kind (conntrack state plus the TCP flags that go with it).
A rule becomes a Constraint: per dimension the values it admits (each test read by
semantics.boxes, a match by its extension's constraint), plus the matches no
dimension can express (rate limits, marks, unknown extensions...), kept as
`residual` so answers that depend on them say so instead of guessing.

Boxes are split only where a rule that still matters for them is not uniform (it
admits part of the box), so a 5,000-rule dump yields classes in proportion to what
its rules distinguish, not to the product of all their boundaries. Packets drawn
from a class are then run through the simulator; every packet of the class gets
the same verdict from every rule whose constraint has no residual part.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..extensions import Opaque, Unread
from ..model import Family, IPSet, Match, Rule, Ruleset
from ..model.netfilter import (
    MARTIAN_V4,
    MARTIAN_V6,
    PORT_PROTOS,
    UNFORWARDED_V6,
)
from ..model.packet import Packet
from ..model.ranges import Ranges
from ..model.ranges import contains as iv_has
from ..model.ranges import difference as iv_sub
from ..model.ranges import intersect as iv_and
from ..model.ranges import normalize as norm
from ..model.space import (
    DIMS,
    DPORT,
    DST,
    ICMP,
    IIF,
    KIND,
    KINDS,
    OIF,
    PROTO,
    SPORT,
    SRC,
    TCP_ONLY,
    AnyOf,
    Frame,
)
from .boxes import empty, header_box, match_box
from .flatten import FlatRule, Lit, flatten, rule_lits

Ivs = Ranges  # sorted, disjoint, inclusive, non-adjacent

# ICMP types by the states conntrack can give them (nf_conntrack_proto_icmp*.c): queries open
# connections, replies belong to one, errors are RELATED to one, IPv6 neighbour discovery is untracked.
ICMP_GROUPS = {
    Family.IPV4: {"query": {8, 13, 15, 17}, "reply": {0, 14, 16, 18}, "error": {3, 4, 5, 11, 12}},
    Family.IPV6: {"query": {128, 139}, "reply": {129, 140}, "error": {1, 2, 3, 4},
                  "nd": {130, 131, 132, 133, 134, 135, 136, 143}},
}
PLAUSIBLE = {"NEW": {"query"}, "ESTABLISHED": {"query", "reply"}, "RELATED": {"error"},
             "INVALID": {"query", "reply", "error", "other"}, "UNTRACKED": {"nd"}, "NEW without SYN": set(),
             "INVALID NULL": set()}


UNTRACKED_KIND = ((next(i for i, k in enumerate(KINDS) if k.label == "UNTRACKED"),) * 2,)


def untracked(box: dict) -> dict:
    """A class as rules see it once its packets are untracked (NOTRACK, CT --notrack, nft notrack)."""
    return dict(box, **{KIND: UNTRACKED_KIND})


def icmp_proto(family: Family) -> int:
    return 1 if family is Family.IPV4 else 58


# ---- constraints ----

@dataclass(frozen=True)
class Constraint:
    """What a rule (or a conjunction of rules on a jump path) admits: per dimension a set of
    values (absent: any), `residual` the parts no dimension expresses, `never` if nothing."""

    dims: dict = field(default_factory=dict)
    residual: tuple[str, ...] = ()
    never: bool = False

    def __post_init__(self) -> None:
        """The dimensions in split order, with a single interval's bounds unpacked (relation() is hot)."""
        ordered = tuple((d, self.dims[d], *(self.dims[d][0] if len(self.dims[d]) == 1 else (None, None)))
                        for d in DIMS if d in self.dims)
        object.__setattr__(self, "ordered", ordered)

    def __and__(self, other: Constraint) -> Constraint:
        if not self.dims and not self.residual and not self.never:
            return other  # ANY & other
        dims = dict(self.dims)
        for d, v in other.dims.items():
            dims[d] = iv_and(dims[d], v) if d in dims else v
        never = self.never or other.never or any(not v for v in dims.values())
        return Constraint(dims, self.residual + other.residual, never)


ANY = Constraint()
NEVER = Constraint(never=True)


def relation(c: Constraint, box: dict) -> tuple[str, str | None]:
    """("none", _) if the constraint admits no packet of the box, ("all", _) if every packet
    (residual aside), ("some", dim) naming a dimension it cuts."""
    if c.never:
        return "none", None
    cut = None
    for d, allowed, lo, hi in c.ordered:
        have = box[d]
        if lo is not None:  # one interval (the common case): O(log n) on a box side with many holes
            if have[0][0] >= lo and have[-1][1] <= hi:
                continue
            i = bisect_right(have, (hi, _INF))
            if i == 0 or have[i - 1][1] < lo:
                return "none", None
        else:
            inter = iv_and(have, allowed)
            if not inter:
                return "none", None
            if inter == have:
                continue
        if cut is None:
            cut = d
    return ("all", None) if cut is None else ("some", cut)


_INF = float("inf")


class Space:
    """The dimensions' universes for a set of rulesets of one family, and rules as constraints."""

    def __init__(self, family: Family, rulesets: list[Ruleset], names: Iterable[str] = ()):
        """`names`: interface names other rules (nftables ones) compare with."""
        self.family = family
        self.bits = 32 if family is Family.IPV4 else 128
        seen: set[str] = {"lo", *names}
        self.other_tables = any(c.rules for rs in rulesets if "nat" in rs.tables
                                for c in rs.tables["nat"].chains.values())
        for r in (r for rs in rulesets for t in rs.tables.values() for c in t.chains.values() for r in c.rules):
            for iface in (r.iif, r.oif):
                if iface is not None:
                    seen.add(iface.name[:-1] + "stk9" if iface.name.endswith("+") else iface.name)
        self.ifaces = ["", *sorted(n for n in seen if n)]
        other = next(c for c in ("ext0", "wan9", "if0x", "zz9z") if c not in self.ifaces)
        self.ifaces.append(other)  # an interface no rule names (unless by a wildcard)
        self.other_iface = other
        frame = Frame(family)
        self.universe = {d: frame.universe(d) for d in (PROTO, SRC, DST, SPORT, DPORT, ICMP, KIND)} | {
            IIF: ((0, len(self.ifaces) - 1),), OIF: ((0, len(self.ifaces) - 1),)}
        self._cache: dict[tuple, tuple] = {}  # (id(match), id(sets)) -> (match, Constraint)
        self._frames: dict[int, Frame] = {}
        self._classes: dict[tuple, list] = {}  # the last few cuts: checks refine the same sources often
        self._martians: dict[str, Ivs] = {}

    def classes(self, have: Ivs, sets: list[Ivs]) -> list[tuple[Ivs, tuple[int, ...]]]:
        """cells.classes, remembered for the last few (have, sets) asked (a blocklist's sources are
        cut alike in every class of every check)."""
        if len(sets) < 64:
            return classes(have, sets)
        key = (have, tuple(sets))
        got = self._classes.get(key)
        if got is None:
            if len(self._classes) >= 8:
                del self._classes[next(iter(self._classes))]
            got = self._classes[key] = classes(have, sets)
        return got

    # -- interfaces --
    def iface_ivs(self, pattern: str, invert: bool) -> Ivs:
        prefix = pattern[:-1] if pattern.endswith("+") else None
        hits = [i for i, n in enumerate(self.ifaces)
                if (n.startswith(prefix) if prefix is not None else n == pattern) != invert]
        return norm([(i, i) for i in hits])

    def frame(self, sets: dict[str, IPSet]) -> Frame:
        """What match constraints see for a ruleset with these ipsets."""
        got = self._frames.get(id(sets))
        if got is None:
            got = self._frames[id(sets)] = Frame(self.family, KINDS, sets)
        return got

    def constraint(self, rule: Rule, sets: dict[str, IPSet]) -> Constraint:
        """The rule's own tests as a Constraint (its target is not part of it); `sets` are its
        ruleset's ipsets."""
        lits = rule_lits(rule, None)
        if lits is None:
            return NEVER
        got = ANY
        for lit in lits:
            if lit.kind == "fragment" and not lit.negated:
                return NEVER  # classes are unfragmented packets (see module doc)
            got = got & self.lit_constraint(lit, sets)
        return got

    def path_constraint(self, conds: tuple[Lit, ...], sets: dict[str, IPSet]) -> Constraint:
        """A flattened rule's conjunction of tests as a Constraint. A negated extension match is
        exact when, beyond what the other tests already imply, it restricts one dimension."""
        got = ANY
        negs = []
        for lit in conds:
            if lit.kind == "match" and lit.negated:
                negs.append(lit)
                continue
            got = got & self.lit_constraint(lit, sets)
        for lit in negs:
            inner = self.match_constraint(lit.value, sets)
            extra = {d: v for d, v in inner.dims.items() if not (d in got.dims and not iv_sub(got.dims[d], v))}
            if inner.residual or len(extra) > 1:
                got = got & Constraint(residual=("! ( " + " ".join(lit.words(self.family)[2:-1]) + " )",))
            elif extra:
                (d, v), = extra.items()
                got = got & Constraint({d: iv_sub(self.universe[d], v)})
            elif not inner.never:
                return NEVER  # the path already implies what must fail
        return got

    def lit_constraint(self, lit: Lit, sets: dict[str, IPSet]) -> Constraint:
        """One test as a Constraint; a match's `!` is left to path_constraint."""
        if lit.kind == "match":
            return self.match_constraint(lit.value, sets)
        if lit.kind in ("iif", "oif"):
            return Constraint({IIF if lit.kind == "iif" else OIF: self.iface_ivs(lit.value, lit.negated)})
        box = header_box(lit, self.frame(sets))
        if box is None:
            return Constraint(residual=(f"non-contiguous mask {lit.value}",))
        return NEVER if empty(box) else Constraint(box)

    def match_constraint(self, m: Match, sets: dict[str, IPSet]) -> Constraint:
        """The match's constraint (semantics.boxes), once per match object and ipsets; what no box
        expresses is a residual test."""
        key = (id(m), id(sets))
        hit = self._cache.get(key)
        if hit is None:
            box = match_box(m, self.frame(sets))
            if isinstance(m.data, Unread):
                c = Constraint(residual=(m.data.why,))
            elif box is None or isinstance(box, AnyOf):
                c = Constraint(residual=(f"-m {m.name}" + (" (not modelled)" if isinstance(m.data, Opaque) else ""),))
            else:
                c = Constraint(box, never=empty(box))
            hit = self._cache[key] = (m, c)
        return hit[1]

    # -- boxes --
    def martians(self, hook: str = "INPUT") -> Ivs:
        """Sources the simulator drops before a filter chain sees them (simulate._martian): IPv4 ones
        when routing a received packet, IPv6 ones on every path, plus those ip6_forward refuses."""
        got = self._martians.get(hook)
        if got is None:
            if self.family is Family.IPV4:
                nets = [] if hook == "OUTPUT" else MARTIAN_V4
            else:
                nets = MARTIAN_V6 + (UNFORWARDED_V6 if hook == "FORWARD" else [])
            got = self._martians[hook] = norm([(int(n.network_address), int(n.broadcast_address)) for n in nets])
        return got

    def icmp_groups(self) -> dict[str, Ivs]:
        groups = {g: norm([(t * 256, t * 256 + 255) for t in types])
                  for g, types in ICMP_GROUPS[self.family].items()}
        used = norm([iv for v in groups.values() for iv in v])
        groups["other"] = iv_sub(((0, 65535),), used)
        return groups

    def start_boxes(self, hook: str, by_kind: bool | None = None) -> list[dict]:
        """The classes to refine for a hook: interfaces as the hook sees them, martian sources
        apart (the kernel drops them whatever the rules say), ICMP split by what conntrack makes
        of each type, and only plausible (kind, type) pairs. `by_kind` (default: whether any nat
        rule is in the rulesets) keeps each packet kind apart."""
        u = dict(self.universe)
        none, devices = ((0, 0),), ((1, len(self.ifaces) - 1),)
        lo = ((self.ifaces.index("lo"),) * 2,)
        u[IIF] = none if hook == "OUTPUT" else devices
        u[OIF] = none if hook == "INPUT" else devices
        boxes = []
        ip = icmp_proto(self.family)
        plain = [i for i, k in enumerate(KINDS) if k.label not in TCP_ONLY and k.label != "UNTRACKED"]
        tcp_only = [i for i, k in enumerate(KINDS) if k.label in TCP_ONLY]
        boxes.append(dict(u, **{KIND: norm([(i, i) for i in plain]), PROTO: iv_sub(u[PROTO], ((ip, ip),)),
                                ICMP: ((0, 0),)}))
        boxes.append(dict(u, **{KIND: norm([(i, i) for i in tcp_only]), PROTO: ((6, 6),), ICMP: ((0, 0),)}))
        for group, types in self.icmp_groups().items():
            kinds = [i for i, k in enumerate(KINDS) if group in PLAUSIBLE[k.label]]
            if types and kinds:
                boxes.append(dict(u, **{KIND: norm([(i, i) for i in kinds]), PROTO: ((ip, ip),), ICMP: types}))
        if self.other_tables if by_kind is None else by_kind:  # nat sees NEW packets only: kinds apart
            boxes = [dict(b, **{KIND: ((i, i),)}) for b in boxes for lo_, hi_ in b[KIND] for i in range(lo_, hi_ + 1)]
        martian = self.martians(hook)
        if hook != "OUTPUT":  # on lo any source; elsewhere martian sources never reach a filter chain
            boxes = [dict(b, **{IIF: iv_sub(b[IIF], lo)}, **{SRC: iv_sub(b[SRC], martian)}) for b in boxes] \
                + [dict(b, **{IIF: lo}) for b in boxes]
        elif martian:
            boxes = [dict(b, **{SRC: iv_sub(b[SRC], martian)}) for b in boxes]
        ports = norm([(p, p) for p in PORT_PROTOS])
        return [b if iv_and(b[PROTO], ports) else dict(b, **{SPORT: ((0, 0),), DPORT: ((0, 0),)}) for b in boxes]

    # -- representatives --
    def packet(self, box: dict, hook: str) -> Packet:
        """One packet of the class, chosen to look ordinary (no martian source, a high source port)."""
        proto = _pick(box[PROTO], (6, 17, icmp_proto(self.family), 47, 50, 132))
        kind = KINDS[box[KIND][0][0]]
        martian = self.martians(hook)
        iif = self.ifaces[box[IIF][0][0]] or None
        loopback = 0x7F000001 if self.family is Family.IPV4 else 1  # 127.0.0.1 / ::1
        src = loopback if iif == "lo" and iv_has(box[SRC], loopback) else \
            _pick_addr(box[SRC], martian if iif != "lo" else ())
        dst = _pick_addr(box[DST], ())
        kw: dict = {}
        if proto in PORT_PROTOS:
            kw["sport"] = _pick(box[SPORT], (40000, 50000, 1024))
            kw["dport"] = _pick(box[DPORT], (80, 1024)) if box[DPORT][0] == (0, 65535) else _pick(box[DPORT], ())
        if proto == 6:
            kw["tcp_flags"] = kind.flags
        if proto == icmp_proto(self.family):
            code = _pick(box[ICMP], ())
            kw["icmp_type"], kw["icmp_code"] = code // 256, code % 256
        return Packet(family=self.family, proto=proto, src=src, dst=dst, iif=iif,
                      oif=self.ifaces[box[OIF][0][0]] or None, hook=hook, state=kind.state, **kw)


def _pick(v: Ivs, prefer: tuple[int, ...]) -> int:
    for p in prefer:
        if iv_has(v, p):
            return p
    return v[0][0]


def _pick_addr(v: Ivs, avoid: Ivs) -> int:
    ok = iv_sub(v, avoid) or v
    lo, hi = ok[0]
    return lo + 1 if hi > lo + 1 else lo  # not the network address itself when there is room


SPLIT_ORDER = (IIF, OIF, PROTO, KIND, ICMP, DPORT, SPORT, SRC, DST)


def refine(space: Space, box: dict, lists: list[list], constraint_of,
           by_verdict: bool = False, keep=None, prune=None) -> Iterator[tuple[dict, list[list]]]:
    """Split `box` until every entry of every list is uniform on each part.

    `lists` are ordered entry lists (one per ruleset being compared); `constraint_of(entry)`
    gives an entry's Constraint and `entry.decides` whether a full match ends the walk. Each
    part comes back with the entries that still concern it: those admitting some of its
    packets, up to and including the first that decides for all of them.

    Dimensions are taken in a fixed order (interfaces, protocol, state, ports, addresses); at
    each step the values of one dimension are grouped by which of the entries still concerned
    admit them, so a part is never cut where no entry tells its values apart. A part inherits
    only the entries whose value in the cut dimension admits it (the grouping says which), so
    a dimension cut into many parts, each concerning a few entries (a blocklist's sources),
    costs in proportion to the parts and entries, not to their product.

    With `by_verdict`, a part is not cut further once every list gives all its packets one
    verdict (every deciding entry still concerned has the same action, none with a residual
    part), or once the lists still concerned are the same tests and actions in the same order
    (then every packet of the part gets the same verdict from each): enough to compare verdicts,
    not to say which rule decided.

    `keep(box)` false, or `prune(box, entry_lists)` true, drops a part and everything inside it;
    they are asked before a part's entries are sorted out (the lists then hold every entry that
    may concern it), so each must say the same of every smaller part with fewer entries. The
    parts that remain come in the same order as without them."""
    stack = [] if (keep is not None and not keep(box)) or (prune is not None and prune(box, lists)) \
        else [(box, lists, 0)]
    while stack:
        b, ls, k = stack.pop()
        kept_lists = []
        for entries in ls:
            kept = []
            for e in entries:
                c = constraint_of(e)
                rel, _ = relation(c, b)
                if rel == "none":
                    continue
                kept.append(e)
                if rel == "all" and e.decides and not c.residual:
                    break
            kept_lists.append(kept)
        if by_verdict and (all(_one_verdict(kept, constraint_of) for kept in kept_lists)
                           or same_walk(kept_lists, constraint_of)):
            yield b, kept_lists
            continue
        values: dict[str, dict] = {}  # per dimension, the entries' values in order of first use
        for kept in kept_lists:
            for e in kept:
                for dim, v in constraint_of(e).dims.items():
                    got = values.get(dim)
                    if got is None:
                        values[dim] = {v: None}
                    elif v not in got:
                        got[v] = None
        cuts: list = []
        while k < len(SPLIT_ORDER):
            d = SPLIT_ORDER[k]
            have = b[d]
            seen = values.get(d, {})
            for v in seen:
                # cuts this part unless it holds all of it (disjoint ones were dropped above)
                if (have[0][0] < v[0][0] or have[-1][1] > v[0][1]) if len(v) == 1 else iv_sub(have, v):
                    seen[v] = len(cuts)
                    cuts.append(v)
            if cuts:
                break
            k += 1
        if not cuts:
            yield b, kept_lists
            continue
        # per list: the positions of the entries every part keeps, and those of each cutting value
        everywhere, by_cut = [], []
        for kept in kept_lists:
            ev: list[int] = []
            bc: dict[int, list[int]] = {}
            for pos, e in enumerate(kept):
                v = constraint_of(e).dims.get(d)
                i = None if v is None else seen[v]
                if i is None:
                    ev.append(pos)
                else:
                    bc.setdefault(i, []).append(pos)
            everywhere.append(ev)
            by_cut.append(bc)
        for part, sig in space.classes(b[d], cuts):
            child = b.copy()
            child[d] = part
            if keep is not None and not keep(child):
                continue
            sub = []
            for kept, ev, bc in zip(kept_lists, everywhere, by_cut):
                mine = [pos for i in sig for pos in bc.get(i, ())]
                sub.append([kept[pos] for pos in sorted(ev + mine)] if mine else [kept[pos] for pos in ev])
            if prune is None or not prune(child, sub):
                stack.append((child, sub, k + 1))


def same_walk(kept_lists: list[list], constraint_of) -> bool:
    first, *rest = kept_lists
    return all(len(k) == len(first) and all(a.action == b.action and constraint_of(a) == constraint_of(b)
                                            for a, b in zip(first, k)) for k in rest) and bool(rest)


def _one_verdict(kept: list, constraint_of) -> bool:
    actions = set()
    for e in kept:
        if e.decides:
            if constraint_of(e).residual:
                return False
            actions.add(e.action)
    return len(actions) <= 1


def classes(have: Ivs, sets: list[Ivs]) -> list[tuple[Ivs, tuple[int, ...]]]:
    """`have` cut into the groups of values that lie in the same ones of `sets`, each group with
    the indices of those sets."""
    points = sorted({p for v in sets for lo, hi in v for p in (lo, hi + 1)} | {lo for lo, _ in have}
                    | {hi + 1 for _, hi in have})
    n = len(points) - 1
    sigs: list[list[int]] = [[] for _ in range(n)]
    for i, v in enumerate(sets):
        for lo, hi in v:
            for j in range(bisect_right(points, lo) - 1, bisect_right(points, hi)):
                sigs[j].append(i)
    groups: dict[tuple, list] = {}
    hv = 0
    for j in range(n):
        lo, hi = points[j], points[j + 1] - 1
        while hv < len(have) and have[hv][1] < lo:
            hv += 1
        if hv < len(have) and have[hv][0] <= lo:  # elementary pieces are inside or outside `have`
            g = groups.setdefault(tuple(sigs[j]), [])
            if g and g[-1][1] + 1 == lo:  # pieces come in order: adjacent ones join
                g[-1] = (g[-1][0], hi)
            else:
                g.append((lo, hi))
    return [(tuple(g), sig) for sig, g in groups.items()]


@dataclass(frozen=True)
class Entry:
    """One rule of a flattened hook (semantics.flatten.FlatRule) with its path as a Constraint."""

    cons: Constraint
    flat: FlatRule

    @property
    def action(self) -> str:
        return self.flat.action or ""

    @property
    def decides(self) -> bool:
        return self.flat.terminal is not False and self.flat.action is not None

    def where(self) -> str:
        ref = self.flat.rule
        if ref is None:
            return "the chain policy"
        return f"{ref} (RETURN: the chain policy)" if self.flat.policy else str(ref)


def hook_entries(rs: Ruleset, hook: str, space: Space, table: str = "filter") -> list[Entry]:
    """The hook's chain flattened (semantics.flatten), each rule's path as a Constraint."""
    tbl = rs.tables.get(table)
    if tbl is None or hook not in tbl.chains:
        return []
    out = []
    for fr in flatten(rs, table, hook).rules:
        cons = space.path_constraint(fr.conds, rs.sets)
        t = fr.target
        if fr.terminal is None and not (t is not None and isinstance(t.data, Unread) and cons.residual):
            # a target stockade does not know may or may not end the walk (a stand-in's own match says why)
            cons = cons & Constraint(residual=(t.data.why if t is not None and isinstance(t.data, Unread)
                                               else f"-j {fr.action} (not modelled)",))
        out.append(Entry(cons, fr))
    return out
