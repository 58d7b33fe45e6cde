"""-m dscp and -j DSCP: the 6-bit DiffServ code point (the top six bits of the IPv4 TOS
byte or IPv6 traffic class)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part, hexnum, neg
from .base import Extension, Option, register
from .values import parse_c_uint

CLASSES = {"CS0": 0, "CS1": 8, "CS2": 16, "CS3": 24, "CS4": 32, "CS5": 40, "CS6": 48, "CS7": 56, "BE": 0,
           "AF11": 10, "AF12": 12, "AF13": 14, "AF21": 18, "AF22": 20, "AF23": 22, "AF31": 26, "AF32": 28,
           "AF33": 30, "AF41": 34, "AF42": 36, "AF43": 38, "EF": 46}


def parse_class(word: str, what: str) -> int:
    """A class name, any case; like iptables, text after a full name is ignored (`EFx` is EF)."""
    for name, value in CLASSES.items():
        if word.upper().startswith(name):
            return value
    raise ParseError(f"{what}: unknown DSCP class `{word}`", code="bad-dscp",
                     hint="classes are BE, EF, CS0-CS7 and AF11-AF43")


def dscp_value(opt, args) -> int:
    if opt.key.endswith("class"):
        return parse_class(args[0], opt.name)
    return parse_c_uint(args[0], opt.name, 0, 0x3F)


def only_one(name: str, acc: dict) -> tuple[bool, int]:
    if len(acc) > 1:
        raise ParseError(f"{name}: give the code point or the class, not both", code="conflicting-options")
    if not acc:
        raise ParseError(f"{name}: a DSCP value or class is required", code="missing-option")
    return next(iter(acc.values()))


@dataclass(frozen=True)
class DscpMatch:
    """True when the packet's DSCP (TOS byte / traffic class >> 2) equals value; `!` negates."""

    value: int
    invert: bool = False


@dataclass(frozen=True)
class SetDscp:
    """The DSCP target (mangle table): sets the top six bits of the TOS byte / traffic
    class to value, keeping the two ECN bits; the next rule runs."""

    value: int


@register
class DscpMatchExt(Extension):
    name = "dscp"
    undecidable = "the DSCP field is no dimension"
    options = (Option("--dscp", invertible=True), Option("--dscp-class", invertible=True))

    def convert(self, opt, args, ctx):
        return dscp_value(opt, args)

    def finish(self, acc, ctx):
        invert, value = only_one("dscp", acc)
        return DscpMatch(value, invert)

    def holds(self, d: DscpMatch, pkt, env) -> bool:
        """dscp_mt/dscp_mt6: the top six bits of the TOS byte / traffic class as it is now."""
        return ((env.pkt.tos >> 2) == d.value) != d.invert

    def save(self, d: DscpMatch) -> list[str]:
        return (["!"] if d.invert else []) + ["--dscp", f"0x{d.value:02x}"]

    def nft(self, d: DscpMatch, ctx) -> list[Part]:
        return [Part(f"{ctx.ip} dscp {neg(d.invert)}{hexnum(d.value, 2)}", ctx.nfproto)]


@register
class DscpTarget(Extension):
    name = "DSCP"
    terminal = False
    kind = "target"
    tables = ("mangle",)
    options = (Option("--set-dscp"), Option("--set-dscp-class"))

    def convert(self, opt, args, ctx):
        return dscp_value(opt, args)

    def finish(self, acc, ctx):
        return SetDscp(only_one("DSCP", acc)[1])

    def act(self, d: SetDscp, pkt, env) -> None:
        """dscp_tg/dscp_tg6: the code point replaces the top six bits, the ECN bits stay."""
        env.pkt = env.pkt.with_(tos=(env.pkt.tos & 0x03) | (d.value << 2))

    def save(self, d: SetDscp) -> list[str]:
        return ["--set-dscp", f"0x{d.value:02x}"]

    def nft(self, d: SetDscp, ctx) -> str:
        return f"{ctx.ip} dscp set {hexnum(d.value, 2)}"
