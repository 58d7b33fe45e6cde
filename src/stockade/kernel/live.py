"""Reading stockade's part of the live ruleset (and, for status, everything else too)."""
from __future__ import annotations

from ..model import Family, Ruleset
from ..model.nftables import NftRuleset
from ..parse.nft import read_nft_json
from ..parse.save import read_save
from .backend import TABLE, tool
from .host import Host
from .part import OwnedPart, own_ipsets, own_iptables


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
    """Everything netfilter runs, for semantics/nft.py to compose: the native nft tables (`nft -j list
    ruleset`, iptables-nft's tables left out) and the iptables-nft tables as iptables-nft-save prints them,
    which reads their xt matches exactly where nft's listing cannot."""
    nft = read_nft_json(host.run(["nft", "-j", "list", "ruleset"]).stdout, f"nft -j list ruleset ({host.label})")
    iptables = {}
    for fam in Family:
        text = save_text(host, "iptables-nft", int(fam))
        b = read_save(text, f"{tool('iptables-nft', int(fam), 'save')} ({host.label})", fam)
        iptables[fam] = b.rulesets[fam]
    return nft.native(), iptables
