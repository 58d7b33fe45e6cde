"""-m mark and -j MARK: the packet's firewall mark (skb->mark), a 32-bit tag that lives
as long as the packet does and that routing rules, tc and later rules can read."""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part, masked, xmark
from .base import Extension, Option, register
from .values import parse_c_uint

ALL = 0xFFFFFFFF


def parse_mark_mask(word: str, what: str) -> tuple[int, int]:
    """`VALUE[/MASK]` as xtables reads marks; the mask defaults to all 32 bits."""
    value, sep, mask = word.partition("/")
    return parse_c_uint(value, what), (parse_c_uint(mask, f"{what} mask") if sep else ALL)


def save_mark_mask(value: int, mask: int) -> str:
    """`0xV` or `0xV/0xM`: iptables leaves the mask out when it is all ones."""
    return f"{value:#x}" if mask == ALL else f"{value:#x}/{mask:#x}"


@dataclass(frozen=True)
class MarkMatch:
    """True when (packet mark & mask) == value; `!` negates. The value is kept as written,
    so a value with bits outside the mask never matches."""

    value: int
    mask: int = ALL
    invert: bool = False


@dataclass(frozen=True)
class SetMark:
    """The MARK target: packet mark := (mark & ~mask) ^ value, then the next rule runs
    (MARK never ends traversal). --set-mark, --and-mark, --or-mark and --xor-mark are all
    this one operation, which is why iptables-save prints only --set-xmark."""

    value: int
    mask: int = ALL


@register
class MarkMatchExt(Extension):
    name = "mark"
    undecidable = "a mark set by earlier rules or packets"
    options = (Option("--mark", invertible=True, type=lambda word: parse_mark_mask(word, "mark"), required=True,
                      hint="write -m mark --mark VALUE[/MASK]"),)

    def finish(self, acc, ctx):
        invert, (value, mask) = acc["mark"]
        return MarkMatch(value, mask, invert)

    def holds(self, d: MarkMatch, pkt, env) -> bool | None:
        """mark_mt: the packet's current mark (env.mark: MARK and CONNMARK --restore-mark change it)."""
        if env.mark is None:
            return None
        return ((env.mark & d.mask) == d.value) != d.invert

    def save(self, d: MarkMatch) -> list[str]:
        return (["!"] if d.invert else []) + ["--mark", save_mark_mask(d.value, d.mask)]

    def nft(self, d: MarkMatch, ctx) -> list[Part]:
        return [Part(masked("mark", d.value, d.mask, d.invert, 32))]


# How each MARK/CONNMARK option becomes (value, mask) of "mark := (mark & ~mask) ^ value".
def xmark_of(key: str, word: str, what: str) -> tuple[int, int]:
    if key in ("set-xmark", "set-mark"):
        value, mask = parse_mark_mask(word, what)
        return (value, mask) if key == "set-xmark" else (value, value | mask)
    bits = parse_c_uint(word, what)
    return {"and-mark": (0, ~bits & ALL), "or-mark": (bits, bits), "xor-mark": (bits, 0)}[key]


XMARK_OPTIONS = tuple(Option(f"--{k}") for k in ("set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark"))


@register
class MarkTarget(Extension):
    name = "MARK"
    terminal = False
    kind = "target"
    options = XMARK_OPTIONS

    def parse(self, acc, opt, invert, args, ctx):
        if invert:
            raise ParseError(f"MARK: {opt.name} cannot be inverted with `!`", code="bad-invert")
        if opt.key in acc:
            raise ParseError(f"MARK: {opt.name} given twice", code="duplicate-option")
        if acc:
            raise ParseError(f"MARK: {opt.name} cannot be combined with --{next(iter(acc))}",
                             code="conflicting-options", hint="a MARK rule does one operation; use a second rule")
        acc[opt.key] = xmark_of(opt.key, args[0], f"MARK {opt.name}")

    def finish(self, acc, ctx):
        if not acc:
            raise ParseError("MARK: one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark is required",
                             code="missing-option", hint="for example -j MARK --set-mark 0x1")
        return SetMark(*next(iter(acc.values())))

    def act(self, d: SetMark, pkt, env) -> None:
        """mark_tg: mark := (mark & ~mask) ^ value; an unknown mark stays unknown unless all bits are set."""
        if env.mark is not None:
            env.mark = ((env.mark & ~d.mask) ^ d.value) & ALL
        elif d.mask == ALL:
            env.mark = d.value

    def save(self, d: SetMark) -> list[str]:
        return ["--set-xmark", f"{d.value:#x}/{d.mask:#x}"]

    def nft(self, d: SetMark, ctx) -> str:
        return f"meta mark set {xmark('mark', d.value, d.mask)}"
