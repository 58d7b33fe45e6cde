"""`stockade audit`: what an imported script or dump really does to real packets, in the lab.

The ruleset is read as stockade reads it (parse.read: a script runs only the commands that would
really run), rendered as iptables-save and loaded into the lab. Addresses outside the
documentation ranges are mapped into them, in the rendered text and so for the kernel and the
simulator alike: every /32 the ruleset names as a destination in INPUT (or a chain INPUT
reaches) is one of the server's own and becomes 203.0.113.10, .11, ... in order of first
appearance; every other /32 becomes 198.51.100.100, .101, ... Wider networks are kept and probed
from a spoofed address inside them. The mapping is listed in the report's notes.

The ports each source found open are then checked against the analyser's open-ports view
(semantics.ports, over the same lab-mapped ruleset): one `ports-view` row per source, a MISMATCH
where the view calls a probed service open that the kernel closed, or closed one the kernel let
in. `maybe` (the view cannot decide, e.g. a rate limit) agrees with either. The view's "open"
means open to at least one of the server's addresses; the lab probes the first.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

from ..extensions.opaque import loadable, unread_rules
from ..model import Family, Origin, Ruleset
from ..model.diagnostics import DiagnosedError, Diagnostic
from ..parse.command import Builder
from ..parse.save import read_save
from ..render.save import render_save
from .hosts import documentation
from .probes import OUTSIDER, SERVER, input_chains
from .report import Report, Row
from .run import Progress, run_rulesets

_HOST = re.compile(r"(?<=[ ])(-[sd]) (\d+\.\d+\.\d+\.\d+)/32(?= )")
_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")
# Where mapped addresses go: the server's own, then every other host; probe addresses stay out of both.
OWN_POOL = [f"203.0.113.{n}" for n in range(10, 255)]
OTHER_POOL = [f"{net}.{n}" for net in ("198.51.100", "192.0.2") for n in range(100, 255)]


class Unmappable(DiagnosedError):
    """The ruleset names more hosts than the lab has documentation addresses for; `diagnostic` says where."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__([diagnostic])
        self.diagnostic = diagnostic


def map_addresses(text: str, own: list[str]) -> tuple[str, dict[str, str]]:
    """The save text with every non-documentation /32 mapped (see the module docstring), each to a
    documentation address neither the text nor a probe uses; ValueError(address) for the first that
    finds its pool exhausted."""
    taken = set(_ADDRESS.findall(text)) | {a for fam in (OUTSIDER, SERVER) for a in fam[Family.IPV4]} - {OWN_POOL[0]}
    own_free, other_free = ([a for a in pool if a not in taken] for pool in (OWN_POOL, OTHER_POOL))
    mapping: dict[str, str] = {}
    others = [m.group(2) for m in _HOST.finditer(text) if m.group(2) not in own and not documentation(m.group(2))]
    for addresses, free in ((own, own_free), (list(dict.fromkeys(others)), other_free)):
        if len(addresses) > len(free):
            raise ValueError(addresses[len(free)])
        mapping.update(zip(addresses, free))
    return _HOST.sub(lambda m: f"{m.group(1)} {mapping.get(m.group(2), m.group(2))}/32", text), mapping


def _host(match) -> str | None:
    """The IPv4 address of a -s/-d match naming one host, else None."""
    if match is None or match.addr.mask != 0xFFFFFFFF:
        return None
    return str(ipaddress.ip_network(f"{match.addr}").network_address)


def _rules(rs: Ruleset) -> int:
    return sum(len(c.rules) for t in rs.tables.values() for c in t.chains.values())


def lab_rulesets(b, path: str) -> tuple[dict[Family, Ruleset], dict[Family, list[str]], list[str]]:
    """The rulesets read into `b` as the lab loads them (addresses mapped), the server's own addresses
    per family and the notes saying what was mapped; Unmappable when the lab runs out of addresses.
    Every rule of the import is in the result: a rule the mapped text lost would be a silent gap."""
    rulesets, servers, notes = {}, {}, []
    for fam, rs in b.rulesets.items():
        own = []
        if fam is Family.IPV4:
            for chain in input_chains(rs):
                for r in chain.rules:
                    a = _host(r.dst)
                    if a is not None and not r.dst.invert and not documentation(a) and a not in own:
                        own.append(a)
        try:
            saved, mapping = map_addresses(render_save(rs), own) if fam is Family.IPV4 else (render_save(rs), {})
        except ValueError as e:
            where = next((r.origin for t in rs.tables.values() for c in t.chains.values() for r in c.rules
                          if r.origin and str(e) in (_host(r.src), _host(r.dst))),
                         Origin(path, 1))
            raise Unmappable(Diagnostic(
                "error", "lab-addresses", f"the lab has no documentation address left for {e}: the ruleset names "
                f"more than {len(OWN_POOL)} server or {len(OTHER_POOL)} other host addresses", where,
                "audit a part of the ruleset, or group the hosts into networks")) from None
        lab = read_save(saved, f"{path} (lab addresses)", fam)
        rulesets[fam] = lab.rulesets[fam]
        rulesets[fam].sets = dict(rs.sets)  # the sets its -m set rules look up (set members are not mapped)
        if _rules(rulesets[fam]) != _rules(rs):
            raise Unmappable(Diagnostic("error", "lab-addresses", "the lab's copy of the ruleset lost rules "
                                        f"({_rules(rs)} read, {_rules(rulesets[fam])} in the lab)", Origin(path, 1)))
        if own:
            servers[fam] = [mapping[a] for a in own]
        notes += [f"address {a} is {m} in the lab" for a, m in mapping.items()]
    return rulesets, servers, notes


