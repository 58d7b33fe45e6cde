"""-m pkttype: the link-layer class of a packet (to us, broadcast, multicast, another host)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from ..model.diagnostics import ParseError
from ..model.nft import Part, neg
from .base import Extension, Option, register

# Names iptables accepts (any case), canonical names first: they are what it prints.
TYPES = {"unicast": "unicast", "broadcast": "broadcast", "multicast": "multicast", "otherhost": "otherhost",
         "host": "unicast", "bcast": "broadcast", "mcast": "multicast"}


NFT_TYPES = {"unicast": "unicast", "broadcast": "broadcast", "multicast": "multicast", "otherhost": "other"}


@dataclass(frozen=True)
class PktTypeMatch:
    """True when the packet's class equals `type`; `!` negates. The class is the one the
    receiving device gave it (unicast = addressed to this host); a looped-back copy of this
    host's own packet counts as multicast if sent to a multicast address (IPv6: always),
    otherwise broadcast."""

    type: str  # unicast, broadcast, multicast or otherhost
    invert: bool = False


def parse_type(word: str) -> str:
    kind = TYPES.get(word.lower())
    if kind is None:
        raise ParseError(f"pkttype: unknown packet type `{word}`", code="bad-pkttype",
                         hint="use unicast, broadcast, multicast or otherhost")
    return kind


@register
class PktTypeMatchExt(Extension):
    name = "pkttype"
    undecidable = "the link-layer packet type is no dimension"
    options = (Option("--pkt-type", invertible=True, type=parse_type, required=True),)

    def finish(self, acc, ctx):
        invert, kind = acc["pkt-type"]
        return PktTypeMatch(kind, invert)

    def holds(self, d: PktTypeMatch, pkt, env) -> bool:
        """pkttype_mt: skb->pkt_type (pkt.link_class); a looped-back copy of this host's own
        multicast or broadcast counts as multicast (IPv4 multicast address, or any IPv6) or broadcast."""
        kind = pkt.link_class
        if kind == "loopback":
            v4 = pkt.family is Family.IPV4
            kind = "multicast" if not v4 or pkt.dst >> 28 == 0xE else "broadcast"
        return (kind == d.type) != d.invert

    def save(self, d: PktTypeMatch) -> list[str]:
        return (["!"] if d.invert else []) + ["--pkt-type", d.type]

    def nft(self, d: PktTypeMatch, ctx) -> list[Part]:
        """One difference stays: a locally sent IPv6 unicast packet is `broadcast` to xt_pkttype and
        `multicast` to nft (both look at the address only for IPv4)."""
        return [Part(f"pkttype {neg(d.invert)}{NFT_TYPES[d.type]}")]
