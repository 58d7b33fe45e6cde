"""One packet through nftables (and the iptables tables beside it), exactly as netfilter runs them.

Hook composition: every base chain registered at a hook runs, in priority order, across all tables
and families that see the packet (`inet` and `ip` for IPv4, `inet` and `ip6` for IPv6), and so do
the iptables tables at their fixed priorities (raw -300, mangle -150, nat -100/100, filter 0,
security 50: iptables-nft's `ip filter INPUT` is one chain at priority 0). Conntrack runs at -200.
`accept` ends only the chain that says it; the packet goes on to the next chain at the hook. A
drop, reject or queue anywhere is final. Chains at one priority run in the order they were
registered, which a listing does not show: the result notes such ties.

Rules are read in nft's JSON vocabulary (model/nftables.py). An expression that reads a header the
packet does not have (`tcp dport` of a UDP packet, `ip saddr` of an IPv6 one in an `inet` table)
ends the rule, as the dependency nft adds to it does (`meta l4proto tcp`, `meta nfproto ipv4`).
What the packet model cannot decide (fields it does not carry, named stateful objects, statements
stockade does not model) makes the verdict UNKNOWN, naming the rule; nothing is guessed.
netdev, bridge and arp tables are not analysed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..extensions.ct import carries_state
from ..model import Family, Ruleset
from ..model.conntrack import first_packet_state
from ..model.netfilter import ROUTE_TYPES
from ..model.nftables import NftChain, NftRule, NftRuleset, NftTable
from ..model.nftypes import BITMASKS, SYMBOLS, NftValueError, ifname, interval
from ..model.packet import Packet, from_short
from ..model.ranges import Stabbing
from .compile import Undecidable
from .simulate import Env, Result, Simulator, dropped_by_routing, dropped_on_arrival, uses_conntrack

NSEC = 1_000_000_000
INDEXED = 32  # a set of more elements than this is looked up through an index
U64 = 2**64 - 1
CONNTRACK_PRIO = -200
# iptables tables as nftables base chains: the priority each table's chain registers at that hook.
IPTABLES_PRIO = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
IPTABLES_NAT_PRIO = {"PREROUTING": -100, "OUTPUT": -100, "INPUT": 100, "POSTROUTING": 100}
PATHS = {"INPUT": ("prerouting", "route", "input"), "FORWARD": ("prerouting", "route", "forward", "postrouting"),
         "OUTPUT": ("output", "postrouting")}
SEES_IIF = ("prerouting", "input", "forward")
SEES_OIF = ("forward", "output", "postrouting")
TABLE_FAMILIES = {Family.IPV4: ("ip", "inet"), Family.IPV6: ("ip6", "inet")}
CT_STATE_BITS = {"INVALID": 1, "ESTABLISHED": 2, "RELATED": 4, "NEW": 8, "UNTRACKED": 64}
PKTTYPES = {"unicast": 0, "broadcast": 1, "multicast": 2, "otherhost": 3, "loopback": 5}
PER = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
BYTES = {"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}
TRANSPORT = {"tcp": 6, "udp": 17, "udplite": 136, "sctp": 132, "dccp": 33}
PORT_FIELDS = {"sport": "inet_service", "dport": "inet_service"}
FRAG_OFF = {"payload": {"protocol": "ip", "field": "frag-off"}}
CT_STATUS = {"ct": {"key": "status"}}
NAT_BITS = 0x10 | 0x20  # ct status snat, dnat: a mapping changed the connection's tuple
# Packets that carry every field the model has (marks, socket owner, route types), one per family and
# transport, each as a new and as an established connection: a statement none of them decides is one the
# simulator cannot read at all (`undecided`), not one this packet happens to leave open.
_PROBE_FIELDS = ("iif eth0 oif eth1 mark 1 ctmark 1 uid 1000 gid 1000 srctype UNICAST dsttype LOCAL rpf yes "
                 "hook FORWARD")
PROBES = tuple(f"{spec} {_PROBE_FIELDS} state {state}" for state in ("NEW", "ESTABLISHED") for spec in (
    "tcp 192.0.2.5:40000 > 203.0.113.1:22 SYN", "udp 192.0.2.5:5353 > 203.0.113.1:53",
    "icmp 192.0.2.5 > 203.0.113.1 type 8", "tcp [2001:db8::5]:40000 > [2001:db8:2::1]:443 SYN",
    "udp [2001:db8::5]:546 > [2001:db8:2::1]:547", "icmpv6 2001:db8::5 > 2001:db8:2::1 type 135"))


class _Break(Exception):
    """The rule's expression did not hold: evaluation goes on with the next rule (NFT_BREAK)."""


@dataclass
class NftResult(Result):
    """A Result whose `counted` lists every nft `counter` statement the packet reached."""

    counted: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return super().to_json() | {"counted": self.counted}


@dataclass
class _Walk:
    """One packet's journey: the shared Env, the hook being run, whether conntrack has run yet."""

    env: Env
    res: NftResult
    hook: str = ""
    ct_done: bool = False
    notrack: bool = False
    where: tuple = ()
    rewritten: str | None = None  # the source NAT statement (where) after which addresses are not known


def conntrack_families(nft: NftRuleset) -> set[Family]:
    """The families whose conntrack (and defragmentation) the nft tables turn on: any ct expression or
    statement (their init takes the netns's conntrack, nf_ct_netns_get), or a nat chain, in an ip/ip6/inet
    table. `notrack` alone does not: it only marks packets of a conntrack something else turned on."""
    out: set[Family] = set()
    for t in nft.tables:
        if not t.analysed:
            continue
        if any(c.type == "nat" for c in t.chains.values()) or _mentions_ct(t):
            out |= {Family.IPV4} if t.family == "ip" else {Family.IPV6} if t.family == "ip6" else set(Family)
    return out


def _mentions_ct(table: NftTable) -> bool:
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return any(k in ("ct", "ct count", "ct helper", "ct timeout", "ct expectation") or walk(v)
                       for k, v in node.items())
        if isinstance(node, list | tuple):
            return any(walk(v) for v in node)
        return False
    return any(walk(r.expr) for c in table.chains.values() for r in c.rules)


