"""-m tos and -j TOS: the IPv4 type-of-service byte, or the IPv6 traffic class."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from ..model.address import c_uint_prefix
from ..model.diagnostics import ParseError
from ..model.nft import Part, hexnum, masked
from .base import Extension, Option, register
from .values import parse_c_uint

# RFC 1349 names; iptables gives them the mask 0x3f (the old TOS field, sans ECN-ish low bits).
NAMES = {"minimize-delay": 0x10, "maximize-throughput": 0x08, "maximize-reliability": 0x04,
         "minimize-cost": 0x02, "normal-service": 0x00}


def parse_tos_mask(word: str, what: str) -> tuple[int, int]:
    """`VALUE[/MASK]` (mask 0xff if absent) or a symbolic name (any case, mask 0x3f)."""
    got = c_uint_prefix(word)
    if got is None or got[0] > 0xFF:
        if word.lower() in NAMES:
            return NAMES[word.lower()], 0x3F
        raise ParseError(f"{what}: `{word}` is neither a number 0-255 nor a TOS name", code="bad-tos",
                         hint="names are Minimize-Delay, Maximize-Throughput, Maximize-Reliability, "
                              "Minimize-Cost, Normal-Service")
    value, rest = got
    if rest and not rest.startswith("/"):
        raise ParseError(f"{what}: bad value `{word}`", code="bad-tos", hint="write VALUE or VALUE/MASK")
    return value, (parse_c_uint(rest[1:], f"{what} mask", 0, 0xFF) if rest else 0xFF)


def save_tos(value: int, mask: int) -> str:
    return f"0x{value:02x}/0x{mask:02x}"


ECN = ("not-ect", "ect1", "ect0", "ce")  # nft's names of the two ECN bits


@dataclass(frozen=True)
class TosMatch:
    """True when (TOS byte, or IPv6 traffic class, & mask) == value; `!` negates."""

    value: int
    mask: int
    invert: bool = False


@dataclass(frozen=True)
class SetTos:
    """The TOS target (mangle table): TOS byte / traffic class := (tos & ~mask) ^ value;
    the next rule runs. --and-tos, --or-tos and --xor-tos are this operation too."""

    value: int
    mask: int


@register
class TosMatchExt(Extension):
    name = "tos"
    undecidable = "the TOS field is no dimension"
    options = (Option("--tos", invertible=True, type=lambda word: parse_tos_mask(word, "tos"), required=True),)

    def finish(self, acc, ctx):
        invert, (value, mask) = acc["tos"]
        return TosMatch(value, mask, invert)

    def holds(self, d: TosMatch, pkt, env) -> bool:
        """tos_mt (xt_dscp.c): TOS byte / traffic class as it is now (TOS and DSCP rewrite it)."""
        return ((env.pkt.tos & d.mask) == d.value) != d.invert

    def save(self, d: TosMatch) -> list[str]:
        return (["!"] if d.invert else []) + ["--tos", save_tos(d.value, d.mask)]

    def nft(self, d: TosMatch, ctx) -> list[Part]:
        """The whole TOS byte (IPv4) or traffic class (IPv6, 4 bits into the header) as raw payload."""
        key = "@nh,8,8" if ctx.family is Family.IPV4 else "@nh,4,8"
        return [Part(masked(key, d.value, d.mask, d.invert, 8, "&"))]


@register
class TosTarget(Extension):
    name = "TOS"
    terminal = False
    kind = "target"
    tables = ("mangle",)
    options = (Option("--set-tos"), Option("--and-tos"), Option("--or-tos"), Option("--xor-tos"))

    def parse(self, acc, opt, invert, args, ctx):
        if invert:
            raise ParseError(f"TOS: {opt.name} cannot be inverted with `!`", code="bad-invert")
        if acc:
            raise ParseError(f"TOS: {opt.name} cannot be combined with --{next(iter(acc))}",
                             code="duplicate-option" if opt.key in acc else "conflicting-options")
        if opt.key == "set-tos":
            acc[opt.key] = parse_tos_mask(args[0], "TOS --set-tos")
            return
        bits = parse_c_uint(args[0], f"TOS {opt.name}", 0, 0xFF)
        acc[opt.key] = {"and-tos": (0, ~bits & 0xFF), "or-tos": (bits, bits), "xor-tos": (bits, 0)}[opt.key]

    def finish(self, acc, ctx):
        if not acc:
            raise ParseError("TOS: one of --set-tos, --and-tos, --or-tos, --xor-tos is required",
                             code="missing-option")
        return SetTos(*next(iter(acc.values())))

    def act(self, d: SetTos, pkt, env) -> None:
        """tos_tg/tos_tg6 (xt_DSCP.c): rewrites the byte, then the next rule runs."""
        env.pkt = env.pkt.with_(tos=((env.pkt.tos & ~d.mask) ^ d.value) & 0xFF)

    def save(self, d: SetTos) -> list[str]:
        return ["--set-tos", save_tos(d.value, d.mask)]

    def nft(self, d: SetTos, ctx) -> str | None:
        """TOS byte := (tos & ~mask) ^ value, as DSCP (top 6 bits) and ECN (low 2) set to constants: each
        field must be fully replaced or left alone."""
        out = []
        for field, shift, width, names in (("dscp", 2, 0x3F, None), ("ecn", 0, 0x3, ECN)):
            mask, value = (d.mask >> shift) & width, (d.value >> shift) & width
            if mask == width:
                out.append(f"{ctx.ip} {field} set {names[value] if names else hexnum(value, 2)}")
            elif mask or value:
                raise ctx.fail("TOS: only whole DSCP and ECN fields can be set in nftables")
        return " ".join(out) or None
