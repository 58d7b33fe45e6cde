"""Interface-to-address maps: which source addresses may arrive on which interface.

With such a map the analysis turns `-i eth1` into a source-address test, as fffuu
does. Two spellings are read:

- fffuu's: `eth1.96 = [131.159.14.3/25]`, `foo = []`, `eth0 = [0.0.0.0-255.255.255.255]`,
  `eth1.110 = all_but_those_ips [ 10.0.0.0/8, ... ]` (entries may span lines);
- stockade's, one interface a line: `eth1 192.0.2.0/24 198.51.100.7`, or
  `eth0 all-but 10.0.0.0/8 192.168.0.0/16`; `#` starts a comment.

Without a map, fffuu's default is used: `lo` carries 127.0.0.0/8 (::1 for IPv6).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..model import Family, Origin
from ..model.diagnostics import DiagnosedError, Diagnostic
from ..model.ranges import Ranges, complement, full, intersect, normalize, parse_range


class IpAssmtError(DiagnosedError):
    """An interface map or route table that cannot be read; `diagnostic` points at the line."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__([diagnostic])
        self.diagnostic = diagnostic


@dataclass
class IpAssmt:
    family: Family
    ifaces: dict[str, Ranges] = field(default_factory=dict)
    source: str = "default"  # the file it was read from, or "default"

    @property
    def bits(self) -> int:
        return 32 if self.family is Family.IPV4 else 128

    def disjoint(self) -> bool:
        """No address is assigned to two interfaces (fffuu's ipassmt_sanity_disjoint)."""
        names = list(self.ifaces)
        return all(not intersect(self.ifaces[a], self.ifaces[b])
                   for i, a in enumerate(names) for b in names[i + 1:])

    def describe(self) -> str:
        return f"interface map {self.source}: " + ", ".join(sorted(self.ifaces))


def default_ipassmt(family: Family) -> IpAssmt:
    lo = ((0x7F000000, 0x7FFFFFFF),) if family is Family.IPV4 else ((1, 1),)
    return IpAssmt(family, {"lo": lo}, "default")


_FFFUU = re.compile(r"(?P<name>[^\s=\[\]#]+)\s*=\s*(?P<neg>all_but_those_ips)?\s*\[(?P<body>[^\]]*)\]", re.DOTALL)


def _ranges(items: list[tuple[str, int]], family: Family, file: str) -> Ranges:
    out = []
    for text, line in items:
        try:
            out.append(parse_range(int(family), text))
        except ValueError as e:
            raise IpAssmtError(Diagnostic("error", "bad-address", f"`{text}` is not an IPv{int(family)} address, "
                                          f"prefix or range: {e}", Origin(file, line),
                                          "write ADDR, ADDR/LEN or FIRST-LAST")) from None
    return normalize(out)


def parse_ipassmt(text: str, file: str, family: Family) -> IpAssmt:
    """Read either spelling; a bad entry raises IpAssmtError pointing at its line."""
    bits = 32 if family is Family.IPV4 else 128
    result = IpAssmt(family, {}, file)
    clean = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    if "=" in clean:
        pos = 0
        for m in _FFFUU.finditer(clean):
            gap = clean[pos:m.start()].strip()
            if gap:
                raise _syntax(file, clean, pos + clean[pos:].index(gap[0]))
            pos = m.end()
            line0 = clean.count("\n", 0, m.start("body")) + 1
            items = []
            for k, chunk in enumerate(m.group("body").split("\n")):
                items += [(w.strip(), line0 + k) for w in chunk.split(",") if w.strip()]
            ranges = _ranges(items, family, file)
            result.ifaces[m.group("name")] = complement(ranges, bits) if m.group("neg") else ranges
        if clean[pos:].strip():
            raise _syntax(file, clean, pos + clean[pos:].index(clean[pos:].strip()[0]))
        return result
    for n, line in enumerate(clean.splitlines(), 1):
        words = line.replace(",", " ").split()
        if not words:
            continue
        name, rest = words[0], words[1:]
        neg = bool(rest) and rest[0] == "all-but"
        ranges = _ranges([(w, n) for w in rest[1 if neg else 0:]], family, file)
        result.ifaces[name] = complement(ranges, bits) if neg else ranges
    return result


def _syntax(file: str, text: str, at: int) -> IpAssmtError:
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return IpAssmtError(Diagnostic("error", "ipassmt-syntax", "expected `IFACE = [ADDR, ...]` or "
                                   "`IFACE = all_but_those_ips [ADDR, ...]`", Origin(file, line, col),
                                   "or use one line per interface: `eth0 192.0.2.0/24 198.51.100.0/24`"))


def everything(family: Family) -> Ranges:
    return full(32 if family is Family.IPV4 else 128)


def parse_routes(text: str, file: str, family: Family) -> dict[str, Ranges]:
    """`ip route` output as the destinations each device gets: longest prefix first, then lowest metric.

    With it the analysis reads `-o X` as `-d <what is routed via X>`, as fffuu's --routingtbl does.
    """
    bits = 32 if family is Family.IPV4 else 128
    routes = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if "dev" not in words or words.index("dev") + 1 >= len(words):
            raise IpAssmtError(Diagnostic("error", "route-syntax", "a route needs `dev DEVICE`", Origin(file, n),
                                          "paste the output of `ip route` (or `ip -6 route`)"))
        dest = "0.0.0.0/0" if family is Family.IPV4 else "::/0"
        if words[0] != "default":
            dest = words[0]
        try:
            lo, hi = parse_range(int(family), dest)
        except ValueError as e:
            raise IpAssmtError(Diagnostic("error", "bad-address", f"`{words[0]}` is not a route destination: {e}",
                                          Origin(file, n))) from None
        metric = int(words[words.index("metric") + 1]) if "metric" in words[:-1] else 0
        routes.append((hi - lo, metric, (lo, hi), words[words.index("dev") + 1]))
    claimed: Ranges = ()
    out: dict[str, Ranges] = {}
    for _, _, r, dev in sorted(routes, key=lambda x: (x[0], x[1])):  # narrowest, then lowest metric
        mine = intersect((r,), complement(claimed, bits))
        out[dev] = normalize(out.get(dev, ()) + mine)
        claimed = normalize(claimed + (r,))
    return out
