"""Service matrix: for one service, which source addresses may open connections to which destinations.

The address space is cut into classes of addresses the chain treats alike, both as
source and as destination (as fffuu does), and the edges say which class reaches
which. Every test stockade cannot decide for the service (rate limits, MAC
addresses, marks, interfaces without a map) makes a rule three-valued, so two
matrices are computed: "may" (undecided tests assumed to let the packet through,
fffuu's upper closure for new connections) and "always". Edges of the first that
are not in the second name the rules they depend on.

Algorithm: the chain is flattened; each rule becomes, for the service, a pair of
address-range products (where it surely matches, where it may match) or is dropped;
the boundaries of all ranges cut the space into elementary ranges; sources with the
same membership in every rule's source set share a row, computed by one sweep of
the rules over Python-int bitsets of destination ranges; classes are the elementary
ranges with equal rows and equal columns.
"""
from __future__ import annotations

import bisect
import dataclasses
import random
from dataclasses import dataclass, field

from ..extensions.conntrack import packet_kind
from ..extensions.values import parse_port, parse_proto
from ..model import Family
from ..model.diagnostics import ParseError
from ..model.netfilter import (
    ACK,
    ICMP_PROTOS,
    MARTIAN_V4,
    MARTIAN_V6,
    PORT_PROTOS,
    SEES_IIF,
    SEES_OIF,
    SYN,
    UNFORWARDED_V6,
    proto_name,
)
from ..model.packet import Packet
from ..model.ranges import (
    Ranges,
    complement,
    contains,
    format_range,
    full,
    intersect,
    normalize,
)
from ..model.space import DPORT, DST, ICMP, KIND, PROTO, SPORT, SRC, AnyOf, Box, Frame
from .boxes import header_box, match_box
from .flatten import Flat, FlatRule, Lit, RuleRef, flatten
from .ipassmt import IpAssmt, default_ipassmt
from .simulate import Env

DENY = {"DROP", "REJECT"}
# What fffuu's parser understands (Iptables_Semantics haskell_tool): anything else is an unknown match to it.
FFFUU_PROTOS = {6, 17, 1, 50, 51, 47}
FFFUU_MATCHES = {
    "tcp": lambda d: d.option is None,
    "udp": lambda d: True,
    "multiport": lambda d: d.side != "ports",
    "iprange": lambda d: True,
    "state": lambda d: True,
    "conntrack": lambda d: all(getattr(d, f.name) in (None, False) for f in dataclasses.fields(d) if f.name != "state"),
}


@dataclass(frozen=True)
class Service:
    """What a new connection carries apart from its addresses. TCP ones open with a SYN."""

    proto: int
    dport: int | None = None
    sport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    state: str = "NEW"

    @property
    def label(self) -> str:
        name = proto_name(self.proto)
        if self.proto in PORT_PROTOS:
            return f"{name}/{self.dport}"
        if self.icmp_type is not None:
            return f"{name}/{self.icmp_type}" + (f"/{self.icmp_code}" if self.icmp_code is not None else "")
        return name

    def packet(self, family: Family, hook: str, src: int = 0, dst: int = 0, iif: str | None = None,
               oif: str | None = None) -> Packet:
        tcp = self.proto == 6
        return Packet(family, self.proto, src, dst, sport=self.sport if self.proto in PORT_PROTOS else None,
                      dport=self.dport if self.proto in PORT_PROTOS else None,
                      tcp_flags=(SYN if self.state == "NEW" else ACK) if tcp else 0,
                      icmp_type=self.icmp_type, icmp_code=self.icmp_code, iif=iif, oif=oif, hook=hook,
                      state=self.state)


DEFAULT_SPORT = 40000  # an ephemeral client port; fffuu uses 10000


