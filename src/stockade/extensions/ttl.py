"""-m ttl: the IPv4 time-to-live field (iptables only; ip6tables has -m hl)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from ..model.diagnostics import ParseError
from ..model.nft import Part
from .base import Extension, Option, register
from .values import parse_c_uint


@dataclass(frozen=True)
class TtlMatch:
    """True when the IPv4 TTL compares to value: op eq (==), ne (!=, written `! --ttl-eq`),
    lt (<) or gt (>)."""

    op: str
    value: int


class CounterFieldMatch(Extension):
    """A one-byte header field compared with one of -eq (invertible), -lt, -gt; shared by
    ttl and hl. The bare `--ttl`/`--hl` is an old spelling of -eq."""

    undecidable = "the TTL / hop limit is no dimension"
    field: str  # option prefix, "ttl" or "hl"
    data: type
    nft_key: str  # nft's name of the field
    nft_family: str

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        f = cls.field
        cls.options = (Option(f"--{f}-eq", invertible=True), Option(f"--{f}-lt"), Option(f"--{f}-gt"),
                       Option(f"--{f}", invertible=True))

    def parse(self, acc, opt, invert, args, ctx):
        if invert and not opt.invertible:
            raise ParseError(f"{self.name}: {opt.name} cannot be inverted with `!`", code="bad-invert",
                             hint=f"use --{self.field}-lt/--{self.field}-gt with the opposite bound instead")
        if acc:
            raise ParseError(f"{self.name}: only one of --{self.field}-eq, --{self.field}-lt and "
                             f"--{self.field}-gt is allowed", code="conflicting-options")
        op = opt.key.removeprefix(self.field).lstrip("-") or "eq"
        acc["test"] = self.data("ne" if invert else op, parse_c_uint(args[0], opt.name, 0, 255))

    def finish(self, acc, ctx):
        if "test" not in acc:
            raise ParseError(f"{self.name}: one of --{self.field}-eq, --{self.field}-lt or --{self.field}-gt "
                             "is required", code="missing-option")
        return acc["test"]

    def holds(self, d, pkt, env) -> bool:
        """ttl_mt/hl_mt6: the field as the packet has it at the rule (forwarding lowered it by one
        before FORWARD), compared as the rule says."""
        v = env.pkt.ttl
        return {"eq": v == d.value, "ne": v != d.value, "lt": v < d.value, "gt": v > d.value}[d.op]

    def save(self, d) -> list[str]:
        return (["!", f"--{self.field}-eq"] if d.op == "ne" else [f"--{self.field}-{d.op}"]) + [str(d.value)]

    def nft(self, d, ctx) -> list[Part]:
        op = {"eq": "", "ne": "!= ", "lt": "lt ", "gt": "gt "}[d.op]
        return [Part(f"{self.nft_key} {op}{d.value}", self.nft_family)]


@register
class TtlMatchExt(CounterFieldMatch):
    name = "ttl"
    families = frozenset({Family.IPV4})
    field = "ttl"
    data = TtlMatch
    nft_key, nft_family = "ip ttl", "ipv4"
