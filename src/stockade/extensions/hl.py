"""-m hl: the IPv6 hop limit (ip6tables only; iptables has -m ttl)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from .base import register
from .ttl import CounterFieldMatch


@dataclass(frozen=True)
class HlMatch:
    """True when the IPv6 hop limit compares to value: op eq (==), ne (!=, written
    `! --hl-eq`), lt (<) or gt (>)."""

    op: str
    value: int


@register
class HlMatchExt(CounterFieldMatch):
    name = "hl"
    families = frozenset({Family.IPV6})
    field = "hl"
    data = HlMatch
    nft_key, nft_family = "ip6 hoplimit", "ipv6"
