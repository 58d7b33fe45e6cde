"""Random native nftables tables for the kernel differential (test_nft_differential.py).

Each ruleset is two or three tables (`inet` and `ip`/`ip6`) whose base chains share the prerouting,
input and forward hooks at distinct priorities between the probe's raw table (-300, which drops the
sync packet) and its security table (50, which counts what got through); some run before conntrack
(-200). Rules use what semantics/nft.py models: addresses and prefixes (also of the other family in
an inet table), ports as values, ranges and anonymous sets, th, tcp flags, icmp types, interfaces,
ct state, named interval sets, concatenations, verdict maps, maps feeding `meta mark set`, ct mark,
limit and quota, log, notrack, and every verdict. Each rule counts in a `counter` placed right before
its verdict, so the counters say which rules matched.
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from stockade.model import Family

from .rulegen import FORWARD_POOLS, LOCAL_POOLS, PLENS, SRC_POOLS, Anchors, _net, _random_in

TABLES = {Family.IPV4: [("inet", "nfa"), ("ip", "nfb"), ("inet", "nfc")],
          Family.IPV6: [("inet", "nfa"), ("ip6", "nfb"), ("inet", "nfc")]}
TAKEN = {-300, -200, -150, 0, 50}  # the probe's raw, mangle, filter and security tables; conntrack
PRIOS = [p for p in range(-290, 46, 5) if p not in TAKEN]
STATES = ["new", "established", "related", "invalid", "untracked"]
ICMP = {Family.IPV4: ("icmp", ["echo-request", "echo-reply", "destination-unreachable", "time-exceeded", 13]),
        Family.IPV6: ("icmpv6", ["echo-request", "echo-reply", "destination-unreachable", "nd-neighbor-solicit",
                                 "mld-listener-query", 200])}
IFNAMES = ['"in0"', '"in*"', '"i*"', '"out0"', '"eth0"', '"in0x"']
OIFNAMES = ['"out0"', '"out*"', '"o*"', '"in0"']


@dataclass
class NftGenRuleset:
    family: Family
    text: str  # nft -f input: replaces the generator's tables, leaves every other table alone
    anchors: Anchors
    tables: list[tuple[str, str]] = field(default_factory=list)


class NftGen:
    def __init__(self, rng: random.Random, family: Family):
        self.rng, self.family = rng, family
        self.v4 = family is Family.IPV4
        self.ip = "ip" if self.v4 else "ip6"
        self.anchors = Anchors()
        self.used_prios: dict[str, set[int]] = {}

    # --- values ----------------------------------------------------------------------------
    def prefix(self, pools: list[str], anchor: list[int], family: Family | None = None) -> str:
        fam = family or self.family
        rng = self.rng
        base = _random_in(rng, _net(rng.choice(SRC_POOLS[fam] if pools is SRC_POOLS[self.family] else pools)))
        bits = 32 if fam is Family.IPV4 else 128
        plen = rng.choice(PLENS[fam])
        mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
        first, cls = base & mask, (ipaddress.IPv4Address if fam is Family.IPV4 else ipaddress.IPv6Address)
        last = first | ((1 << (bits - plen)) - 1)
        if fam is self.family:
            anchor += [first, last, first - 1, last + 1]
        return str(cls(first)) if plen == bits else f"{cls(first)}/{plen}"

    def port(self) -> int:
        p = self.rng.choice([22, 53, 80, 443, 1024, 8080, 40000, self.rng.randrange(1, 65536)])
        self.anchors.ports += [p, p + 1 if p < 65535 else p - 1]
        return p

    def ports(self) -> str:
        rng = self.rng
        kind = rng.random()
        if kind < 0.4:
            return str(self.port())
        if kind < 0.6:
            lo = self.port()
            hi = min(65535, lo + rng.choice([1, 10, 1000]))
            self.anchors.ports += [hi, min(65535, hi + 1)]
            return f"{lo}-{hi}"
        items = sorted({self.port() for _ in range(rng.randint(2, 5))})
        return "{ " + ", ".join(map(str, items)) + " }"

    # --- rules -----------------------------------------------------------------------------
    def matches(self, family: str, hook: str, regular: bool, ctx: dict) -> list[str]:
        """The rule's matches; ctx learns the network header (`ip`) and transport (`l4`) they commit it to,
        since nft refuses a rule that names two of either."""
        rng = self.rng
        out: list[str] = []
        addr_fam = self.family
        if family == "inet" and rng.random() < 0.15:  # the other family's header: never matches, no error
            addr_fam = Family.IPV6 if self.v4 else Family.IPV4
        ip = "ip" if addr_fam is Family.IPV4 else "ip6"
        ctx["ip"] = ip
        if rng.random() < 0.3:
            neg = "!= " if rng.random() < 0.2 else ""
            out.append(f"{ip} saddr {neg}{self.prefix(SRC_POOLS[self.family], self.anchors.src, addr_fam)}")
        if rng.random() < 0.2:
            pools = LOCAL_POOLS if hook == "input" else FORWARD_POOLS if hook == "forward" else \
                rng.choice([LOCAL_POOLS, FORWARD_POOLS])
            out.append(f"{ip} daddr {self.prefix(pools[addr_fam], self.anchors.dst, addr_fam)}")
        proto = rng.choices(["", "tcp", "udp", "icmp", "l4"], [30, 30, 15, 12, 5])[0]
        ctx["l4"] = proto
        committed = len(out)
        if proto == "tcp":
            if rng.random() < 0.5:
                out.append(f"tcp dport {self.ports()}")
            if rng.random() < 0.25:
                out.append(f"tcp sport {'!= ' if rng.random() < 0.2 else ''}{self.ports()}")
            if rng.random() < 0.3:
                out.append(rng.choice(["tcp flags & (syn|ack) == syn", "tcp flags syn", "tcp flags & (fin|syn|rst|ack) == ack",
                                       "tcp flags != syn", "tcp flags { syn, syn|ack }"]))
            if len(out) == committed:
                ctx["l4"] = ""  # no tcp test came out: the rule is not tcp's (nor is `th` its ports)
        elif proto == "udp":
            out.append(f"udp dport {self.ports()}" if rng.random() < 0.7 else f"meta l4proto udp th dport {self.ports()}")
        elif proto == "icmp":
            name, types = ICMP[addr_fam]
            t = rng.choice(types)
            out.append(f"{name} type {t}" if rng.random() < 0.7 else f"meta l4proto {name}")
        elif proto == "l4":
            out.append(f"meta l4proto {rng.choice(['tcp', 'udp', '{ tcp, udp }', '!= tcp'])}")
        if family == "inet" and rng.random() < 0.1:
            out.append(f"meta nfproto {'ipv4' if ip == 'ip' else 'ipv6'}")
        if hook in ("prerouting", "input", "forward") and not regular and rng.random() < 0.15:
            out.append(f"iifname {rng.choice(IFNAMES)}")
        if hook == "forward" and not regular and rng.random() < 0.15:
            out.append(f"oifname {rng.choice(OIFNAMES)}")
        if rng.random() < 0.2:
            states = rng.sample(STATES, rng.randint(1, 3))
            out.append(f"ct state {'!= ' if len(states) == 1 and rng.random() < 0.2 else ''}{','.join(states)}")
        if rng.random() < 0.08:
            out.append(f"meta length {rng.choice(['< 100', '> 60', '60-200'])}")
        if rng.random() < 0.06:
            out.append(f"{ip} {'ttl' if ip == 'ip' else 'hoplimit'} {rng.choice(['64', '!= 64', '< 64'])}")
        if rng.random() < 0.12:
            out.append("meta mark 0x1" if rng.random() < 0.5 else "meta mark != 0x0")
        if rng.random() < 0.06:
            out.append(f"ct mark {rng.choice(['0x0', '0x2'])}")
        return out

    def rule(self, family: str, hook: str, regular: bool, chains: list[str], sets: dict[str, str]) -> str:
        rng = self.rng
        ctx: dict = {}
        parts = self.matches(family, hook, regular, ctx)
        fits = [n for n in sets if (n not in ("src4", "pair") or ctx["ip"] == self.ip)
                and (n != "pair" or ctx["l4"] in ("", "tcp")) and (n != "ports" or ctx["l4"] != "icmp")]
        if fits and rng.random() < 0.35:
            name = rng.choice(fits)
            parts.append(sets[name].format(name=name))
            if name == "pair":
                ctx["l4"] = "tcp"
            elif name == "ports":
                ctx["l4"] = "th"  # `meta l4proto { tcp, udp }` commits the rule to neither tcp nor udp
        if rng.random() < 0.12:
            parts.append(f"limit rate {'over ' if rng.random() < 0.3 else ''}{rng.randint(1, 4)}/hour "
                         f"burst {rng.randint(1, 6)} packets")
        if rng.random() < 0.05:
            parts.append(f"quota {'over ' if rng.random() < 0.3 else ''}{rng.choice([200, 500, 1500])} bytes")
        if rng.random() < 0.08:
            parts.append(f"meta mark set {rng.choice(['0x1', '0x2', 'meta mark or 0x1'])}")
        if rng.random() < 0.05:
            parts.append(f"ct mark set {rng.choice(['0x2', 'meta mark'])}")
        if rng.random() < 0.04:
            parts.append(f'log prefix "gen{rng.randrange(100)} "')
        if not regular and hook == "prerouting" and rng.random() < 0.08:
            parts.append("notrack")
        if rng.random() < 0.07 and ctx["ip"] == self.ip:
            a, b = (ipaddress.ip_network(self.prefix(SRC_POOLS[self.family], self.anchors.src)) for _ in range(2))
            items = f"{a} : 0x1" + ("" if a.overlaps(b) else f", {b} : 0x2")
            parts.append(f"meta mark set {self.ip} saddr map {{ {items} }}")
        parts.append("counter")
        parts.append(self.verdict(hook, regular, chains, ctx["l4"]))
        return " ".join(p for p in parts if p)

    def verdict(self, hook: str, regular: bool, chains: list[str], l4: str) -> str:
        rng = self.rng
        choices = ["accept", "drop", "", "continue", "vmap"]
        weights = [25, 18, 18, 4, 8]
        if chains:
            choices += ["jump", "goto"]
            weights += [14, 5]
        if regular:
            choices.append("return")
            weights.append(6)
        if hook in ("input", "forward") and not regular:
            choices.append("reject")
            weights.append(5)
        v = rng.choices(choices, weights)[0]
        if v in ("jump", "goto"):
            return f"{v} {rng.choice(chains)}"
        if v == "reject":
            return "reject"
        if v == "vmap":
            targets = ["accept", "drop", "continue"] + ([f"jump {c}" for c in chains] if chains else [])
            ps = sorted({self.port() for _ in range(rng.randint(1, 4))})
            items = ", ".join(f"{p} : {rng.choice(targets)}" for p in ps)
            key = rng.choice([f"{l4} dport", "th dport"]) if l4 in ("tcp", "udp") else "th dport" if l4 == "th" \
                else "meta l4proto { tcp, udp } th dport"  # th of ICMP is its checksum, which the model lacks
            if rng.random() < 0.3:
                states = rng.sample(STATES[:4], rng.randint(1, 3))
                return "ct state vmap { " + ", ".join(f"{s} : {rng.choice(targets)}" for s in states) + " }"
            return f"{key} vmap {{ {items} }}"
        return v

    # --- tables ----------------------------------------------------------------------------
    def sets(self, family: str, table: str) -> tuple[list[str], dict[str, str]]:
        """Named set declarations and the match each offers a rule."""
        rng = self.rng
        decls, uses = [], {}
        addr = "ipv4_addr" if self.v4 else "ipv6_addr"
        if rng.random() < 0.7:
            nets: list = []
            for _ in range(rng.randint(1, 4)):  # disjoint: nft refuses overlapping intervals
                net = ipaddress.ip_network(self.prefix(SRC_POOLS[self.family], self.anchors.src))
                if not any(net.overlaps(n) for n in nets):
                    nets.append(net)
            elems = ", ".join(str(n) for n in sorted(nets))
            decls.append(f"set src4 {{ type {addr}; flags interval; auto-merge; elements = {{ {elems} }} }}")
            uses["src4"] = f"{self.ip} saddr {{neg}}@{{name}}".replace("{neg}", "!= " if rng.random() < 0.2 else "")
        if rng.random() < 0.5:
            items = sorted({(self._host(), self.port()) for _ in range(rng.randint(1, 4))})
            elems = ", ".join(f"{a} . {p}" for a, p in items)
            decls.append(f"set pair {{ type {addr} . inet_service; elements = {{ {elems} }} }}")
            uses["pair"] = f"{self.ip} saddr . tcp dport @{{name}}"
        if rng.random() < 0.3:
            items = sorted({self.port() for _ in range(rng.randint(1, 4))})
            decls.append("map ports { type inet_service : verdict; elements = { "
                         + ", ".join(f"{p} : {rng.choice(['accept', 'drop', 'continue'])}" for p in items) + " } }")
            uses["ports"] = "meta l4proto {{ tcp, udp }} th dport vmap @{name}"
        if rng.random() < 0.25:
            decls.append("set ifs { type ifname; elements = { \"in0\", \"out0\" } }")
            uses["ifs"] = "iifname @{name}"
        return decls, uses

    def _host(self) -> str:
        a = _random_in(self.rng, _net(self.rng.choice(SRC_POOLS[self.family])))
        self.anchors.src.append(a)
        return str(ipaddress.ip_address(a))

    def prio(self, hook: str) -> int:
        used = self.used_prios.setdefault(hook, set())
        p = self.rng.choice([p for p in PRIOS if p not in used])
        used.add(p)
        return p

    def ruleset(self) -> NftGenRuleset:
        rng = self.rng
        tables = TABLES[self.family][:rng.randint(2, 3)]
        out = []
        for family, name in dict.fromkeys(TABLES[Family.IPV4] + TABLES[Family.IPV6]):  # every earlier one goes
            out.append(f"table {family} {name}\ndelete table {family} {name}")
        for family, name in tables:
            decls, uses = self.sets(family, name)
            regular = [f"c{i}" for i in range(rng.randint(0, 2))]
            body = decls[:]
            hooks = rng.sample(["prerouting", "input", "forward", "input"], rng.randint(1, 3))
            for n, hook in enumerate(dict.fromkeys(hooks)):
                policy = "drop" if rng.random() < 0.15 else "accept"
                rules = [self.rule(family, hook, False, regular, uses) for _ in range(rng.randint(1, 8))]
                body.append(f"chain b{n} {{\n type filter hook {hook} priority {self.prio(hook)}; policy {policy};\n "
                            + "\n ".join(rules) + "\n}")
            for i, c in enumerate(regular):
                later = regular[i + 1:]
                rules = [self.rule(family, "input", True, later, {k: v for k, v in uses.items() if "vmap" not in v
                                                                   or later})
                         for _ in range(rng.randint(0, 5))]
                body.append(f"chain {c} {{\n " + "\n ".join(rules) + "\n}")
            out.append(f"table {family} {name} {{\n" + "\n".join(body) + "\n}")
        return NftGenRuleset(self.family, "\n".join(out) + "\n", self.anchors, tables)
