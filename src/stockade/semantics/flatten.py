"""A built-in chain flattened into one ordered list of rules: jumps, goto and RETURN inlined.

Every analysis (service matrix, open ports, findings, diff) works on this list, so it
is defined once here. API:

    flatten(ruleset, table="filter", chain="INPUT") -> Flat

`Flat.rules` is a first-match list of `FlatRule`s ending with the chain policy (a
FlatRule with `policy=True` and no conditions), unless an earlier terminal rule
matches everything, where the list stops. A FlatRule holds:

- `conds`: a conjunction of `Lit`s. A Lit is one test of a rule (`kind` src, dst,
  iif, oif, proto, fragment or match; `value` an Address, interface name, protocol
  number, True, or the model Match), `negated` when the packet must fail it (the
  rule's own `!` is folded in: `! -s X` is Lit("src", X, negated=True)), and `rule`,
  the RuleRef it was written in.
- `action`: the target name (ACCEPT, DROP, REJECT, QUEUE, LOG, MARK, ..., None for a
  rule without a target), `target` the model Target, and `terminal`: True if it ends
  traversal, False if the packet goes on (LOG and friends), None if unknown.
- `origins`: the RuleRef (table, chain, 1-based number, Origin) of every rule on the
  path, the jumps first and the rule whose target this is last.

A RETURN (or a goto whose chain falls through) is inlined as Iptables_Semantics does:
the negation of its tests is added to the rules after it in that chain, which may
split a rule into several disjoint ones (`¬(a∧b)` becomes `¬a` and `a∧¬b`). Tests the
path already implies are dropped first, so chains of `-s X -m mac ... -j RETURN` stay
linear. Loops and jumps to missing chains raise FlatError, whose `diagnostic` names
the rule (the kernel would refuse the ruleset with ELOOP / ENOENT).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..extensions import REGISTRY, Opaque, Unread
from ..model import Address, Family, IPSet, Origin, Rule, Ruleset, Target
from ..model.diagnostics import DiagnosedError, Diagnostic
from ..model.ruleset import AddrMatch, Iface, Proto

LIMIT = 2_000_000  # flat rules; beyond this the ruleset is refused rather than exhausting memory
MAX_DEPTH = 128  # chain jumps deep; iptables-nft's kernel refuses 16 (ELOOP, "Too many links"), legacy takes more


class RuleRef(NamedTuple):
    table: str
    chain: str
    number: int  # 1-based position in its chain
    origin: Origin | None

    def __str__(self) -> str:
        where = f" ({self.origin})" if self.origin else ""
        return f"{self.table}/{self.chain} rule {self.number}{where}"


@dataclass(frozen=True)
class Lit:
    """One test on the packet; `negated` when the packet must fail it."""

    kind: str  # src, dst, iif, oif, proto, fragment, match
    value: Any  # Address | str (interface) | int (protocol) | True (fragment) | Match
    negated: bool = False
    rule: RuleRef | None = field(default=None, compare=False)

    def __hash__(self) -> int:
        """Computed once: analyses key caches on tests whose values (matches) hash slowly."""
        got = self.__dict__.get("_hash")
        if got is None:
            got = hash((self.kind, self.value, self.negated))
            object.__setattr__(self, "_hash", got)
        return got

    def flip(self) -> Lit:
        return Lit(self.kind, self.value, not self.negated, self.rule)

    def words(self, family: Family) -> list[str]:
        """The test as iptables-save writes it; a negated extension match reads `! ( -m ... )`."""
        from ..render.save import rule_words

        if self.kind == "match":
            words = rule_words(Rule(matches=[self.value]), family)
            return ["!", "(", *words, ")"] if self.negated else words
        rule = Rule()
        if self.kind in ("src", "dst"):
            setattr(rule, self.kind, AddrMatch(self.value, self.negated))
        elif self.kind in ("iif", "oif"):
            setattr(rule, self.kind, Iface(self.value, self.negated))
        elif self.kind == "proto":
            rule.proto = Proto(self.value, self.negated)
        else:
            rule.fragment = not self.negated
        return rule_words(rule, family)


@dataclass(frozen=True)
class FlatRule:
    conds: tuple[Lit, ...]
    action: str | None
    terminal: bool | None
    origins: tuple[RuleRef, ...]
    target: Target | None = None
    policy: bool = False

    @property
    def rule(self) -> RuleRef | None:
        """The rule whose target this is (None for the policy)."""
        return self.origins[-1] if self.origins else None


@dataclass
class Flat:
    family: Family
    table: str
    chain: str
    policy: str
    rules: list[FlatRule]
    sets: dict[str, IPSet] = field(default_factory=dict)  # the ruleset's ipsets, for -m set's constraint


class FlatError(DiagnosedError):
    """A chain that cannot be flattened; `diagnostic` points at the rule."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__([diagnostic])
        self.diagnostic = diagnostic


