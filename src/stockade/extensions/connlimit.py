"""-m connlimit: how many connections the packet's source (or destination) network has."""
from __future__ import annotations

import socket
from dataclasses import dataclass

from ..model import Family
from ..parse.diagnostics import ParseError
from .base import Extension, Option, register
from ..model.address import c_uint_prefix
from .values import parse_c_uint


@dataclass(frozen=True)
class ConnlimitMatch:
    """count = the tracked connections (this packet's included) whose source address,
    or destination address with daddr, masked to `prefix` bits equals this packet's;
    true when count > limit (above) or count <= limit (not above: --connlimit-upto)."""

    limit: int
    above: bool
    prefix: int
    daddr: bool = False


def parse_prefix(word: str, family: Family) -> int:
    """A prefix length, or a netmask in address form, as iptables 1.8.9 reads
    --connlimit-mask; a mask that is not a prefix counts as all bits."""
    bits = 32 if family is Family.IPV4 else 128
    got = c_uint_prefix(word)
    if got is not None and not got[1] and got[0] <= bits:
        return got[0]
    af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
    try:  # what xtables does with a non-number: a numeric host lookup (`33` is 0.0.0.33)
        packed = socket.getaddrinfo(word, None, af, 0, 0, socket.AI_NUMERICHOST)[0][4][0]
        mask = int.from_bytes(socket.inet_pton(af, packed), "big")
    except (OSError, UnicodeError, ValueError):
        raise ParseError(f"connlimit: --connlimit-mask `{word}` is neither a prefix length 0-{bits} "
                         "nor a netmask", code="bad-mask") from None
    inverse = mask ^ ((1 << bits) - 1)
    return bits if inverse & (inverse + 1) else bits - inverse.bit_length()


@register
class ConnlimitMatchExt(Extension):
    name = "connlimit"
    options = (Option("--connlimit-upto", invertible=True), Option("--connlimit-above", invertible=True),
               Option("--connlimit-mask"), Option("--connlimit-saddr", nargs=0), Option("--connlimit-daddr", nargs=0))

    def convert(self, opt, args, ctx):
        if opt.key == "connlimit-mask":
            return parse_prefix(args[0], ctx.family)
        return parse_c_uint(args[0], opt.name) if args else True

    def finish(self, acc, ctx):
        for a, b in (("connlimit-upto", "connlimit-above"), ("connlimit-saddr", "connlimit-daddr")):
            if a in acc and b in acc:
                raise ParseError(f"connlimit: --{a} and --{b} cannot be combined", code="conflicting-options")
        key = "connlimit-above" if "connlimit-above" in acc else "connlimit-upto"
        if key not in acc:
            raise ParseError("connlimit: --connlimit-above or --connlimit-upto is required", code="missing-option")
        invert, limit = acc[key]
        prefix = acc["connlimit-mask"][1] if "connlimit-mask" in acc else (32 if ctx.family is Family.IPV4 else 128)
        return ConnlimitMatch(limit, (key == "connlimit-above") != invert, prefix, "connlimit-daddr" in acc)

    def save(self, d: ConnlimitMatch) -> list[str]:
        return ["--connlimit-above" if d.above else "--connlimit-upto", str(d.limit),
                "--connlimit-mask", str(d.prefix), "--connlimit-daddr" if d.daddr else "--connlimit-saddr"]