# Places where a script runs what stockade cannot look into (another file, an unknown program): the rules
# they add are missing from the import (or stand-ins the kernel cannot load), so probes would report
# closed what the script opens.
HIDDEN_RULES = ("unresolved-source", "unknown-command")


class Incomplete(DiagnosedError):
    """The import misses rules the script may add; auditing what is left would mislead."""


def run_audit(path: str, b: Builder, progress: Progress | None = None,
              families: list[Family] | None = None) -> tuple[Report, list]:
    """Map and prove the rulesets an import read into `b`; returns the report and the import's diagnostics
    (Unmappable: see lab_rulesets)."""
    hidden = [Diagnostic("error", d.code, f"the audit needs every rule: {d.message}", d.origin, d.hint)
              for d in b.diagnostics if d.code in HIDDEN_RULES]
    if b.whole:  # iptables-restore loads none of a file it refuses a line of
        hidden += [Diagnostic("error", d.code, f"the audit needs every rule: {d.message}", d.origin,
                              "iptables-restore refuses the whole file at this line, so a kernel would load none of it")
                   for d in b.diagnostics if d.severity == "error"]
    seen = {d.origin.line for d in hidden}
    b = replace(b, rulesets=b.loaded())  # as the kernel holds it: a line it refuses is no rule (its error stays)
    for rs in b.rulesets.values():  # a rule stockade could not read is no rule the lab can load
        for _t, _c, _n, rule, parts in unread_rules(rs):
            if rule.origin is not None and rule.origin.line not in seen and not loadable(rule):
                seen.add(rule.origin.line)
                hidden.append(Diagnostic("error", "unread-rule", f"the audit needs every rule: {parts[0].why}",
                                         rule.origin, "the lab loads the rules into a real kernel, which needs "
                                         "them as they are"))
    if hidden:
        raise Incomplete(hidden)
    rulesets, servers, notes = lab_rulesets(b, path)
    for fam in families or Family:
        if fam not in rulesets:
            notes.append(f"the ruleset has no IPv{int(fam)} rules: the lab runs IPv{int(fam)} with none (all open)")
    report = run_rulesets(path, rulesets, families or list(Family), set(), servers, progress)
    report.notes += notes
    cross_check(report, rulesets)
    return report, b.diagnostics


def _view_status(entry: dict, svc: str, echo: str) -> str:
    """open / maybe / closed for `22/tcp` or `53/udp` in one open_ports entry, or for `icmp` under the
    view's label `echo` (the echo request's type, or `other` when no rule names it)."""
    port, _, proto = svc.partition("/")
    for kind in ("open", "maybe"):
        if not proto:
            if echo in entry[kind].get("icmp", []):
                return kind
            continue
        for span in entry[kind].get(proto, []):
            lo, _, hi = span.partition("-")
            if int(lo) <= int(port) <= int(hi or lo):
                return kind
    return "closed"


def cross_check(report: Report, rulesets: dict[Family, Ruleset]) -> None:
    """A `ports-view` row per probed source: the services its SYN, UDP and echo probes found open
    against the open-ports view's status for that source (see the module docstring)."""
    from ..model.ranges import parse_range
    from ..semantics.flatten import FlatError, flatten
    from ..semantics.matrix import setting
    from ..semantics.ports import open_ports
    from .probes import SPORTS

    for fam in Family:
        rows = [r for r in report.rows
                if r.family == int(fam) and r.probe in ("syn", "udp", "echo") and r.status == "ok"]
        if not rows:
            continue
        rs = rulesets.get(fam)
        if rs is None:
            report.notes.append(f"IPv{int(fam)}: no rules, so no open-ports view to cross-check against")
            continue
        try:
            flat = flatten(rs)
        except FlatError as e:
            report.notes.append(f"IPv{int(fam)}: no open-ports view to cross-check against ({e})")
            continue
        view = open_ports(flat, setting(flat, None), SPORTS[0])
        v = int(fam)
        echo = str(8 if fam is Family.IPV4 else 128)
        if not any(lit.kind == "match" and lit.value.name in ("icmp", "icmp6", "icmpv6", "ipv6-icmp")
                   and lit.value.data.type == int(echo) for r in flat.rules for lit in r.conds):
            echo = "other"
        for src, addr in dict.fromkeys((r.source, r.address) for r in rows):
            a = parse_range(v, addr)[0]
            entry = next(e for e in view if any(lo <= a <= hi for lo, hi in (parse_range(v, x) for x in e["sources"])))
            seen, said, wrong = [], {"open": [], "maybe": []}, []
            for r in rows:
                if r.address != addr:
                    continue
                opened = r.observed.split()[0] == "ACCEPT"
                status = _view_status(entry, r.service, echo)
                if opened:
                    seen.append(r.service)
                if status in said:
                    said[status].append(r.service)
                if status != "maybe" and (status == "open") != opened:
                    wrong.append(f"{r.service} {'open' if opened else 'closed'} in the kernel, {status} in the view")
            shown = "open: " + (" ".join(said["open"]) or "none") + ("; maybe: " + " ".join(said["maybe"])
                                                                     if said["maybe"] else "")
            row = report.add(Row(v, src, addr, "*", "ports-view", "open: " + (" ".join(seen) or "none"), shown,
                                 note="; ".join(wrong) or "the open-ports view agrees (maybe: either)"))
            row.status = "MISMATCH" if wrong else "ok"
