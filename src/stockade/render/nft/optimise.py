"""Rules that differ only in their destination port become one lookup, on the rendering only.

A run of consecutive rules r1..rn is merged when each has exactly one plain (not negated)
destination-port test of the same protocol, all their other matches are the same and
stateless, and no port is in two of them. Then a packet matches at most one ri, and it
matches ri exactly when it passes the shared matches and its port is in ri's ports, so:

  * if all ri do the same thing: `PORT { ports of all ri } ACTION` does what the run did
    (the action runs once, for the one ri that matched);
  * if each ri ends in a plain verdict: `PORT vmap { port : verdict of its ri }` does too
    (a jump returns to the rule after the map, as it returned after ri, and the ri after
    it would not have matched).

Stateless matches may be reordered and evaluated once instead of n times; stateful ones
(limit, meters, ct count) may not, so rules with them are never merged. Comments that
differ move onto the set elements, but rules whose comments start with different policy lines
(model.comment_tag: the policy compiler's comments) never merge: one counter must not count for
two lines (`stockade status` sums counters per policy line). A merged vmap rule has no counter: nft 1.0.6 cannot
count per element of an anonymous map, and a rule counter would count missed ports too.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

from ...model import comment_tag
from .core import COMMENT_MAX, NftRule, Part, quote, span


def optimise(rules: list[NftRule]) -> list[NftRule]:
    rules = [_drop_implied_protocol(r) for r in rules]
    out, i = [], 0
    while i < len(rules):
        group = [rules[i]]
        key = _key(rules[i])
        while key is not None and i + len(group) < len(rules):
            nxt = rules[i + len(group)]
            if _key(nxt) != key or not _fits(group, nxt):
                break
            group.append(nxt)
        out.append(_merge(group) if len(group) > 1 else group[0])
        i += len(group)
    return out


def _drop_implied_protocol(rule: NftRule) -> NftRule:
    """`ip protocol tcp` / `meta l4proto tcp` next to a `tcp dport` test says nothing more (nft adds
    the l4proto dependency, and on IPv4 l4proto is the protocol field), so rules from `-p tcp -m tcp`
    and `-p tcp -m multiport` look alike."""
    protos = {p.dport[0] for p in rule.parts if p.dport}
    if not protos:
        return rule
    implied = {f"{key} {proto}" for proto in protos for key in ("ip protocol", "meta l4proto")}
    return replace(rule, parts=[p for p in rule.parts if p.text not in implied])


def _ranges(rule: NftRule) -> tuple[tuple[int, int], ...]:
    return next(p.dport[1] for p in rule.parts if p.dport)


def _key(rule: NftRule):
    """What must be equal for two rules to merge; None if the rule cannot take part."""
    ports = [p for p in rule.parts if p.dport]
    if len(ports) != 1 or any(p.stateful for p in rule.parts) or not rule.counter:
        return None
    return ports[0].dport[0], tuple(p for p in rule.parts if not p.dport), comment_tag(rule.comment)


def _fits(group: list[NftRule], rule: NftRule) -> bool:
    taken = sorted(r for g in group + [rule] for r in _ranges(g))
    if any(a[1] >= b[0] for a, b in pairwise(taken)):
        return False
    return all(g.action == rule.action for g in group) or (rule.verdict and all(g.verdict for g in group))


def _merge(group: list[NftRule]) -> NftRule:
    proto, shared, _ = _key(group[0])
    comments = {r.comment for r in group}
    per_element = len(comments) > 1

    def elements(rule: NftRule) -> list[str]:
        commented = per_element and rule.comment is not None
        note = f" comment {quote(rule.comment, 'comment', COMMENT_MAX)}" if commented else ""
        return [span(*r) + note for r in _ranges(rule)]

    comment = None if per_element else group[0].comment
    if all(r.action == group[0].action for r in group):
        lookup = Part(f"{proto} dport {{ {', '.join(e for r in group for e in elements(r))} }}")
        return NftRule(list(shared) + [lookup], group[0].action, comment)
    vmap = ", ".join(f"{e} : {r.action}" for r in group for e in elements(r))
    return NftRule(list(shared), f"{proto} dport vmap {{ {vmap} }}", comment, counter=False)
