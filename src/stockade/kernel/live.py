"""Reading the live ruleset: stockade's part of it (and, for status, everything else too), and the whole of it
for the reading commands' `--live`."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..model import TABLES, Family, Ruleset
from ..model.nftables import NftRuleset
from ..parse.nft import read_nft_json
from ..parse.save import read_save
from .backend import TABLE, available, iptables_in_use, tool
from .host import Host, KernelError
from .part import OwnedPart, nft_canonical, own_ipsets, own_iptables

_INCOMPATIBLE = re.compile(r"^# Table `(\w+)' (?:is incompatible|contains incompatible)", re.MULTILINE)


def nft_table(host: Host, stateless: bool = True) -> str:
    """`table inet stockade { ... }` as nft lists it, "" when absent. Stateless: without counter
    values and without the entries rate-limit meters learn at run time (they are state, not rules), and
    each set's elements on one line, in one order (part.nft_canonical)."""
    argv = ["nft", *(["-s"] if stateless else []), "list", "table", "inet", TABLE]
    proc = host.run(argv, check=False)
    if proc.returncode != 0:
        return ""
    return nft_canonical(drop_dynamic_elements(proc.stdout)) if stateless else proc.stdout


def drop_dynamic_elements(text: str) -> str:
    out, in_dynamic, skipping = [], False, False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("set ") and s.endswith("{"):
            in_dynamic = False
        # meters and ban sets (nft 1.0.6 lists a set's default timeout, not its timeout flag): state
        if s.startswith("flags ") and ("dynamic" in s or "timeout" in s) or s.startswith("timeout "):
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



IPTABLES_NFT_TABLES = {f"table {fam} {t}" for fam in ("ip", "ip6") for t in TABLES}  # `nft list tables` lines


@dataclass
class LiveRuleset:
    """The whole ruleset a kernel holds now, as its own tools print it."""

    backend: str  # the iptables variant read: iptables-nft or iptables-legacy
    save: dict[Family, str]  # iptables-save / ip6tables-save output
    ipsets: str | None  # `ipset save` output; None where ipset does not work
    nft: str = ""  # `nft list ruleset`, when nftables tables other than iptables-nft's exist


def read_live(host: Host, families: list[Family]) -> LiveRuleset:
    """Read everything that filters packets in the host's namespace. Rules in both iptables variants
    (the kernel runs both) or in nftables tables of their own are more than one iptables ruleset:
    the latter come back in `nft`, for the caller to read or refuse; KernelError for the former."""
    if host.netns and not (Path("/run/netns") / host.netns).exists():
        raise KernelError(f"there is no network namespace named {host.netns} (see `ip netns list`)")
    have = available(host)
    nft = ""
    if have["nftables"]:
        tables = host.run(["nft", "list", "tables"]).stdout.splitlines()
        if any(t.strip() and t.strip() not in IPTABLES_NFT_TABLES for t in tables):
            nft = host.run(["nft", "list", "ruleset"]).stdout
    variants = [b for b in ("iptables-nft", "iptables-legacy") if have[b]]
    if not variants:
        raise KernelError(f"neither iptables-nft-save nor iptables-legacy-save works in {host.label}")
    used = [b for b in variants if any(iptables_in_use(host, b))]
    if len(used) > 1:
        raise KernelError(f"{host.label} has rules in both iptables-nft and iptables-legacy; stockade reads one "
                          "iptables ruleset (see `iptables-legacy-save` and `iptables-nft-save`)")
    backend = (used or variants)[0]
    texts = {}
    for fam in families:
        text = save_text(host, backend, int(fam))
        if "is incompatible, use 'nft' tool" in text:  # a table iptables-nft cannot print: nftables content
            nft = nft or host.run(["nft", "list", "ruleset"]).stdout
        texts[fam] = text
    try:
        sets = host.run(["ipset", "save"]).stdout
    except KernelError:  # no ipset tool or no ip_set module: -m set rules stay undecided
        sets = None
    return LiveRuleset(backend, texts, sets, nft)


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
