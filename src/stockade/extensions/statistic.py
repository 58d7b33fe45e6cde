"""-m statistic: every nth packet that reaches the rule, or a random share of them (kube-proxy's
load balancing). Measured with iptables 1.8.9: the probability is kept as lround(2^31 * p) and
printed back with 11 decimals (`1` is saved as `1.00000000000`); nth mode needs both --every and
--packet, and p < n.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part
from ..model.space import PROTO
from .base import Extension, Option, register
from .values import parse_c_uint

ONE = 0x80000000  # the kernel draws get_random_u32() & 0x7fffffff and matches below this share
U32 = 2**32 - 1
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_HEX = re.compile(r"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?\d+)?")


def parse_probability(word: str) -> int:
    """A probability as strtod reads it (decimal or hex), 0 to 1, as the share of 2^31 the kernel keeps."""
    value = None
    if _DECIMAL.fullmatch(word):
        value = float(word)
    elif _HEX.fullmatch(word):
        value = float.fromhex(word if "p" in word.lower() else word + "p0")
    if value is None or not 0 <= value <= 1:
        raise ParseError(f"statistic: `{word}` is no probability between 0 and 1", code="bad-value",
                         hint="write e.g. --probability 0.25")
    return math.floor(ONE * value + 0.5)  # lround: half away from zero (the value is not negative)


@dataclass(frozen=True)
class Statistic:
    """random: matches when a fresh 31-bit random number is below `share` (of 2^31); nth: the rule's
    counter of packets k (from 0) matches when k % every == packet. `invert` flips either."""

    mode: str
    share: int = 0
    every: int = 0
    packet: int = 0
    invert: bool = False


@register
class StatisticMatch(Extension):
    name = "statistic"
    stateful = True
    options = (Option("--mode", required=True, hint="write --mode random or --mode nth"),
               Option("--probability", invertible=True, type=parse_probability),
               Option("--every", invertible=True, type=lambda w: parse_c_uint(w, "statistic --every", 1, U32)),
               Option("--packet", type=lambda w: parse_c_uint(w, "statistic --packet", 0, U32)))
    roundtrip = ("-m statistic --mode random --probability 0.25", "-m statistic --mode random ! --probability 1",
                 "-m statistic --mode nth --every 3 --packet 2", "-m statistic --mode nth ! --every 2 --packet 0")

    def finish(self, acc, ctx):
        mode = acc["mode"][1]
        if mode not in ("random", "nth"):
            raise ParseError(f"statistic: bad mode `{mode}`", code="bad-value", hint="random or nth")
        if "probability" in acc and "every" in acc:
            raise ParseError("statistic: --probability cannot be used together with --every", code="bad-option")
        if mode == "random":
            if "probability" not in acc:
                raise ParseError("statistic: --probability must be given in random mode", code="missing-option")
            invert, share = acc["probability"]
            return Statistic("random", share=share, invert=invert)
        if "every" not in acc or "packet" not in acc:
            raise ParseError("statistic: --every and --packet must be given in nth mode", code="missing-option",
                             hint="e.g. --mode nth --every 3 --packet 0")
        (invert, every), packet = acc["every"], acc["packet"][1]
        if packet >= every:
            raise ParseError(f"statistic: --packet {packet} must be below --every {every}", code="bad-value")
        return Statistic("nth", every=every, packet=packet, invert=invert)

    def holds(self, d: Statistic, pkt, env) -> bool | None:
        """statistic_mt: random decides only at the ends (0 never, 1 always draws below); nth counts every
        packet that reaches the rule in one counter per rule, started so that packet k matches when
        k % every == packet."""
        if d.mode == "random":
            return None if 0 < d.share < ONE else (d.share == ONE) != d.invert
        key = ("statistic",) + env.key
        k = env.memory.get(key, 0)
        env.memory[key] = k + 1
        return (k % d.every == d.packet) != d.invert

    def constraint(self, d: Statistic, frame):
        if d.mode == "random" and d.share in (0, ONE):
            return {} if (d.share == ONE) != d.invert else {PROTO: ()}
        return None  # a random draw or a count of earlier packets

    def save(self, d: Statistic) -> list[str]:
        bang = ["!"] if d.invert else []
        if d.mode == "random":
            return ["--mode", "random", *bang, "--probability", f"{d.share / ONE:.11f}"]
        return ["--mode", "nth", *bang, "--every", str(d.every), "--packet", str(d.packet)]

    def nft(self, d: Statistic, ctx) -> list[Part]:
        """As iptables-translate writes it: nft's numgen counter starts at 0 like the rule's."""
        if d.mode == "random":
            return [Part(f"meta random & 2147483647 {'>=' if d.invert else '<'} {d.share}", stateful=True)]
        return [Part(f"numgen inc mod {d.every} {'!= ' if d.invert else ''}{d.packet}", stateful=True)]
