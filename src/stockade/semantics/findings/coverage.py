"""Rules no packet reaches, rules whose removal changes nothing, and the three-valued cases between.

Exact on everything cells.Space expresses as a dimension; a rule with other matches (rate
limits, marks, unknown extensions) before a rule makes the answer "may", naming that rule.
"""
from __future__ import annotations

from collections import defaultdict

from ...extensions.opaque import by_command
from ...model import Origin
from ...model.netfilter import FILTER_HOOKS as HOOKS
from ...model.space import SRC
from ..cells import Entry, refine, relation
from .catalogue import Finding, finding
from .context import Analysis

REDUNDANCY_LIMIT = 300  # flattened rules per hook beyond which redundancy (one refinement per rule) is skipped
COVERAGE_LIMIT = 1000  # flattened rules per hook beyond which rule-by-rule coverage is not attempted


def _key(e):
    ref = e.flat.rule
    return None if ref is None else (ref.table, ref.chain, ref.number)


def _where(ref) -> str:
    if ref is None:
        return "the chain policy"
    return f"line {ref.origin.line}" if ref.origin else f"{ref.chain} rule {ref.number}"


def _rule_at(a: Analysis, key):
    return a.rs.tables[key[0]].chains[key[1]].rules[key[2] - 1]


def coverage(a: Analysis) -> list[Finding]:
    out: list[Finding] = []
    seen: dict = {}  # rule key -> best status over hooks: 0 absent/unreached, 1 maybe, 2 surely reached
    by: dict = defaultdict(set)  # rule key -> entries (refs) deciding its packets before it
    maybe_by: dict = defaultdict(set)
    redundant: dict = {}  # rule key -> set of refs that decide its packets when it is gone; None: not redundant
    possible: set = set()  # rule keys whose region meets some class at all
    skipped = []
    for hook in HOOKS:
        ents = a.entries(hook)
        cells = a.cells(hook) if len(ents) <= COVERAGE_LIMIT else None
        if cells is None:
            skipped.append(hook)
            continue
        index = {id(e): i for i, e in enumerate(ents)}
        decides = defaultdict(list)
        for box, kept in cells:
            certain, doubts = True, []
            for e in kept:
                for ref in e.flat.origins:  # the rule and the jumps that led to it
                    k = (ref.table, ref.chain, ref.number)
                    seen[k] = max(seen.get(k, 0), 2 if certain else 1)
                    if not certain:
                        maybe_by[k].update(doubts)
                if e.decides:
                    if e.cons.residual:
                        certain = False
                        doubts.append(e.flat.rule)
                    else:
                        decides[index[id(e)]].append(box)
        for e in ents:  # who takes the packets of rules no class reached
            k = _key(e)
            if k is None or k in seen:
                continue
            for box, kept in cells:
                last = kept[-1] if kept else None
                if last is not None and last.decides and not last.cons.residual \
                        and relation(e.cons, box)[0] != "none":
                    by[k].add(last.flat.rule)
        for e in ents:
            k = _key(e)
            if k is not None and any(relation(e.cons, s)[0] != "none" for s in a.space.start_boxes(hook)):
                possible.add(k)
        if len(ents) <= REDUNDANCY_LIMIT:
            for i, boxes in decides.items():
                e = ents[i]
                k = _key(e)
                if k is None or e.flat.policy or redundant.get(k, ()) is None:
                    continue
                redundant[k] = _without(a, ents[i + 1:], boxes, e.action, redundant.get(k, set()))
    inside: dict = {}  # rule key in a skipped hook -> the earlier rules holding each of its entries, or None
    for hook in skipped:
        out.append(finding("analysis-limited", f"{hook} ({len(a.entries(hook))} rules flattened) has more packet "
                           f"classes than lint examines one by one: a rule is reported as shadowed only when one "
                           f"earlier rule takes all its packets, and redundant rules were not searched",
                           a.anchor(hook),
                           f"run `stockade diff` or `stockade analyze` on {hook} for exact answers per packet class"))
        ents = a.entries(hook)
        held = inside_one(ents, a.space.universe[SRC][0][1])
        for i, e in enumerate(ents):
            k = _key(e)
            if k is not None:
                inside[k] = None if i not in held or inside.get(k, ()) is None else \
                    {*inside.get(k, ()), held[i].flat.rule}
    analysed = {_key(e) for hook in HOOKS if hook not in skipped for e in a.entries(hook)}
    for tname, table in a.rs.tables.items():
        if tname != "filter":
            continue
        for cname, chain in table.chains.items():
            ends = next((n for n, rule in enumerate(chain.rules, 1) if _match_all(rule)), len(chain.rules))
            for n, rule in enumerate(chain.rules, 1):
                k = (tname, cname, n)
                origin = rule.origin or Origin(a.file, 1, 1)
                if by_command(rule):
                    continue  # what an unknown command may have done: no rule of the file's
                if rule.fragment is True or n > ends:
                    continue  # reported by their own checks (after_match_all: the rules after one matching all)
                if rule.target is not None and rule.target.name == "RETURN" and not chain.builtin:
                    continue  # a RETURN becomes part of the rules after it; it has no entry of its own
                target = table.chains.get(rule.target.name) if rule.target is not None else None
                if target is not None and not target.builtin and not target.rules:
                    continue  # a jump to an empty chain leaves no flat rule: empty_jumps reports it
                if k in inside:  # a rule of a hook too large for classes
                    if inside[k] and k not in analysed:
                        out.append(_taken(inside[k], origin))
                    continue
                if skipped and k not in analysed:
                    continue  # in no hook, or in none lint examined: nothing is known of it
                if seen.get(k, 0) == 0:
                    if k in by:
                        out.append(_taken(by[k], origin))
                    elif k in possible or not _referenced(a, cname):
                        why = (f"nothing jumps to chain {cname}" if not _referenced(a, cname) else
                               "its tests contradict the path that leads to it")
                        out.append(finding("shadowed-rule", f"no packet ever reaches this rule: {why}", origin,
                                           "delete it, or fix the jump/tests that lead to it"))
                    elif rule.target is not None:
                        out.append(finding("shadowed-rule", "this rule matches no packet that can reach "
                                           f"{cname} (e.g. an output interface in INPUT, or a state conntrack never "
                                           "gives such packets)", origin, "delete it or fix its tests"))
                elif seen[k] == 1:
                    names = ", ".join(sorted({_where(r) for r in maybe_by[k]}))
                    out.append(finding("maybe-shadowed", f"may be shadowed: whether packets reach this rule "
                                       f"depends on {names} (rate limits or matches stockade cannot decide)",
                                       origin, "check the rule(s) named; move this rule above them if it must "
                                       "always apply"))
                elif redundant.get(k):
                    names = ", ".join(sorted({_where(r) for r in redundant[k]}))
                    out.append(finding("redundant-rule", f"redundant: without this rule every packet it "
                                       f"decides gets the same verdict ({rule.target.name}) from {names}",
                                       origin, "delete it (or keep it deliberately, with a comment)"))
    return out