def parse_service(text: str, family: Family, sport: int | None = None, state: str = "NEW") -> Service:
    """`tcp/22`, `udp/domain`, `icmp/8`, `icmpv6/128/0`, `gre`; raises ValueError with a reason."""
    proto_s, _, rest = text.partition("/")
    try:
        proto = parse_proto(proto_s)
    except ParseError:
        raise ValueError(f"unknown protocol `{proto_s}` in service `{text}`") from None
    if proto == 1 and family is Family.IPV6:
        proto = 58
    if proto in PORT_PROTOS:
        if not rest:
            raise ValueError(f"service `{text}` needs a port, e.g. {proto_s}/22")
        try:
            port = parse_port(rest, proto_name(proto))
        except ParseError:
            raise ValueError(f"`{rest}` in service `{text}` is not a port or service name") from None
        return Service(proto, port, DEFAULT_SPORT if sport is None else sport, state=state)
    if proto in (1, 58):
        parts = rest.split("/") if rest else []
        if not parts or not all(p.isdigit() and int(p) < 256 for p in parts) or len(parts) > 2:
            raise ValueError(f"service `{text}` needs an ICMP type number, e.g. {proto_s}/8")
        return Service(proto, icmp_type=int(parts[0]), icmp_code=int(parts[1]) if len(parts) > 1 else 0,
                       state=state)
    if rest:
        raise ValueError(f"protocol {proto_s} has no ports: write `{proto_s}`")
    return Service(proto, state=state)


@dataclass
class Setting:
    """How to read the chain: the interface map, and whether the kernel's own drops count."""

    ipassmt: IpAssmt
    rewrite: bool  # the map is disjoint and names every interface: `-i X` is exactly `-s map[X]`
    hook: str
    sees_iif: bool
    sees_oif: bool
    routing: bool  # drop martian sources before the chain, as the kernel does
    compat: str | None = None  # "fffuu": decide only what fffuu decides, to compare like with like
    routes: dict[str, Ranges] | None = None  # destinations routed via each device: `-o X` is `-d routes[X]`
    assumptions: list[str] = field(default_factory=list)
    lits: dict = field(default_factory=dict, repr=False)  # address and interface tests' readings: every service's
    rules: dict = field(default_factory=dict, repr=False)  # id(flat rule) -> its address part (_Evaluator.common)
    tests: dict = field(default_factory=dict, repr=False)  # every other test -> a number, its key in _Evaluator.vals


@dataclass
class RuleSets:
    """One flat rule for the service: where it surely matches (t) and where it may (m)."""

    rule: FlatRule
    src_t: Ranges
    src_m: Ranges
    dst_t: Ranges
    dst_m: Ranges
    sure: bool  # no undecided test besides addresses
    unknown: tuple[RuleRef, ...]


@dataclass
class Matrix:
    family: Family
    service: Service
    classes: list[Ranges]
    may: set[tuple[int, int]]
    always: set[tuple[int, int]]
    undecided: dict[tuple[int, int], list[RuleRef]]
    elementary: list[int] = field(default_factory=list)  # first address of each elementary range the rules cut

    @staticmethod
    def name(i: int) -> str:
        out = ""
        i += 1
        while i:
            i, r = divmod(i - 1, 26)
            out = chr(97 + r) + out
        return out

    def to_json(self) -> dict:
        v = int(self.family)
        names = [self.name(i) for i in range(len(self.classes))]
        return {
            "classes": {names[i]: [format_range(v, r) for r in c] for i, c in enumerate(self.classes)},
            "edges": [[names[a], names[b]] for a, b in sorted(self.may)],
            "always": [[names[a], names[b]] for a, b in sorted(self.always)],
            "undecided": [{"edge": [names[a], names[b]], "depends_on": [str(r) for r in refs]}
                          for (a, b), refs in sorted(self.undecided.items())],
        }


def setting(flat: Flat, ipassmt: IpAssmt | None, routing: bool = True, compat: str | None = None,
            routes: dict[str, Ranges] | None = None) -> Setting:
    chain = flat.chain
    hook = chain if chain in ("INPUT", "FORWARD", "OUTPUT") else ("OUTPUT" if chain == "POSTROUTING" else "INPUT")
    used = {lit.value for r in flat.rules for lit in r.conds if lit.kind in ("iif", "oif") and lit.value != "+"}
    given = ipassmt is not None
    amap = ipassmt if given else default_ipassmt(flat.family)
    rewrite = amap.disjoint() and used <= set(amap.ifaces)
    s = Setting(amap, rewrite, hook, chain in SEES_IIF, chain in SEES_OIF, routing, compat, routes)
    if compat == "fffuu":
        s.assumptions.append("fffuu's reading: protocols other than tcp, udp, icmp, esp, ah, gre and matches other "
                             "than ports, iprange and state are undecided")
    what = amap.describe() if given else "no interface map: as fffuu, `lo` carries " + \
        ("127.0.0.0/8" if flat.family is Family.IPV4 else "::1")
    if s.sees_iif and used:
        if rewrite:
            s.assumptions.append(f"{what}; the map is disjoint and names every interface, so `-i X` is read as "
                                 "`-s <addresses of X>` (packets arrive only on the interface of their source)")
        else:
            s.assumptions.append(f"{what}; `-i X` is read as `-i X -s <addresses of X>` and the interface itself "
                                 "is undecided (the map is not disjoint or does not name every interface)")
    if s.sees_oif and any(lit.kind == "oif" for r in flat.rules for lit in r.conds):
        s.assumptions.append("`-o X` is read as `-d <destinations routed via X>` (routing table given; other "
                             "devices undecided)" if routes is not None else
                             "output interfaces (-o) are undecided (no routing table)")
    if flat.family is Family.IPV4 or flat.chain in ("INPUT", "FORWARD"):
        s.assumptions.append("martian sources the kernel drops before the chain are "
                             + ("dropped" if routing else "NOT dropped (chain only, as fffuu)"))
    return s


