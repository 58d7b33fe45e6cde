"""Both families' rulesets as one `table inet`, loaded atomically with `nft -f`.

Each built-in chain in use becomes a base chain at iptables' hook and priority. The IPv4
and IPv6 rules of one built-in chain share it when both would have the same policy: the n-th
rules of both side by side, each guarded by `meta nfproto` unless a match already confines it
to its family (before any stateful match); where the two are the same rule, it is written once,
and where they differ only in the chain they jump to, once with a verdict map on `meta nfproto`,
so that no packet is tested against the other family's rules. When the policies differ, each
family gets its own base chain whose first rule accepts the other family's packets;
`accept` only ends that base chain, so the other family's chain still sees them, as
iptables and ip6tables hooks each see only their own packets.

A built-in raw chain that only attaches conntrack helpers moves to just after conntrack
(priority -199), the earliest nft can attach one; its rules could not act at -300. Raw PREROUTING's
helper rules go further, into filter INPUT just after its first rule, where every family's INPUT
begins by accepting established and related packets and FORWARD drops everything (a policy's
layout): every packet that still needs a helper (a new connection's, not yet confirmed, which
conntrack confirms only once INPUT has passed it) meets them there, an established one does not,
so it pays one rule, not two (issue 15 item 7). What the move changes: a RELATED connection's
first packet (an FTP data connection) gets no helper of the raw rules, as it is accepted first.

User chains are reached only through their own family's rules and need no guard. Names
(of user chains and ipsets) are kept where nft can read them and they are unique, else
prefixed by what tells them apart: the family (`ip_`, `ip6_`) and/or the iptables table.
"""
from __future__ import annotations

import difflib
from dataclasses import replace

from ...extensions.conntrack import Conntrack
from ...model import BUILTIN_CHAINS, TABLES, Chain, Family, Rule, Ruleset
from .core import IDENT, Ctx, Decls, NftError, NftRule, Part, identifier
from .optimise import optimise
from .sets import declare_ipset
from .translate import translate_rule

FAMILY = {Family.IPV4: "ip", Family.IPV6: "ip6"}
NFPROTO = {Family.IPV4: "ipv4", Family.IPV6: "ipv6"}
# nft 1.0.6 accepts the names dstnat and srcnat only at prerouting and postrouting.
NAT_PRIORITY = {"PREROUTING": "dstnat", "INPUT": "100", "OUTPUT": "-100", "POSTROUTING": "srcnat"}
HELPER_PRIORITY = "-199"  # just after conntrack (-200): the earliest nft can attach a helper


def render_nft(rulesets: dict[Family, Ruleset], table: str = "stockade") -> str:
    """`nft -f` input replacing table inet TABLE; it is created first so that the delete always works,
    and the file is one transaction, so the old table stays if anything in it fails."""
    if not IDENT.fullmatch(table):
        raise NftError(f"`{table}` cannot be an nft table name")
    layout = _Layout(rulesets)
    body: list[str] = []
    for tname in TABLES:
        for cname in BUILTIN_CHAINS[tname]:
            body += layout.base_chains(tname, cname)
        for family, rs in layout.rulesets.items():
            for chain in rs.tables[tname].chains.values() if tname in rs.tables else ():
                if not chain.builtin:
                    rules = layout.rules(family, tname, chain)
                    body += _chain_text(layout.chains[(family, tname, chain.name)], None, rules)
    body += layout.gates
    decls = [declare_ipset(name, rulesets[f].sets[n]) for (f, n), name in layout.ipsets.items()]
    decls += layout.decls.items.values()
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    lines += ["\t" + line for decl in decls for line in decl.splitlines()]
    return "\n".join(lines + body + ["}"]) + "\n"


