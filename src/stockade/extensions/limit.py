"""-m limit: one token bucket per rule (iptables-nft turns it into nft's native `limit`).

A rate is kept the way the kernel ends up holding it: iptables converts `N/unit`
to an interval in 1/10000 s, which iptables-save prints back as the largest unit
that still gives a whole count (`60/min` is saved as `1/sec`, `9999/sec` as
`10000/sec`), and that printed rate is what nft stores.

So the packets are counted by nft_limit.c, not xt_limit.c: a bucket of
nanoseconds read from ktime_get_ns(), no jiffies involved.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import Part
from .base import Extension, Option, register
from .values import parse_c_uint

SCALE = 10_000  # xt_limit's time unit: 1/10000 s
NSEC = 1_000_000_000
U64 = 2**64 - 1
UNITS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))  # a prefix of the name picks it
PRINTED = {86400: "day", 3600: "hour", 60: "min", 1: "sec"}  # largest first
NFT_UNITS = {per: name for name, per in UNITS}  # nft writes the whole unit name
BURST = 5


def parse_rate(word: str, what: str) -> tuple[int, int]:
    """`N` (per second) or `N/UNIT` into (N, seconds per unit)."""
    number, sep, unit = word.partition("/")
    per = 1
    if sep:
        per = next((s for name, s in UNITS if unit and name.startswith(unit.lower())), 0)
    if not number.isdigit() or int(number) == 0 or not per:
        raise ParseError(f"bad {what} rate `{word}`", code="bad-value",
                         hint="write a whole number of packets per second, minute, hour or day, e.g. 10/min")
    return int(number), per


def interval(count: int, per: int, scale: int, word: str) -> int:
    """Time between packets in 1/scale s, as iptables computes it; refuses rates that round to zero."""
    value = scale * per // count
    if value == 0:
        raise ParseError(f"rate `{word}` is too fast", code="bad-value",
                         hint=f"at most {scale} per second")
    return value


def printed_rate(period: int, scale: int) -> tuple[int, int]:
    """(count, seconds per unit) as iptables-save prints an interval: the largest unit whose count
    loses less than one interval to rounding."""
    units = list(PRINTED)
    chosen = units[0]
    for per in units[1:]:
        mult = scale * per
        if period > mult or mult // period < mult % period:
            break
        chosen = per
    return scale * chosen // period, chosen


@dataclass(frozen=True)
class Limit:
    """Matches at most `rate` packets per `per` seconds on average, with bursts of up to `burst`: a
    token bucket of `burst` tokens, refilled at that rate, from which each matching packet takes one.
    The bucket belongs to the rule and is shared by every packet that reaches it."""

    rate: int = 3
    per: int = 3600
    burst: int = BURST


@register
class LimitMatch(Extension):
    name = "limit"
    stateful = True
    undecidable = "a rate over earlier packets"
    options = (Option("--limit"), Option("--limit-burst"))

    def convert(self, opt, args, ctx):
        if opt.key == "limit":
            count, per = parse_rate(args[0], "limit")
            return printed_rate(interval(count, per, SCALE, args[0]), SCALE)
        # nft's limit treats a zero burst as its default, 5.
        return parse_c_uint(args[0], "limit burst", 0, 10000) or BURST

    def finish(self, acc, ctx):
        rate, per = acc.get("limit", (False, (3, 3600)))[1]
        return Limit(rate, per, acc.get("limit-burst", (False, BURST))[1])

    def holds(self, d: Limit, pkt, env) -> bool:
        """nft_limit_pkts_eval / nft_limit_eval: each packet costs per×1e9 // rate ns of tokens; the
        bucket holds burst costs, starts full (at rule load, so full for the first packet) and gains
        the nanoseconds elapsed since the previous packet that reached it, matched or not."""
        cost = d.per * NSEC // d.rate
        now = round(pkt.t * NSEC)
        key = ("limit",) + env.key
        tokens, last = env.memory.get(key, (cost * d.burst, now))
        tokens = min((tokens + now - last) & U64, cost * d.burst)  # u64, as the kernel adds
        if tokens >= cost:
            env.memory[key] = (tokens - cost, now)
            return True
        env.memory[key] = (tokens, now)
        return False

    def save(self, d: Limit) -> list[str]:
        out = ["--limit", f"{d.rate}/{PRINTED[d.per]}"]
        return out + (["--limit-burst", str(d.burst)] if d.burst != BURST else [])

    def nft(self, d: Limit, ctx) -> list[Part]:
        return [Part(f"limit rate {d.rate}/{NFT_UNITS[d.per]} burst {d.burst} packets", stateful=True)]