class NftSimulator:
    """Packets through an nft ruleset plus, optionally, one family's iptables rulesets at the same hooks;
    stateful memory (limits, quotas) persists across calls. `conntrack`: families whose conntrack runs
    because of something outside both models."""

    def __init__(self, nft: NftRuleset, iptables: dict[Family, Ruleset] | None = None,
                 conntrack: set[Family] | None = None):
        self.nft = nft
        self.ipt = {fam: Simulator(rs) for fam, rs in (iptables or {}).items()}
        self.conntrack = conntrack_families(nft) | set(conntrack or ())
        self.conntrack |= {fam for fam, rs in (iptables or {}).items() if uses_conntrack(rs)}
        self._ipt_nat = any("nat" in rs.tables for rs in (iptables or {}).values())
        self.nat = any(c.type == "nat" for t in nft.tables for c in t.chains.values()) or self._ipt_nat
        self.memory: dict[Any, Any] = {}
        # semantics/nftcells.py Explorer, for a whole class of packets: sees each rule before it runs (`visit`)
        # and decides the statements the packet alone does not (`force`); None for one packet's answer
        self.guide: Any = None
        self._sets: dict[tuple, list] = {}
        self._looked: dict[tuple, bool] = {}  # (family, table, set) -> whether a rule looks the set up
        self._indexes: dict[int, tuple] = {}  # id(elements) -> (elements, their first components indexed)
        self._consts: dict[int, Any] = {}

    # --- the path ------------------------------------------------------------------------------
    def run(self, pkt: Packet) -> NftResult:
        res = NftResult("ACCEPT", None)
        env = Env(pkt, pkt.state, self.memory, mark=pkt.mark, ctmark=pkt.arrival_ctmark, notes=res.notes)
        env.result = res
        walk = _Walk(env, res)
        res.notes += [f"table {t.label} is not analysed (only ip, ip6 and inet tables are)"
                      for t in self.nft.tables if not t.analysed]
        tracked = pkt.family in self.conntrack
        if dropped_on_arrival(pkt, tracked, res):
            return res
        for hook in PATHS[pkt.hook]:
            if hook == "route":
                if dropped_by_routing(env, res):
                    break
                continue
            walk.hook = hook
            verdict = self._hook(walk, tracked)
            if verdict != "ACCEPT":
                res.verdict = verdict
                break
        res.ctstate = env.ctstate
        return res

    def steps(self, family: Family, hook: str) -> list[tuple[int, tuple]]:
        """What runs at a hook for a family, in order, with its priority: ("nft", table, chain),
        ("ipt", table, CHAIN) and ("ct",) (conntrack runs before a chain of its own priority)."""
        items: list[tuple[int, int, tuple]] = [(c.prio or 0, 1, ("nft", t, c)) for t, c in self.nft.base_chains(hook)
                                               if t.family in TABLE_FAMILIES[family]]
        if family in self.ipt:
            chain = hook.upper()
            for name, table in self.ipt[family].rs.tables.items():
                if chain in table.chains and table.chains[chain].builtin:
                    prio = IPTABLES_NAT_PRIO.get(chain) if name == "nat" else IPTABLES_PRIO.get(name)
                    if prio is not None:
                        items.append((prio, 1, ("ipt", name, chain)))
        if hook in ("prerouting", "output") and family in self.conntrack:
            items.append((CONNTRACK_PRIO, 0, ("ct",)))
        return [(prio, step) for prio, _, step in sorted(items, key=lambda i: (i[0], i[1]))]

    def _hook(self, walk: _Walk, tracked: bool) -> str:
        env, res = walk.env, walk.res
        steps = self.steps(env.pkt.family, walk.hook)
        _note_ties(walk.hook, steps, res)
        for _, step in steps:
            if walk.rewritten and step[0] != "ct":
                res.reason = f"the source address was rewritten by {walk.rewritten}, which is not modelled, " \
                             "and a later chain at this hook may test it"
                return "UNKNOWN"
            if step[0] == "ct":
                if env.ctstate is None:
                    env.ctstate = "UNTRACKED" if walk.notrack else first_packet_state(env.pkt)
                walk.ct_done = True
                continue
            if step[0] == "ipt":
                _, table, chain = step
                if table == "nat" and env.ctstate != "NEW":
                    continue
                env.sets, env.ruleset = self.ipt[env.pkt.family].rs.sets, self.ipt[env.pkt.family].rs
                verdict = self.ipt[env.pkt.family].hook(table, chain, env, res)
            else:
                _, table, chain = step
                if chain.type == "nat" and (not tracked or env.ctstate != "NEW"):
                    continue  # nat chains see only a connection's first packet
                verdict = self._base(walk, table, chain)
            if verdict is not None and verdict != "ACCEPT":
                return verdict
        return "ACCEPT"

    def _base(self, walk: _Walk, table: NftTable, chain: NftChain) -> str:
        res = walk.res
        try:
            verdict = self._chain(walk, table, chain)
        except Undecidable as e:
            res.reason = f"depends on {e.where[0]} chain {e.where[1]} handle {e.where[2]}" + \
                (f" ({e.where[3]})" if len(e.where) > 3 and e.where[3] else "") + f": {e}"
            return "UNKNOWN"
        except RecursionError:
            res.reason = f"{table.label} {chain.name} nests chains deeper than the simulator follows"
            return "UNKNOWN"
        if verdict is None:
            verdict = chain.policy.upper()
            res.trace.append({"family": table.family, "table": table.name, "chain": chain.name, "policy": verdict})
        return verdict

    def _chain(self, walk: _Walk, table: NftTable, chain: NftChain) -> str | None:
        """The verdict that ends the walk, or None when the chain ends or returns."""
        for rule in chain.rules:
            outcome = self._rule(walk, table, chain, rule)
            if outcome is None:
                continue
            kind, target = outcome
            if kind in ("jump", "goto"):
                callee = table.chains.get(target) if isinstance(target, str) else None
                if callee is None:  # the reader checks rules; a hand-written map's element may still name none
                    raise Undecidable(f"{kind} to {str(target)[:40]}, which is no chain of {table.label}", walk.where)
                verdict = self._chain(walk, table, callee)
                if kind == "goto" or verdict is not None:
                    return verdict
            elif kind == "return":
                return None
            else:
                return kind
        return None

    def undecided(self) -> list[tuple[str, str, int | None, int, str]]:
        """(table, chain, handle, statement index, why) of each statement of an analysed table that some probe
        packet (PROBES, at each hook the chain may run at) reaches and leaves undecided although it carries
        every field the model has: what reading this ruleset loses, as opposed to what one packet's missing
        fields leave open. Statements before it are taken to hold (stateful ones, comparisons of values),
        except where the probe lacks the header they read or they select the protocol or family, so every
        probe of the protocols the rule is about tries it; the simulator's memory is left as it was."""
        probes = [from_short(spec) for spec in PROBES]
        out = []
        kept = self.memory
        try:
            for table in self.nft.tables:
                if not table.analysed:
                    continue
                for chain in table.chains.values():
                    hooks = (chain.hook,) if chain.base else ("prerouting", "input", "forward", "output",
                                                               "postrouting")
                    for rule in chain.rules:
                        for n in range(len(rule.expr)):
                            why = self._undecided(table, chain, rule, n, probes, hooks)
                            if why is not None:
                                out.append((table.label, chain.name, rule.handle, n, why))
        finally:
            self.memory = kept
        return out

    def _undecided(self, table: NftTable, chain: NftChain, rule: NftRule, n: int, probes: list[Packet],
                   hooks: tuple) -> str | None:
        for pkt in probes:
            for hook in hooks:
                self.memory = {}
                env = Env(pkt, pkt.state, self.memory, mark=pkt.mark, ctmark=pkt.arrival_ctmark)
                walk = _Walk(env, NftResult("ACCEPT", None), hook=hook, ct_done=True)
                try:
                    for m, stmt in enumerate(rule.expr[:n + 1]):
                        (key, val), = stmt.items()
                        if m < n and key in ("limit", "quota", "meter", "set"):
                            continue
                        where = (table.label, chain.name, rule.handle, None, m)
                        walk.where = where
                        try:
                            if m < n and key == "match":  # a header the probe lacks ends it; a value not
                                if not self._match(walk, table, val, where) and _selects(val.get("left")):
                                    raise _Break  # (but the protocol or family the rest is about does)
                                continue
                            outcome = self._statement(walk, table, key, val, where, {})
                        except Undecidable as e:
                            if m == n:
                                return str(e)
                            raise _Break from None  # an earlier statement's loss, not this one's
                        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
                            if m == n:
                                return f"malformed ({type(e).__name__}: {str(e)[:60]})"
                            raise _Break from None
                        if m < n and outcome is not None and outcome[0] != "continue":
                            break  # the rule ends before statement n
                except _Break:
                    continue
        return None

    # --- one rule ------------------------------------------------------------------------------
    def _rule(self, walk: _Walk, table: NftTable, chain: NftChain, rule: NftRule) -> tuple[str, str | None] | None:
        where = (table.label, chain.name, rule.handle, str(rule.origin) if rule.origin else None)
        walk.where = where
        walk.res.evaluated += 1
        ident = {"family": table.family, "table": table.name, "chain": chain.name, "handle": rule.handle}
        guide = self.guide
        if guide is not None:
            guide.visit((table.family, table.name, chain.name, rule.handle), walk.notrack)
        try:
            for n, stmt in enumerate(rule.expr):
                (key, val), = stmt.items()
                if guide is None:
                    outcome = self._statement(walk, table, key, val, where + (n,), ident)
                else:
                    outcome = self._guided(walk, table, key, val, where + (n,), ident)
                if outcome is not None and outcome[0] != "continue":  # continue: the rule's next statement
                    self._matched(walk, ident, rule, outcome)
                    return outcome
        except _Break:
            return None
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
            # a statement whose JSON has not the shape libnftables-json(5) gives it (hand-written input)
            raise Undecidable(f"a statement of this rule is malformed ({type(e).__name__}: {str(e)[:60]})",
                              where) from None
        self._matched(walk, ident, rule, None)
        return None

    def _guided(self, walk: _Walk, table: NftTable, key: str, val: Any, where: tuple,
                ident: dict) -> tuple[str, str | None] | None:
        """A statement as the guide has it (Explorer.force): held (True), failed (False: the rule ends) or a
        verdict map's verdict where no dimension or the simulator decides it; else run as it is. A test of a
        header or a connection the packet lacks still ends the rule (`ct mark` of an untracked packet)."""
        rule, n = (ident["family"], ident["table"], ident["chain"], ident["handle"]), where[-1]
        if key == "match":
            try:
                held, why = self._match(walk, table, val, where), None
            except Undecidable as e:
                held, why = None, e
            forced = self.guide.force(rule, n, key, None if why is None else str(why))
            if forced is None:
                if held is None:
                    raise why  # type: ignore[misc]
                if not held:
                    raise _Break
                return None
        else:
            forced = self.guide.force(rule, n, key, None)
            if forced is None:
                try:
                    return self._statement(walk, table, key, val, where, ident)
                except Undecidable as e:
                    forced = self.guide.force(rule, n, key, str(e)) if key == "vmap" else None
                    if forced is None:
                        raise
        if forced is False:
            raise _Break
        if forced is True:
            return None
        return self._verdict_of(forced, where)

    def _verdict_of(self, data: Any, where: tuple) -> tuple[str, str | None]:
        """A verdict map's data as the rule's outcome."""
        if not isinstance(data, dict) or len(data) != 1:
            raise Undecidable(f"verdict map gives {str(data)[:40]}", where)
        (verdict, arg), = data.items()
        if verdict in ("jump", "goto"):
            return verdict, arg["target"]
        if verdict not in ("accept", "drop", "continue", "return", "queue"):
            raise Undecidable(f"verdict map gives `{verdict}`", where)
        return (verdict.upper() if verdict in ("accept", "drop", "queue") else verdict), None

    def _matched(self, walk: _Walk, ident: dict, rule: NftRule, outcome: tuple | None) -> None:
        walk.res.matched.append(dict(ident))
        step = dict(ident, origin=str(rule.origin) if rule.origin else None)
        step["verdict"] = None if outcome is None else outcome[0] + (f" {outcome[1]}" if outcome[1] else "")
        walk.res.trace.append(step)

    def _statement(self, walk: _Walk, table: NftTable, key: str, val: Any, where: tuple,
                   ident: dict) -> tuple[str, str | None] | None:
        env = walk.env
        if key == "match":
            if not self._match(walk, table, val, where):
                raise _Break
            return None
        if key == "counter":
            walk.res.counted.append(dict(ident))
            return None
        if key in ("accept", "drop", "continue", "return", "queue"):
            return key.upper() if key in ("accept", "drop", "queue") else key, None
        if key in ("jump", "goto"):
            return key, val["target"]
        if key == "reject":
            env.notes.append(f"{where[0]} {where[1]} handle {where[2]}: reject"
                             + (f" with {val.get('type')} {val.get('expr', '')}".rstrip() if val else ""))
            return "REJECT", None
        if key == "log":
            prefix = val.get("prefix", "") if isinstance(val, dict) else ""
            group = val.get("group") if isinstance(val, dict) else None  # NFLOG: a netlink group, not the kernel log
            env.notes.append(f"{where[0]} {where[1]} handle {where[2]}: log" + (f" prefix {prefix!r}" if prefix else "")
                             + (f" group {group}" if group is not None else ""))
            return None
        if key == "limit":
            if not self._limit(walk, val, where):
                raise _Break
            return None
        if key == "quota":
            if not self._quota(walk, val, where):
                raise _Break
            return None
        if key == "mangle":
            self._mangle(walk, table, val, where)
            return None
        if key == "vmap":
            data = self._lookup(walk, val["key"], val["data"], where, want_data=True)
            if data is None:
                raise _Break
            return self._verdict_of(data, where)
        if key in ("snat", "masquerade") and walk.hook == "postrouting":
            # the packet is accepted by this chain; only chains after it would see the new source
            walk.rewritten = f"{where[0]} chain {where[1]} handle {where[2]}"
            env.notes.append(f"{walk.rewritten}: {key} (the new source address is not modelled)")
            return "ACCEPT", None
        if key == "set":
            self._set_statement(walk, table, val, where)
            return None
        if key == "meter":
            self._meter(walk, table, val, where)
            return None
        if key == "ct helper":  # assigns a helper: it only makes later, related connections RELATED
            env.notes.append(f"{where[0]} {where[1]} handle {where[2]}: ct helper {val} (its expectations are "
                             "not modelled)")
            return None
        if key == "notrack":  # nft_notrack_eval: only a packet without a connection (yet) becomes untracked
            if not walk.ct_done:
                if not carries_state(env.pkt, env):  # a packet on lo into INPUT keeps its output path's entry
                    walk.notrack = True
                    env.ctstate = "UNTRACKED"  # whatever state conntrack would have given it
            elif env.ctstate == "INVALID":
                env.ctstate = "UNTRACKED"
            return None
        raise Undecidable(f"statement `{key}` is not modelled", where)

    # --- expressions ---------------------------------------------------------------------------
    def _match(self, walk: _Walk, table: NftTable, m: dict, where: tuple) -> bool:
        left, right, op = m.get("left"), m.get("right"), m.get("op")
        if isinstance(right, dict) and "concat" in right:  # `ip saddr . tcp dport 192.0.2.1 . 22`: one element
            right = {"set": [right]}
        if _is_set(right):
            found = self._lookup(walk, left, right, where, want_data=False)
            if op in (None, "==", "in"):
                return found is not None
            if op == "!=":
                return found is None
            raise Undecidable(f"operator {op} with a set", where)
        if left == CT_STATUS and op in (None, "in") and self.nat and not self._ipt_nat and walk.ct_done and \
                walk.env.ctstate == "NEW":
            mask = self._const("ct_status", right, where)[0]
            if mask and not mask & ~NAT_BITS:
                # `ct status dnat` of a connection's first packet: a NAT mapping would have been made by a
                # statement the walk stops at (dnat, redirect) or after which it stops (snat, masquerade)
                return False
        dtype, value = self._value(walk, left, where)
        lo, hi = self._const(dtype, right, where)
        if (held := compare(op, dtype, value, lo, hi)) is not None:
            return held
        raise Undecidable(f"operator {op} is not modelled", where)

    def _const(self, dtype: str | tuple, right: Any, where: tuple) -> tuple[int, int]:
        try:
            if isinstance(dtype, tuple):
                raise NftValueError("a concatenation compared with a single value")
            return interval(dtype, right)
        except NftValueError as e:
            raise Undecidable(str(e), where) from None

    def _value(self, walk: _Walk, expr: Any, where: tuple) -> tuple[Any, Any]:
        """(datatype, value) of a left-hand expression for this packet: an int, or a tuple for a concatenation."""
        if not isinstance(expr, dict) or len(expr) != 1:
            raise Undecidable(f"expression {str(expr)[:60]} is not modelled", where)
        (key, val), = expr.items()
        if key == "payload":
            return self._payload(walk, val.get("protocol"), val.get("field"), where)
        if key == "meta":
            return self._meta(walk, val.get("key"), where)
        if key == "ct":
            return self._ct(walk, val, where)
        if key == "fib":
            return self._fib(walk, val, where)
        if key == "exthdr":
            return self._exthdr(walk, val, where)
        if key == "concat":
            parts = [self._value(walk, e, where) for e in val]
            return tuple(d for d, _ in parts), tuple(v for _, v in parts)
        if key == "&" and isinstance(val, list) and len(val) == 2 and val[0] == FRAG_OFF:
            return self._frag_off(walk, val[1], where)
        if key in ("&", "|", "^", "<<", ">>") and isinstance(val, list) and len(val) == 2:
            dtype, a = self._value(walk, val[0], where)
            b = val[1] if isinstance(val[1], int) and key in ("<<", ">>") else self._const(dtype, val[1], where)[0]
            ops = {"&": a & b, "|": a | b, "^": a ^ b, "<<": a << b, ">>": a >> b}
            return dtype, ops[key]
        if key == "map":
            data = self._lookup(walk, val["key"], val["data"], where, want_data=True)
            if data is None:
                raise _Break
            return "integer", data
        raise Undecidable(f"expression `{key}` is not modelled", where)

    def _payload(self, walk: _Walk, proto: str, fld: str, where: tuple) -> tuple[str, int]:
        pkt = walk.env.pkt
        v4 = pkt.family is Family.IPV4
        if proto == "ip" or proto == "ip6":
            if v4 != (proto == "ip"):
                raise _Break  # the table's implicit `meta nfproto` dependency
            values = {"saddr": ("ipv4_addr" if v4 else "ipv6_addr", pkt.src),
                      "daddr": ("ipv4_addr" if v4 else "ipv6_addr", pkt.dst),
                      "version": ("integer", 4 if v4 else 6), "dscp": ("integer", pkt.tos >> 2),
                      "ecn": ("integer", pkt.tos & 3)}
            if v4:
                values |= {"protocol": ("inet_proto", pkt.proto), "ttl": ("integer", pkt.ttl),
                           "length": ("integer", pkt.length), "hdrlength": ("integer", 5),
                           "frag-off": ("integer", _frag_field(pkt))}
            else:
                values |= {"nexthdr": ("inet_proto", 44 if pkt.fragment else pkt.proto),
                           "hoplimit": ("integer", pkt.ttl), "length": ("integer", pkt.length - 40)}
            if fld in values:
                return values[fld]
            raise Undecidable(f"{proto} {fld} is not in the packet model", where)
        if proto in ("icmp", "icmpv6"):
            if pkt.proto != (1 if proto == "icmp" else 58) or v4 != (proto == "icmp"):
                raise _Break
            if pkt.frag_offset:
                raise _Break
            if fld in ("type", "code"):
                return f"{proto}_{fld}", (pkt.icmp_type if fld == "type" else pkt.icmp_code or 0)
            raise Undecidable(f"{proto} {fld} is not in the packet model", where)
        if proto in TRANSPORT or proto == "th":
            if proto != "th" and pkt.proto != TRANSPORT[proto]:
                raise _Break  # the implicit `meta l4proto` dependency
            if pkt.frag_offset:
                raise _Break  # a later fragment has no transport header
            if pkt.proto in (6, 17) and fld in PORT_FIELDS:
                return "inet_service", (pkt.sport if fld == "sport" else pkt.dport)
            if proto == "tcp" and fld == "flags":
                return "tcp_flag", pkt.tcp_flags
            if proto == "th" and pkt.proto in (1, 58) and fld == "sport":
                return "integer", (pkt.icmp_type << 8) | (pkt.icmp_code or 0)  # th's first two bytes
            raise Undecidable(f"{proto} {fld} of this packet is not in the packet model", where)
        raise Undecidable(f"payload {proto} {fld} is not modelled", where)

    def _frag_off(self, walk: _Walk, mask: Any, where: tuple) -> tuple[str, int]:
        """`ip frag-off & MASK` (`ip frag-off & 0x1fff != 0`, the usual fragment test)."""
        pkt = walk.env.pkt
        if pkt.family is not Family.IPV4:
            raise _Break
        return "integer", _frag_field(pkt) & self._const("integer", mask, where)[0]

    def _meta(self, walk: _Walk, key: str, where: tuple) -> tuple[str, int]:
        env, hook = walk.env, walk.hook
        pkt = env.pkt
        if key in ("iifname", "iif", "oifname", "oif"):
            dev = (pkt.iif if hook in SEES_IIF else None) if key.startswith("i") else \
                (pkt.oif if hook in SEES_OIF else None)
            if key.endswith("name"):
                return "ifname", ifname(dev or "")
            return "iface_index", ifname(dev) if dev else 0
        if key == "l4proto":
            return "inet_proto", pkt.proto
        if key == "nfproto":
            return "nf_proto", 2 if pkt.family is Family.IPV4 else 10
        if key == "protocol":
            return "ether_type", 0x0800 if pkt.family is Family.IPV4 else 0x86DD
        if key == "length":
            return "integer", pkt.length
        if key == "mark":
            if env.mark is None:
                raise Undecidable("the packet mark is not known here", where)
            return "mark", env.mark
        if key == "pkttype":
            return "pkttype", PKTTYPES[pkt.link_class]
        if key in ("skuid", "skgid"):
            if hook == "forward":
                raise _Break  # a forwarded packet has no local socket
            value = pkt.uid if key == "skuid" else pkt.gid
            if hook in ("output", "postrouting") and value is not None:
                return "integer", value
            raise Undecidable(f"meta {key}: the packet's socket is not known here", where)
        raise Undecidable(f"meta {key} is not modelled", where)

    def _ct(self, walk: _Walk, val: dict, where: tuple) -> tuple[str, int]:
        env = walk.env
        key = val.get("key")
        if val.get("dir") is not None:
            raise Undecidable(f"ct {val.get('dir')} {key} is not modelled", where)
        # before conntrack's hook a packet has no connection (INVALID), unless a notrack already marked it
        state = env.ctstate if walk.ct_done else "UNTRACKED" if walk.notrack else None
        if walk.ct_done and state is None:
            state = "INVALID"
        if key == "state":
            return "ct_state", CT_STATE_BITS[state] if state else CT_STATE_BITS["INVALID"]
        if state in (None, "INVALID", "UNTRACKED"):
            raise _Break  # no connection: every other ct key fails
        if key == "mark":
            if env.ctmark is None:
                raise Undecidable("the connection mark is not known here", where)
            return "mark", env.ctmark
        if key == "direction" and state == "NEW":
            return "ct_dir", 0
        if key == "status" and state == "NEW" and not self.nat:
            return "ct_status", 0  # not yet confirmed, no NAT done
        raise Undecidable(f"ct {key} of this connection is not in the packet model", where)

    def _exthdr(self, walk: _Walk, val: dict, where: tuple) -> tuple[str, int]:
        """An IPv6 extension header (nft makes it depend on `meta nfproto ipv6`): the model's packets carry
        none but the fragment header, which a fragment has; `exthdr frag exists` and its offset and MF."""
        pkt = walk.env.pkt
        if pkt.family is not Family.IPV6:
            raise _Break
        name, fld = val.get("name"), val.get("field")
        if fld is None:
            return "boolean", int(name == "frag" and pkt.fragment)
        if name in ("hbh", "rt", "rt0", "rt2", "srh", "dst", "mh") or (name == "frag" and not pkt.fragment):
            raise _Break  # the header is not there: reading a field of it ends the rule
        if name == "frag" and fld in ("frag-off", "more-fragments"):
            return "integer", pkt.frag_offset if fld == "frag-off" else int(pkt.more_fragments)
        raise Undecidable(f"exthdr {name} {fld} is not in the packet model", where)

    def _fib(self, walk: _Walk, val: dict, where: tuple) -> tuple[str, int]:
        flags = val.get("flags")
        flags = [flags] if isinstance(flags, str) else flags or []
        pkt = walk.env.pkt
        if val.get("result") == "type" and flags in (["daddr"], ["saddr"]):
            kind = pkt.dst_type if flags == ["daddr"] else pkt.src_type
            if kind is not None:
                return "fib_addrtype", ROUTE_TYPES.index(kind)
        if val.get("result") in ("oif", "oifname") and sorted(flags) == ["iif", "saddr"] and \
                pkt.src_via_iif is not None and walk.hook in SEES_IIF:
            # the route to the source, looked up through the input interface: that interface, or none
            dev = pkt.iif if pkt.src_via_iif else None
            if val["result"] == "oifname":
                return "ifname", ifname(dev or "")
            return "iface_index", ifname(dev) if dev else 0
        raise Undecidable(f"fib {' . '.join(flags)} {val.get('result')}: the routing table is not in the model "
                          "(give src_type/dst_type, or src_via_iif, in the packet)", where)

    # --- sets and maps -------------------------------------------------------------------------
    def _lookup(self, walk: _Walk, left: Any, ref: Any, where: tuple, want_data: bool) -> Any:
        """The element of a set the key falls in (its data for a map); None if none. A concatenation with a
        part the packet model lacks (`meta l4proto . th dport` of an ICMP packet: its checksum) is still
        decided when no element matches the other parts."""
        try:
            dtype, value = self._value(walk, left, where)
        except Undecidable as unknown:
            self._lookup_without(walk, left, ref, where, unknown)
            return None
        key = value if isinstance(value, tuple) else (value,)
        elements = self._elements(dtype, ref, where)
        if len(elements) > INDEXED:  # the elements whose first component holds the key's, in their order
            index = self._indexes.get(id(elements))
            if index is None or index[0] is not elements:
                index = self._indexes[id(elements)] = (elements, Stabbing(
                    [(*b[0], n) for n, (b, _) in enumerate(elements) if b]))
            elements = [elements[n] for n in sorted(index[1].meeting(key[0], key[0]))]
        for bounds, data in elements:
            if len(bounds) == len(key) and all(lo <= v <= hi for v, (lo, hi) in zip(key, bounds, strict=True)):
                return data if want_data else True
        if isinstance(ref, str) and not want_data:
            table = self._table_of(where)
            added = self.memory.get(("nft-dynset", table.family, table.name, ref[1:]), {})
            if key in added and _alive(added[key], walk.env.pkt.t):
                return True
        return None

    def _lookup_without(self, walk: _Walk, left: Any, ref: Any, where: tuple, unknown: Undecidable) -> None:
        """Raise `unknown` unless some part of the concatenation `left` rules every element out."""
        parts = left.get("concat") if isinstance(left, dict) else None
        if not isinstance(parts, list):
            raise unknown
        known: list[tuple[str, Any] | None] = []
        for e in parts:
            try:
                known.append(self._value(walk, e, where))
            except Undecidable:
                p = e.get("payload", {}) if isinstance(e, dict) else {}
                if p.get("field") not in PORT_FIELDS:
                    raise unknown from None
                known.append(None)
        dtype = tuple(k[0] if k else PORT_FIELDS[parts[i]["payload"]["field"]] for i, k in enumerate(known))
        for bounds, _ in self._elements(dtype, ref, where):
            if len(bounds) == len(known) and all(k is None or lo <= k[1] <= hi
                                                 for k, (lo, hi) in zip(known, bounds, strict=True)):
                raise unknown
        return None

    def _elements(self, dtype: Any, ref: Any, where: tuple) -> list[tuple[tuple, Any]]:
        if isinstance(ref, str):
            table = self._table_of(where)
            nset = table.sets[ref[1:]]
            ck = (table.family, table.name, nset.name)
            if ck not in self._sets:
                self._sets[ck] = _compile_set(nset.key, nset.data, nset.elements, where)
            return self._sets[ck]
        if id(ref) not in self._consts:
            dtypes = dtype if isinstance(dtype, tuple) else (dtype,)
            self._consts[id(ref)] = (ref, _compile_set(dtypes, "any", ref["set"] if isinstance(ref, dict) else ref,
                                                       where))
        return self._consts[id(ref)][1]

    def _table_of(self, where: tuple) -> NftTable:
        family, name = where[0].split(" ", 1)
        table = self.nft.table(family, name)
        assert table is not None
        return table

    # --- stateful and mangling statements -------------------------------------------------------
    def _limit(self, walk: _Walk, val: Any, where: tuple) -> bool:
        """nft_limit_eval: a token bucket of nanoseconds, full at load; a packet costs nsecs/rate (or
        nsecs*len/rate for bytes); the bucket gains the time since the last packet that reached it."""
        if not isinstance(val, dict):
            raise Undecidable("a named limit object is not modelled", where)
        rate, per, burst = val.get("rate"), PER.get(val.get("per", "second")), val.get("burst") or 0
        if not all(_u64(n) for n in (rate, burst)) or rate == 0 or per is None:
            raise Undecidable(f"limit {str(val)[:60]} is not understood", where)
        nsecs = per * NSEC
        bytes_unit = val.get("rate_unit", "packets")
        if bytes_unit == "packets":
            burst = burst or 5
            cost, tokens_max = nsecs // rate, (nsecs // rate) * burst
        else:
            rate *= BYTES.get(bytes_unit, 1)
            burst *= BYTES.get(val.get("burst_unit", "bytes"), 1)
            cost, tokens_max = nsecs * walk.env.pkt.length // rate, nsecs * (rate + burst) // rate
        now = round(walk.env.pkt.t * NSEC)
        mkey = ("nft-limit",) + where
        tokens, last = self.memory.get(mkey, (tokens_max, now))
        tokens = min((tokens + now - last) & U64, tokens_max)
        if tokens - cost >= 0:
            self.memory[mkey] = (tokens - cost, now)
            return not val.get("inv", False)
        self.memory[mkey] = (tokens, now)
        return bool(val.get("inv", False))

    def _set_statement(self, walk: _Walk, table: NftTable, val: Any, where: tuple) -> None:
        """`add`/`update`/`delete @set { KEY [timeout T] [limit ...] }`. A set some rule looks up holds the
        elements the packets add (nft_dynset): each lives until its timeout (the element's, else the set's),
        which `update` restarts and `add` does not; a full set takes no new one and the rule stops there.
        A set nothing looks up is a meter (as stockade writes hashlimit): a limit per element, each with
        its own bucket, and the rule goes on only if the element's limit holds."""
        if not isinstance(val, dict) or val.get("op") not in ("add", "update", "delete"):
            raise Undecidable(f"set statement {str(val)[:60]} is not modelled", where)
        name = str(val.get("set", "")).removeprefix("@")
        stmts = val.get("stmt") or []
        elem, timeout = val.get("elem"), None
        if isinstance(elem, dict) and isinstance(elem.get("elem"), dict):
            elem, timeout = elem["elem"].get("val"), elem["elem"].get("timeout")
        _, value = self._value(walk, elem, where)
        looked = self._looked.get((table.family, table.name, name))
        if looked is None:  # a walk of the whole table: once per set
            looked = self._looked[(table.family, table.name, name)] = _looked_up(table, name)
        if looked:
            nset = table.sets.get(name)
            if nset is None or nset.data is not None or stmts:
                raise Undecidable(f"set @{name} is filled by the packets themselves with data or statements of "
                                  "its elements, which is not modelled", where)
            self._fill(walk, table, nset, val["op"], value if isinstance(value, tuple) else (value,),
                       nset.timeout if timeout is None else timeout, where)
            return
        if val["op"] == "delete":
            return
        for n, stmt in enumerate(stmts):
            if not (isinstance(stmt, dict) and set(stmt) == {"limit"}):
                raise Undecidable(f"statement {str(stmt)[:40]} in a set element is not modelled", where)
            if not self._limit(walk, stmt["limit"], where + ("@" + name, value, n)):
                raise _Break

    def _fill(self, walk: _Walk, table: NftTable, nset: Any, op: str, key: tuple, ttl: int | None,
              where: tuple) -> None:
        """One packet's change to the elements of a set the packets fill: {key: when it expires, or None}.
        An element deleted or timed out still takes its place in a set of fixed size until the kernel's
        garbage collection frees it, at a time of its own: a set full only with those is UNKNOWN."""
        now = walk.env.pkt.t
        ident = ("nft-dynset", table.family, table.name, nset.name)
        added = self.memory.setdefault(ident, {})
        dead = self.memory.get(ident + ("dead",), 0)  # removed from the set, maybe not yet freed
        if op == "delete":
            if key in added and _alive(added[key], now):
                self.memory[ident + ("dead",)] = dead + 1
            added.pop(key, None)
            return
        static = any(len(b) == len(key) and all(lo <= v <= hi for v, (lo, hi) in zip(key, b, strict=True))
                     for b, _ in self._elements(nset.key, "@" + nset.name, where))
        if static:
            return  # found: an element of the ruleset's own, which the model keeps for ever
        if key in added and _alive(added[key], now):
            if op == "update" and ttl:
                added[key] = now + ttl
            return
        if nset.size is not None:
            live = len(nset.elements) + sum(_alive(e, now) for e in added.values())
            if live >= nset.size:
                raise _Break  # the set is full: nft_dynset takes no new element and the rule stops
            if len(nset.elements) + len(added) + dead >= nset.size:
                raise Undecidable(f"set @{nset.name} is full unless the kernel has freed the elements deleted "
                                  "or timed out, which it does at a time of its own", where)
        if key in added:  # timed out: a new element beside the old one until that is freed
            self.memory[ident + ("dead",)] = dead + 1
        added[key] = now + ttl if ttl else None

    def _meter(self, walk: _Walk, table: NftTable, val: Any, where: tuple) -> None:
        """`meter NAME { KEY [timeout T] limit ... }` (older nft's hashlimit): the set statement of its own
        anonymous set, added to without a timeout, updated with one (each packet restarts the element's
        timeout). An element that times out takes its limit with it; that is invisible when its bucket is
        full again by then (the refill time burst * per / rate is at most the timeout); otherwise UNKNOWN."""
        if not isinstance(val, dict) or not isinstance(val.get("name"), str):
            raise Undecidable(f"meter {str(val)[:60]} is not understood", where)
        key = val.get("key")
        elem, timeout = key, None
        if isinstance(key, dict) and isinstance(key.get("elem"), dict):
            elem, timeout = key["elem"].get("val"), key["elem"].get("timeout")
        stmts = val.get("stmt")
        stmts = stmts if isinstance(stmts, list) else [stmts]
        for stmt in stmts:
            lim = stmt.get("limit") if isinstance(stmt, dict) else None
            if timeout is not None and isinstance(lim, dict) and _u64(lim.get("rate")) and lim["rate"] and \
                    lim.get("rate_unit", "packets") == "packets" and \
                    (lim.get("burst") or 5) * PER.get(lim.get("per", "second"), U64) > timeout * lim["rate"]:
                raise Undecidable(f"meter {val['name']}: an element times out ({timeout} s) before its limit's "
                                  "bucket is full again, which is not modelled", where)
            if timeout is not None and isinstance(lim, dict) and lim.get("rate_unit", "packets") != "packets":
                raise Undecidable(f"meter {val['name']}: a byte limit on elements that time out is not modelled",
                                  where)
        self._set_statement(walk, table, {"op": "update" if timeout else "add", "set": "@" + val["name"],
                                          "elem": elem, "stmt": stmts}, where)

    def _quota(self, walk: _Walk, val: Any, where: tuple) -> bool:
        """nft_quota (Linux 6.15 and later): over once the bytes counted, this packet's included, exceed it."""
        if not isinstance(val, dict):
            raise Undecidable("a named quota object is not modelled", where)
        if not _u64(val.get("val")) or not _u64(val.get("used", 0)):
            raise Undecidable(f"quota {str(val)[:60]} is not understood", where)
        quota = val["val"] * BYTES.get(val.get("val_unit", "bytes"), 1)
        mkey = ("nft-quota",) + where
        used = self.memory.get(mkey, val.get("used", 0) * BYTES.get(val.get("used_unit", "bytes"), 1))
        used += walk.env.pkt.length
        self.memory[mkey] = used
        over = used > quota
        return over if val.get("inv", False) else not over

    def _mangle(self, walk: _Walk, table: NftTable, val: dict, where: tuple) -> None:
        target = val.get("key", {})
        if target == {"meta": {"key": "mark"}}:
            walk.env.mark = self._data(walk, val.get("value"), where)
        elif isinstance(target, dict) and target.get("ct", {}).get("key") == "mark" and "dir" not in target["ct"]:
            state = walk.env.ctstate if walk.ct_done else None
            if state not in (None, "INVALID", "UNTRACKED"):
                walk.env.ctmark = self._data(walk, val.get("value"), where)
        elif isinstance(target, dict) and "tcp option" in target:
            # `tcp option maxseg size set rt mtu` (MSS clamping): the model holds which options a packet
            # carries, not their values, so nothing it decides reads what this changes
            walk.env.notes.append(f"{where[0]} {where[1]} handle {where[2]}: sets tcp option "
                                  f"{target['tcp option'].get('name')} {target['tcp option'].get('field')}")
        else:
            raise Undecidable(f"setting {str(target)[:60]} is not modelled", where)

    def _data(self, walk: _Walk, expr: Any, where: tuple) -> int:
        if isinstance(expr, int):
            return expr & 0xFFFFFFFF
        if isinstance(expr, str):
            return self._const("mark", expr, where)[0]
        return self._value(walk, expr, where)[1] & 0xFFFFFFFF


