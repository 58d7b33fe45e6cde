"""Findings on an nftables ruleset: rules after a catch-all, named sets referenced but empty, rules no packet
that reaches them matches (shadowed), and accepts another table drops anyway (an accept ends only its own
chain; a drop at any chain of the hook is final).

The last two come from the cells (semantics/diff.py cells): every class of packets is run through the
simulator, so "matches no packet" is exact for the tests the cells read; a rule with a test they do not
read (a mark, a limit) is never called shadowed, and a family where some class is UNKNOWN is not searched
for shadowed rules at all.
"""
from __future__ import annotations

from typing import Any

from ...model import Origin
from ...model.nftables import NftRule, NftRuleset
from ...model.space import KIND, KINDS
from ..diff import cells, class_text, describe
from ..nftcells import ENDS_CHAIN, NftOracle
from .catalogue import Finding, finding


def nft_findings(nft: NftRuleset, file: str) -> list[Finding]:
    """Every finding for the analysed (ip, ip6, inet) tables of `nft`."""
    out = _after_catch_all(nft, file) + _empty_sets(nft, file)
    return out + _by_cells(nft, file)


def _where(table, chain, rule: NftRule) -> str:
    return f"{table.label} chain {chain.name} handle {rule.handle}"


def _origin(file: str, *objs: Any) -> Origin:
    return next((o.origin for o in objs if o is not None and o.origin is not None), Origin(file, 1, 1))


def _after_catch_all(nft: NftRuleset, file: str) -> list[Finding]:
    out = []
    for t in nft.tables:
        if not t.analysed:
            continue
        for c in t.chains.values():
            for i, r in enumerate(c.rules[:-1]):
                keys = [next(iter(s)) for s in r.expr if isinstance(s, dict) and len(s) == 1]
                tests = [k for k in keys if k not in ("counter", "log", "comment") and k not in ENDS_CHAIN]
                if tests or not any(k in ENDS_CHAIN for k in keys):
                    continue
                later = c.rules[i + 1:]
                out.append(finding("after-match-all", f"{_where(t, c, r)} ends the chain for every packet, so "
                                   f"the {len(later)} rule(s) after it (handle {later[0].handle} on) never run",
                                   _origin(file, later[0], c, t), "move the rules above the catch-all or delete "
                                   "them"))
                break
    return out


def _empty_sets(nft: NftRuleset, file: str) -> list[Finding]:
    out = []
    for t in nft.tables:
        if not t.analysed:
            continue
        for name, s in t.sets.items():
            if s.elements or "dynamic" in s.flags:
                continue
            users = [(c, r) for c in t.chains.values() for r in c.rules if f'"@{name}"' in repr(r.expr)
                     .replace("'", '"')]
            if users:
                c, r = users[0]
                out.append(finding("empty-set", f"{_where(t, c, r)} looks up @{name}, which has no elements: the "
                                   "rule matches nothing (`!=` everything)", _origin(file, r, s, t),
                                   f"add the elements to set {name} (nft add element {t.family} {t.name} {name} "
                                   "{ ... }) or drop the rule"))
    return out


def _by_cells(nft: NftRuleset, file: str) -> list[Finding]:
    side = NftOracle(nft)
    matched: set[tuple] = set()
    unknown_families: set = set()
    conflicts: dict[tuple, str] = {}
    spaces: dict = {}
    for fam, hook, space, box, pkt in cells((side,)):
        spaces[fam] = space
        verdict, _, _, res = side.run(pkt, box)
        if verdict == "UNKNOWN":
            unknown_families.add(fam)
        accepts = []
        for step in res.trace:
            if "handle" in step:
                matched.add((step["family"], step["table"], step["chain"], step["handle"]))
                if step.get("verdict") == "ACCEPT":
                    accepts.append(step)
        last = res.trace[-1] if res.trace else None
        if verdict in ("DROP", "REJECT") and last is not None and accepts:
            for a in accepts:
                if (a["family"], a["table"]) != (last.get("family"), last.get("table")):
                    key = (a["family"], a["table"], a["chain"], a["handle"],
                           last.get("family"), last.get("table"), last.get("chain"), last.get("handle"))
                    conflicts.setdefault(key, f"IPv{int(fam)} {hook} {KINDS[box[KIND][0][0]].label}: "
                                         + class_text(describe(space, box, hook)))
    out = []
    for t in nft.tables:
        if not t.analysed:
            continue
        for c in t.chains.values():
            for r in c.rules:
                if (t.family, t.name, c.name, r.handle) in matched:
                    continue
                fams = [f for f, sp in spaces.items() if t.family in ("inet", {4: "ip", 6: "ip6"}[int(f)])]
                key = (t.family, t.name, c.name, r.handle)
                if not fams or any(f in unknown_families or key not in side.plain(f) for f in fams):
                    continue
                out.append(finding("shadowed-rule", f"{_where(t, c, r)} matches no packet that reaches it: "
                                   "earlier rules or chains decide every packet it would match",
                                   _origin(file, r, c, t), "delete it, or move it above the rules that take "
                                   "its packets"))
    for (fa, ta, ca, ha, fb, tb, cb, hb), example in sorted(conflicts.items(), key=str):
        what = f"chain {cb} handle {hb}" if hb is not None else f"chain {cb} (its policy)"
        out.append(finding("accept-dropped-elsewhere", f"{fa} {ta} chain {ca} handle {ha} accepts packets that "
                           f"{fb} {tb} {what} drops or rejects anyway, e.g. {example}: an accept ends only its "
                           "own chain",
                           Origin(file, 1, 1), f"allow those packets in table {fb} {tb} too, or drop the accept"))
    return out

