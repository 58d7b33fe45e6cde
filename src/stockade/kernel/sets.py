"""Changing the members of stockade's live sets in place: only the members that differ are added and
deleted, the rules and every other member are left alone, and no reload happens.

A full reload of a million-entry set costs seconds (ipset restore, nft -f); a feed refresh or a re-applied
policy typically changes a few thousand members, which cost milliseconds this way.

iptables: one `ipset restore` holding the `add` lines, then the `del` lines, on the set the live rules
use (its generation suffix, part.py). ipset applies the file line by line, so the adds come first: a
member of the new list is never missing once added, and a member of both lists is never touched, so
the set is never empty on the way.
nftables: one `nft -f` file of `add element` and `delete element` commands, which the kernel commits
as one transaction. Interval sets keep auto-merged ranges (nft joins overlapping and adjacent
networks), so their diff is taken between the merged ranges of the old and the new list. nft 1.0.6
deletes from an interval set in time proportional to the set per element (20,000 ranges: about 20 s
for 5,000 deletes), so an interval set that loses members is flushed and refilled instead, inside the
same transaction: packets see the old members until the commit, then the new ones. (nft also reads
every interval set of the table before any element command: with 250,000 ranges that costs seconds.)
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..model import Family
from .backend import TABLE
from .host import Host, KernelError

CHUNK = 2000  # elements per nft command line (nft reads one command at a time)


@dataclass
class SetChange:
    """One logical set (`stk-NAME-ip4`) and what changes in it."""
    name: str
    add: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    interval: bool = False  # nft: an interval set, whose members are merged ranges
    full: list[str] = field(default_factory=list)  # nft interval sets: every member after the change

    def __len__(self) -> int:
        return len(self.add) + len(self.delete)


def change(name: str, old: Iterable[str], new: Iterable[str], backend: str) -> SetChange:
    """The change turning a set holding `old` into one holding `new` (canonical members, as the
    compiler writes them: addresses, and networks without host bits)."""
    interval = backend == "nftables" and "-net" in name
    if interval:
        old, new = merged(old), merged(new)
    before, after = set(old), set(new)
    if name.endswith("6"):  # one IPv6 address has many spellings (ipset writes ::ffff:0.0.0.0, Python ::ffff:0:0)
        before, after = ({str(ipaddress.ip_interface(m).network if "/" in m else ipaddress.ip_address(m))
                          for m in s} if not interval else s for s in (before, after))
    host = "/128" if name.endswith("6") else "/32"
    if backend != "nftables" and "-net" in name:  # ipset lists a host network of a hash:net set as its address
        before, after = ({m.removesuffix(host) for m in s} if f"{host}\n" in "\n".join(s) + "\n" else s
                         for s in (before, after))
    return SetChange(name, sorted(after - before), sorted(before - after), interval, list(new) if interval else [])


def merged(members: Iterable[str]) -> list[str]:
    """Networks (or `first-last` ranges, as nft lists them) as nft's auto-merge keeps them: overlapping
    and adjacent ones joined, each range written as a network where it is one, else `first-last`."""
    spans = []
    for m in members:
        if "-" in m:
            lo, hi = (ipaddress.ip_address(a.strip()) for a in m.split("-", 1))
        else:
            n = ipaddress.ip_network(m)
            lo, hi = n.network_address, n.broadcast_address
        spans.append((lo.version, int(lo), int(hi)))
    out: list[str] = []
    for version in (4, 6):
        ranges: list[list[int]] = []
        for _, lo, hi in sorted(s for s in spans if s[0] == version):
            if ranges and lo <= ranges[-1][1] + 1:
                ranges[-1][1] = max(ranges[-1][1], hi)
            else:
                ranges.append([lo, hi])
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        for lo, hi in ranges:
            cidr = list(ipaddress.summarize_address_range(make(lo), make(hi)))
            out.append(str(cidr[0]) if len(cidr) == 1 else f"{make(lo)}-{make(hi)}")
    return out


def nft_name(name: str) -> str:
    """The nft name of a stockade set in `table inet stockade` (render/nft/layout.py names it)."""
    from ..render.nft.layout import set_name
    return set_name(Family.IPV6 if name.endswith("6") else Family.IPV4, name)


def headers(host: Host) -> dict[str, dict[str, str]]:
    """Every ipset's header (`Type`, `References`, `Number of entries`, ...) by name, from one terse listing."""
    out: dict[str, dict[str, str]] = {}
    cur: dict[str, str] = {}
    for line in host.run(["ipset", "list", "-t"]).stdout.splitlines():
        key, _, value = line.partition(":")
        if key == "Name":
            cur = out.setdefault(value.strip(), {})
        else:
            cur[key.strip()] = value.strip()
    return out


def live_generation(name: str, sets: dict[str, dict[str, str]]) -> str:
    """The physical ipset (`stk-x-ip4-b`) the live rules use for the logical set `name` (`sets`: headers())."""
    names = [n for n in sets if n[:-2] == name and n[-2:] in ("-a", "-b", "-c")]
    used = [n for n in names if int(sets[n].get("References", "0")) > 0]
    if len(used) != 1:
        raise KernelError(f"set {name} is not live as one set the rules use (found: {', '.join(names) or 'none'}); "
                          "run `stockade apply` first")
    return used[0]


def entries(backend: str, name: str, sets: dict[str, dict[str, str]]) -> int | None:
    """How many members the live set holds, where the kernel says so cheaply (ipset); None for nft,
    whose listing costs as much as reading every member."""
    if backend == "nftables":
        return None
    return int(sets[live_generation(name, sets)].get("Number of entries", "0"))


def live_members(host: Host, backend: str, name: str) -> list[str]:
    """What the live set holds (nft: merged ranges for an interval set), read from the kernel."""
    if backend != "nftables":
        out = host.run(["ipset", "list", live_generation(name, headers(host))]).stdout
        return out.split("Members:\n", 1)[1].split() if "Members:\n" in out else []
    text = host.run(["nft", "list", "set", "inet", TABLE, nft_name(name)]).stdout
    m = re.search(r"elements = \{(.*?)\}", text, re.DOTALL)
    return [e.strip() for e in m.group(1).replace("\n", " ").split(",") if e.strip()] if m else []


def update(host: Host, backend: str, changes: list[SetChange], sets: dict | None = None) -> None:
    """Apply the changes in one step (see the module's docstring); KernelError if the tool refuses,
    and then nothing changed (nft) or the adds before the failing line are kept (ipset: each of them
    is a member of the new list)."""
    changes = [c for c in changes if len(c)]
    if not changes:
        return
    if backend == "nftables":
        lines = []
        for c in changes:
            name = nft_name(c.name)
            steps = (("delete", c.delete), ("add", c.add))
            if c.interval and c.delete:
                lines.append(f"flush set inet {TABLE} {name}")
                steps = (("add", c.full),)
            for verb, items in steps:
                lines += [f"{verb} element inet {TABLE} {name} {{ {', '.join(items[i:i + CHUNK])} }}"
                          for i in range(0, len(items), CHUNK)]
        host.run(["nft", "-f", "-"], input="\n".join(lines) + "\n")
        return
    sets = sets if sets is not None else headers(host)
    physical = {c.name: live_generation(c.name, sets) for c in changes}
    adds = [f"add {physical[c.name]} {m} -exist" for c in changes for m in c.add]
    dels = [f"del {physical[c.name]} {m} -exist" for c in changes for m in c.delete]
    host.run(["ipset", "restore"], input="\n".join(adds + dels) + "\n")