def _taken(refs: set, origin: Origin) -> Finding:
    """A rule whose every packet the rules `refs` decide before it."""
    names = ", ".join(sorted({_where(r) for r in refs}))
    return finding("shadowed-rule", f"no packet ever reaches this rule: {names} already "
                   f"decide{'s' if len(refs) == 1 else ''} every packet it matches",
                   origin, "delete it, or move it above the rule(s) that take its packets")


def inside_one(ents: list[Entry], top: int) -> dict[int, Entry]:
    """For a hook too large for classes: per entry (by index), an earlier entry that surely decides every
    packet it matches. That is one with no residual test whose source is a prefix holding this one's sources
    and whose other tests are this one's, or who tests the source alone. A lookup per prefix length, so a
    blocklist of any length is searched (a repeated address, an address inside an earlier network); an
    entry only several earlier ones cover together is not found. `top`: the highest address."""
    bits = top.bit_length()
    groups: dict[tuple, tuple[dict, set]] = {}  # other tests -> (prefix (base, length) -> entry, lengths)
    out: dict[int, Entry] = {}
    for i, e in enumerate(ents):
        c = e.cons
        if c.never:
            continue
        src = c.dims.get(SRC)
        lo, hi = (src[0][0], src[-1][1]) if src else (0, top)
        rest = tuple((d, v) for d, v, *_ in c.ordered if d != SRC)
        for key in dict.fromkeys((rest, ())):
            prefixes, lengths = groups.get(key, ({}, ()))
            for n in sorted(lengths):
                size = 1 << (bits - n)
                holder = prefixes.get((lo - lo % size, n))
                if holder is not None and hi < lo - lo % size + size:
                    out[i] = holder
                    break
            if i in out:
                break
        if e.flat.terminal is True and e.flat.action and not c.residual and not e.flat.policy \
                and e.flat.rule is not None and (src is None or len(src) == 1):
            size = hi - lo + 1
            if size & (size - 1) == 0 and lo % size == 0:  # a prefix
                prefixes, lengths = groups.setdefault(rest, ({}, set()))
                n = bits - size.bit_length() + 1
                prefixes.setdefault((lo, n), e)
                lengths.add(n)
    return out