class _Layout:
    """The names every chain and set gets, and what the rules declare on the way."""

    def __init__(self, rulesets: dict[Family, Ruleset]):
        self.rulesets = dict(sorted(rulesets.items()))  # IPv4 first, whatever order they came in
        self.chains = _names({(f, t, n) for f, rs in rulesets.items() for t, tbl in rs.tables.items()
                              for n, c in tbl.chains.items() if not c.builtin})
        self.ipsets = {(f, n): v for (f, _, n), v in
                       _names({(f, "set", n) for f, rs in rulesets.items() for n in rs.sets}).items()}
        reserved = {f"{p}{t}_{c}" for p in ("", "ip_", "ip6_") for t in TABLES for c in BUILTIN_CHAINS[t]}
        clash = reserved & set(self.chains.values())
        if clash:
            raise NftError(f"user chain {clash.pop()} would collide with a base chain of the nft table")
        self.decls = Decls(taken=set(self.ipsets.values()))
        self.helpers_in_input = _helpers_into_input(self.rulesets)
        self.gates: list[str] = []  # chain texts of _gate
        self.gate_count = 0

    def ctx(self, family: Family, tname: str, cname: str, helpers: bool = False) -> Ctx:
        return Ctx(family, "inet", tname, cname,
                   chains={n: v for (f, t, n), v in self.chains.items() if (f, t) == (family, tname)},
                   ipsets={n: (v, self.rulesets[f].sets[n]) for (f, n), v in self.ipsets.items() if f == family},
                   decls=self.decls, inline_meters=False, helpers=helpers)

    def rules(self, family: Family, tname: str, chain: Chain) -> list[NftRule]:
        helpers = tname == "raw" and _helpers_only(chain)
        ctx = self.ctx(family, tname, chain.name, helpers)
        return optimise([translate_rule(r, ctx) for r in chain.rules])

    def base_chains(self, tname: str, cname: str) -> list[str]:
        if self.helpers_in_input and (tname, cname) == ("raw", "PREROUTING"):
            return []  # its rules are filter INPUT's second ones
        used = {f: rs.tables[tname].chains[cname] for f, rs in self.rulesets.items()
                if tname in rs.tables and _used(rs.tables[tname].chains.get(cname))}
        if not used:
            return []
        policy = {f: used[f].policy if f in used else "ACCEPT" for f in Family}
        specs = {f: _spec(tname, cname, c) for f, c in used.items()}
        rules = {f: self.rules(f, tname, c) for f, c in used.items()}
        if self.helpers_in_input and (tname, cname) == ("filter", "INPUT"):
            for f, rs in self.rulesets.items():
                raw = rs.tables["raw"].chains["PREROUTING"] if "raw" in rs.tables else None
                if _used(raw):
                    rules[f][1:1] = self.rules(f, "raw", raw)
        if len(set(policy.values())) == 1 and len(set(specs.values())) == 1:
            spec = next(iter(specs.values()))
            return _chain_text(f"{tname}_{cname}", (*spec, policy[Family.IPV4]), self.merged(rules))
        out = []
        for f in used:
            others = NftRule([Part(f"meta nfproto != {NFPROTO[f]}")], "accept", counter=False)
            out += _chain_text(f"{FAMILY[f]}_{tname}_{cname}", (*specs[f], policy[f]), [others] + rules[f])
        return out

    def merged(self, rules: dict[Family, list[NftRule]]) -> list[NftRule]:
        """Both families' rules of one base chain in one list, so that neither family's packets are tested
        against the other's rules. The two lists are aligned by what their rules do apart from their
        family's own tests and chains (difflib); an aligned pair becomes one rule where the two are the
        same (one unguarded rule), differ only in the chain they jump to (one rule ending in a verdict
        map on `meta nfproto`), or also in tests only their family's packets pass, e.g. a set of its
        addresses (the map jumps to a one-rule gate chain holding those tests, `_gate`); anything else
        is guarded by its family, IPv4's first. A guarded rule matches no packet of the other family, and
        each family's rules keep their order, so no packet's path changes."""
        out: list[NftRule] = []
        four, six = rules.get(Family.IPV4, []), rules.get(Family.IPV6, [])
        blocks = difflib.SequenceMatcher(None, [_shape(r) for r in four], [_shape(r) for r in six], autojunk=False)
        for op, i1, i2, j1, j2 in blocks.get_opcodes():
            if op != "equal":
                out += [_guarded(r, NFPROTO[Family.IPV4]) for r in four[i1:i2]]
                out += [_guarded(r, NFPROTO[Family.IPV6]) for r in six[j1:j2]]
                continue
            for a, b in zip(four[i1:i2], six[j1:j2]):
                if replace(a, parts=[_l4(p) for p in a.parts]).text() == b.text() and \
                        not any(p.stateful for p in a.parts):  # state is per rule: one family's
                    out.append(b)
                elif dispatch := _family_dispatch(a, b) or self._gated_dispatch(a, b):
                    out.append(dispatch)
                else:
                    out += [_guarded(a, NFPROTO[Family.IPV4]), _guarded(b, NFPROTO[Family.IPV6])]
        return out

    def _gated_dispatch(self, four: NftRule, six: NftRule) -> NftRule | None:
        """Two rules that jump to their family's chain after the same tests and tests of their family's
        own (set lookups of its addresses): the shared tests, then a verdict map on `meta nfproto` to each
        family's chain, or to its gate chain where it has tests of its own. The map counts nothing (nft
        1.0.6 counts no element of an anonymous map, and a counter before it would count what a gate
        refuses): each gate's rule counts what its family's rule counted; a family without a gate goes
        straight on, uncounted by this rule (its chain's rules count it)."""
        four = replace(four, parts=[_l4(p) for p in four.parts])  # the same on IPv4
        rules = {Family.IPV4: four, Family.IPV6: six}
        words = {f: r.action.split() if r.action else [] for f, r in rules.items()}
        if any(len(w) != 2 or w[0] != "jump" for w in words.values()) or four.comment != six.comment \
                or _shape(four) != _shape(six) or any(p.stateful for r in rules.values() for p in r.parts):
            return None
        shared = [p for p in six.parts if not p.family]
        if [p.text for p in four.parts if not p.family] != [p.text for p in shared]:
            return None
        targets = {}
        for f, r in rules.items():
            own = [p for p in r.parts if p.family]
            targets[f] = self._gate(f, own, r) if own else words[f][1]
        vmap = ", ".join(f"{NFPROTO[f]} : jump {t}" for f, t in targets.items())
        return NftRule(shared, f"meta nfproto vmap {{ {vmap} }}", four.comment, counter=False)

    def _gate(self, family: Family, own: list[Part], rule: NftRule) -> str:
        """A chain of one rule: the family's own tests of `rule`, counted, then its jump."""
        self.gate_count += 1
        name = f"{FAMILY[family]}_gate{self.gate_count}"
        if name in self.chains.values() or not IDENT.fullmatch(name):
            raise NftError(f"the gate chain {name} would collide with a chain of the ruleset")
        self.gates += _chain_text(name, None, [replace(rule, parts=own)])
        return name