def _martians(family: Family, hook: str, bits: int, lo: Ranges) -> Ranges:
    if family is Family.IPV4:
        nets = MARTIAN_V4 if hook in ("INPUT", "FORWARD") else []
    else:
        nets = MARTIAN_V6 + (UNFORWARDED_V6 if hook == "FORWARD" else [])
    ranges = normalize((int(n.network_address), int(n.broadcast_address)) for n in nets)
    return intersect(ranges, complement(lo, bits))


_ANY_SERVICE = frozenset({"src", "dst", "iif", "oif"})


class _Evaluator:
    """Each test of a flat rule, for the service: a sure and a possible address set, or a truth value.

    A test's Box (semantics.boxes: the constraint diff and findings use too) is projected onto the
    service, which fixes the protocol, the ports, the ICMP type and code, and the packet kind (the
    frame's only Kind: the conntrack state the chain sees the service in, with its TCP flags);
    addresses stay ranges. A dimension the service has no value for, or any other, is undecided."""

    def __init__(self, flat: Flat, service: Service, s: Setting):
        self.flat, self.service, self.s = flat, service, s
        self.bits = 32 if flat.family is Family.IPV4 else 128
        self.all = full(self.bits)
        self.pkt = service.packet(flat.family, s.hook)
        env = Env(self.pkt, service.state, {})
        env.key = (flat.table, flat.chain, 0, 0)
        self.frame = Frame(flat.family, (packet_kind(service.state, self.pkt, env),), flat.sets)
        self.fixed = {PROTO: service.proto, KIND: 0}
        if service.proto in PORT_PROTOS:
            self.fixed |= {d: v for d, v in ((SPORT, service.sport), (DPORT, service.dport)) if v is not None}
        if service.proto in ICMP_PROTOS and service.icmp_type is not None:
            self.fixed[ICMP] = service.icmp_type * 256 + (service.icmp_code or 0)
        self.vals: dict[int, object] = {}  # the service's reading of each test Setting.tests numbers

    def lit(self, lit: Lit):
        """("src"|"dst", sure, possible), or True / False / None (undecided). Address and interface
        tests read the same for every service: the setting keeps them."""
        got = self.s.lits.get(lit, self)
        if got is self:
            got = self.s.lits[lit] = self._lit(lit)
        return got

    def _neg(self, dim: str, sure: Ranges, maybe: Ranges, neg: bool) -> list[tuple[str, Ranges, Ranges]]:
        if not neg:
            return [(dim, sure, maybe)]
        return [(dim, complement(maybe, self.bits), complement(sure, self.bits))]

    def _lit(self, lit: Lit):
        k, v, neg = lit.kind, lit.value, lit.negated
        if k in ("iif", "oif"):
            seen = self.s.sees_iif if k == "iif" else self.s.sees_oif
            if not seen:  # the device is missing at this hook: reads as "" (see compile.py)
                hit = "".startswith(v[:-1]) if v.endswith("+") else False
                return hit != neg
            if v == "+":
                return not neg
            if k == "oif":
                routed = None if self.s.routes is None else self.s.routes.get(v)
                return None if routed is None else self._neg("dst", routed, routed, neg)
            ips = self.s.ipassmt.ifaces.get(v)
            if self.s.rewrite:
                return self._neg("src", ips, ips, neg)
            if ips is None:
                return None
            return self._neg("src", (), ips, neg)
        if k == "match":
            fffuu = FFFUU_MATCHES.get(v.name)
            if self.s.compat == "fffuu" and (fffuu is None or not fffuu(v.data)):
                return None
            box = match_box(v, self.frame)
            if isinstance(box, AnyOf):  # a union of address products is none: only fixed dimensions decide
                parts = [self._project(b) for b in box.boxes]
                if any(p is None or isinstance(p, list) for p in parts):
                    return None
                return (True in parts) != neg
        else:
            if k == "proto" and self.s.compat == "fffuu" and v not in FFFUU_PROTOS:
                return None
            box, neg = header_box(lit, self.frame), False  # a header test's `!` is in its box
        got = None if box is None else self._project(box)
        if got is None or got is True or got is False:
            return None if got is None else got != neg
        if neg and len(got) > 1:
            return None  # ¬(src ∧ dst) is no product of address sets
        return [(dim, *(complement(r, self.bits),) * 2) if neg else (dim, r, r) for dim, r in got]

    def _project(self, box: Box):
        """The box for the service: False if it excludes the service, True if it admits it whatever
        the addresses, else its address ranges as [(dim, ranges)]; None if undecided."""
        addrs = []
        for d, v in box.items():
            if d == SRC or d == DST:
                addrs.append((d, v))
            elif d not in self.fixed:
                return None
        if not all(contains(v, self.fixed[d]) for d, v in box.items() if d != SRC and d != DST):
            return False
        return addrs or True

    def common(self, r: FlatRule):
        """The part of the rule every service reads alike (its address and interface tests), computed
        once per chain: None if it matches no address, else (sets, sure, unknown as (position,
        rule), the other tests as (position, test, number), and the RuleSets made so far by what
        services read in those tests when each read holds or undecided: most services read them alike)."""
        key = id(r)
        got = self.s.rules.get(key)
        if got is not None or key in self.s.rules:
            return got
        sets = [self.all] * 4  # src sure, src may, dst sure, dst may
        sure, unknown, rest = True, [], []
        for pos, lit in enumerate(sorted(r.conds, key=lambda x: x.kind != "proto")):
            if lit.kind not in _ANY_SERVICE:
                rest.append((pos, lit, self.s.tests.setdefault(lit, len(self.s.tests))))
                continue
            sure = self._apply(self.lit(lit), lit, pos, sets, unknown) and sure
            if sure is None:
                break
        if sure is None or not sets[1] or not sets[3]:
            got = None
        else:
            got = (sets, sure, unknown, rest, {})
        self.s.rules[key] = got
        return got

    @staticmethod
    def _apply(got, lit: Lit, pos: int, sets: list, unknown: list) -> bool | None:
        """One test's reading folded into `sets`: None if the rule cannot match, else whether it is sure."""
        if got is False:
            return None
        if got is True:
            return True
        if got is None:
            unknown.append((pos, lit.rule))
            return False
        for dim, t, m in got:
            i = 0 if dim == "src" else 2
            sets[i], sets[i + 1] = intersect(sets[i], t), intersect(sets[i + 1], m)
            if t != m:
                unknown.append((pos, lit.rule))
        return True

    @staticmethod
    def _sets(r: FlatRule, sets: list, sure: bool, unknown: list) -> RuleSets:
        refs = [u for _, u in sorted(unknown, key=lambda x: x[0])]  # in the order of the rule's tests
        if r.terminal is None or r.action not in DENY | {"ACCEPT"}:
            refs.append(r.rule)
        return RuleSets(r, sets[0], sets[1], sets[2], sets[3], sure, tuple(u for u in refs if u is not None))

    def rule(self, r: FlatRule) -> RuleSets | None:
        common = self.common(r)
        if common is None:
            return None
        sets, sure, unknown, rest, made = common
        vals, readings = self.vals, []
        for _, lit, n in rest:
            got = vals.get(n, vals)
            if got is vals:
                got = vals[n] = self._lit(lit)
            if got is False:
                return None
            readings.append(got)
        key = tuple(readings) if all(g is True or g is None for g in readings) else None
        if key is not None and key in made:
            return made[key]
        sets, unknown = list(sets), list(unknown)
        for (pos, lit, _), got in zip(rest, readings):
            sure = self._apply(got, lit, pos, sets, unknown) and sure
        out = self._sets(r, sets, sure, unknown) if sets[1] and sets[3] else None
        if key is not None:
            made[key] = out
        return out


