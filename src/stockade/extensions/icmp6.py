"""-m icmp6: ICMPv6 type and code (ip6tables only; iptables has icmp)."""
from __future__ import annotations

from ..model import Family
from .base import REGISTRY, Option, register
from .icmp import IcmpBase

# (name, type, lowest code, highest code), in ip6tables' order.
ICMPV6_NAMES = (
    ("destination-unreachable", 1, 0, 255), ("no-route", 1, 0, 0), ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2), ("address-unreachable", 1, 3, 3), ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5), ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 255),
    ("time-exceeded", 3, 0, 255), ("ttl-exceeded", 3, 0, 255), ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 255), ("bad-header", 4, 0, 0), ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 255), ("ping", 128, 0, 255), ("echo-reply", 129, 0, 255), ("pong", 129, 0, 255),
    # the MLD names are accepted since iptables 1.8.10
    ("mld-listener-query", 130, 0, 255), ("mld-listener-report", 131, 0, 255),
    ("mld-listener-done", 132, 0, 255), ("mld-listener-reduction", 132, 0, 255),
    ("router-solicitation", 133, 0, 255), ("router-advertisement", 134, 0, 255),
    ("neighbour-solicitation", 135, 0, 255), ("neighbor-solicitation", 135, 0, 255),
    ("neighbour-advertisement", 136, 0, 255), ("neighbor-advertisement", 136, 0, 255),
    ("redirect", 137, 0, 255),
)


@register
class Icmp6Match(IcmpBase):
    name = "icmp6"
    proto = 58
    families = frozenset({Family.IPV6})
    options = (Option("--icmpv6-type", invertible=True, required=True, hint="add e.g. `--icmpv6-type echo-request`"),)
    flag, names, label, wildcard = "--icmpv6-type", ICMPV6_NAMES, "ICMPv6", False
    nft_key, nft_names = "icmpv6", {
        1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
        128: "echo-request", 129: "echo-reply", 130: "mld-listener-query", 131: "mld-listener-report",
        132: "mld-listener-done", 133: "nd-router-solicit", 134: "nd-router-advert", 135: "nd-neighbor-solicit",
        136: "nd-neighbor-advert", 137: "nd-redirect", 138: "router-renumbering", 141: "ind-neighbor-solicit",
        142: "ind-neighbor-advert", 143: "mld2-listener-report"}


# libxtables loads icmp6 for `-m icmpv6` and `-m ipv6-icmp` too; the rule keeps the name icmp6.
for _alias in ("icmpv6", "ipv6-icmp"):
    REGISTRY.matches.setdefault(_alias, []).append(REGISTRY.find("match", "icmp6", Family.IPV6))
