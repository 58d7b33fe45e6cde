"""Checks that read single rules: limits, logging, fragments, source ports.

Each looks at what a rule is written to do and what the kernel makes of it, not at
the order of rules (coverage.py does that).
"""
from __future__ import annotations

from ...extensions import REGISTRY
from ...model import Origin
from ...model.netfilter import FILTER_HOOKS as HOOKS
from ...model.ranges import contains as iv_has
from ...model.ranges import size as iv_size
from ...model.space import DPORT, KIND, PROTO, SPORT, SRC
from ..simulate import uses_conntrack
from .catalogue import Finding, finding
from .context import Analysis

RATE = ("limit", "hashlimit")


def _limit_text(m) -> str:
    d = m.data
    if m.name == "limit":
        per = {1: "sec", 60: "min", 3600: "hour", 86400: "day"}.get(d.per, f"{d.per}s")
        return f"{d.rate}/{per}, burst {d.burst}"
    return "a hashlimit"


def _filter_rules(a: Analysis):
    tbl = a.rs.tables.get("filter")
    for cname, chain in (tbl.chains.items() if tbl else ()):
        for n, rule in enumerate(chain.rules, 1):
            yield cname, n, rule, rule.origin or Origin(a.file, 1, 1)


def limited_accepts(a: Analysis) -> list[Finding]:
    """A rate-limited rule that ends in ACCEPT (directly, or by RETURN to an ACCEPT policy) for
    new TCP connections to any port: under the rate, a flood's first packets reach closed ports too."""
    out, done = [], set()
    for hook in HOOKS:
        for e in a.entries(hook):
            ref = e.flat.rule
            if ref is None or (ref.chain, ref.number) in done or e.action != "ACCEPT" or not e.decides:
                continue
            rule = a.rs.tables[ref.table].chains[ref.chain].rules[ref.number - 1]
            limits = [m for m in rule.matches if m.name == "limit" or (m.name == "hashlimit" and not m.data.above)]
            c = e.cons
            if not limits or DPORT in c.dims or not iv_has(c.dims.get(PROTO, ((0, 255),)), 6) \
                    or iv_size(c.dims.get(SRC, a.space.universe[SRC])) * 2 < iv_size(a.space.universe[SRC]):
                continue
            done.add((ref.chain, ref.number))
            how = "RETURN to the policy ACCEPT" if e.flat.policy else "ACCEPT"
            out.append(finding(
                "limited-accept-any-port",
                f"rate-limited {how} admits every port: up to {_limit_text(limits[0])} new TCP connections are "
                f"accepted whatever their destination port, closed ones included; a limit does not make a rule "
                f"safer, it only makes it match less often", rule.origin or a.anchor(hook),
                "limit by dropping what exceeds the rate (`-m hashlimit --hashlimit-above RATE --hashlimit-mode "
                "srcip -j DROP`) and accept only the service ports after it"))
    return out


def global_limits(a: Analysis) -> list[Finding]:
    """A -m limit bucket is one per rule, shared by every sender: on new connections (SYN, SSH,
    ping) one attacker exhausts it and everyone else's packets are the ones dropped."""
    out = []
    for cname, _n, rule, origin in _filter_rules(a):
        lim = next((m for m in rule.matches if m.name == "limit"), None)
        if lim is None or rule.target is None or REGISTRY.logs(rule.target.name, a.rs.family):
            continue
        c = a.space.constraint(rule, a.rs.sets)
        protos = c.dims.get(PROTO, ((0, 255),))
        kinds = c.dims.get(KIND, a.space.universe[KIND])
        new = iv_has(kinds, 0)
        dport = c.dims.get(DPORT)
        if iv_has(protos, 6) and dport == ((22, 22),) and new:
            what, sev = "SSH connections", None
        elif iv_has(protos, 6) and new and (KIND in c.dims or cname != "INPUT"):
            what, sev = "new TCP connections (SYN)", None
        elif protos in (((1, 1),), ((58, 58),)):
            what, sev = "ICMP (ping)", "info"
        else:
            continue
        out.append(finding(
            "global-limit",
            f"-m limit ({_limit_text(lim)}) is one budget for all senders of {what}: one attacker sending at "
            f"that rate uses it up and everyone else is refused", origin,
            "limit per source: `-m hashlimit --hashlimit-mode srcip` (or -m recent per source address)", sev))
    return out


def fragments(a: Analysis) -> list[Finding]:
    out = []
    ct = uses_conntrack(a.rs)
    for cname, _n, rule, origin in _filter_rules(a):
        if rule.fragment is not True:
            continue
        why = ("conntrack is in use (this ruleset has state matches), so the kernel reassembles fragments "
               "before the filter table" if ct else
               "IPv4 fragments are reassembled before INPUT" if cname == "INPUT" else None)
        if why is None:
            continue
        out.append(finding("fragment-rule-never-matches", f"-f never matches here: {why}", origin,
                           "delete the rule; reassembly already drops incomplete fragments"))
    return out


def unlimited_logs(a: Analysis) -> list[Finding]:
    out = []
    for _cname, _n, rule, origin in _filter_rules(a):
        if rule.target is not None and REGISTRY.logs(rule.target.name, a.rs.family) \
                and not any(m.name in RATE for m in rule.matches):
            out.append(finding("log-without-limit", f"-j {rule.target.name} without a rate limit: a flood of "
                               "packets becomes a flood of log lines (disk, and the kernel's printk budget)", origin,
                               "add `-m limit --limit 5/min --limit-burst 10` before the -j"))
    return out


def source_port_accepts(a: Analysis) -> list[Finding]:
    """ACCEPT keyed on the source port alone: the sender picks its source port, so this opens every
    destination port to whoever sends from that port."""
    out = []
    for _cname, _n, rule, origin in _filter_rules(a):
        if rule.target is None or rule.target.name != "ACCEPT":
            continue
        c = a.space.constraint(rule, a.rs.sets)
        if SPORT not in c.dims or DPORT in c.dims or not iv_has(c.dims.get(KIND, ((0, 0),)), 0) \
                or (SRC in c.dims and iv_size(c.dims[SRC]) * 2 < iv_size(a.space.universe[SRC])):
            continue
        ports = ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in c.dims[SPORT])
        out.append(finding("source-port-accept", f"accepts new packets to every destination port from source "
                           f"port {ports}: any sender can choose that source port", origin,
                           "match the service's destination port, or accept replies with "
                           "`-m conntrack --ctstate ESTABLISHED,RELATED` instead"))
    return out
