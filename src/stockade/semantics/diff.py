"""Semantic diff: which packet classes get a different verdict from two rulesets.

The header space of each family and filter hook is cut by the boundaries both
rulesets use (cells.refine), one packet per class is run through each ruleset by
the simulator (a first packet, at t=0, rate-limit buckets full), and the flattened
rules give, per class, every verdict the ruleset *may* give: a rule with a match no
dimension expresses (a rate limit, a mark, an unknown extension) adds its verdict
and is named in "depends on". Classes are merged where they differ in one
dimension only, then ranked: newly opened first, then closed, then other changes;
NEW packets before other states; wide classes before narrow ones.

JSON (Diff.to_json):
  {"changes": [
     {"family": 4, "hook": "INPUT", "state": "NEW" (or "NEW, INVALID", ..., or "any state"),
      "class": {"proto": "tcp", "dport": "25", "sport": null, "icmp": null,
                "src": "anywhere", "dst": "anywhere", "iif": null, "oif": null},
      "text": "tcp/25 from anywhere",
      "old": {"verdict": "ACCEPT", "may": ["ACCEPT"], "rule": "seed.sh:40:1", "depends": []},
      "new": {"verdict": "DROP", "may": ["DROP"], "rule": "policy.toml:12", "depends": []},
      "example": {packet spec of one packet of the class, as `stockade explain` reads it}},
     ...],
   "classes": number of classes examined, "changed": number that changed,
   "families": [4, 6], "seconds": elapsed}
"verdict" is the simulator's for the example packet; "rule" where it was decided (a rule's
position, "INPUT policy", or why the kernel drops it first); "may" is every verdict some packet
of the class may get (more than one only when "depends" names the rules that decide which).
A FlatError (a jump loop, a missing chain) propagates: the kernel would refuse such a ruleset.
"""
from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import NamedTuple

from ..extensions.ct import untracks
from ..model import Family, Ruleset
from ..model.netfilter import FILTER_HOOKS as HOOKS
from ..model.netfilter import PORT_PROTOS, TCP_FLAGS, proto_name
from ..model.packet import Packet
from ..model.ranges import difference as iv_sub
from ..model.ranges import intersect as iv_and
from ..model.ranges import normalize as norm
from ..model.ranges import size as iv_size
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
)
from .cells import (
    UNTRACKED_KIND,
    Constraint,
    Entry,
    Space,
    hook_entries,
    icmp_proto,
    refine,
    relation,
    same_walk,
    untracked,
)
from .simulate import Simulator


@dataclass(frozen=True)
class Outcome:
    """What one ruleset does with a class: the example packet's verdict and every possible one."""

    verdict: str
    may: frozenset[str]
    rule: str | None = None  # where the example packet was decided
    depends: tuple[str, ...] = ()

    @property
    def key(self) -> tuple:
        return self.verdict, self.may

    def label(self) -> str:
        others = sorted(self.may - {self.verdict})
        if not others:
            return self.verdict
        return f"{self.verdict} (or {'/'.join(others)}, depending on {'; '.join(self.depends[:2])})"

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "may": sorted(self.may), "rule": self.rule, "depends": list(self.depends)}


@dataclass
class Change:
    family: Family
    hook: str
    box: dict
    old: Outcome
    new: Outcome
    example: Packet
    space: Space = field(repr=False)
    parts: list = field(default_factory=list, repr=False)  # the exact classes merged into `box`

    def __post_init__(self) -> None:
        if not self.parts:
            self.parts = [self.box]

    def covers(self, point: dict) -> bool:
        """Whether the class holds this point (each dimension one value), exactly."""
        return any(all(any(lo <= point[d] <= hi for lo, hi in part[d]) for d in DIMS) for part in self.parts)

    @property
    def state(self) -> str:
        """The packet kinds of the class: one label, "any state", or a list."""
        labels = [KINDS[i].label for lo, hi in self.box[KIND] for i in range(lo, hi + 1)]
        return "any state" if len(labels) == len(KINDS) else ", ".join(labels)

    def klass(self) -> dict:
        return describe(self.space, self.box, self.hook)

    def text(self) -> str:
        return class_text(self.klass())

    def rank(self) -> tuple:
        opened = self.new.verdict == "ACCEPT" and self.old.verdict != "ACCEPT"
        closed = self.old.verdict == "ACCEPT" and self.new.verdict != "ACCEPT"
        order = 0 if opened else 1 if closed else 2 if self.old.verdict != self.new.verdict else 3
        return (order, self.box[KIND][0][0], HOOKS.index(self.hook), -iv_size(self.box[SRC]).bit_length(),
                int(self.family), self.box[PROTO][0][0], self.box[DPORT][0][0])

    def to_json(self) -> dict:
        return {"family": int(self.family), "hook": self.hook, "state": self.state, "class": self.klass(),
                "text": self.text(), "old": self.old.to_json(), "new": self.new.to_json(),
                "example": packet_spec(self.example)}


