"""One packet through a ruleset, hook by hook, exactly as netfilter walks it.

Order per path (net/netfilter priorities): defragmentation (-400), raw (-300),
conntrack (-200), mangle (-150), nat DNAT (-100), routing, filter (0),
security (50), nat SNAT (100). nat chains see only the first packet of a
connection. Matches the model cannot decide make the verdict "UNKNOWN" with the
rule that decided it named, never a guess.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ..extensions import REGISTRY, Opaque
from ..model import Family, Rule, Ruleset
from .conntrack import first_packet_state
from .packet import Packet

CT = ("ct",)
ROUTE = ("route",)
PATHS = {
    "INPUT": [("raw", "PREROUTING"), CT, ("mangle", "PREROUTING"), ("nat", "PREROUTING"), ROUTE,
              ("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT"), ("nat", "INPUT")],
    "FORWARD": [("raw", "PREROUTING"), CT, ("mangle", "PREROUTING"), ("nat", "PREROUTING"), ROUTE,
                ("mangle", "FORWARD"), ("filter", "FORWARD"), ("security", "FORWARD"),
                ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")],
    "OUTPUT": [("raw", "OUTPUT"), CT, ("mangle", "OUTPUT"), ("nat", "OUTPUT"), ("filter", "OUTPUT"),
               ("security", "OUTPUT"), ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")],
}
# Matches and targets that make the kernel load conntrack (and defragmentation) in the namespace.
CT_MATCHES = {"state", "conntrack", "connmark", "connlimit", "connbytes", "connlabel", "helper", "cluster"}
CT_TARGETS = {"CT", "NOTRACK", "CONNMARK", "CONNSECMARK", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP"}
SEES_IIF = ("PREROUTING", "INPUT", "FORWARD")
SEES_OIF = ("FORWARD", "OUTPUT", "POSTROUTING")

MARTIAN_V4 = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")]
MARTIAN_V6 = [ipaddress.ip_network(n) for n in ("::1/128", "ff00::/8")]


def uses_conntrack(rs: Ruleset) -> bool:
    """Whether loading this ruleset turns on conntrack (and so defragmentation) in the netns."""
    if "nat" in rs.tables:
        return True
    for table in rs.tables.values():
        for chain in table.chains.values():
            for r in chain.rules:
                if any(m.name in CT_MATCHES for m in r.matches):
                    return True
                if r.target is not None and r.target.name in CT_TARGETS:
                    return True
    return False


@dataclass
class Env:
    """Mutable per-packet state plus the memory stateful matches keep between packets."""

    pkt: Packet
    ctstate: str | None
    memory: dict[Any, Any]
    key: tuple = ()  # which rule/match is asking, for per-rule state such as -m limit
    hook: str = "INPUT"  # the built-in chain being walked, which decides what is known (iif, oif)
    mark: int = 0
    ctmark: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    verdict: str
    ctstate: str | None
    matched: list[dict] = field(default_factory=list)
    evaluated: int = 0
    trace: list[dict] = field(default_factory=list)
    reason: str | None = None

    def to_json(self) -> dict:
        out = {"verdict": self.verdict, "ctstate": self.ctstate, "matched": self.matched,
               "evaluated": self.evaluated, "trace": self.trace}
        if self.reason:
            out["reason"] = self.reason
        return out


class Unknown(Exception):
    """A match whose outcome stockade cannot decide for this packet."""


def _iface(rule_if, name: str | None) -> bool:
    if rule_if is None:
        return True
    pat = rule_if.name
    hit = name is not None and (name.startswith(pat[:-1]) if pat.endswith("+") else name == pat)
    return hit != rule_if.invert


def _martian(pkt: Packet) -> str | None:
    """Sources the routing code drops before INPUT/FORWARD (ip_route_input_slow, ip6_rcv_core)."""
    if pkt.iif == "lo":
        return None
    nets = MARTIAN_V4 if pkt.family is Family.IPV4 else MARTIAN_V6
    cls = ipaddress.IPv4Address if pkt.family is Family.IPV4 else ipaddress.IPv6Address
    src = cls(pkt.src)
    for net in nets:
        if src in net:
            return f"martian source {src} ({net}) is dropped by routing before {pkt.hook}"
    if pkt.family is Family.IPV4 and pkt.src == 0xFFFFFFFF:
        return "martian source 255.255.255.255 is dropped by routing"
    return None


class Simulator:
    """Simulates packets through one family's ruleset; keeps stateful-match memory across calls."""

    def __init__(self, rs: Ruleset):
        self.rs = rs
        self.conntrack = uses_conntrack(rs)
        self.memory: dict[Any, Any] = {}

    def run(self, pkt: Packet) -> Result:
        ctstate = pkt.state
        env = Env(pkt, ctstate, self.memory, mark=pkt.mark)
        res = Result("ACCEPT", None)
        if self.conntrack and pkt.fragment and pkt.state is None:
            res.verdict, res.reason = "DROP", ("fragment held for reassembly by nf_defrag (conntrack is in use): "
                                               "no table sees it, and a lone fragment is never completed")
            return res
        for step in PATHS[pkt.hook]:
            if step is CT:
                if self.conntrack and env.ctstate is None:
                    env.ctstate = first_packet_state(pkt)
                res.ctstate = env.ctstate
                continue
            if step is ROUTE:
                if (why := _martian(pkt)) is not None:
                    res.verdict, res.reason = "DROP", why
                    return res
                continue
            table, chain = step
            if table == "nat" and env.ctstate not in ("NEW",):
                continue  # nat sees only the first packet of a connection that conntrack tracks
            verdict = self._hook(table, chain, env, res)
            if verdict is not None and verdict != "ACCEPT":
                res.verdict = verdict
                res.ctstate = env.ctstate
                return res
        res.ctstate = env.ctstate
        return res

    def _hook(self, table: str, chain: str, env: Env, res: Result) -> str | None:
        """Walk a built-in chain; return its verdict (policy if nothing decided), None if absent."""
        tbl = self.rs.tables.get(table)
        if tbl is None or chain not in tbl.chains:
            return None
        stack: list[tuple[str, int]] = []
        cur, idx = chain, 0
        env.hook = chain
        while True:
            rules = tbl.chains[cur].rules
            if idx >= len(rules):
                if not stack:
                    return tbl.chains[chain].policy or "ACCEPT"
                cur, idx = stack.pop()
                continue
            rule = rules[idx]
            idx += 1
            res.evaluated += 1
            where = {"table": table, "chain": cur, "rule": idx}
            env.key = (table, cur, idx)
            try:
                hit = self._matches(rule, env)
            except Unknown as e:
                res.trace.append({**where, "origin": _origin(rule), "result": "unknown", "why": str(e)})
                res.reason = f"depends on {table}/{cur} rule {idx} ({_origin(rule)}): {e}"
                return "UNKNOWN"
            res.trace.append({**where, "origin": _origin(rule), "result": "match" if hit else "no match"})
            if not hit:
                continue
            res.matched.append(where)
            t = rule.target
            if t is None:
                continue
            if t.name == "RETURN":
                if not stack:
                    return tbl.chains[chain].policy or "ACCEPT"
                cur, idx = stack.pop()
                continue
            if t.name in ("ACCEPT", "DROP", "QUEUE"):
                return t.name
            if t.name in tbl.chains:
                if not t.goto:
                    stack.append((cur, idx))
                cur, idx = t.name, 0
                continue
            verdict = self._target(t, env)
            if verdict == "UNKNOWN":
                res.reason = f"target {t.name} of {table}/{cur} rule {idx} is not modelled"
                return verdict
            if verdict is not None:
                return verdict

    def _matches(self, rule: Rule, env: Env) -> bool:
        pkt = env.pkt
        if rule.src is not None and rule.src.addr.contains(pkt.src) == rule.src.invert:
            return False
        if rule.dst is not None and rule.dst.addr.contains(pkt.dst) == rule.dst.invert:
            return False
        if not _iface(rule.iif, pkt.iif if env.hook in SEES_IIF else None):
            return False
        if not _iface(rule.oif, pkt.oif if env.hook in SEES_OIF else None):
            return False
        if rule.proto is not None and (pkt.proto == rule.proto.number) == rule.proto.invert:
            return False
        if rule.fragment is not None and (pkt.frag_offset != 0) != rule.fragment:
            return False
        for n, m in enumerate(rule.matches):
            if isinstance(m.data, Opaque):
                raise Unknown(f"match `{m.name}` is not modelled")
            ext = REGISTRY.find("match", m.name, pkt.family)
            env.key = env.key[:3] + (n,)
            got = ext.holds(m.data, pkt, env)
            if got is None:
                raise Unknown(f"match `{m.name}` is not modelled for this packet")
            if not got:
                return False
        return True

    def _target(self, t, env: Env) -> str | None:
        if isinstance(t.data, Opaque):
            return "UNKNOWN"
        ext = REGISTRY.find("target", t.name, env.pkt.family)
        return ext.act(t.data, env.pkt, env)


def _origin(rule: Rule) -> str | None:
    return str(rule.origin) if rule.origin else None