def _note_ties(hook: str, steps: list[tuple[int, tuple]], res: NftResult) -> None:
    """Chains at one priority run in the order they were registered, which no listing shows: say so."""
    seen: dict[int, list[str]] = {}
    for prio, step in steps:
        if step[0] == "nft":
            seen.setdefault(prio, []).append(f"{step[1].label} {step[2].name}")
        elif step[0] == "ipt":
            seen.setdefault(prio, []).append(f"iptables {step[1]} {step[2]}")
    for prio, names in seen.items():
        note = (f"{', '.join(names)} share priority {prio} at {hook}: the kernel runs them in the order "
                "they were registered, which the ruleset does not record")
        if len(names) > 1 and note not in res.notes:
            res.notes.append(note)


SELECTORS = ({"meta": {"key": "l4proto"}}, {"meta": {"key": "nfproto"}}, {"meta": {"key": "protocol"}},
             {"payload": {"protocol": "ip", "field": "protocol"}}, {"payload": {"protocol": "ip6", "field": "nexthdr"}},
             {"payload": {"protocol": "ip", "field": "version"}}, {"payload": {"protocol": "ip6", "field": "version"}})


def _selects(left: Any) -> bool:
    """Whether a comparison's left side names the protocol or family (`meta l4proto`, `ip protocol`, ...)."""
    return left in SELECTORS