@dataclass
class Diff:
    changes: list[Change]
    classes: int
    families: list[Family]
    seconds: float
    unchanged: list[Change] = field(default_factory=list)  # with keep=True: every other class
    spaces: dict = field(default_factory=dict)  # Family -> the cells.Space the classes live in

    def to_json(self) -> dict:
        return {"changes": [c.to_json() for c in self.changes], "classes": self.classes,
                "changed": len(self.changes), "families": [int(f) for f in self.families],
                "seconds": round(self.seconds, 3)}

    def text(self) -> str:
        """Verdict changes by family, hook and state (NEW first), then classes whose verdict is the
        same for the example packet but whose possible verdicts changed (rate limits and the like)."""
        if not self.changes:
            return f"no packet class changes its verdict ({self.classes} classes compared)\n"
        lines: list[str] = []
        may_title = "May change (same verdict for a first packet; rate limits or undecidable matches differ):"
        for title, part in (("", [c for c in self.changes if c.old.verdict != c.new.verdict]),
                            (may_title, [c for c in self.changes if c.old.verdict == c.new.verdict])):
            if not part:
                continue
            if title:
                lines.append(title)
            sections: dict = {}
            for c in part:
                sections.setdefault((int(c.family), HOOKS.index(c.hook), c.box[KIND][0][0]), []).append(c)
            for key in sorted(sections):
                first = KINDS[key[2]].label
                lines.append(f"IPv{key[0]} {HOOKS[key[1]]}" + ("" if first == "NEW" else f" ({first} packets)") + ":")
                for c in sections[key]:
                    more = [k for k in c.state.split(", ") if k != first]
                    also = f" (also {', '.join(more)} packets)" if more and c.state != "any state" else \
                        " (any state)" if more else ""
                    lines.append(f"  {c.text()}: {c.old.label()} \u2192 {c.new.label()}{also}")
        lines.append(f"{len(self.changes)} change(s) over {self.classes} classes")
        return "\n".join(lines) + "\n"


def _empty(family: Family) -> Ruleset:
    rs = Ruleset(family)
    rs.table("filter")
    return rs


def fresh(sim: Simulator) -> None:
    """Forget what stateful matches remember (rate buckets, recent lists): each example packet is a
    first packet. What they derive from the ruleset alone (recent.sharers) is kept: it is costly."""
    sim.memory = {k: v for k, v in sim.memory.items() if isinstance(k, tuple) and k[:1] == ("sharers",)}


def possible(entries: list[Entry], policy: str, box: dict | None = None) -> tuple[set[str], list[str]]:
    """The verdicts the entries that concern a class allow its packets (no simulator run), and what
    they depend on: each deciding entry up to the first that surely decides the whole class, else
    the policy. The class's outcome allows these and the simulator's verdict."""
    may, depends = set(), []
    for e in entries:
        if not e.decides:
            continue
        part = box is not None and relation(e.cons, box)[0] == "some"
        may.add(e.action)
        if e.cons.residual or part:
            if e.cons.residual:
                depends.append(f"{e.where()}: {', '.join(e.cons.residual)}")
            continue
        return may, depends
    may.add(policy)
    return may, depends


def outcome(sim: Simulator, pkt: Packet, entries: list[Entry], policy: str, box: dict | None = None) -> Outcome:
    """The simulator's verdict for `pkt` and, from the entries that concern its class, every
    verdict a packet of the class may get. An entry that admits only part of the class (a class
    refine() left coarse because both sides walk it alike) adds its verdict as possible."""
    fresh(sim)
    res = sim.run(pkt)
    may, depends = possible(entries, policy, box)
    verdict = res.verdict
    if verdict == "UNKNOWN" and res.reason and not depends:
        depends.append(res.reason)
    may.add(verdict)
    rule = res.reason if res.reason and verdict != "UNKNOWN" else None
    for t in reversed(res.trace if rule is None else ()):
        if t.get("table") != "filter":
            continue
        if "policy" in t:
            rule = f"{t['chain']} policy"
            break
        if t.get("target") == verdict:
            rule = t.get("origin") or f"{t['chain']} rule {t['rule']}"
            break
    return Outcome(verdict, frozenset(may), rule, tuple(depends))


def _policy(rs: Ruleset, hook: str) -> str:
    """The filter chain's policy; a built-in chain a dump leaves out is created with ACCEPT."""
    chain = rs.tables["filter"].chains.get(hook) if "filter" in rs.tables else None
    return (chain.policy if chain is not None else None) or "ACCEPT"