def _used(chain: Chain | None) -> bool:
    return chain is not None and (bool(chain.rules) or chain.policy != "ACCEPT")


def _helpers_only(chain: Chain) -> bool:
    """A built-in raw chain that only attaches conntrack helpers: nft can only do that after conntrack,
    so the chain may move there (a user chain cannot: it runs where its caller runs)."""
    return chain.policy == "ACCEPT" and bool(chain.rules) and all(
        r.target is not None and r.target.name == "CT" and getattr(r.target.data, "helper", None)
        and not r.target.data.notrack for r in chain.rules)


def _helpers_into_input(rulesets: dict[Family, Ruleset]) -> bool:
    """Whether raw PREROUTING's helper rules can run in filter INPUT after its first rule: some family
    has them, raw PREROUTING does nothing else in any family, and in each family FORWARD accepts
    nothing (a forwarded connection is never confirmed, so needs no helper) and INPUT's first rule
    accepts only ESTABLISHED or RELATED packets, and reads nothing a helper changes."""
    raw = [rs.tables["raw"].chains.get("PREROUTING") for rs in rulesets.values() if "raw" in rs.tables]
    if not any(map(_used, raw)) or not all(_helpers_only(c) for c in raw if _used(c)):
        return False
    for rs in rulesets.values():
        filter_ = rs.tables.get("filter")
        if filter_ is None:
            return False
        forward, input_ = filter_.chains["FORWARD"], filter_.chains["INPUT"]
        if forward.policy != "DROP" or forward.rules or not input_.rules or not _established(input_.rules[0]):
            return False
    return True


def _established(rule: Rule) -> bool:
    """An ACCEPT of only ESTABLISHED or RELATED packets (by -m conntrack --ctstate or -m state), its other
    matches set lookups and comments."""
    states = [m.data.state if m.name == "conntrack" else m.data for m in rule.matches
              if m.name in ("conntrack", "state")]
    return (rule.target is not None and rule.target.name == "ACCEPT" and not rule.target.goto and bool(states)
            and all(m.name in ("conntrack", "state", "set", "comment") for m in rule.matches)
            and all(m.name != "conntrack" or m.data == Conntrack(state=m.data.state) for m in rule.matches)
            and any(s is not None and not s.invert and s.names <= {"ESTABLISHED", "RELATED"} for s in states))