def _kind(r: FlatRule) -> str:
    return "accept" if r.action == "ACCEPT" else "deny" if r.action in DENY else "unknown"


class _Bits:
    """Address ranges as bitsets over the elementary ranges the boundaries cut."""

    def __init__(self, sets: list[Ranges], bits: int):
        top = 1 << bits
        cuts = {0}
        for rs in sets:
            for lo, hi in rs:
                cuts.add(lo)
                if hi + 1 < top:
                    cuts.add(hi + 1)
        self.bounds = sorted(cuts)
        self.top = top
        self.n = len(self.bounds)
        self.cache: dict[Ranges, int] = {}

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        i = bisect.bisect_left(self.bounds, lo)
        j = self.n if hi + 1 >= self.top else bisect.bisect_left(self.bounds, hi + 1)
        return i, j

    def of(self, rs: Ranges) -> int:
        got = self.cache.get(rs)
        if got is None:
            got = 0
            for lo, hi in rs:
                i, j = self.span(lo, hi)
                got |= ((1 << (j - i)) - 1) << i
            self.cache[rs] = got
        return got

    def ranges(self, b: int) -> Ranges:
        out = []
        i = 0
        while b:
            if b & 1:
                j = i
                while b >> (j - i + 1) & 1:
                    j += 1
                out.append((self.bounds[i], (self.bounds[j + 1] - 1) if j + 1 < self.n else self.top - 1))
                b >>= j - i + 1
                i = j + 1
            else:
                skip = (b & -b).bit_length() - 1
                b >>= skip
                i += skip
        return normalize(out)