def semantic_diff(old: dict[Family, Ruleset], new: dict[Family, Ruleset], *, hooks: tuple[str, ...] = HOOKS,
                  progress: Callable[[str], None] | None = None, keep: bool = False) -> Diff:
    """Every packet class of the filter hooks whose verdict differs between `old` and `new`.

    A family one side lacks is an empty ruleset there (the kernel accepts everything).
    With `keep`, the classes that do not change are returned too (Diff.unchanged, unmerged).
    Either side may be nftables (model.nftables.NftRuleset): see cross_diff."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return cross_diff(old, new, hooks=hooks, progress=progress, keep=keep)
    started = time.monotonic()
    changes: list[Change] = []
    unchanged: list[Change] = []
    spaces = {}
    classes = 0
    families = sorted(set(old) | set(new))
    for fam in families:
        rs_old, rs_new = old.get(fam) or _empty(fam), new.get(fam) or _empty(fam)
        space = spaces[fam] = Space(fam, [rs_old, rs_new])
        alike = _same_other_tables(rs_old, rs_new)
        sims = Simulator(rs_old), Simulator(rs_new)
        nat_first = any(c.rules for rs in (rs_old, rs_new) if "nat" in rs.tables
                        for name, c in rs.tables["nat"].chains.items() if name != "POSTROUTING")
        for hook in hooks:
            if progress:
                progress(f"IPv{int(fam)} {hook}")
            lists = [hook_entries(rs, hook, space) for rs in (rs_old, rs_new)]
            policies = [_policy(rs, hook) for rs in (rs_old, rs_new)]
            found = []
            raw = [_raw_entries(rs, hook, space) for rs in (rs_old, rs_new)]
            for box, eo, en, same, seen in _classes(space, hook, lists, alike and not keep, nat_first, raw):
                classes += 1
                if not same:
                    pkt = space.packet(box, hook)
                    a = outcome(sims[0], pkt, eo, policies[0], seen[0])
                    b = outcome(sims[1], pkt, en, policies[1], seen[1])
                    if a.key != b.key:
                        found.append(Change(fam, hook, box, a, b, pkt, space))
                    elif keep:
                        unchanged.append(Change(fam, hook, box, a, b, pkt, space))
            changes += merge(found)
    changes.sort(key=Change.rank)
    return Diff(changes, classes, families, time.monotonic() - started, unchanged, spaces)


def _classes(space: Space, hook: str, lists: list[list[Entry]], aligned: bool,
             nat_first: bool = True, raw: list[list[Entry]] | None = None) -> Iterator[tuple]:
    """(class, old entries, new entries, whether both sides walk it alike, the class as each side's
    filter sees it) for every class of the hook; a class holds packets as they arrive (their KIND
    the state conntrack would give them).

    Where a side's raw table untracks packets (`raw`: each side's raw entries on the hook's path),
    filter sees them UNTRACKED whatever their kind: a class of _tracked_classes that such a rule
    may concern is cut by the raw rules (_seen) and refined again as each side sees it (_apart
    where only one side untracks it)."""
    tracks = [_tracking(r) for r in raw] if raw and any(raw) else None
    for box, eo, en, same in _tracked_classes(space, hook, lists, aligned, nat_first):
        if tracks is None or not any(t.action == "UNTRACKED" and relation(t.cons, box)[0] != "none"
                                     for side in tracks for t in side):
            yield box, eo, en, same, (box, box)
            continue
        for piece, old, new in _seen(space, hook, box, tracks):
            if old is new and old is piece:  # both track it: the class's walks stand
                yield piece, eo, en, same, (piece, piece)
            elif old is new:  # both untrack it: a class is the packets as they arrive, walked untracked
                for part, (po, pn) in refine(space, old, lists, lambda e: e.cons, by_verdict=True):
                    same_ = aligned and same_walk([po, pn], lambda e: e.cons)
                    yield dict(part, **{KIND: piece[KIND]}), po, pn, same_, (part, part)
            else:
                yield from _apart(space, (old, new), lists)


def _tracked_classes(space: Space, hook: str, lists: list[list[Entry]], aligned: bool,
                     nat_first: bool) -> Iterator[tuple]:
    """(class, old entries, new entries, whether both sides walk it alike) for every class of the
    hook, every packet taken in the state conntrack gives it.

    `aligned` (the other tables are the same on both sides, and unchanged classes are not wanted),
    where every entry only one side holds names an interface (a moved or changed per-interface
    rule: few interface pairs can differ): the classes of `walks` over the two lists aligned, in
    each pair of interfaces. Otherwise, or where walks would cut a pair's box too finely (an entry
    every path meets), cells.refine's classes (every list constant on each, cut no further once
    each side has one verdict or both walk it alike). Packet kinds are kept apart from the start
    only if a nat rule sees packets before filter does (`nat_first`: nat sees a flow's first packet
    only); a nat table with rules in POSTROUTING alone changes nothing filter sees."""
    starts = space.start_boxes(hook, nat_first)
    items = align(*lists) if aligned else []
    if aligned and starts and all(IIF in (it.old or it.new).cons.dims or OIF in (it.old or it.new).cons.dims
                       for it in items if it.old is None or it.new is None):
        ifaces = {id(it): _ifaces_only((it.old or it.new).cons) for it in items}
        whole = dict(starts[0], **{d: norm([iv for b in starts for iv in b[d]]) for d in (IIF, OIF)})
        # interfaces first (once for all start boxes): a part then concerns few entries
        by_iface = list(refine(space, whole, [items], lambda it: ifaces[id(it)]))
        for start in starts:
            for iface_part, (mine,) in by_iface:
                part = dict(start, **{d: iv_and(start[d], iface_part[d]) for d in (IIF, OIF)})
                if not (part[IIF] and part[OIF]):
                    continue
                got = walks(part, mine, WALK_LIMIT + 8 * len(mine))
                if got is None:  # cut too finely (an entry many paths meet, moved): group values instead
                    sides = [[it.old for it in mine if it.old], [it.new for it in mine if it.new]]
                    got = ((box, eo, en, same_walk([eo, en], lambda e: e.cons)) for box, (eo, en) in
                           refine(space, part, sides, lambda e: e.cons, by_verdict=True))
                for box, eo, en, same in got:
                    yield box, list(eo), list(en), same
        return
    for start in starts:
        for box, (eo, en) in refine(space, start, lists, lambda e: e.cons, by_verdict=True):
            yield box, eo, en, aligned and same_walk([eo, en], lambda e: e.cons)


def _raw_entries(rs: Ruleset, hook: str, space: Space) -> list[Entry]:
    """raw's entries on the hook's path (conntrack comes after them), if one may untrack a packet."""
    entries = hook_entries(rs, "OUTPUT" if hook == "OUTPUT" else "PREROUTING", space, "raw")
    return entries if any(_untracks(e) for e in entries) else []


def _untracks(e: Entry) -> bool:
    return e.flat.target is not None and untracks(e.flat.target.data)


class _Track(NamedTuple):
    """A raw rule as what it decides for conntrack (extensions/ct.py: the first CT or NOTRACK a packet
    meets decides, and a verdict ends the walk): UNTRACKED or TRACKED."""

    cons: Constraint
    action: str
    decides: bool = True


def _tracking(entries: list[Entry]) -> list[_Track]:
    out = [_Track(e.cons, "UNTRACKED" if _untracks(e) else "TRACKED") for e in entries
           if _untracks(e) or e.decides or (e.flat.target is not None and e.flat.target.name == "CT")]
    return out + [_Track(Constraint(), "TRACKED")]


def _seen(space: Space, hook: str, box: dict, tracks: list[list[_Track]]) -> Iterator[tuple[dict, dict, dict]]:
    """`box` cut where a side's raw rules untrack some packets and not others: (part, old side's
    view, new side's view), a view being the part itself, or the part with KIND UNTRACKED where the
    side's raw table untracks it; one object for both when they see it alike. A packet on lo into
    INPUT keeps the state its output path gave it, unless that was INVALID. A raw rule stockade
    cannot decide gives both views."""
    alike = [(t.cons, t.action) for t in tracks[0]] == [(t.cons, t.action) for t in tracks[1]]
    for part, (ko,) in refine(space, box, [tracks[0]], lambda t: t.cons, by_verdict=True):
        inner = [(part, ko)] if alike else \
            ((p, kn) for p, (kn,) in refine(space, part, [tracks[1]], lambda t: t.cons, by_verdict=True))
        for sub, kn in inner:
            for piece, stays in _lo_pieces(space, hook, sub):
                old = [piece] if stays else _views(piece, ko)
                new = old if alike or stays else _views(piece, kn)
                for a in old:
                    for b in new:
                        yield piece, a, (a if a == b else b)


def _lo_pieces(space: Space, hook: str, box: dict) -> list[tuple[dict, bool]]:
    """`box` as (part, whether raw leaves its packets as they are): on lo into INPUT its INVALID packets
    and the others apart, for a packet there keeps the entry its output path gave it (raw cannot untrack
    it) unless that was INVALID; elsewhere `box` whole."""
    if hook != "INPUT" or box[IIF] != ((space.ifaces.index("lo"),) * 2,):
        return [(box, False)]
    invalid = norm([(i, i) for i, k in enumerate(KINDS) if k.state == "INVALID"])
    return [(dict(box, **{KIND: v}), stays) for v, stays in ((iv_and(box[KIND], invalid), False),
                                                             (iv_sub(box[KIND], invalid), True)) if v]


def _views(piece: dict, kept: list[_Track]) -> list[dict]:
    """How filter may see `piece`: as it is, untracked, or either (a raw rule stockade cannot decide)."""
    actions = {t.action for t in kept}
    return [untracked(piece)] if actions == {"UNTRACKED"} else [piece] if actions == {"TRACKED"} \
        else [piece, untracked(piece)]


def _apart(space: Space, seen: tuple[dict, dict], lists: list[list[Entry]]) -> Iterator[tuple]:
    """Classes of a part one side untracks and the other does not: cut by the tracking side's rules,
    then each piece, untracked, by the other side's. A class is the packets as they arrive (the
    tracking side's kinds); each side's entries and view are its own."""
    t = 0 if seen[0][KIND] != UNTRACKED_KIND else 1
    for box, (et,) in refine(space, seen[t], [lists[t]], lambda e: e.cons, by_verdict=True):
        for inner, (eu,) in refine(space, untracked(box), [lists[1 - t]], lambda e: e.cons, by_verdict=True):
            arrived = dict(inner, **{KIND: box[KIND]})
            tracking, untracking = (et, arrived), (eu, inner)
            (eo, vo), (en, vn) = (tracking, untracking) if t == 0 else (untracking, tracking)
            yield arrived, eo, en, False, (vo, vn)


def _key(e: Entry) -> tuple:
    """What same_walk compares of an entry (action and constraint), hashable; `decides` too."""
    c = e.cons
    return e.action, e.decides, c.never, c.residual, tuple(sorted(c.dims.items()))


class Item(NamedTuple):
    """A place in the two aligned lists: the entry each side holds there (None: that side has none)."""

    old: Entry | None
    new: Entry | None
    decides = False  # for refine: an item never ends a list (see _ifaces_only)


def _ifaces_only(c: Constraint) -> Constraint:
    """The constraint's interface tests alone, with a residual so that refine keeps every item after."""
    return Constraint({d: v for d, v in c.dims.items() if d in (IIF, OIF)}, ("rest",), c.never)


