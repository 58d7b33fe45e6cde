"""Findings: what is wrong with what a ruleset does, each with a stable id and a fix.

`check(rulesets, file, ...)` runs every check on every family; `lint(builder, text, file, ...)`
adds the findings of the script as its author meant it (intended.py) that the loaded
rules do not already show. Catalogue: catalogue.py.
"""
from __future__ import annotations

import ipaddress
from dataclasses import replace

from ...heap import collector_paused
from ...model import Family, Ruleset
from ...model.netfilter import FILTER_HOOKS as HOOKS
from ...parse.command import Builder
from .access import (
    block_after_accept,
    default_open,
    established,
    filters,
    loopback,
    reject_drop_mixed,
    ssh,
)
from .catalogue import KINDS, Finding, finding
from .context import Analysis
from .coverage import after_match_all, coverage, empty_jumps
from .intended import PLACEHOLDER_ADDRESS, repaired
from .rules import (
    fragments,
    global_limits,
    limited_accepts,
    source_port_accepts,
    unlimited_logs,
)

RULE_CHECKS = (after_match_all, empty_jumps, global_limits, fragments, unlimited_logs, source_port_accepts)
CHECKS = RULE_CHECKS + (coverage, limited_accepts, block_after_accept, default_open, established, loopback,
                        reject_drop_mixed)

__all__ = ["KINDS", "Finding", "check", "lint"]


def check(rulesets: dict[Family, Ruleset], file: str, *, script: bool = False,
          admins: list[str] = ()) -> list[Finding]:
    """Every finding for `rulesets`; `script` says they come from a shell script (which names
    its families by running iptables/ip6tables), `admins` the addresses that must reach SSH."""
    with collector_paused():
        return _check(rulesets, file, script=script, admins=admins)


def _check(rulesets: dict[Family, Ruleset], file: str, *, script: bool, admins: list[str]) -> list[Finding]:
    per_family: dict[Family, list[Finding]] = {}
    locked: dict[Family, bool] = {}
    for fam, rs in sorted(rulesets.items()):
        a = Analysis(rs, file)
        for hook in HOOKS:
            a.entries(hook)
        if a.errors:  # a loop or a missing chain: the kernel refuses the ruleset; only single rules are read
            found = [finding("unloadable", e.diagnostic.message, e.diagnostic.origin, e.diagnostic.hint or
                             "fix the jump the message names") for e in a.errors[:1]]
            found += [f for fn in RULE_CHECKS for f in fn(a)]
        else:
            found = [f for fn in CHECKS for f in fn(a)]
            addrs = [int(ipaddress.ip_address(x)) for x in admins if ipaddress.ip_address(x).version == int(fam)]
            found += ssh(a, addrs)
            locked[fam] = filters(a)
        per_family[fam] = found
    # a finding true of every family is said once; one family's own is prefixed with its command
    common = set.intersection(*map(set, per_family.values())) if len(per_family) > 1 else set()
    out = [f if f in common or len(per_family) == 1 else replace(f, message=f"{fam.cmd}: {f.message}")
           for fam, found in per_family.items() for f in found]
    if locked.get(Family.IPV4) and (Family.IPV6 not in rulesets and script):
        a = Analysis(rulesets[Family.IPV4], file)
        out.append(finding("ipv6-open", "IPv4 is filtered but IPv6 is not: the script never runs ip6tables, so "
                           "every service is open to anyone over IPv6", a.anchor("INPUT"),
                           "add the same rules with ip6tables (ICMPv6 neighbour discovery allowed), or use a "
                           "stockade policy, which compiles both families"))
    elif locked.get(Family.IPV4) and locked.get(Family.IPV6) is False:
        a = Analysis(rulesets[Family.IPV6], file)
        out.append(finding("ipv6-open", "IPv4 is filtered but IPv6 accepts every new connection",
                           a.anchor("INPUT"), "give ip6tables the same INPUT rules and policy as iptables"))
    return sorted(set(out), key=lambda f: (f.origin.file, f.origin.line, f.origin.col, f.id, f.message))


def lint(b: Builder, text: str, file: str, *, script: bool, admins: list[str] = ()) -> list[Finding]:
    """Findings for the rules as loaded, then those that only the repaired script shows."""
    now = check(b.rulesets, file, script=script, admins=admins)
    if b.unknowns:  # a command stockade cannot look into may have run ip6tables
        lines = ", ".join(sorted({f"line {o.line}" for _, o, _ in b.unknowns}))
        now = [replace(f, message=f"{f.message} (unless what {lines} runs does)") if f.name == "ipv6-open"
               else f for f in now]
    fixed = repaired(text, file, b.diagnostics)
    if fixed is None:
        return now
    have = {(f.id, f.origin) for f in now}
    later = []
    note = (f" (placeholders read as {PLACEHOLDER_ADDRESS})" if fixed.placeholders else "")
    for f in check(fixed.builder.rulesets, file, script=script, admins=admins):
        origin = fixed.origin(f.origin)
        if (f.id, origin) not in have:
            later.append(replace(f, origin=origin,
                                 message=f"once the errors above are fixed{note}: {f.message}"))
    return now + sorted(later, key=lambda f: (f.origin.line, f.origin.col, f.id))