def rule_lits(rule: Rule, ref: RuleRef) -> tuple[Lit, ...] | None:
    """A rule's tests as literals; None if it can never match (`! -s 0/0`, `! -p all`)."""
    out: list[Lit] = []
    for kind in ("src", "dst"):
        am: AddrMatch | None = getattr(rule, kind)
        if am is not None:
            if am.addr.mask == 0:
                if am.invert:
                    return None
                continue
            out.append(Lit(kind, am.addr, am.invert, ref))
    for kind in ("iif", "oif"):
        iface: Iface | None = getattr(rule, kind)
        if iface is not None:
            out.append(Lit(kind, iface.name, iface.invert, ref))
    if rule.proto is not None:
        if rule.proto.number == 0:
            if rule.proto.invert:
                return None
        else:
            out.append(Lit("proto", rule.proto.number, rule.proto.invert, ref))
    if rule.fragment is not None:
        out.append(Lit("fragment", True, not rule.fragment, ref))
    for m in rule.matches:
        if m.name != "comment" or isinstance(m.data, Opaque):
            out.append(Lit("match", m, False, ref))
    return tuple(out)


def _subset(a: Address, b: Address) -> bool:
    """Every address in a is in b (masks need not be prefixes)."""
    return b.mask & ~a.mask == 0 and a.addr & b.mask == b.addr


def _disjoint(a: Address, b: Address) -> bool:
    return (a.addr ^ b.addr) & a.mask & b.mask != 0