def align(old: list[Entry], new: list[Entry]) -> list[Item]:
    """The two flattened lists as one: (old entry, new entry) where both hold the same entry at
    matching places (difflib's longest order-keeping match), (entry, None) or (None, entry) for
    what only one side holds, in each side's order. Entries that change no verdict and no state a
    later rule tests (non-terminal PASSIVE targets: LOG) are left out."""
    old = [e for e in old if e.decides or e.action not in PASSIVE]
    new = [e for e in new if e.decides or e.action not in PASSIVE]
    m = SequenceMatcher(None, [_key(e) for e in old], [_key(e) for e in new], autojunk=False)
    items: list[Item] = []
    for tag, i1, i2, j1, j2 in m.get_opcodes():
        if tag == "equal":
            items += map(Item, old[i1:i2], new[j1:j2])
        else:
            items += [Item(e, None) for e in old[i1:i2]] + [Item(None, e) for e in new[j1:j2]]
    return _joined(items)


def _joined(items: list[Item]) -> list[Item]:
    """Runs of items that decide alike (same sides, same action, no residual) and differ in one
    dimension only, each as one item admitting the union: the first of them that matches decides
    with the same verdict as any other would (a blocklist's `-s X -j DROP` become one cut). The
    simulator still names the rule that decides the example packet."""
    out: list[Item] = []
    run_dim = None
    for it in items:
        e = it.old or it.new
        last = out[-1] if out else None
        if last is not None and e.decides and not e.cons.residual and not e.cons.never:
            le = last.old or last.new
            if ((last.old is None) == (it.old is None) and (last.new is None) == (it.new is None)
                    and le.decides and not le.cons.residual and le.action == e.action
                    and le.cons.dims.keys() == e.cons.dims.keys()):
                differ = [d for d, v in e.cons.dims.items() if le.cons.dims[d] != v]
                if len(differ) <= 1 and (run_dim is None or not differ or differ == [run_dim]):
                    if differ:
                        (d,) = differ
                        run_dim = d
                        dims = dict(le.cons.dims, **{d: norm(list(le.cons.dims[d]) + list(e.cons.dims[d]))})
                        cons = Constraint(dims)
                        out[-1] = Item(*(None if x is None else Entry(cons, x.flat) for x in last))
                    continue
        run_dim = None
        out.append(it)
    return out


