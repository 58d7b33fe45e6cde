"""Which netfilter front end stockade talks to: nftables (its own `inet stockade` table), or
iptables over nf_tables (iptables-nft) or over the old x_tables (iptables-legacy), where it owns
its `stk-` chains hooked from the built-in ones.

Automatic choice: where stockade's own part already lives; else where other tools' iptables
rules live (so its hooks and DOCKER-USER sit next to them, and its nft forward chain cannot drop
what Docker forwards); else nftables if `nft` works; else iptables-nft, then iptables-legacy.
"""
from __future__ import annotations

import re
from pathlib import Path

from .host import Host, KernelError

BACKENDS = ("nftables", "iptables-nft", "iptables-legacy")
TABLE = "stockade"  # the nft table stockade owns (family inet)


def tool(backend: str, family: int, what: str) -> str:
    """iptables-nft-save, ip6tables-legacy-restore, ..."""
    base = "iptables" if family == 4 else "ip6tables"
    return f"{base}-{backend.split('-', 1)[1]}-{what}"


def iptables_in_use(host: Host, backend: str) -> tuple[bool, bool]:
    """(stockade's chains present, other rules or chains present) in this iptables variant, either family."""
    ours = others = False
    for family in (4, 6):
        proc = host.run([tool(backend, family, "save")], check=False)
        if proc.returncode != 0:
            continue
        for line in proc.stdout.splitlines():
            if line.startswith(":stk-") or re.search(r" -[jg] stk-", line):
                ours = True
            elif line.startswith("-A ") or (line.startswith(":") and line.split()[1] != "ACCEPT"):
                others = True
    return ours, others


def available(host: Host) -> dict[str, bool]:
    return {"nftables": host.ok(["nft", "list", "tables"]),
            "iptables-nft": host.ok([tool("iptables-nft", 4, "save")]),
            "iptables-legacy": host.ok([tool("iptables-legacy", 4, "save")])}


def docker_user(host: Host, backend: str) -> dict[int, bool]:
    """Per family: does a DOCKER-USER chain exist (filter table) in this iptables variant?"""
    out = {}
    for family in (4, 6):
        proc = host.run([tool(backend, family, "save"), "-t", "filter"], check=False)
        out[family] = proc.returncode == 0 and ":DOCKER-USER " in proc.stdout
    return out


def choose(host: Host, requested: str = "auto", recorded: str | None = None) -> str:
    """The backend to use; KernelError when the requested one cannot work here."""
    if host.netns and not (Path("/run/netns") / host.netns).exists():
        raise KernelError(f"there is no network namespace named {host.netns} (see `ip netns list`)")
    have = available(host)
    if requested != "auto":
        if not have.get(requested):
            raise KernelError(f"backend {requested} is not usable in {host.label}")
        if requested == "nftables" and have["iptables-nft"] and any(docker_user(host, "iptables-nft").values()):
            raise KernelError("Docker's chains live in iptables-nft here: stockade's own nft table would drop what "
                              "Docker forwards; use --backend iptables-nft (auto chooses it)")
        return requested
    if have["nftables"] and host.run(["nft", "list", "table", "inet", TABLE], check=False).returncode == 0:
        return "nftables"
    use = {b: iptables_in_use(host, b) for b in ("iptables-legacy", "iptables-nft") if have[b]}
    for b, (ours, _) in use.items():
        if ours:
            return b
    for b, (_, others) in use.items():
        if others:
            return b
    if recorded in BACKENDS and have.get(recorded):
        return recorded
    for b in BACKENDS:
        if have[b]:
            return b
    raise KernelError(f"no netfilter tool works in {host.label} (tried nft, iptables-nft, iptables-legacy)")