def _spec(tname: str, cname: str, chain: Chain) -> tuple[str, str, str]:
    """(type, hook, priority) of the base chain for iptables' TABLE/CHAIN."""
    if tname == "nat":
        return "nat", cname.lower(), NAT_PRIORITY[cname]
    if tname == "raw" and _helpers_only(chain):
        return "filter", cname.lower(), HELPER_PRIORITY
    return ("route" if (tname, cname) == ("mangle", "OUTPUT") else "filter"), cname.lower(), tname


def _l4(part: Part) -> Part:
    """`ip protocol P` as `meta l4proto P`, the same test on IPv4."""
    words = part.text.split()
    return Part(f"meta l4proto {words[2]}") if part.text.startswith("ip protocol ") and len(words) == 3 else part


def _shape(rule: NftRule) -> tuple:
    """What a rule does apart from its family's own tests and the names of its family's chains: two
    rules of one shape may become one rule (`_Layout.merged`)."""
    action = rule.action.split()[0] if rule.action and rule.action.startswith(("jump ", "goto ")) else rule.action
    return (tuple(q.text for p in rule.parts if not (q := _l4(p)).family), action, rule.comment, rule.counter)


def _family_dispatch(four: NftRule, six: NftRule) -> NftRule | None:
    """One rule for two that differ only in jumping to their family's chain: the jump as a verdict map on
    `meta nfproto` (the counter, before the map, counts what both counted)."""
    words = [a.action.split() if a.action else [] for a in (four, six)]
    four = replace(four, parts=[_l4(p) for p in four.parts])  # the same on IPv4
    if ([p.text for p in four.parts] != [p.text for p in six.parts] or (four.comment, four.counter) !=
            (six.comment, six.counter) or any(len(w) != 2 or w[0] not in ("jump", "goto") for w in words)
            or words[0][0] != words[1][0] or any(p.family or p.stateful for p in four.parts)):
        return None
    verb = words[0][0]
    vmap = f"meta nfproto vmap {{ ipv4 : {verb} {words[0][1]}, ipv6 : {verb} {words[1][1]} }}"
    return replace(four, action=vmap)


def _guarded(rule: NftRule, nfproto: str) -> NftRule:
    """The rule, confined to one family unless a match before any stateful one already does that."""
    for p in rule.parts:
        if p.family == nfproto:
            return rule
        if p.stateful:
            break
    return replace(rule, parts=[Part(f"meta nfproto {nfproto}", nfproto)] + rule.parts)


def _chain_text(name: str, base: tuple[str, str, str, str] | None, rules: list[NftRule]) -> list[str]:
    lines = [f"\tchain {name} {{"]
    if base is not None:
        kind, hook, priority, policy = base
        lines.append(f"\t\ttype {kind} hook {hook} priority {priority}; policy {policy.lower()};")
    return lines + [f"\t\t{r.text()}" for r in rules] + ["\t}"]


def set_name(family: Family, name: str) -> str:
    """The nft name render_nft gives a set that only one family uses (stockade's own sets)."""
    return _names({(family, "set", name)})[(family, "set", name)]


def _names(owners: set[tuple[Family, str, str]]) -> dict[tuple[Family, str, str], str]:
    """(family, table, name) -> nft name: the name, prefixed by the family if both families use it, by
    the table if several tables do, and by the table (or `ip`/`ip6` for sets) if nft could take the
    bare name for a keyword."""
    out = {}
    for f, t, n in sorted(owners, key=lambda o: (o[2], o[1], int(o[0]))):
        same = [o for o in owners if o[2] == n]
        prefix = ([FAMILY[f]] if len({o[0] for o in same}) > 1 else []) + ([t] if len({o[1] for o in same}) > 1 else [])
        if not prefix and not identifier(n):
            prefix = [FAMILY[f] if t == "set" else t]
        name = "_".join(prefix + [n])
        if not IDENT.fullmatch(name):
            raise NftError(f"`{n}` cannot be written as an nft name (nft 1.0.6 has no quoted names)")
        out[(f, t, n)] = name
    if len(set(out.values())) < len(out):
        raise NftError("two chains or sets would get the same nft name: " + ", ".join(sorted(out.values())))
    return out