def _iface_hits(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def _imp(kind: str, av, an: bool, bv, bn: bool) -> bool:
    """Whether test (kind, av, an) implies test (kind, bv, bn): sound, incomplete."""
    if an == bn and (av is bv or av == bv):
        return True
    if kind == "src" or kind == "dst":
        if not an:
            return _disjoint(av, bv) if bn else _subset(av, bv)
        return bn and _subset(bv, av)
    if kind == "proto":
        return not an and bn and av != bv
    if (kind == "iif" or kind == "oif") and not an and not av.endswith("+"):
        return _iface_hits(av, bv) != bn
    return False


def implies(a: Lit, b: Lit) -> bool:
    """Whether every packet passing test a passes test b (a sound, incomplete check)."""
    return a.kind == b.kind and _imp(a.kind, a.value, a.negated, b.value, b.negated)


def contradicts(a: Lit, b: Lit) -> bool:
    """Whether no packet passes both tests (sound, incomplete)."""
    return a.kind == b.kind and (_imp(a.kind, a.value, a.negated, b.value, not b.negated)
                                 or _imp(a.kind, b.value, b.negated, a.value, not a.negated))


def _against(ctx, lit: Lit) -> int:
    """2 if some test of ctx contradicts lit, else 1 if one implies it, else 0 (whatever the order of
    ctx). A long context answers from its index (Conj), a short one in one pass, with address
    tests inlined: chains of `-s X -m mac ... -j RETURN` (2,000 rules in the TUM dumps) make
    contexts of a thousand `! -s X` tests."""
    if _indexed(ctx):
        return ctx.against(lit)
    return _scan(ctx, lit)


def _scan(ctx, lit: Lit) -> int:
    k, v, n = lit.kind, lit.value, lit.negated
    implied = False
    if k == "src" or k == "dst":
        la, lm = v.addr, v.mask
        for c in ctx:
            if c.kind != k:
                continue
            ca, cm = c.value.addr, c.value.mask
            if c.negated:
                if not n and cm & ~lm == 0 and la & cm == ca:  # lit inside what c excludes
                    return 2
                if n and cm & ~lm == 0 and la & cm == ca:  # c excludes all that lit excludes
                    implied = True
            elif n:
                if lm & ~cm == 0 and ca & lm == la:  # c inside what lit excludes
                    return 2
                if (ca ^ la) & cm & lm:
                    implied = True
            else:
                if (ca ^ la) & cm & lm:
                    return 2
                if lm & ~cm == 0 and ca & lm == la:
                    implied = True
        return 1 if implied else 0
    for c in ctx:
        if c.kind != k:
            continue
        cv, cn = c.value, c.negated
        if _imp(k, cv, cn, v, not n) or _imp(k, v, n, cv, not cn):
            return 2
        if not implied and _imp(k, cv, cn, v, n):
            implied = True
    return 1 if implied else 0


class Conj(tuple):
    """A conjunction of tests (a flat rule's conds), with an index made the first time a long one
    is asked about a test: its tests by kind, and its negated address tests by mask. A `! -s X` a
    test lies inside is then found by one lookup per mask instead of a pass over a thousand.

    One made from an indexed conjunction by adding a few tests (a RETURN's negation, one rule at
    a time) shares that index and scans only what it added, until it has added INDEXED tests."""

    INDEXED = 32  # tests; shorter conjunctions are scanned, and so are up to this many added ones

    def index(self) -> tuple[dict, dict]:
        got = self.__dict__.get("_index")
        if got is None:
            by_kind: dict[str, list[Lit]] = {}
            excluded: dict[str, dict[int, set[int]]] = {"src": {}, "dst": {}}
            for c in self:
                if c.negated and (c.kind == "src" or c.kind == "dst"):
                    excluded[c.kind].setdefault(c.value.mask, set()).add(c.value.addr)
                else:
                    by_kind.setdefault(c.kind, []).append(c)
            got = self.__dict__["_index"] = (by_kind, excluded)
        return got

    def positions(self) -> tuple[dict, dict]:
        """Where the tests are: by kind (negated address tests apart), and the negated address tests
        by kind, mask and address, each mask with its count (see left_by)."""
        got = self.__dict__.get("_positions")
        if got is None:
            others: dict[str, list[int]] = {}
            excluded: dict[str, dict[int, list]] = {"src": {}, "dst": {}}
            for i, c in enumerate(self):
                if c.negated and (c.kind == "src" or c.kind == "dst"):
                    group = excluded[c.kind].setdefault(c.value.mask, [0, {}])
                    group[0] += 1
                    group[1].setdefault(c.value.addr, []).append(i)
                else:
                    others.setdefault(c.kind, []).append(i)
            got = self.__dict__["_positions"] = (others, excluded)
        return got

    def left_by(self, lit: Lit) -> list[int] | None:
        """The positions, in order, of the tests a positive address test leaves (_without_implied);
        None if it leaves them all. The `! -s X` it keeps (those meeting it) are found by one lookup
        per mask, so adding `-s H` to a thousand `! -s X` costs no pass over them."""
        k, la, lm = lit.kind, lit.value.addr, lit.value.mask
        others, excluded = self.positions()
        keep: list[int] = []
        dropped = 0
        for kind, pos in others.items():
            if kind != k:
                keep += pos
                continue
            for i in pos:
                if _drops(self[i], la, lm):
                    dropped += 1
                else:
                    keep.append(i)
        for cm, (count, addrs) in excluded[k].items():
            if cm & ~lm == 0:  # what it excludes meets lit only if it holds lit's part of it
                met = addrs.get(la & cm, ())
                keep += met
                dropped += count - len(met)
                continue
            for a, pos in addrs.items():
                if (a ^ la) & cm & lm:
                    dropped += len(pos)
                else:
                    keep += pos
        if not dropped:
            return None
        keep.sort()
        return keep

    def layers(self) -> tuple[Conj, tuple[Lit, ...]]:
        """(the indexed conjunction, the tests added to it): together, this conjunction's tests."""
        return self.__dict__.get("_layers") or (self, ())

    def grown(self, added: list[Lit]) -> Conj:
        """self ∧ added (none of self's tests removed), sharing self's index while added is short."""
        parent, extra = self.layers()
        extra += tuple(added)
        out = Conj(self + tuple(added))
        if len(extra) < Conj.INDEXED:
            out.__dict__["_layers"] = (parent, extra)
        return out

    def against(self, lit: Lit) -> int:
        """_against over the index: the negated address tests, then the others of lit's kind."""
        parent, extra = self.layers()
        if extra:
            return max(parent.against(lit), _scan(extra, lit))
        by_kind, excluded = self.index()
        k = lit.kind
        rest = _scan(by_kind.get(k, ()), lit)
        if rest == 2 or (k != "src" and k != "dst"):
            return rest
        la, lm = lit.value.addr, lit.value.mask
        for cm, addrs in excluded[k].items():  # a `! c` with c holding all of lit
            if cm & ~lm == 0 and la & cm in addrs:
                return 1 if lit.negated else 2  # lit inside what c excludes / c excludes all lit excludes
        return rest

    def implies_none(self, lit: Lit) -> bool:
        """Whether lit (not a positive address test) implies none of the tests (see _without_implied)."""
        k, v, n = lit.kind, lit.value, lit.negated
        parent, extra = self.layers()
        if any(c.kind == k and _imp(k, v, n, c.value, c.negated) for c in extra):
            return False
        by_kind, excluded = parent.index()
        if any(_imp(k, v, n, c.value, c.negated) for c in by_kind.get(k, ())):
            return False
        # a negated address test implies `! c` for each c inside what it excludes
        return not (k == "src" or k == "dst") or not any(
            v.addr in addrs if cm == v.mask else v.mask & ~cm == 0 and any(a & v.mask == v.addr for a in addrs)
            for cm, addrs in excluded[k].items())


def _indexed(ctx) -> bool:
    return type(ctx) is Conj and len(ctx) >= Conj.INDEXED


def conjoin(ctx: tuple[Lit, ...], lits: tuple[Lit, ...]) -> tuple[Lit, ...] | None:
    """ctx ∧ lits, a test left out where another implies it; None if they contradict."""
    out = list(ctx)
    base = ctx if _indexed(ctx) else None  # out is base + added, while it is
    added: list[Lit] = []
    for lit in lits:
        got = max(base.against(lit), _scan(added, lit)) if base is not None else _scan(out, lit)
        if got == 2:
            return None
        if got == 0:
            kept = _without_implied(out, lit, base)
            if kept is not out:
                base, out = None, kept
            out.append(lit)
            added.append(lit)
    if base is not None:
        return base.grown(added) if added else base
    return Conj(out)


def _without_implied(ctx: list[Lit], lit: Lit, base: Conj | None = None) -> list[Lit]:
    """ctx without the tests lit implies (they add nothing once lit is there); ctx itself if there
    are none (`base`, ctx's indexed part, says so without a pass for most tests)."""
    k, v, n = lit.kind, lit.value, lit.negated
    if (k == "src" or k == "dst") and not n:
        la, lm = v.addr, v.mask
        if base is not None:  # the indexed part answers without a pass; what was added is scanned
            parent = base.layers()[0]
            left, tail = parent.left_by(lit), ctx[len(parent):]
            rest = [c for c in tail if c.kind != k or not _drops(c, la, lm)]
            if left is None and len(rest) == len(tail):
                return ctx
            return (list(parent) if left is None else [parent[i] for i in left]) + rest
        out = [c for c in ctx if c.kind != k or not _drops(c, la, lm)]
        return ctx if len(out) == len(ctx) else out
    if base is not None and base.implies_none(lit) \
            and not any(c.kind == k and _imp(k, v, n, c.value, c.negated) for c in ctx[len(base):]):
        return ctx
    out = [c for c in ctx if c.kind != k or not _imp(k, v, n, c.value, c.negated)]
    return ctx if len(out) == len(ctx) else out


def _drops(c: Lit, la: int, lm: int) -> bool:
    """Whether a positive address test (la, lm) of c's kind implies c: it lies outside what c excludes,
    or inside what c admits."""
    ca, cm = c.value.addr, c.value.mask
    return bool((ca ^ la) & cm & lm) if c.negated else cm & ~lm == 0 and la & cm == ca


def covers(ctx: tuple[Lit, ...], lits: tuple[Lit, ...]) -> bool:
    """Whether every packet of ctx passes all of lits (as far as the checks above see)."""
    return all(_against(ctx, lit) == 1 for lit in lits)


def negate(ctx: tuple[Lit, ...], lits: tuple[Lit, ...]) -> list[tuple[Lit, ...]]:
    """ctx ∧ ¬(lits) as disjoint conjunctions: [] if ctx implies lits, [ctx] if they contradict."""
    rest = []
    for lit in lits:
        got = _against(ctx, lit)
        if got == 2:
            return [ctx]
        if got == 0:
            rest.append(lit)
    out = []
    prefix: tuple[Lit, ...] | None = ctx
    for lit in rest:
        if prefix is None:
            break
        got = conjoin(prefix, (lit.flip(),))
        if got is not None:
            out.append(got)
        prefix = conjoin(prefix, (lit,))
    return out


class _Walk:
    def __init__(self, rs: Ruleset, table: str, top: str):
        self.rs, self.table, self.top = rs, table, top
        self.chains = rs.tables[table].chains
        self.policy = self.chains[top].policy or "ACCEPT"
        self.out: list[FlatRule] = []
        self.done = False

    def emit(self, conds: tuple[Lit, ...], action: str | None, terminal: bool | None, origins: tuple[RuleRef, ...],
             target: Target | None = None, policy: bool = False) -> None:
        self.out.append(FlatRule(conds, action, terminal, origins, target, policy))
        if len(self.out) > LIMIT:
            ref = origins[-1] if origins else RuleRef(self.table, self.top, 0, None)
            raise FlatError(Diagnostic("error", "flatten-too-large", f"flattening {self.table}/{self.top} gives "
                                       f"more than {LIMIT} rules", ref.origin or Origin("<ruleset>", 0),
                                       "RETURN rules with many tests multiply the rules after them"))
        if terminal and not conds:
            self.done = True

    def chain(self, name: str, ctxs: list[tuple[Lit, ...]], path: tuple[RuleRef, ...], stack: tuple[str, ...]) -> None:
        """Inline chain `name` for packets matching one of `ctxs`."""
        for n, rule in enumerate(self.chains[name].rules, 1):
            if self.done or not ctxs:
                return
            ref = RuleRef(self.table, name, n, rule.origin)
            lits = rule_lits(rule, ref)
            if lits is None:
                continue
            hit = [c for c in (conjoin(ctx, lits) for ctx in ctxs) if c is not None]
            t = rule.target
            origins = path + (ref,)
            if t is None:
                for c in hit:
                    self.emit(c, None, False, origins)
                continue
            if isinstance(t.data, Unread):  # a stand-in may do anything, or nothing (never a jump to a chain)
                terminal = False if REGISTRY.logs(t.name, self.rs.family) else None
                for c in hit:
                    self.emit(c, t.name, terminal, origins, t)
                continue
            if t.name == "RETURN" or (t.name in self.chains and t.goto):
                if t.name != "RETURN":
                    self.enter(t.name, hit, origins, stack, rule)
                if name == self.top:  # leaving the built-in chain: its policy decides, first match wins
                    for c in hit:
                        self.emit(c, self.policy, True, origins, policy=True)
                else:
                    ctxs = [d for ctx in ctxs for d in negate(ctx, lits)]
                continue
            if t.name in self.chains:
                self.enter(t.name, hit, origins, stack, rule)
                continue
            terminal = REGISTRY.terminal(t.name, self.rs.family)
            for c in hit:
                self.emit(c, t.name, terminal, origins, t)
            if terminal:  # contexts this rule covers entirely are decided
                ctxs = [ctx for ctx in ctxs if not covers(ctx, lits)]

    def enter(self, name: str, ctxs: list[tuple[Lit, ...]], origins: tuple[RuleRef, ...], stack: tuple[str, ...],
              rule: Rule) -> None:
        if name in stack:
            loop = " -> ".join(stack[stack.index(name):] + (name,))
            raise FlatError(Diagnostic("error", "chain-loop", f"jump to {name} makes a loop ({loop})",
                                       rule.origin or Origin("<ruleset>", 0),
                                       "the kernel refuses looping rulesets (ELOOP); remove one of the jumps"))
        if len(stack) > MAX_DEPTH:
            raise FlatError(Diagnostic("error", "chain-depth", f"jump to {name} nests chains more than {MAX_DEPTH} "
                                       "deep, more than stockade analyses", rule.origin or Origin("<ruleset>", 0),
                                       "iptables-nft refuses chains nested 16 deep (Too many links); fold chains"))
        if ctxs:
            self.chain(name, ctxs, origins, stack + (name,))


def flatten(rs: Ruleset, table: str = "filter", chain: str = "INPUT") -> Flat:
    """Flatten built-in `chain` of `table` (see the module docstring for the result)."""
    tbl = rs.tables.get(table)
    if tbl is None or chain not in tbl.chains or tbl.chains[chain].policy is None:
        where = next((o for t in rs.tables.values() for c in t.chains.values()
                      for o in [c.origin] + [r.origin for r in c.rules] if o is not None), Origin("<ruleset>", 1))
        have = ", ".join(f"{t.name}/{c.name}" for t in rs.tables.values() for c in t.chains.values() if c.builtin)
        raise FlatError(Diagnostic("error", "unknown-chain", f"{rs.family.cmd} has no built-in chain {table}/{chain}",
                                   Origin(where.file, 1), f"built-in chains here: {have or 'none'}"))
    for ch in tbl.chains.values():
        for rule in ch.rules:
            t = rule.target
            if t is not None and t.goto and t.name not in tbl.chains:
                raise FlatError(Diagnostic("error", "unknown-chain", f"goto to missing chain {t.name}",
                                           rule.origin or Origin("<ruleset>", 0)))
    w = _Walk(rs, table, chain)
    w.chain(chain, [()], (), (chain,))
    if not w.done:
        w.emit((), w.policy, True, (), policy=True)
    return Flat(rs.family, table, chain, w.policy, w.out, rs.sets)