def _rows(rules: list[tuple[int, int, bool]], groups: list[int], allbits: int) -> list[int]:
    """For each group's representative elementary range as source, the destinations accepted. The
    rules are walked once for all groups: each meets only the groups whose representative its
    sources hold (a rule for one host, one group), and a group leaves once every destination is
    decided for it."""
    at = {e: g for g, e in enumerate(groups)}
    live = 0
    for e in groups:
        live |= 1 << e
    remaining, acc = [allbits] * len(groups), [0] * len(groups)
    for sb, db, accept in rules:
        x = sb & live
        while x:
            low = x & -x
            x ^= low
            g = at[low.bit_length() - 1]
            hit = remaining[g] & db
            if hit:
                if accept:
                    acc[g] |= hit
                remaining[g] ^= hit
                if not remaining[g]:
                    live ^= low
        if not live:
            break
    return acc


def service_matrix(flat: Flat, service: Service, ipassmt: IpAssmt | None = None, routing: bool = True,
                   s: Setting | None = None) -> Matrix:
    """The service matrix of a flattened chain (see the module docstring)."""
    s = s or setting(flat, ipassmt, routing)
    ev = _Evaluator(flat, service, s)
    bits = ev.bits
    evals = [e for e in (ev.rule(r) for r in flat.rules if r.terminal is not False) if e is not None]
    pre: list[tuple[Ranges, Ranges, str]] = []
    if s.routing:
        mart = _martians(flat.family, s.hook, bits, s.ipassmt.ifaces.get("lo", ()))
        if mart:
            pre.append((mart, ev.all, "deny"))
    may_l, always_l = list(pre), list(pre)
    for e in evals:
        kind = _kind(e.rule)
        if kind == "accept":
            may_l.append((e.src_m, e.dst_m, "accept"))
            if e.sure:
                always_l.append((e.src_t, e.dst_t, "accept"))
        elif kind == "deny":
            if e.sure:
                may_l.append((e.src_t, e.dst_t, "deny"))
            always_l.append((e.src_m, e.dst_m, "deny"))
        else:
            may_l.append((e.src_m, e.dst_m, "accept"))
            always_l.append((e.src_m, e.dst_m, "deny"))
    may_l = [x for x in may_l if x[0] and x[1]]
    always_l = [x for x in always_l if x[0] and x[1]]
    bs = _Bits([x[0] for x in may_l + always_l] + [x[1] for x in may_l + always_l], bits)
    allbits = (1 << bs.n) - 1

    # sources alike in every rule's source set share a row: XOR of random keys over index spans
    rnd = random.Random(0)
    keys: dict[Ranges, int] = {}
    diff = [0] * (bs.n + 1)
    for src, _, _ in may_l + always_l:
        if src not in keys:
            k = keys[src] = rnd.getrandbits(96)
            for lo, hi in src:
                i, j = bs.span(lo, hi)
                diff[i] ^= k
                diff[j] ^= k
    sig, acc = [], 0
    for i in range(bs.n):
        acc ^= diff[i]
        sig.append(acc)
    group_of: dict[int, int] = {}
    reps: list[int] = []
    gid = []
    for i, g in enumerate(sig):
        if g not in group_of:
            group_of[g] = len(reps)
            reps.append(i)
        gid.append(group_of[g])

    def compiled(lst):
        return [(bs.of(a), bs.of(b), k == "accept") for a, b, k in lst]

    may_rows = _rows(compiled(may_l), reps, allbits)
    always_rows = _rows(compiled(always_l), reps, allbits)

    # classes: equal rows, then split by every distinct row (equal columns)
    by_row: dict[int, int] = {}
    for i in range(bs.n):
        r = may_rows[gid[i]]
        by_row[r] = by_row.get(r, 0) | (1 << i)
    classes = list(by_row.values())
    for r in set(may_rows):
        nxt = []
        for c in classes:
            a = c & r
            if a and a != c:
                nxt += [a, c ^ a]
            else:
                nxt.append(c)
        classes = nxt
    classes.sort(key=lambda c: (c & -c).bit_length())
    reps_c = [(c & -c).bit_length() - 1 for c in classes]
    may: set[tuple[int, int]] = set()
    always: set[tuple[int, int]] = set()
    undecided: dict[tuple[int, int], list[RuleRef]] = {}
    ebits = None
    by_src: dict[int, list[tuple]] = {}
    for a, ca in enumerate(classes):
        row = may_rows[gid[reps_c[a]]]
        members = {gid[i] for i in _indices(ca)}
        sure_row = allbits
        for g in members:
            sure_row &= always_rows[g]
        for b, cb in enumerate(classes):
            if row & cb:
                may.add((a, b))
                if sure_row & cb == cb:
                    always.add((a, b))
                else:
                    if ebits is None:  # every rule's sets are unions of elementary ranges (sure ones if sure)
                        ebits = [(e, bs.of(e.src_m), bs.of(e.dst_m), e.sure and bs.of(e.src_t),
                                  e.sure and bs.of(e.dst_t)) for e in evals]
                    undecided[(a, b)] = _why(ebits, ca, cb, always_rows, gid, by_src)
    return Matrix(flat.family, service, [bs.ranges(c) for c in classes], may, always, undecided, bs.bounds)