def _frag_field(pkt: Packet) -> int:
    """IPv4's 16 bits of flags and fragment offset: DF 0x4000, MF 0x2000, the offset in 8-byte units."""
    return pkt.frag_offset | (0x2000 if pkt.more_fragments else 0) | (0x4000 if pkt.dont_fragment else 0)


def _alive(expires: float | None, now: float) -> bool:
    """Whether an element the packets added is still there (expires None: it never times out)."""
    return expires is None or expires > now


def _u64(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= U64


def _looked_up(table: NftTable, name: str) -> bool:
    """Whether a rule of the table compares with set @name."""
    ref = "@" + name

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if "match" in node and isinstance(node["match"], dict) and node["match"].get("right") == ref:
                return True
            return any(walk(v) for k, v in node.items() if k != "set")
        if isinstance(node, list | tuple):
            return any(walk(v) for v in node)
        return False
    return any(walk(list(r.expr)) for c in table.chains.values() for r in c.rules)


def _is_set(right: Any) -> bool:
    return (isinstance(right, str) and right.startswith("@")) or (isinstance(right, dict) and "set" in right)


def _compile_set(dtypes: tuple, data: str | None, elements: list, where: tuple) -> list[tuple[tuple, Any]]:
    """Each element as (one interval per key component, its data or True)."""
    out = []
    for elem in elements:
        value: Any = True
        if isinstance(elem, list) and len(elem) == 2 and data is not None:
            elem, value = elem
            if data not in ("verdict", "any") and not isinstance(value, dict):
                value = interval(data, value)[0] if data in SYMBOLS or data in ("mark", "integer") else value
        if isinstance(elem, dict) and "elem" in elem:
            elem = elem["elem"].get("val")
        parts = elem["concat"] if isinstance(elem, dict) and "concat" in elem else [elem]
        if len(parts) != len(dtypes):
            raise Undecidable(f"set element {str(elem)[:60]} does not fit the key {' . '.join(map(str, dtypes))}",
                              where)
        try:
            out.append((tuple(interval(d, p) for d, p in zip(dtypes, parts, strict=True)), value))
        except NftValueError as e:
            raise Undecidable(str(e), where) from None
    return out


def compare(op: Any, dtype: str, value: int, lo: int, hi: int) -> bool | None:
    """`value op [lo, hi]` as nft's cmp/range/bitwise expressions decide it; None for an operator they do
    not have here (the caller says why it cannot decide)."""
    if op == "in" or (op is None and dtype in BITMASKS):
        return (value & lo) != 0
    if op in (None, "=="):
        return lo <= value <= hi
    if op == "!=":
        return not lo <= value <= hi
    if op in ("<", ">", "<=", ">="):
        return {"<": value < lo, ">": value > hi, "<=": value <= hi, ">=": value >= lo}[op]
    if op == "!" and dtype in BITMASKS:  # `tcp flags ! fin,syn`: none of the flags (value & mask == 0)
        return (value & lo) == 0
    return None
