"""`stockade audit`: what an imported script or dump really does to real packets, in the lab.

The ruleset is read as stockade reads it (parse.read: a script runs only the commands that would
really run), rendered as iptables-save and loaded into the lab. Addresses outside the
documentation ranges are mapped into them, in the rendered text and so for the kernel and the
simulator alike: every /32 the ruleset names as a destination in INPUT (or a chain INPUT
reaches) is one of the server's own and becomes 203.0.113.10, .11, ... in order of first
appearance; every other /32 becomes 198.51.100.100, .101, ... Wider networks are kept and probed
from a spoofed address inside them. The mapping is listed in the report's notes.
"""
from __future__ import annotations

import ipaddress
import re

from ..model import Family
from ..parse.read import read
from ..parse.save import read_save
from ..render.save import render_save
from .hosts import documentation
from .probes import input_chains
from .report import Report
from .run import Progress, run_rulesets

_HOST = re.compile(r"(?<=[ ])(-[sd]) (\d+\.\d+\.\d+\.\d+)/32(?= )")


def map_addresses(text: str, own: list[str]) -> tuple[str, dict[str, str]]:
    """The save text with every non-documentation /32 mapped (see the module docstring)."""
    mapping: dict[str, str] = {a: f"203.0.113.{10 + i}" for i, a in enumerate(own)}
    others = [m.group(2) for m in _HOST.finditer(text) if m.group(2) not in mapping and not documentation(m.group(2))]
    for a in dict.fromkeys(others):
        mapping[a] = f"198.51.100.{100 + len([x for x in mapping.values() if x.startswith('198.51.100.')])}"
    return _HOST.sub(lambda m: f"{m.group(1)} {mapping.get(m.group(2), m.group(2))}/32", text), mapping


def run_audit(path: str, text: str, progress: Progress | None = None,
              families: list[Family] | None = None) -> tuple[Report, list]:
    """Import, map, prove; returns the report and the import's diagnostics."""
    b = read(text, path)
    rulesets, servers, notes = {}, {}, []
    for fam, rs in b.rulesets.items():
        own = []
        if fam is Family.IPV4:
            for chain in input_chains(rs):
                for r in chain.rules:
                    if r.dst is not None and not r.dst.invert and r.dst.addr.mask == 0xFFFFFFFF:
                        a = str(ipaddress.ip_network(f"{r.dst.addr}").network_address)
                        if not documentation(a) and a not in own:
                            own.append(a)
        saved, mapping = map_addresses(render_save(rs), own) if fam is Family.IPV4 else (render_save(rs), {})
        lab = read_save(saved, f"{path} (lab addresses)", fam)
        rulesets[fam] = lab.rulesets[fam]
        if own:
            servers[fam] = [mapping[a] for a in own]
        notes += [f"address {a} is {m} in the lab" for a, m in mapping.items()]
    for fam in Family:
        if fam not in rulesets:
            notes.append(f"the ruleset has no IPv{int(fam)} rules: the lab runs IPv{int(fam)} with none (all open)")
    report = run_rulesets(path, rulesets, families or list(Family), set(), servers, progress)
    report.notes += notes
    return report, b.diagnostics
