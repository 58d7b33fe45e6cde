"""Random filter rulesets, and packets aimed at their edges, for the kernel differential test.

Rules are built from what the simulator has semantics for: the core fields
(-s/-d with prefixes and `!`, -i/-o, -p, -f), tcp/udp ports and flags, user
chains with jump/goto/RETURN, ACCEPT/DROP, and, once their modules implement
`holds`/`act`, state, conntrack --ctstate, multiport, icmp, icmp6 and LOG.
Packets are drawn to land on both sides of every edge the rules draw: the first
and last address of a prefix and the ones just outside, ports at range ends and
one beyond, every TCP flag combination of interest, ICMP types, fragments.
All addresses are documentation ranges the lab topology routes.
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from stockade.extensions import REGISTRY
from stockade.extensions.base import Extension
from stockade.model import Family
from stockade.model.packet import Packet

SRC_POOLS = {Family.IPV4: ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"],
             Family.IPV6: ["2001:db8::/64", "2001:db8:1::/64", "2001:db8:2::/64"]}
# Destinations the server takes in (INPUT) and routes on to the far host (FORWARD).
LOCAL_POOLS = {Family.IPV4: ["203.0.113.0/24", "192.0.2.1/32"], Family.IPV6: ["2001:db8:2::/64", "2001:db8::1/128"]}
FORWARD_POOLS = {Family.IPV4: ["198.51.100.0/24"], Family.IPV6: ["2001:db8:1::/64"]}
FORWARD_EXCLUDED = {Family.IPV4: frozenset({"198.51.100.0", "198.51.100.1", "198.51.100.255"}),
                    Family.IPV6: frozenset({"2001:db8:1::", "2001:db8:1::1"})}  # the server's own or broadcast
MARTIANS = {Family.IPV4: ["127.0.0.1", "0.0.0.1", "224.0.0.5", "240.0.0.1", "255.255.255.255"],
            Family.IPV6: ["::1", "ff02::1", "::ffff:192.0.2.9", "::"]}
PLENS = {Family.IPV4: [8, 16, 23, 24, 25, 28, 30, 31, 32], Family.IPV6: [32, 48, 63, 64, 96, 112, 120, 127, 128]}
IFACES_IN = ["in0", "in+", "i+", "out0", "eth0", "+", "in0x"]
IFACES_OUT = ["out0", "out+", "o+", "in0", "eth+", "+"]
IN_IF, OUT_IF = "in0", "out0"

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
TCP_FLAG_SETS = [SYN, ACK, 0, FIN | PSH | URG, SYN | FIN, RST, RST | ACK, SYN | ACK, FIN | ACK, FIN,
                 0x3F, SYN | ECE | CWR, ACK | PSH, ACK | URG, SYN | URG, SYN | RST, FIN | ACK | URG]
FLAG_NAMES = (("FIN", FIN), ("SYN", SYN), ("RST", RST), ("PSH", PSH), ("ACK", ACK), ("URG", URG))
ICMP_TYPES = {Family.IPV4: [0, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 42, 200],
              Family.IPV6: [1, 2, 3, 4, 100, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 139, 140, 143, 200]}
ICMP_PROTO = {Family.IPV4: 1, Family.IPV6: 58}
STATES = ["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"]


def has_semantics(kind: str, name: str, family: Family) -> bool:
    """Whether the extension exists and implements its packet semantics (holds / act)."""
    ext = REGISTRY.find(kind, name, family)
    if ext is None:
        return False
    method = "holds" if kind == "match" else "act"
    return getattr(type(ext), method) is not getattr(Extension, method)


@dataclass(frozen=True)
class Features:
    state: bool
    conntrack: bool
    multiport: bool
    icmp: bool
    log: bool

    @classmethod
    def detect(cls, family: Family) -> Features:
        return cls(state=has_semantics("match", "state", family),
                   conntrack=has_semantics("match", "conntrack", family),
                   multiport=has_semantics("match", "multiport", family),
                   icmp=has_semantics("match", "icmp" if family is Family.IPV4 else "icmp6", family),
                   log=has_semantics("target", "LOG", family))

    def names(self) -> list[str]:
        return [k for k, v in self.__dict__.items() if v]


@dataclass
class Anchors:
    """Values the rules mention, so packets can be aimed at both sides of each."""

    src: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    icmp: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class GenRuleset:
    family: Family
    text: str
    anchors: Anchors
    uses_ct: bool  # the filter rules themselves load conntrack


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def _random_in(rng: random.Random, net) -> int:
    return int(net.network_address) + rng.randrange(net.num_addresses)


class RulesetGen:
    """combined_ports_bug: the loading iptables installs `! --sport P ! --dport Q` (single non-zero
    ports, both inverted) wrongly (iptables-nft < 1.8.11, see test_inverted_single_ports_...), so such
    a pair is never generated: it would test that bug, which its own test covers, not the kernel."""

    def __init__(self, rng: random.Random, family: Family, feats: Features, combined_ports_bug: bool = False):
        self.rng, self.family, self.feats = rng, family, feats
        self.combined_ports_bug = combined_ports_bug
        self.v4 = family is Family.IPV4
        self.anchors = Anchors()
        self.uses_ct = False

    # --- addresses -------------------------------------------------------------------------
    def _prefix(self, pools: list[str], anchor: list[int]) -> str:
        rng = self.rng
        base = _random_in(rng, _net(rng.choice(pools)))
        bits = 32 if self.v4 else 128
        cls = ipaddress.IPv4Address if self.v4 else ipaddress.IPv6Address
        if self.v4 and rng.random() < 0.05:  # a non-contiguous mask, which iptables keeps as written
            mask = rng.choice([0xFFFF00FF, 0xFF00FFFF, 0xFFFFFF0F])
            net = base & mask
            anchor += [net, net | (~mask & 0xFFFFFFFF), base ^ 0x100]
            return f"{cls(net)}/{cls(mask)}"
        plen = rng.choice(PLENS[self.family])
        mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
        first = base & mask
        last = first | ((1 << (bits - plen)) - 1)
        anchor += [first, last, first - 1, last + 1, _random_in(rng, ipaddress.ip_network((cls(first), plen)))]
        return f"{cls(first)}/{plen}"

    # --- ports -----------------------------------------------------------------------------
    def _port(self) -> int:
        return self.rng.choice([0, 1, 22, 53, 80, 443, 1023, 1024, 8080, 40000, 65534, 65535,
                                self.rng.randrange(65536)])

    def _range(self) -> tuple[int, int]:
        lo = self._port()
        if self.rng.random() < 0.5:
            hi = lo
        else:
            hi = min(65535, lo + self.rng.choice([1, 2, 10, 1000, 30000]))
        for p in (lo - 1, lo, hi, hi + 1):
            if 0 <= p <= 65535:
                self.anchors.ports.append(p)
        return lo, hi

    def _ports_opt(self, flag: str, other: list[str] | None = None) -> list[str]:
        lo, hi = self._range()
        neg = ["!"] if self.rng.random() < 0.25 else []
        if (self.combined_ports_bug and neg and lo == hi != 0 and other and other[0] == "!"
                and ":" not in other[2] and other[2] != "0"):
            neg = []
        return neg + [flag, str(lo) if lo == hi else f"{lo}:{hi}"]

    def _flags(self, value: int) -> str:
        return ",".join(n for n, b in FLAG_NAMES if value & b) or "NONE"

    # --- rules -----------------------------------------------------------------------------
    def rule(self, chain: str, users: list[str], idx: int | None) -> str:
        """One `-A CHAIN ...` line; idx is the user chain's position (jumps only go forward)."""
        rng = self.rng
        w: list[str] = ["-A", chain]

        def neg(p: float = 0.25) -> list[str]:
            return ["!"] if rng.random() < p else []

        dst_pools = (LOCAL_POOLS if chain == "INPUT" else FORWARD_POOLS if chain == "FORWARD" else
                     rng.choice([LOCAL_POOLS, FORWARD_POOLS]))[self.family]
        if rng.random() < 0.35:
            w += neg() + ["-s", self._prefix(SRC_POOLS[self.family], self.anchors.src)]
        if rng.random() < 0.3:
            w += neg() + ["-d", self._prefix(dst_pools, self.anchors.dst)]
        if chain != "OUTPUT" and rng.random() < 0.15:
            w += neg() + ["-i", rng.choice(IFACES_IN)]
        if chain != "INPUT" and rng.random() < 0.12:
            w += neg() + ["-o", rng.choice(IFACES_OUT)]
        icmp_name = "icmp" if self.v4 else "ipv6-icmp"
        proto = rng.choices(["", "tcp", "udp", icmp_name, "!tcp", "!udp", "all", "!icmp"],
                            [30, 28, 16, 12, 4, 3, 2, 2])[0]
        if proto == "!icmp":
            proto = "!" + icmp_name
        if proto.startswith("!"):
            w += ["!", "-p", proto[1:]]
        elif proto:
            w += ["-p", proto]
        if self.v4 and rng.random() < 0.07:
            w += neg(0.5) + ["-f"]
        if proto in ("tcp", "udp"):
            opts: list[str] = []
            if rng.random() < 0.4:
                opts += self._ports_opt("--sport")
            if rng.random() < 0.6:
                opts += self._ports_opt("--dport", opts)
            if proto == "tcp" and rng.random() < 0.35:
                if rng.random() < 0.25:
                    opts += neg() + ["--syn"]
                else:
                    mask = rng.randrange(1, 64)
                    comp = rng.randrange(64) & mask
                    opts += neg() + ["--tcp-flags", self._flags(mask), self._flags(comp)]
            if opts:
                w += ["-m", proto] + opts
            if self.feats.multiport and rng.random() < 0.3:
                w += self._multiport()
        if proto == icmp_name and self.feats.icmp and rng.random() < 0.6:
            t = rng.choice(ICMP_TYPES[self.family])
            if rng.random() < 0.3:
                code = rng.choice([0, 1, 3, 4])
                spec = f"{t}/{code}"
                self.anchors.icmp.append((t, code))
            else:
                spec = str(t)
                self.anchors.icmp.append((t, 0))
            if self.v4:
                w += ["-m", "icmp"] + neg() + ["--icmp-type", spec]
            else:
                w += ["-m", "icmp6"] + neg() + ["--icmpv6-type", spec]
        if self.feats.state and rng.random() < 0.25:
            w += ["-m", "state"] + neg(0.15) + ["--state", ",".join(rng.sample(STATES, rng.randint(1, 3)))]
            self.uses_ct = True
        if self.feats.conntrack and rng.random() < 0.15:
            w += ["-m", "conntrack"] + neg(0.15) + ["--ctstate", ",".join(rng.sample(STATES, rng.randint(1, 3)))]
            self.uses_ct = True
        if rng.random() < 0.04:
            w += ["-m", "comment", "--comment", f'"rule {rng.randrange(1000)}"']
        w += self._target(chain, users, idx)
        return " ".join(w)

    def _multiport(self) -> list[str]:
        rng = self.rng
        items, slots = [], 0
        while slots < rng.randint(1, 15):
            lo, hi = self._range()
            if lo != hi and slots + 2 > 15:
                break
            items.append(str(lo) if lo == hi else f"{lo}:{hi}")
            slots += 1 if lo == hi else 2
        flag = rng.choice(["--dports", "--sports", "--ports"])
        return ["-m", "multiport"] + (["!"] if rng.random() < 0.25 else []) + [flag, ",".join(items)]

    def _target(self, chain: str, users: list[str], idx: int | None) -> list[str]:
        rng = self.rng
        reachable = users if idx is None else users[idx + 1:]
        choices = ["ACCEPT", "DROP", "", "RETURN"] + (["jump", "goto"] if reachable else [])
        weights = [25, 20, 15, 8] + ([18, 6] if reachable else [])
        if self.feats.log:
            choices.append("LOG")
            weights.append(6)
        t = rng.choices(choices, weights)[0]
        if t == "":
            return []
        if t == "jump":
            return ["-j", rng.choice(reachable)]
        if t == "goto":
            return ["-g", rng.choice(reachable)]
        if t == "LOG":
            return ["-j", "LOG", "--log-prefix", f'"gen{rng.randrange(100)}: "']
        return ["-j", t]

    def ruleset(self) -> GenRuleset:
        rng = self.rng
        users = [f"U{i}" for i in range(rng.randint(0, 3))]
        lines = ["*filter"]
        for chain in ("INPUT", "FORWARD", "OUTPUT"):
            lines.append(f":{chain} {rng.choice(['ACCEPT', 'DROP']) if chain != 'OUTPUT' else 'ACCEPT'} [0:0]")
        lines += [f":{u} - [0:0]" for u in users]
        for chain, n in (("INPUT", rng.randint(1, 10)), ("FORWARD", rng.randint(0, 6))):
            lines += [self.rule(chain, users, None) for _ in range(n)]
        for i, u in enumerate(users):
            lines += [self.rule(u, users, i) for _ in range(rng.randint(0, 6))]
        lines.append("COMMIT")
        return GenRuleset(self.family, "\n".join(lines) + "\n", self.anchors, self.uses_ct)