PASSIVE = frozenset({"LOG", "NFLOG", "ULOG"})  # non-terminal targets that change nothing a later rule tests
FILTER_AT = 16  # entries left in a part before a cut passes each piece only those that concern it
WALK_LIMIT = 2000  # parts of an interface pair's box, besides 8 per entry, before walks gives up


def walks(box: dict, items: list[Item], limit: int) -> list[tuple[dict, tuple, tuple, bool]] | None:
    """`box` cut where the walks of the two aligned lists (align) part, first match first.

    Each part comes with, per side, the entries that hold for all of its packets up to the first
    that decides it (every other entry admits none of them), and whether both sides walk it
    alike (the same entries: same_walk). The entries are followed in order; at the first that
    admits some of a part's packets only, the part is cut into the packets it admits and the
    rest. So a part is cut only by entries its packets reach, and no further once both sides
    have decided it; a part both sides walk alike that no entry only one side holds can reach is
    not cut at all (nothing in it can differ). None if that makes more than `limit` parts."""
    out: list[tuple[dict, tuple, tuple, bool]] = []
    stack = [(box, _concerning(items, 0, box), 0, (), (), False, False, True)]
    while stack:
        if len(out) + len(stack) > limit:
            return None
        b, its, i, ko, kn, do, dn, same = stack.pop()
        if same and its is not None and not any(eo is None or en is None for eo, en in its):
            out.append((b, ko, kn, True))  # both sides walk it alike to the end
            continue
        its = its if its is not None else items
        cut = None
        while i < len(its) and not (do and dn):
            eo, en = its[i]
            eo, en = (None if do else eo), (None if dn else en)
            e = eo or en
            i += 1
            if e is None:
                continue
            rel = relation(e.cons, b)[0]
            if rel == "none":
                continue
            if rel == "some":
                cut, i = e.cons, i - 1
                break
            if eo is not None:
                ko += (eo,)
                do = eo.decides and not eo.cons.residual
            if en is not None:
                kn += (en,)
                dn = en.decides and not en.cons.residual
            same = same and eo is not None and en is not None
        if cut is None:
            out.append((b, ko, kn, same))
            continue
        for part in _cut(b, cut):
            rest = _concerning(its, i, part) if len(its) - i > FILTER_AT else None
            stack.append((part, rest, 0 if rest is not None else i, ko, kn, do, dn, same))
    return out


def _concerning(items: list[Item], start: int, box: dict) -> list[Item]:
    """The items from `start` on with an entry that admits some packet of `box`."""
    return [it for it in items[start:] if relation((it[0] or it[1]).cons, box)[0] != "none"]


def _cut(box: dict, c) -> list[dict]:
    """`box` (of which constraint `c` admits some but not all) as the part `c` admits and the
    disjoint parts it does not, one per dimension it cuts."""
    inside, parts = dict(box), []
    for d, allowed, _lo, _hi in c.ordered:
        have = inside[d]
        got = iv_and(have, allowed)
        if got == have:
            continue
        outside = dict(inside)
        outside[d] = iv_sub(have, allowed)
        parts.append(outside)
        inside[d] = got
    return [*parts, inside]


