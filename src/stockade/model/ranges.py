"""Sets of integers as sorted, disjoint, non-adjacent, inclusive (first, last) ranges.

The symbolic analyses need unions, intersections and complements of address sets
(prefixes, iprange, interface maps) and of every other header dimension (ports,
protocols, ICMP types, packet kinds); ranges keep those exact and small.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Any

from .address import Address, ntop, parse_address

Ranges = tuple[tuple[int, int], ...]
MAX_MASK_RANGES = 4096  # a non-contiguous mask with more ranges than this is left undecided


def full(bits: int) -> Ranges:
    return ((0, (1 << bits) - 1),)


def normalize(ranges) -> Ranges:
    out: list[list[int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def complement(ranges: Ranges, bits: int) -> Ranges:
    out, nxt = [], 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= (1 << bits) - 1:
        out.append((nxt, (1 << bits) - 1))
    return tuple(out)


def intersect(a: Ranges, b: Ranges) -> Ranges:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def union(a: Ranges, b: Ranges) -> Ranges:
    return normalize(a + b)


def difference(a: Ranges, b: Ranges) -> Ranges:
    out = []
    for lo, hi in a:
        for blo, bhi in b:
            if bhi < lo or blo > hi:
                continue
            if blo > lo:
                out.append((lo, blo - 1))
            lo = bhi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return tuple(out)


def size(a: Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in a)


def contains(a: Ranges, v: int) -> bool:
    return any(lo <= v <= hi for lo, hi in a)


def of_address(addr: Address) -> Ranges | None:
    """The addresses `addr/mask` covers; None if a non-contiguous mask makes too many ranges."""
    bits = addr.bits
    low = (addr.mask & -addr.mask).bit_length() - 1 if addr.mask else bits  # trailing zero bits
    size = 1 << low
    holes = [b for b in range(low, bits) if not addr.mask >> b & 1]
    if not holes:  # a prefix: one range
        return ((addr.addr, addr.addr + size - 1),)
    if 1 << len(holes) > MAX_MASK_RANGES:
        return None
    starts = []
    for n in range(1 << len(holes)):
        value = addr.addr
        for k, b in enumerate(holes):
            if n >> k & 1:
                value |= 1 << b
        starts.append(value)
    return normalize((s, s + size - 1) for s in starts)


def format_range(version: int, r: tuple[int, int]) -> str:
    lo, hi = r
    return ntop(version, lo) if lo == hi else f"{ntop(version, lo)}-{ntop(version, hi)}"


def parse_range(version: int, text: str) -> tuple[int, int]:
    """`A`, `A-B` or `A/len`, as printed by format_range or written in interface maps."""
    if "-" in text:
        a, b = text.split("-", 1)
        return parse_address(a.strip(), version).addr, parse_address(b.strip(), version).addr
    addr = parse_address(text.strip(), version)
    got = of_address(addr)
    if got is None or len(got) != 1:
        raise ValueError(f"{text!r} is not one address range")
    return got[0]


class Stabbing:
    """Intervals, each with a payload, found by the interval they meet in O(log n + hits) where few overlap
    (a set's elements, a rule's boxes): sorted by lower bound, with the running maximum of upper bounds."""

    def __init__(self, items: list[tuple[int, int, Any]]):
        self.items = sorted(items, key=lambda t: t[0])
        self.los = [t[0] for t in self.items]
        self.top = list(accumulate((t[1] for t in self.items), max))

    def meeting(self, lo: int, hi: int) -> list[Any]:
        """The payloads of the intervals that share a value with [lo, hi], in order of lower bound."""
        return [p for _, h, p in self.items[bisect_left(self.top, lo):bisect_right(self.los, hi)] if h >= lo]
