"""-m mac: the Ethernet source address of a received frame."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..model import BUILTIN_CHAINS
from ..model.diagnostics import ParseError
from ..model.nft import Part, neg
from .base import Extension, Option, register

# The kernel only has a link-layer header for packets coming in.
HOOKS = ("PREROUTING", "INPUT", "FORWARD")
# One of the six fields as xtables reads it: strtoul base 16 consuming at most two
# characters, so `4`, `04`, `+4`, an empty field (0) and even `-5` (0xfb) are accepted.
_FIELD = re.compile(r"[0-9a-fA-F]{0,2}|[ \t\n\v\f\r+-][0-9a-fA-F]")


_USUAL = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


def parse_mac(word: str) -> bytes:
    if _USUAL.fullmatch(word):
        return bytes.fromhex(word.replace(":", ""))
    fields = word.split(":")
    if len(fields) != 6 or not all(_FIELD.fullmatch(f) for f in fields):
        raise ParseError(f"invalid MAC address `{word}`", code="bad-mac",
                         hint="write six hex bytes separated by colons, e.g. 52:54:00:12:34:56")
    return bytes((-int(f[1:], 16) if f.startswith("-") else int(f or "0", 16)) & 0xFF for f in fields)


@dataclass(frozen=True)
class MacMatch:
    """True when the frame's Ethernet source address equals `address`; `!` negates.
    Packets without an Ethernet header (e.g. on tun devices) never match, even with `!`."""

    address: bytes
    invert: bool = False


@register
class MacMatchExt(Extension):
    name = "mac"
    undecidable = "the link-layer address is no dimension"
    options = (Option("--mac-source", invertible=True, type=parse_mac, required=True),)

    def finish(self, acc, ctx):
        if ctx.chain in BUILTIN_CHAINS.get(ctx.table, ()) and ctx.chain not in HOOKS:
            raise ParseError(f"mac: the source MAC is only known to incoming packets, not in {ctx.chain}",
                             code="wrong-chain", hint=f"use it from {', '.join(HOOKS)}")
        invert, address = acc["mac-source"]
        return MacMatch(address, invert)

    def holds(self, d: MacMatch, pkt, env) -> bool | None:
        """mac_mt: false without an Ethernet header: loopback (ARPHRD_LOOPBACK) and locally sent
        packets, which have no received link-layer header; otherwise the frame's source address."""
        if pkt.hook == "OUTPUT" or pkt.iif == "lo":
            return False
        if pkt.src_mac is None:
            return None
        return (pkt.src_mac == d.address) != d.invert

    def save(self, d: MacMatch) -> list[str]:
        return (["!"] if d.invert else []) + ["--mac-source", d.address.hex(":")]

    def nft(self, d: MacMatch, ctx) -> list[Part]:
        return [Part(f"ether saddr {neg(d.invert)}{d.address.hex(':')}")]