class IptOracle:
    """iptables rulesets (one per family) as one side of a cell analysis beside an nftables one
    (semantics/nftcells.py NftOracle has the same shape)."""

    def __init__(self, rulesets: dict[Family, Ruleset]):
        self.by_family = rulesets
        self._sims: dict[Family, Simulator] = {}
        self._filter: dict[tuple, tuple[list[Entry], str]] = {}
        self._raw: dict[tuple, tuple[Space, list[_Track]]] = {}  # where raw may untrack packets

    def names(self) -> set[str]:
        return set()

    def nat(self) -> bool:
        return False  # Space sees the nat table itself

    def rulesets(self, family: Family) -> list[Ruleset]:
        return [self.by_family.get(family) or _empty(family)]

    def lists(self, space: Space, hook: str) -> list[list]:
        from .nftcells import PATH_CHAINS

        rs = self.rulesets(space.family)[0]
        self._filter[(space.family, hook)] = hook_entries(rs, hook, space), _policy(rs, hook)
        if raw := _raw_entries(rs, hook, space):
            self._raw[(space.family, hook)] = space, _tracking(raw)
        return [hook_entries(rs, chain, space, table) for table in rs.tables for chain in PATH_CHAINS[hook]
                if (table, chain) != ("filter", hook)] + [self._filter[(space.family, hook)][0]]

    def fixed_lists(self, space: Space, hook: str) -> list[list]:
        return self.lists(space, hook)

    def explore(self, pkt: Packet, box: dict) -> tuple[str, frozenset[str], str | None, tuple[str, ...]]:
        """As NftOracle.explore: the class's outcome (refine made every entry constant on it, as the
        packets arrive; where raw untracks them, Split until the filter rules are constant on the class
        as they see it)."""
        entries = self._filter[(pkt.family, pkt.hook)][0]
        for view in self._views(pkt, box):
            if view[KIND] == box[KIND]:
                continue
            near = []
            for e in entries:
                rel = relation(e.cons, view)[0]
                if rel == "some" and not e.cons.residual:
                    near.append(e.cons)
                elif rel == "all" and e.decides and not e.cons.residual:
                    break
            if near:
                from .nftcells import Split

                raise Split(near, untracked=True)
        got = self.run(pkt, box)[3]
        return got.verdict, got.may, got.rule, got.depends

    def _views(self, pkt: Packet, box: dict) -> list[dict]:
        """The class as its filter rules see it (_seen): untracked where raw untracks it; both ways
        where a raw rule stockade cannot decide may."""
        space, tracks = self._raw.get((pkt.family, pkt.hook), (None, None))
        if tracks is None:
            return [box]
        return list({id(v): v for _, v, _ in _seen(space, pkt.hook, box, [tracks, tracks])}.values())

    def run(self, pkt: Packet, box: dict) -> tuple[str, str | None, tuple[str, ...], object]:
        sim = self._sims.get(pkt.family)
        if sim is None:
            sim = self._sims[pkt.family] = Simulator(self.rulesets(pkt.family)[0])
        entries, policy = self._filter[(pkt.family, pkt.hook)]
        first, *others = self._views(pkt, box)
        got = outcome(sim, pkt, [e for e in entries if relation(e.cons, first)[0] != "none"], policy, first)
        for view in others:
            may, depends = possible([e for e in entries if relation(e.cons, view)[0] != "none"], policy, view)
            got = Outcome(got.verdict, got.may | may, got.rule, (*got.depends, *(d for d in depends
                                                                                  if d not in got.depends)))
        return got.verdict, got.rule, got.depends, got


def oracle(side) -> object:
    """The side of a cell analysis for an input: an NftRuleset (or an NftOracle), or iptables rulesets."""
    from ..model.nftables import NftRuleset
    from .nftcells import NftOracle

    if isinstance(side, NftRuleset):
        return NftOracle(side)
    return side if isinstance(side, NftOracle | IptOracle) else IptOracle(side)


def cross_diff(old, new, *, hooks: tuple[str, ...] = HOOKS, progress: Callable[[str], None] | None = None,
               keep: bool = False) -> Diff:
    """semantic_diff where a side is nftables. The space is cut by the iptables sides' rules (cells.refine),
    then each part further where a walk of either side meets an nft rule whose tests some of its packets
    pass and others fail (nftcells.Explorer), so a class holds packets every rule on every walk treats alike.
    Each side gives every verdict a packet of the class may get: an nft statement no dimension decides (a
    limit, a quota, a mark, numgen, a set the packets fill, what the simulator cannot decide) is taken both
    ways; an iptables rule whose match no dimension expresses adds its verdict, as in semantic_diff."""
    from .nftcells import Split

    started = time.monotonic()
    sides = oracle(old), oracle(new)
    changes: list[Change] = []
    unchanged: list[Change] = []
    spaces, classes = {}, 0
    for fam in (Family.IPV4, Family.IPV6):
        space = spaces[fam] = _space(sides, fam)
        for hook in hooks:
            if progress:
                progress(f"IPv{int(fam)} {hook}")
            lists = [lst for s in sides for lst in s.fixed_lists(space, hook)]
            found: list[Change] = []
            for start in _lo_apart(space, hook, space.start_boxes(hook)):
                for part, _ in refine(space, start, lists, lambda e: e.cons):
                    stack = [part]
                    while stack:
                        box = stack.pop()
                        pkt = space.packet(box, hook)
                        try:
                            a, b = (Outcome(*side.explore(pkt, box)) for side in sides)
                        except Split as cut:
                            stack += cut.parts(space, box)
                            continue
                        classes += 1
                        if _differ(a, b):
                            found.append(Change(fam, hook, box, a, b, pkt, space))
                        elif keep:
                            unchanged.append(Change(fam, hook, box, a, b, pkt, space))
            changes += merge(found)
    changes.sort(key=Change.rank)
    return Diff(changes, classes, [Family.IPV4, Family.IPV6], time.monotonic() - started, unchanged, spaces)


