"""-m length: the packet's length at the network layer."""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part, neg, span
from .base import Extension, Option, register
from .values import format_range, parse_c_uint

MAX = 65535


def parse_length_range(word: str) -> tuple[int, int]:
    """`N`, `N:M`, `:M`, `N:` or `:` (open ends are 0 and 65535), numbers read as xtables does."""
    parts = word.split(":")
    if len(parts) > 2:
        raise ParseError(f"length: `{word}` has more than two `:`-separated parts", code="bad-range")
    lo = parse_c_uint(parts[0], "length", 0, MAX) if parts[0] else 0
    hi = lo if len(parts) == 1 else parse_c_uint(parts[1], "length", 0, MAX) if parts[1] else MAX
    if lo > hi:  # iptables 1.8.9 and the kernel accept it (it never matches); 1.8.13 refuses it
        raise ParseError(f"length range `{word}` is backwards ({lo} > {hi})", code="bad-range",
                         hint=f"write {hi}:{lo}")
    return lo, hi


@dataclass(frozen=True)
class LengthMatch:
    """True when lo <= length <= hi; `!` negates. The length is the IPv4 total length, or
    for IPv6 the payload length plus the 40-byte fixed header."""

    lo: int
    hi: int
    invert: bool = False


@register
class LengthMatchExt(Extension):
    name = "length"
    undecidable = "the packet length is no dimension"
    options = (Option("--length", invertible=True, type=parse_length_range, required=True,
                      hint="write -m length --length MIN:MAX"),)

    def finish(self, acc, ctx):
        invert, (lo, hi) = acc["length"]
        return LengthMatch(lo, hi, invert)

    def holds(self, d: LengthMatch, pkt, env) -> bool:
        """length_mt/length_mt6: ntohs(tot_len), or ntohs(payload_len) + 40; both are pkt.length."""
        return (d.lo <= env.pkt.length <= d.hi) != d.invert

    def save(self, d: LengthMatch) -> list[str]:
        return (["!"] if d.invert else []) + ["--length", format_range((d.lo, d.hi))]

    def nft(self, d: LengthMatch, ctx) -> list[Part]:
        return [Part(f"meta length {neg(d.invert)}{span(d.lo, d.hi)}")]