def _without(a: Analysis, rest, boxes, action: str, acc: set):
    """The rules deciding `boxes` once the rule is removed, if they all give `action`; else None."""
    for box in boxes:
        for _, (kept,) in refine(a.space, box, [rest], lambda e: e.cons):
            decider = next((e for e in kept if e.decides), None)
            if decider is None or decider.cons.residual or decider.action != action:
                return None
            acc.add(decider.flat.rule)
    return acc


def _match_all(rule) -> bool:
    """A rule that matches every packet and ends traversal (or leaves the chain)."""
    bare = (rule.src is None and rule.dst is None and rule.iif is None and rule.oif is None
            and (rule.proto is None or (rule.proto.number == 0 and not rule.proto.invert))
            and rule.fragment is None and all(m.name == "comment" for m in rule.matches))
    t = rule.target
    return bare and t is not None and (t.name in ("ACCEPT", "DROP", "REJECT", "RETURN") or t.goto)


def _referenced(a: Analysis, chain: str) -> bool:
    tbl = a.rs.tables["filter"]
    return tbl.chains[chain].builtin or any(r.target is not None and r.target.name == chain
                                            for c in tbl.chains.values() for r in c.rules)


def after_match_all(a: Analysis) -> list[Finding]:
    out = []
    tbl = a.rs.tables.get("filter")
    for cname, chain in (tbl.chains.items() if tbl else ()):
        for n, rule in enumerate(chain.rules, 1):
            if _match_all(rule) and n < len(chain.rules):
                later = chain.rules[n]
                out.append(finding("after-match-all", f"{len(chain.rules) - n} rule(s) after this one in {cname} never "
                                   f"run: it matches every packet (-j {rule.target.name})",
                                   later.origin or Origin(a.file, 1, 1),
                                   "move the catch-all rule to the end of the chain, or delete the rules after it"))
                break
    return out


def empty_jumps(a: Analysis) -> list[Finding]:
    out = []
    tbl = a.rs.tables.get("filter")
    for _cname, chain in (tbl.chains.items() if tbl else ()):
        for rule in chain.rules:
            t = rule.target
            if t is not None and t.name in tbl.chains and not tbl.chains[t.name].builtin \
                    and not tbl.chains[t.name].rules:
                out.append(finding("jump-to-empty-chain", f"jumps to {t.name}, which has no rules: the jump does "
                                   "nothing" + (" (with -g, the packet goes to the policy)" if t.goto else ""),
                                   rule.origin or Origin(a.file, 1, 1),
                                   f"fill chain {t.name} or delete the jump"))
    return out