def _lo_apart(space: Space, hook: str, starts: list[dict]) -> list[dict]:
    """The start boxes with INPUT's on lo cut into INVALID packets and the others (_lo_pieces)."""
    return [part for b in starts for part, _ in _lo_pieces(space, hook, b)]


def _differ(a: Outcome, b: Outcome) -> bool:
    """Whether two sides' outcomes differ. A side that can say nothing of the class (UNKNOWN its only answer,
    e.g. an nft statement the simulator does not model) shows no change against another undecided one."""
    if a.verdict == b.verdict == "UNKNOWN" and {"UNKNOWN"} in (a.may, b.may):
        return False
    return a.key != b.key


def _space(sides, fam: Family) -> Space:
    space = Space(fam, [rs for s in sides for rs in s.rulesets(fam)], set().union(*(s.names() for s in sides)))
    space.other_tables = space.other_tables or any(s.nat() for s in sides)
    return space


def cells(sides, hooks: tuple[str, ...] = HOOKS, progress: Callable[[str], None] | None = None):
    """(family, hook, space, class, its packet) for the classes every test of every side is constant on:
    the space cut by all sides' tests (cells.refine, never coarser), for both families and each hook."""
    for fam in (Family.IPV4, Family.IPV6):
        space = _space(sides, fam)
        for hook in hooks:
            if progress:
                progress(f"IPv{int(fam)} {hook}")
            lists = [lst for s in sides for lst in s.lists(space, hook)]
            for start in space.start_boxes(hook):
                for box, _ in refine(space, start, lists, lambda e: e.cons):
                    yield fam, hook, space, box, space.packet(box, hook)


def _same_other_tables(a: Ruleset, b: Ruleset) -> bool:
    """Whether the tables besides filter (raw, mangle, nat, security) hold the same chains and rules."""
    names = (set(a.tables) | set(b.tables)) - {"filter"}
    for name in names:
        ta, tb = a.tables.get(name), b.tables.get(name)
        if ta is None or tb is None or list(ta.chains) != list(tb.chains):
            return False
        for cname, ca in ta.chains.items():
            cb = tb.chains[cname]
            if ca.policy != cb.policy or len(ca.rules) != len(cb.rules) \
                    or not all(x.same_rule(y) for x, y in zip(ca.rules, cb.rules)):
                return False
    return True


MERGE_ORDER = (DPORT, SPORT, ICMP, SRC, DST, IIF, OIF, PROTO, KIND)


def merge(changes: list[Change]) -> list[Change]:
    """Join classes that differ in one dimension and change the same way, until none do."""
    seen: dict = {}  # (hook, sources) -> the sources without the martian ones

    def sources(c: Change):
        key = (c.hook, c.box[SRC])
        got = seen.get(key)
        if got is None:
            got = seen[key] = iv_sub(c.box[SRC], c.space.martians(c.hook))
        return got

    for _ in range(3):
        before = len(changes)
        for dim in MERGE_ORDER:
            groups: dict = {}
            for c in changes:
                key = (c.old.key, c.new.key, tuple((d, sources(c) if d == SRC else c.box[d]) for d in DIMS
                                                   if d != dim))
                if key in groups:
                    g = groups[key]
                    g.box = dict(g.box, **{d: norm(list(g.box[d]) + list(c.box[d])) for d in {dim, SRC}})
                    g.parts = g.parts + c.parts
                else:
                    groups[key] = Change(c.family, c.hook, dict(c.box), c.old, c.new, c.example, c.space, c.parts)
            changes = list(groups.values())
        if len(changes) == before:
            break
    return changes


# ---- describing classes ----

def _cidrs(space: Space, v, limit: int = 4) -> str:
    """Intervals as CIDRs where they are one, else first-last."""
    cls = ipaddress.IPv4Address if space.family is Family.IPV4 else ipaddress.IPv6Address
    parts = []
    for lo, hi in v[:limit]:
        if not _one_cidr(lo, hi):
            parts.append(f"{cls(lo)}-{cls(hi)}")
        elif lo == hi:
            parts.append(str(cls(lo)))
        else:
            parts.append(f"{cls(lo)}/{space.bits - (hi - lo + 1).bit_length() + 1}")
    return ", ".join(parts) + (f" and {len(v) - limit} more ranges" if len(v) > limit else "")


def _one_cidr(lo: int, hi: int) -> bool:
    """Whether lo-hi is one prefix: a power-of-two size, aligned to it."""
    n = hi - lo + 1
    return n & (n - 1) == 0 and lo % n == 0


