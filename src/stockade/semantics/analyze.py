"""Service matrices and open ports of one chain, as JSON-ready data (`stockade analyze` prints them).

Defaults suit a host firewall: filter/INPUT, new connections from source port 40000,
martian sources dropped as the kernel drops them, and as services the TCP/UDP ports
the chain names (the first MAX_DEFAULT_SERVICES, in rule order) plus tcp/22, or a
standard set (tcp/22, tcp/80, tcp/443, tcp/25, udp/53) if it names none.
`--chain FORWARD --sport 10000 --chain-only` reads a chain as fffuu does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..extensions.ct import untracks
from ..heap import collector_paused
from ..model import Family, Ruleset
from ..model.netfilter import PORT_PROTOS
from ..model.ranges import Ranges
from .flatten import Flat, flatten
from .ipassmt import IpAssmt
from .matrix import Matrix, parse_service, service_matrix, setting
from .ports import open_ports

MAX_DEFAULT_SERVICES = 12
STANDARD = ("tcp/22", "tcp/80", "tcp/443", "tcp/25", "udp/53")


@dataclass
class Options:
    table: str = "filter"
    chain: str = "INPUT"
    services: list[str] = field(default_factory=list)  # empty: the defaults above
    sport: int | None = None
    state: str = "NEW"
    routing: bool = True
    ports: bool | None = None  # None: only for INPUT


def default_services(flat: Flat) -> list[str]:
    """Single destination ports the chain's rules name, in rule order, plus ssh."""
    seen: list[str] = []
    for r in flat.rules:
        proto = next((lit.value for lit in r.conds if lit.kind == "proto" and not lit.negated), None)
        for lit in r.conds:
            if lit.kind != "match" or lit.negated or proto not in (6, 17):
                continue
            name, d = lit.value.name, lit.value.data
            ports: list[int] = []
            if name in ("tcp", "udp") and d.dport is not None and not d.dport.invert and d.dport.lo == d.dport.hi:
                ports = [d.dport.lo]
            elif name == "multiport" and d.side == "dports" and not d.invert:
                ports = [lo for lo, hi in d.ranges if lo == hi]
            for p in ports:
                label = f"{'tcp' if proto == 6 else 'udp'}/{p}"
                if label not in seen:
                    seen.append(label)
    if not seen:
        return list(STANDARD)
    chosen = seen[:MAX_DEFAULT_SERVICES]
    return chosen if "tcp/22" in chosen else ["tcp/22"] + chosen[:MAX_DEFAULT_SERVICES - 1]


def analyze_ruleset(rs: Ruleset, opts: Options, ipassmt: IpAssmt | None = None,
                    routes: dict[str, Ranges] | None = None) -> dict:
    """The JSON-ready result for one family: service_matrix, open_ports, assumptions, undecided rules."""
    with collector_paused():
        return _analyze(rs, opts, ipassmt, routes)


def _analyze(rs: Ruleset, opts: Options, ipassmt: IpAssmt | None, routes: dict[str, Ranges] | None) -> dict:
    flat = flatten(rs, opts.table, opts.chain)
    s = setting(flat, ipassmt, opts.routing, routes=routes)
    labels = opts.services or default_services(flat)
    services = [parse_service(label, rs.family, opts.sport, opts.state) for label in labels]
    matrices: dict[str, Matrix] = {sv.label: service_matrix(flat, sv, s=s) for sv in services}
    sport = next((sv.sport for sv in services if sv.proto in PORT_PROTOS), None) or (opts.sport or 40000)
    s.assumptions.append(f"new connections (state {opts.state}); TCP ones open with a SYN from source port {sport}")
    if any(t.chains[c].rules for name, t in rs.tables.items() if name != opts.table for c in t.chains):
        s.assumptions.append(f"only {opts.table}/{opts.chain} is analysed; rules in other tables are not")
    if untracking := _untracking(rs, opts.chain):
        s.assumptions.append(f"packets raw untracks ({', '.join(untracking)}) are taken in state {opts.state}, "
                             "but filter sees them UNTRACKED: see them with --state UNTRACKED, or `stockade explain`")
    out: dict = {"service_matrix": {label: m.to_json() for label, m in matrices.items()}}
    if opts.ports if opts.ports is not None else opts.chain == "INPUT":
        out["open_ports"] = open_ports(flat, s, sport, opts.state)
    out["family"] = int(rs.family)
    out["chain"] = f"{opts.table}/{opts.chain}"
    out["flat_rules"] = len(flat.rules)
    out["services_chosen"] = "given" if opts.services else "default"
    out["assumptions"] = s.assumptions
    out["undecided_rules"] = _rule_texts(rs, matrices)
    return out


def _untracking(rs: Ruleset, chain: str) -> list[str]:
    """Where raw's rules on the chain's path untrack packets (NOTRACK, CT --notrack): up to three."""
    raw = rs.tables.get("raw")
    path = raw.chains.get("OUTPUT" if chain == "OUTPUT" else "PREROUTING") if raw is not None else None
    rules = path.rules if path is not None else []
    hits = [str(r.origin) if r.origin else f"raw {path.name} rule {n}" for n, r in enumerate(rules, 1)
            if r.target is not None and untracks(r.target.data)]
    return hits[:3] + (["..."] if len(hits) > 3 else [])


def _rule_texts(rs: Ruleset, matrices: dict[str, Matrix]) -> dict[str, str]:
    """Each rule an undecided edge depends on, as iptables-save writes it."""
    from ..render.save import rule_line

    out = {}
    for m in matrices.values():
        for refs in m.undecided.values():
            for ref in refs:
                rule = rs.tables[ref.table].chains[ref.chain].rules[ref.number - 1]
                out[str(ref)] = rule_line(ref.chain, rule, rs.family)
    return out


def families(rulesets: dict[Family, Ruleset], family: Family | None) -> list[Ruleset]:
    """The rulesets to analyse: the family asked for, else every family that has rules (IPv4 first)."""
    chosen = [rs for f, rs in sorted(rulesets.items()) if family is None or f is family]
    with_rules = [rs for rs in chosen if any(c.rules for t in rs.tables.values() for c in t.chains.values())]
    return with_rules or chosen[:1]