def _indices(b: int):
    while b:
        low = b & -b
        yield low.bit_length() - 1
        b ^= low


def _why(ebits: list[tuple], ca: int, cb: int, always_rows: list[int], gid: list[int],
         by_src: dict[int, list[tuple]]) -> list[RuleRef]:
    """The undecided rules met by one pair of this class pair whose answer is not sure. `ebits`: each
    rule with its address sets (may src, dst; sure src, dst) as bitsets of elementary ranges;
    `by_src` keeps, per source elementary range asked about, the rules that may match it."""
    for i in _indices(ca):
        miss = cb & ~always_rows[gid[i]]
        if miss:
            f = (miss & -miss).bit_length() - 1
            src, dst = 1 << i, 1 << f
            break
    else:
        return []
    rules = by_src.get(i)
    if rules is None:
        rules = by_src[i] = [x for x in ebits if x[1] & src]
    out: list[RuleRef] = []
    for e, _, dm, st, dt in rules:
        if not dm & dst:
            continue
        surely = e.sure and st & src and dt & dst
        if surely and _kind(e.rule) != "unknown":
            break
        out += [u for u in e.unknown if u not in out]
    return out[:5]


def analyze_chain(rs, table: str, chain: str, services: list[Service], ipassmt: IpAssmt | None = None,
                  routing: bool = True, compat: str | None = None,
                  routes: dict[str, Ranges] | None = None) -> tuple[Setting, dict[str, Matrix]]:
    flat = flatten(rs, table, chain)
    s = setting(flat, ipassmt, routing, compat, routes)
    return s, {sv.label: service_matrix(flat, sv, s=s) for sv in services}

