"""Reading stockade's part of the live ruleset (and, for status, everything else too)."""
from __future__ import annotations

import re

from ..model import Family, Ruleset
from ..model.nftables import NftRuleset
from ..parse.nft import read_nft_json
from ..parse.save import read_save
from .backend import TABLE, tool
from .host import Host
from .part import OwnedPart, own_ipsets, own_iptables

_INCOMPATIBLE = re.compile(r"^# Table `(\w+)' (?:is incompatible|contains incompatible)", re.MULTILINE)


def nft_table(host: Host, stateless: bool = True) -> str:
    """`table inet stockade { ... }` as nft lists it, "" when absent. Stateless: without counter
    values and without the entries rate-limit meters learn at run time (they are state, not rules)."""
    argv = ["nft", *(["-s"] if stateless else []), "list", "table", "inet", TABLE]
    proc = host.run(argv, check=False)
    if proc.returncode != 0:
        return ""
    return drop_dynamic_elements(proc.stdout) if stateless else proc.stdout


def drop_dynamic_elements(text: str) -> str:
    out, in_dynamic, skipping = [], False, False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("set ") and s.endswith("{"):
            in_dynamic = False
        if s.startswith("flags ") and "dynamic" in s:
            in_dynamic = True
        if in_dynamic and s.startswith("elements = {"):
            skipping = not s.endswith("}")
            continue
        if skipping:
            skipping = not s.endswith("}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def save_text(host: Host, backend: str, family: int, counters: bool = False) -> str:
    return host.run([tool(backend, family, "save"), *(["-c"] if counters else [])]).stdout


def ipset_save(host: Host) -> str:
    return host.run(["ipset", "save"]).stdout


def read_part(host: Host, backend: str) -> OwnedPart:
    if backend == "nftables":
        return OwnedPart(backend, {"nft": nft_table(host)})
    v4, v6 = own_iptables(save_text(host, backend, 4)), own_iptables(save_text(host, backend, 6))
    return OwnedPart(backend, {"4": v4, "6": v6, "sets": own_ipsets(ipset_save(host), v4 + v6)})



def whole_ruleset(host: Host) -> tuple[NftRuleset, dict[Family, Ruleset]]:
    """Everything netfilter runs, for semantics/nft.py to compose: the iptables-nft tables as
    iptables-nft-save prints them (it reads their xt matches exactly where nft's listing cannot), and every
    other table from `nft -j list ruleset`. A table iptables-nft-save calls incompatible (a native
    `table ip filter` with its own chains) stays native; the built-in chains iptables-nft-save prints
    for a table that lacks them in the kernel are left out."""
    nft = read_nft_json(host.run(["nft", "-j", "list", "ruleset"]).stdout, f"nft -j list ruleset ({host.label})")
    iptables, keep = {}, set()
    for fam in Family:
        text = save_text(host, "iptables-nft", int(fam))
        family = "ip" if fam is Family.IPV4 else "ip6"
        keep |= {(family, name) for name in _INCOMPATIBLE.findall(text)}
        rs = read_save(text, f"{tool('iptables-nft', int(fam), 'save')} ({host.label})", fam).rulesets[fam]
        for name in list(rs.tables):
            listed = nft.table(family, name)
            if (family, name) in keep or listed is None:
                del rs.tables[name]
                continue
            for chain in [c for c, ch in rs.tables[name].chains.items() if ch.builtin and c not in listed.chains]:
                del rs.tables[name].chains[chain]
        iptables[fam] = rs
    return nft.native(frozenset(keep)), iptables