def _addr(space: Space, v, hook: str, which: str) -> str | None:
    """None for anywhere; otherwise the addresses, or "anywhere but" those left out if shorter.
    Martian sources (never seen) are folded into whichever side reads better."""
    martian = space.martians(hook) if which == SRC else ()
    universe = space.universe[which]
    missing = iv_sub(iv_sub(universe, v), martian)
    if not missing:
        return None

    def shown(part):
        joined = norm(list(part) + list(martian))
        return tuple(iv for iv in joined if iv_sub((iv,), martian))

    inside, outside = shown(iv_sub(v, martian) or v), shown(missing)
    return f"anywhere but {_cidrs(space, outside)}" if _weight(space, outside) < _weight(space, inside) \
        else _cidrs(space, inside)


def _weight(space: Space, v) -> int:
    """How long a list of addresses reads: CIDRs count 1, other ranges 3."""
    return sum(1 if _one_cidr(lo, hi) else 3 for lo, hi in v)


def _ranges(v, full) -> str | None:
    if v == full:
        return None
    missing = iv_sub(full, v)
    if 0 < len(missing) < len(v) or (len(missing) == len(v) == 1 and iv_size(missing) < iv_size(v)):
        return "all but " + ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in missing)
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in v)


def _protos(space: Space, v) -> str | None:
    if v == ((0, 255),):
        return None
    missing = iv_sub(((0, 255),), v)
    if iv_size(missing) < iv_size(v):
        return "any protocol but " + ",".join(proto_name(p) for lo, hi in missing
                                              for p in range(lo, hi + 1))
    names = [proto_name(p) for lo, hi in v for p in range(lo, hi + 1)]
    return ",".join(names[:6]) + (f" and {len(names) - 6} more protocols" if len(names) > 6 else "")


def _icmp_text(v) -> str | None:
    if v == ((0, 65535),):
        return None
    parts = []
    for lo, hi in v:
        if lo % 256 == 0 and hi % 256 == 255:
            parts.append(str(lo // 256) if lo // 256 == hi // 256 else f"{lo // 256}-{hi // 256}")
        else:
            parts += [f"{c // 256}/{c % 256}" for c in range(lo, min(hi, lo + 3) + 1)]
    return ",".join(parts)


def _ifaces(space: Space, v, hook: str, which: str) -> str | None:
    if (which == IIF and hook == "OUTPUT") or (which == OIF and hook == "INPUT"):
        return None
    devices = ((1, len(space.ifaces) - 1),)
    lo = space.ifaces.index("lo")
    if v == devices or v == iv_sub(devices, ((lo, lo),)):
        return None  # any interface (loopback traffic, where it differs, is a class of its own)
    names = [space.ifaces[i] for lo, hi in v for i in range(lo, hi + 1)]
    if names == [space.other_iface]:
        return "other interfaces"
    shown = [("other interfaces" if n == space.other_iface else f"{n[:-4]}+" if n.endswith("stk9") else n)
             for n in names]
    missing = [space.ifaces[i] for lo, hi in iv_sub(devices, v) for i in range(lo, hi + 1)]
    if len(missing) < len(names) and missing:
        return "any interface but " + ",".join(missing)
    return ",".join(shown)


def describe(space: Space, box: dict, hook: str) -> dict:
    has_ports = bool(iv_and(box[PROTO], norm([(p, p) for p in PORT_PROTOS])))
    ip = icmp_proto(space.family)
    return {
        "proto": _protos(space, box[PROTO]) or "any",
        "dport": _ranges(box[DPORT], ((0, 65535),)) if has_ports else None,
        "sport": _ranges(box[SPORT], ((0, 65535),)) if has_ports else None,
        "icmp": _icmp_text(box[ICMP]) if box[PROTO] == ((ip, ip),) else None,
        "src": _addr(space, box[SRC], hook, SRC) or "anywhere",
        "dst": _addr(space, box[DST], hook, DST) or "anywhere",
        "iif": _ifaces(space, box[IIF], hook, IIF),
        "oif": _ifaces(space, box[OIF], hook, OIF),
    }


def class_text(k: dict) -> str:
    text = k["proto"]
    if k["dport"]:
        text += f"/{k['dport']}"
    if k["icmp"]:
        text += f" type {k['icmp']}"
    if k["sport"]:
        text += f" (source port {k['sport']})"
    text += f" from {k['src']}"
    if k["dst"] != "anywhere":
        text += f" to {k['dst']}"
    if k["iif"]:
        text += f" on {k['iif']}"
    if k["oif"]:
        text += f" out on {k['oif']}"
    return text


# ---- reading either side ----

def packet_spec(p: Packet) -> dict:
    """The packet as a JSON spec `stockade explain --packet` reads back."""
    spec: dict = {"family": int(p.family), "proto": p.proto, "src": p.addr("src"), "dst": p.addr("dst"),
                  "hook": p.hook}
    if p.state:
        spec["state"] = p.state
    for key in ("sport", "dport", "icmp_type", "icmp_code", "iif", "oif"):
        if getattr(p, key) is not None:
            spec[key] = getattr(p, key)
    if p.proto == 6:
        spec["tcp_flags"] = [n for n, bit in TCP_FLAGS.items() if p.tcp_flags & bit]
    return spec