# --- packets ---------------------------------------------------------------------------------

def _in_pools(family: Family, value: int, pools: list[str]) -> bool:
    cls = ipaddress.IPv4Address if family is Family.IPV4 else ipaddress.IPv6Address
    if not 0 <= value < (1 << (32 if family is Family.IPV4 else 128)):
        return False
    return any(cls(value) in _net(p) for p in pools)


class PacketGen:
    def __init__(self, rng: random.Random, gen: GenRuleset):
        self.rng, self.gen, self.family = rng, gen, gen.family
        self.v4 = gen.family is Family.IPV4

    def _addr(self, anchors: list[int], pools: list[str], excluded: frozenset[str] = frozenset()) -> int:
        """An address the rules mention (or one just beside it) if it lies in `pools`, else a random one."""
        rng = self.rng
        cls = ipaddress.IPv4Address if self.v4 else ipaddress.IPv6Address
        while True:
            if anchors and rng.random() < 0.65:
                a = rng.choice(anchors)
            else:
                a = _random_in(rng, _net(rng.choice(pools)))
            if _in_pools(self.family, a, pools) and str(cls(a)) not in excluded:
                return a

    def _port(self) -> int:
        rng = self.rng
        if self.gen.anchors.ports and rng.random() < 0.7:
            return rng.choice(self.gen.anchors.ports)
        return rng.choice([rng.randrange(1, 65536), 22, 53, 1024, 40000])

    def packet(self) -> Packet:
        rng, fam = self.rng, self.family
        hook = "FORWARD" if rng.random() < 0.25 else "INPUT"
        if hook == "INPUT":
            dst = self._addr(self.gen.anchors.dst, LOCAL_POOLS[fam])
        else:
            dst = self._addr(self.gen.anchors.dst, FORWARD_POOLS[fam], FORWARD_EXCLUDED[fam])
        if rng.random() < 0.025:
            src = int(ipaddress.ip_address(rng.choice(MARTIANS[fam])))
        else:
            src = self._addr(self.gen.anchors.src, SRC_POOLS[fam])
        proto = rng.choices([6, 17, ICMP_PROTO[fam], 253], [40, 25, 28, 7])[0]
        kw: dict = {}
        if proto in (6, 17):
            kw["sport"], kw["dport"] = self._port(), self._port()
        if proto == 6:
            kw["tcp_flags"] = rng.choice(TCP_FLAG_SETS) if rng.random() < 0.85 else rng.randrange(256)
        if proto in (1, 58):
            if self.gen.anchors.icmp and rng.random() < 0.5:
                t, c = rng.choice(self.gen.anchors.icmp)
                c = rng.choice([c, c + 1, 0])
            else:
                t, c = rng.choice(ICMP_TYPES[fam]), rng.choice([0, 0, 0, 1, 3])
            kw["icmp_type"], kw["icmp_code"] = t, c
        if rng.random() < 0.06:
            kw["frag_offset"] = rng.choice([0, 1, 3, 185])
            kw["more_fragments"] = kw["frag_offset"] == 0 or rng.random() < 0.5
        length = {6: 40, 17: 28, 1: 28, 58: 48, 253: 28}[proto] + (0 if self.v4 else 20)
        return Packet(family=fam, proto=proto, src=src, dst=dst, iif=IN_IF,
                      oif=OUT_IF if hook == "FORWARD" else None, hook=hook,
                      length=length + rng.choice([0, 0, 8, 100]), **kw)
