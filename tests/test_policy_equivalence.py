"""Issue 4, "Must show": a policy's IPv4 and IPv6 renderings accept the same packets, and exactly the
packets the policy says (here: the simulator on the compiled model; tests/kernel/test_policy_backends.py
sends the same probes at the iptables and the nftables renderings in a namespace).

Policies: every example, and STOCKADE_EQ_POLICIES (default 25) random valid policies (`random_policy`:
catalogue and custom services with ports and ranges, groups with IPv4 and IPv6 members, some of one
family only, some read from a file, admin groups, blocklists in and out, per-source limits, every ping
mode, closed drop/reject, egress open/strict, each protection on or off, drops logged with LOG or NFLOG).
Seed fixed under CI=true, random otherwise, always printed; STOCKADE_SEED overrides it. The lab server's interface is in0, so
the examples' `eth0` is read as `in0` and every probe arrives on in0.

Probes (`plan`): sources inside each group member and just past its end, outside every group, bogons;
every allowed port, one below and one above, and closed ports; TCP SYN, lone ACK, NULL, XMAS,
FIN/PSH/URG and SYN/ACK, UDP, ICMP echo and echo reply, ICMP errors, ICMPv6 neighbour discovery with
hop limit 255 and 64, MLD from link-local and global sources; and, leaving the server, connections
to each egress port and destination. An IPv4 probe from (to) address a corresponds to the IPv6 probe
from (to) 2001:db8:64::a (groups list the image of an IPv4 member as 2001:db8:64::/96 + it), and an
IPv6 group member's probe to the IPv4 probe of a source in the same groups.

Checks, per probe: the simulator's verdict (with the REJECT reply type) equals `PolicyView.verdict`,
the policy read straight from its schema (with the compiler's bogon list and the service catalogue),
not from the compiled rules; and for corresponding probes
the IPv4 and IPv6 verdicts are equal unless `family_specific` names what in the policy tells them
apart (a group with members of one family only, a bogon of one family, ICMPv6 errors that RFC 4890
says to accept). Each probe runs on fresh simulator memory, so no rate limit trips here.
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from stockade.model import Family
from stockade.model.packet import Packet, from_json
from stockade.policy.catalogue import CATALOGUE, Port, resolve
from stockade.policy.compile import BOGONS, CompiledPolicy, compile_policy
from stockade.policy.schema import RESERVED, FileGroup
from stockade.semantics.simulate import Result, Simulator

CI = os.environ.get("CI") == "true"
SEED = int(os.environ.get("STOCKADE_SEED") or (20250404 if CI else random.randrange(1, 2**31)))
POLICIES = int(os.environ.get("STOCKADE_EQ_POLICIES", "25"))
EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.toml"))
SHOWN = 10

IIF = "in0"  # where probes arrive (and leave), the lab server's interface
SERVER = {4: "192.0.2.1", 6: "2001:db8::1"}
MAP6 = ipaddress.IPv6Network("2001:db8:64::/96")  # the IPv6 image of IPv4 address a is 2001:db8:64::a
LINK_LOCAL = "fe80::2"

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ALL = FIN | SYN | RST | PSH | ACK | URG  # what iptables' `--tcp-flags ALL` means
TCP_KINDS = {"syn": ("SYN",), "ack": ("ACK",), "null": (), "xmas": ("FIN", "SYN", "RST", "PSH", "ACK", "URG"),
             "fpu": ("FIN", "PSH", "URG"), "synack": ("SYN", "ACK")}
FLAG_BITS = {"FIN": FIN, "SYN": SYN, "RST": RST, "PSH": PSH, "ACK": ACK, "URG": URG}
ICMP_KINDS = {"echo": (8, 128), "echo-reply": (0, 129), "unreach": (3, 1), "time-exceeded": (11, 3)}
ND, MLD = (133, 134, 135, 136), (130, 131, 132, 143)
# The conntrack state of each kind of packet when it opens a flow (measured: tests/kernel/test_differential).
STATE = {"syn": "NEW", "ack": "NEW", "null": "INVALID", "xmas": "INVALID", "fpu": "INVALID", "synack": "INVALID",
         "udp": "NEW", "echo": "NEW", "echo-reply": "INVALID", "unreach": "INVALID", "time-exceeded": "INVALID",
         "too-big": "INVALID", "icmp6": "UNTRACKED"}


def to6(addr: str) -> str:
    return str(MAP6[int(ipaddress.IPv4Address(addr))])


def net6(net: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network((int(MAP6.network_address) + int(net.network_address), 96 + net.prefixlen))


# -- random policies --------------------------------------------------------------------------------------

@dataclass
class GenPolicy:
    name: str
    text: str
    files: dict[str, str]  # group files next to the policy


GROUPS = ("admins", "ops", "partners", "monitoring", "blocked", "appservers", "backup", "vpn")
V4_BASES = ("198.51.100.0/24", "203.0.113.0/24", "45.33.0.0/16", "100.64.0.0/16", "10.20.0.0/16")  # 2 bogons
V6_NATIVE = ("2001:db8:1::/48", "2001:db8:5:6::/64", "2001:db8:ab::7/128", "fec0:1::/32")  # the last a bogon
# Per-source service limits: the count is the burst. Ping and SYN-flood limits take any burst up to 300 with
# these rates (xt_hashlimit refuses a bucket its 64-bit credit counter cannot hold, e.g. 1/day burst 2).
RATES = ("10/10m", "5/minute", "30/minute", "100/hour", "3/second", "20/5m", "7/hour", "1/day", "45/15m", "2/10s")
BUCKET_RATES = ("5/second", "1/second", "10/minute", "2/10s", "30/minute", "100/hour", "50/second")
KERNEL_RATES = ("30/minute", "100/hour", "60/minute", "45/15m", "200/day", "40/second")  # bursts of 30 and more
LOWER = "abcdefghijklmnopqrstuvwxyz"
PREFIX_CHARS = LOWER + LOWER.upper() + "0123456789_.:=- "


def _q(x) -> str:
    return json.dumps(x)  # a TOML basic string or array of strings


def _member_nets(rng: random.Random) -> list[ipaddress.IPv4Network]:
    out = []
    for _ in range(rng.randint(1, 3)):
        base = ipaddress.IPv4Network(rng.choice(V4_BASES))
        plen = max(base.prefixlen, rng.choice((32, 32, 31, 30, 28, 26, 24)))
        subnets = 2 ** (plen - base.prefixlen)
        out.append(ipaddress.IPv4Network((int(base.network_address) + rng.randrange(subnets) * 2 ** (32 - plen),
                                          plen)))
    return out


def _group(rng: random.Random) -> list[str]:
    """Members: IPv4 networks, their IPv6 images (each kept or left out), sometimes native IPv6 ones."""
    if rng.random() < 0.04:
        return []
    members: list[str] = []
    for net in _member_nets(rng):
        v4, v6 = rng.random() < 0.85, rng.random() < 0.85
        members += ([str(net)] if v4 or not v6 else []) + ([str(net6(net))] if v6 else [])
    if rng.random() < 0.25:
        members.append(rng.choice(V6_NATIVE))
    return members


def _group_file(rng: random.Random, name: str, members: list[str]) -> str:
    """A group file: comments, blank lines, networks written with host bits (a file may), and now and
    then a hundred more IPv4 entries, some overlapping."""
    lines = [f"# group {name}"]
    for m in members:
        net = ipaddress.ip_network(m)
        if net.num_addresses > 1 and rng.random() < 0.3:
            m = f"{net.network_address + 1}/{net.prefixlen}"
        lines += [f"{m}  # member", ""]
    if rng.random() < 0.3:
        lines += [f"45.33.{rng.randrange(256)}.{rng.randrange(256)}" + rng.choice(("", "", "/24", "/30"))
                  for _ in range(100)]
    return "\n".join(lines) + "\n"


def _port_service(rng: random.Random) -> str:
    proto = rng.choice(("tcp", "tcp", "udp"))
    lo = rng.choice((rng.randint(1, 1024), rng.randint(1025, 65535)))
    if rng.random() < 0.3:
        hi = min(65535, lo + rng.randint(1, 40))
        return f"{lo}{rng.choice('-:')}{hi}/{proto}"
    return f"{lo}/{proto}"


def _services(rng: random.Random) -> list[str]:
    n = rng.choice((1, 1, 2, 3, 4, 12))  # 12: more than multiport's 15 slots with ranges
    return list(dict.fromkeys(rng.choice(sorted(CATALOGUE)) if rng.random() < 0.5 else _port_service(rng)
                              for _ in range(n)))


def _names(rng: random.Random, groups: list[str], everyone: float) -> list[str]:
    if not groups or rng.random() < everyone:
        return ["everyone"]
    picked = rng.sample(groups, rng.randint(1, min(2, len(groups))))
    return picked + (["everyone"] if rng.random() < 0.05 else [])


def random_policy(rng: random.Random, name: str, kernel: bool = False) -> GenPolicy:
    """A valid policy using every part of the schema. `kernel`: rate limits with bursts of 30 packets and
    more, so the kernel test's probes never exhaust one (test_policy_backends trips them on purpose)."""
    rates = KERNEL_RATES if kernel else RATES
    groups = rng.sample(GROUPS, rng.randint(1, 4))
    odd = rng.choice(LOWER) + "".join(rng.choice(LOWER + "0123456789_-") for _ in range(rng.randint(0, 18)))
    if rng.random() < 0.3 and odd not in (*GROUPS, *RESERVED):  # any name the schema allows (19 characters at most)
        groups[0] = odd
    files: dict[str, str] = {}
    lines = []
    admin = rng.sample(groups, 1) if rng.random() < 0.4 else []
    if admin:
        lines.append(f"admin = {_q(admin)}")
    lines += ["[server]", f"interfaces = {_q(rng.choice([[IIF], ['in+'], ['eth0'], [IIF, 'eth1']]))}",
              "", "[groups]"]
    for g in groups:
        members = _group(rng)
        if members and rng.random() < 0.2:
            files[f"{g}.txt"] = _group_file(rng, g, members)
            lines.append(f'{g} = {{ file = "{g}.txt" }}')
        else:
            lines.append(f"{g} = {_q(members)}")
    lines += ["", "[defaults]", f"closed = {_q(rng.choice(['drop', 'reject']))}",
              f"egress = {_q(rng.choice(['open', 'strict']))}",
              "", "[log]", f"drops = {str(rng.random() < 0.7).lower()}", f"rate = {_q(rng.choice(BUCKET_RATES))}",
              f"burst = {rng.randint(1, 20)}",
              f"prefix = {_q(''.join(rng.choice(PREFIX_CHARS) for _ in range(rng.randint(1, 28))))}",
              *(['target = "nflog"', f"group = {rng.randint(0, 65535)}"] if rng.random() < 0.3 else []),
              "", "[icmp]", f"ping = {_q(rng.choice(['allow', 'limit', 'deny']))}",
              f"ping_out = {_q(rng.choice(['allow', 'deny']))}",
              f"rate = {_q(rng.choice(BUCKET_RATES))}",
              f"burst = {rng.randint(30, 60) if kernel else rng.randint(1, 20)}",
              "", "[protect]"]
    lines += [f"{k} = {str(rng.random() < 0.7).lower()}" for k in ("invalid", "null", "xmas", "new_without_syn",
                                                                    "bogons")]
    if rng.random() < 0.3:
        lines.append("syn_flood = false")
    else:
        lines += ["[protect.syn_flood]", f"rate = {_q(rng.choice(BUCKET_RATES))}",
                  f"burst = {rng.randint(100, 300) if kernel else rng.randint(1, 200)}"]
    lines += ["", "[blocklist]"]
    for way, p in (("inbound", 0.4), ("outbound", 0.3)):
        if rng.random() < p:
            lines.append(f"{way} = {_q(rng.sample(groups, 1))}")
    for _ in range(rng.randint(1, 5)):
        svc = _services(rng)
        lines += ["", "[[allow]]", f"service = {_q(svc[0] if len(svc) == 1 and rng.random() < 0.5 else svc)}"]
        src = _names(rng, groups, 0.4)
        if src != ["everyone"] or rng.random() < 0.5:
            lines.append(f"from = {_q(src)}")
        if rng.random() < 0.35:
            lines.append(f"limit = {_q(rng.choice(rates))}")
    for _ in range(rng.randint(0, 3)):
        lines += ["", "[[egress]]", f"service = {_q(_services(rng))}", f"to = {_q(_names(rng, groups, 0.5))}"]
    return GenPolicy(name, "\n".join(lines) + "\n", files)


def example_policies() -> list[GenPolicy]:
    out = []
    for path in EXAMPLES:
        text = path.read_text().replace('interfaces = ["eth0"]', f'interfaces = ["{IIF}"]')
        files = {f.name: f.read_text() for f in path.parent.iterdir() if f.suffix == ".txt"}
        out.append(GenPolicy(path.stem, text, files))
    return out


def compile_gen(gp: GenPolicy, where: Path) -> CompiledPolicy:
    """Compile a generated policy written out under `where` (with its group files)."""
    where.mkdir(parents=True, exist_ok=True)
    for name, text in gp.files.items():
        (where / name).write_text(text)
    path = where / f"{gp.name}.toml"
    path.write_text(gp.text)
    return compile_policy(path)


# -- what the policy says ---------------------------------------------------------------------------------

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def iface_matches(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


class PolicyView:
    """The policy as its schema describes it, with every group read into networks per family."""

    def __init__(self, c: CompiledPolicy, base: Path):
        self.p = c.policy
        self.nets: dict[str, list[Net]] = {}
        for name, spec in self.p.groups.items():
            if isinstance(spec, FileGroup):
                entries = [line.split("#", 1)[0].strip() for line in (base / spec.file).read_text().splitlines()]
            else:
                entries = list(spec)
            self.nets[name] = [ipaddress.ip_network(e, strict=False) for e in entries if e]
        self.bogons = [ipaddress.ip_network(n) for fam in BOGONS.values() for n in fam]
        self._member: dict[tuple[str, str], bool] = {}

    def member(self, group: str, addr: str) -> bool:
        if group == "everyone":
            return True
        if (group, addr) not in self._member:
            a = ipaddress.ip_address(addr)
            self._member[group, addr] = any(a.version == n.version and a in n for n in self.nets[group])
        return self._member[group, addr]

    def any_member(self, groups: list[str], addr: str) -> bool:
        return any(self.member(g, addr) for g in groups)

    def membership(self, addr: str) -> tuple[bool, ...]:
        return tuple(self.member(g, addr) for g in self.nets)

    def bogon(self, addr: str) -> bool:
        """Whether the bogon protection drops this source on the probes' interface."""
        a = ipaddress.ip_address(addr)
        return (self.p.protect.bogons and any(iface_matches(IIF, i) for i in self.p.server.interfaces)
                and any(a.version == n.version and a in n for n in self.bogons))

    def opens(self, services: list[str], s: Spec) -> bool:
        proto = {"udp": "udp"}.get(s.kind, "tcp" if s.kind in TCP_KINDS else None)
        return any(p.proto == proto and p.lo <= s.dport <= p.hi for name in services for p in resolve(name).ports)

    def verdict(self, s: Spec) -> str:
        return self._input(s) if s.hook == "INPUT" else self._output(s)

    def _unreachable(self, s: Spec) -> str:
        return "REJECT/icmp-port-unreachable" if s.family == 4 else "REJECT/icmp6-port-unreachable"

    def _input(self, s: Spec) -> str:
        p, pr = self.p, self.p.protect
        closed = "DROP" if p.defaults.closed == "drop" else \
            "REJECT/tcp-reset" if s.kind in TCP_KINDS else self._unreachable(s)
        flags, state = s.flags, STATE[s.kind]
        if s.kind in TCP_KINDS and ((pr.null and flags == 0) or (pr.xmas and flags == ALL) or (
                pr.new_without_syn and state == "NEW" and flags & (FIN | SYN | RST | ACK) != SYN)):
            return closed
        if pr.invalid and state == "INVALID":
            return closed
        if self.any_member(p.blocklist.inbound, s.peer):
            return "DROP"
        if self.bogon(s.peer):
            return closed
        if s.family == 6 and s.icmp_type is not None:  # RFC 4890: what IPv6 needs, whatever the ping policy
            t = s.icmp_type
            if t in (1, 2, 3, 4) or (t in ND and s.hl == 255) or (t in MLD and s.peer.startswith("fe80:")):
                return "ACCEPT"
        if s.kind == "echo" and p.icmp.ping != "deny":
            return "ACCEPT"
        if self.any_member(p.admin, s.peer):
            return "ACCEPT"
        for allow in p.allow:
            if self.any_member(allow.sources, s.peer) and s.dport is not None and self.opens(allow.services, s) \
                    and (allow.limit is None or state == "NEW"):  # a limit counts new connections only
                return "ACCEPT"
        return closed

    def _output(self, s: Spec) -> str:
        p = self.p
        if self.any_member(p.blocklist.outbound, s.peer):
            return self._unreachable(s)
        if p.defaults.egress == "open":
            return "ACCEPT"
        if s.family == 6 and s.icmp_type in ND + MLD:
            return "ACCEPT"
        if s.kind == "echo" and p.icmp.ping_out == "allow":
            return "ACCEPT"
        for eg in p.egress:
            if self.any_member(eg.targets, s.peer) and s.dport is not None and self.opens(eg.services, s):
                return "ACCEPT"
        return self._unreachable(s)


# -- probes -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """One probe: `peer` is the source of an arriving packet, the destination of a leaving one."""

    family: int
    kind: str
    hook: str
    peer: str
    dport: int | None = None
    icmp_type: int | None = None
    hl: int = 64

    @property
    def flags(self) -> int:
        return sum(FLAG_BITS[f] for f in TCP_KINDS.get(self.kind, ()))

    def json(self) -> dict:
        local = SERVER[self.family]
        spec: dict = {"src": self.peer, "dst": local, "iif": IIF} if self.hook == "INPUT" else \
            {"src": local, "dst": self.peer, "oif": IIF, "hook": "OUTPUT"}
        if self.kind in TCP_KINDS:
            spec.update(proto="tcp", sport=40000, dport=self.dport, tcp_flags=list(TCP_KINDS[self.kind]))
        elif self.kind == "udp":
            spec.update(proto="udp", sport=40000, dport=self.dport)
        else:
            spec.update(proto="icmp" if self.family == 4 else "ipv6-icmp", icmp_type=self.icmp_type)
        return spec | {"hl": self.hl}

    def packet(self) -> Packet:
        return from_json(self.json())


Pair = tuple[Spec | None, Spec | None, str | None]  # IPv4 probe, IPv6 probe, why the policy tells them apart


def family_specific(view: PolicyView, a: Spec | None, b: Spec | None) -> str | None:
    """What in the policy may make corresponding probes' verdicts differ (None: nothing may)."""
    if a is None or b is None:
        return "no counterpart in the other family"
    if a.kind in ("unreach", "time-exceeded"):
        return "ICMPv6 errors are accepted whatever the ping policy (RFC 4890), ICMP errors are not"
    ma, mb = view.membership(a.peer), view.membership(b.peer)
    if ma != mb:
        diff = [g for g, x, y in zip(view.nets, ma, mb) if x != y]
        return f"group(s) {', '.join(diff)} hold one address and not the other"
    if a.hook == "INPUT" and view.bogon(a.peer) != view.bogon(b.peer):
        return "a bogon of one family only"
    return None


def _hosts(view: PolicyView, rng: random.Random) -> tuple[list[str], list[str]]:
    """IPv4 peers (each probed with its IPv6 image too) and native IPv6 peers: a host inside each
    group member and the address just past it, and addresses outside every group (bogons but the
    first two of each family; none the kernel drops before INPUT)."""
    v4: dict[str, None] = dict.fromkeys(("203.0.113.200", "198.51.100.250", "10.9.8.7", "0.1.2.3", "240.1.2.3"))
    v6: dict[str, None] = dict.fromkeys(("2001:db8:77::5", "100::7", "::a09:807", "::ffff:198.51.100.9"))
    for nets in view.nets.values():
        for net in rng.sample(nets, min(len(nets), 8)):
            inside = net[rng.randrange(min(net.num_addresses, 1 << 16))]
            past = int(net.broadcast_address) + 1
            for a in (inside, *([type(inside)(past)] if past < 2 ** inside.max_prefixlen else [])):
                if a.version == 4:
                    v4[str(a)] = None
                elif a in MAP6:
                    v4[str(ipaddress.IPv4Address(int(a) - int(MAP6.network_address)))] = None
                else:
                    v6[str(a)] = None
    return list(v4), list(v6)


def _pairs(view: PolicyView, rng: random.Random, small: bool) -> list[tuple[str | None, str]]:
    v4, v6 = _hosts(view, rng)
    pairs: list[tuple[str | None, str]] = [(a, to6(a)) for a in v4]
    for b in v6:  # an IPv4 source in the same groups, if there is one
        key = (view.membership(b), view.bogon(b))
        pairs.append((next((a for a in v4 if (view.membership(a), view.bogon(a)) == key), None), b))
    if small:  # one pair per way the policy can see a source
        seen, few = set(), []
        for a, b in pairs:
            key = (view.membership(b), a is None, view.bogon(b), a is not None and view.bogon(a))
            if key not in seen:
                seen.add(key)
                few.append((a, b))
        pairs = few
    return pairs


def _ports(ranges: list[Port], rng: random.Random, cap: int) -> tuple[list[int], list[int]]:
    """Every allowed port, one below and one above (`cap` of them at most), and two closed ports."""
    near = sorted({x for r in ranges for x in (r.lo - 1, r.lo, (r.lo + r.hi) // 2, r.hi, r.hi + 1) if 1 <= x <= 65535})
    if len(near) > cap:
        near = sorted(rng.sample(near, cap))
    closed = []
    while len(closed) < 2:
        x = rng.choice((rng.randint(1, 1024), rng.randint(1025, 65535)))
        if not any(r.lo - 1 <= x <= r.hi + 1 for r in ranges):
            closed.append(x)
    return near, closed


def plan(view: PolicyView, rng: random.Random, small: bool = False, output: bool = True) -> list[Pair]:
    """Corresponding IPv4/IPv6 probes for this policy: arriving ones, then (`output`) leaving ones."""
    pairs = _pairs(view, rng, small)
    out: list[Pair] = []

    def both(a: str | None, b: str | None, kind: str, hook: str = "INPUT", **kw) -> None:
        t4, t6 = ICMP_KINDS.get(kind, (None, kw.pop("icmp_type", None)))
        s4 = Spec(4, kind, hook, a, icmp_type=t4, **kw) if a else None
        s6 = Spec(6, kind, hook, b, icmp_type=t6, **kw) if b else None
        out.append((s4, s6, family_specific(view, s4, s6)))

    ranges = [port for allow in view.p.allow for name in allow.services for port in resolve(name).ports]
    near, closed = _ports(ranges, rng, 10 if small else 30)
    special = sorted({r.lo for r in ranges})[:2 if small else 4] + closed[:1]
    for a, b in pairs:
        for port in near + closed:
            both(a, b, "syn", dport=port)
            both(a, b, "udp", dport=port)
        for port in special:
            for kind in ("ack", "null", "xmas", "fpu", "synack"):
                both(a, b, kind, dport=port)
        for kind in ICMP_KINDS:
            both(a, b, kind)
        both(None, b, "too-big", icmp_type=2)
        for t in (ND[2:] if small else ND):
            both(None, b, "icmp6", icmp_type=t, hl=255)
            both(None, b, "icmp6", icmp_type=t, hl=64)
        both(None, b, "icmp6", icmp_type=MLD[0], hl=1)
    for t in ND:
        both(None, LINK_LOCAL, "icmp6", icmp_type=t, hl=255)
        both(None, LINK_LOCAL, "icmp6", icmp_type=t, hl=64)
    for t in MLD:
        both(None, LINK_LOCAL, "icmp6", icmp_type=t, hl=1)
    both(None, LINK_LOCAL, "echo")
    if output:
        eg = [port for e in view.p.egress for name in e.services for port in resolve(name).ports]
        near, closed = _ports(eg, rng, 12)
        for a, b in pairs:
            for port in near + closed:
                both(a, b, "syn", "OUTPUT", dport=port)
                both(a, b, "udp", "OUTPUT", dport=port)
            both(a, b, "echo", "OUTPUT")
            both(None, b, "icmp6", "OUTPUT", icmp_type=135, hl=255)
    return out


def forget(sim: Simulator) -> None:
    """Fresh memory for the next packet (no rate-limit state), keeping the ipsets the simulator parsed
    (memory key ("set", NAME): extensions/set.contents), which cost more than the packet itself."""
    for key in [k for k in sim.memory if k[:1] != ("set",)]:
        del sim.memory[key]


def sim_verdict(res: Result) -> str:
    """ACCEPT, DROP, or REJECT/<reply type>."""
    if res.verdict != "REJECT":
        return res.verdict
    note = next(n for n in res.notes if n.startswith("REJECT with "))
    return "REJECT/" + note.removeprefix("REJECT with ").split(":")[0]


def same(v4: str, v6: str) -> bool:
    return v4.replace("icmp-", "icmp6-") == v6


def describe(s: Spec) -> str:
    return json.dumps(s.json())


def check_policy(c: CompiledPolicy, view: PolicyView, pairs: list[Pair]) -> tuple[list[str], Counter]:
    """Simulate every probe on fresh memory; (failures, figures)."""
    sims = {4: Simulator(c.rulesets[Family.IPV4]), 6: Simulator(c.rulesets[Family.IPV6])}
    verdicts: dict[Spec, str] = {}
    failures: list[str] = []
    n = Counter()
    for pair in pairs:
        for s in pair[:2]:
            if s is None or s in verdicts:
                continue
            sim = sims[s.family]
            forget(sim)
            got = verdicts[s] = sim_verdict(sim.run(s.packet()))
            want = view.verdict(s)
            n["packets"] += 1
            if got != want:
                failures.append(f"policy says {want}, simulator {got}: {describe(s)}")
        s4, s6, why = pair
        if s4 and s6:
            if why is None:
                n["pairs compared"] += 1
                if not same(view.verdict(s4), view.verdict(s6)):
                    failures.append(f"test bug: the policy view answers differently for {describe(s4)} "
                                    f"and {describe(s6)} but family_specific finds no reason")
                if not same(verdicts[s4], verdicts[s6]):
                    failures.append(f"IPv4 {verdicts[s4]} but IPv6 {verdicts[s6]}:\n  {describe(s4)}\n  "
                                    f"{describe(s6)}")
            else:
                n["pairs family-specific"] += 1
                n["... of which differ"] += not same(verdicts[s4], verdicts[s6])
    return failures, n


def _cases() -> list[tuple[str, int | None]]:
    return [(p.stem, None) for p in EXAMPLES] + [(f"random-{i}", i) for i in range(POLICIES)]


TOTALS: Counter = Counter()


@pytest.mark.parametrize("name,index", _cases(), ids=[c[0] for c in _cases()])
def test_ipv4_and_ipv6_accept_what_the_policy_says(name, index, tmp_path, capsys):
    rng = random.Random(f"{SEED}-{name}")
    gp = next(g for g in example_policies() if g.name == name) if index is None else \
        random_policy(rng, name)
    c = compile_gen(gp, tmp_path)
    view = PolicyView(c, tmp_path)
    failures, n = check_policy(c, view, plan(view, rng))
    TOTALS.update(n, policies=1)
    with capsys.disabled():
        print(f"\n{name} (seed {SEED}): " + ", ".join(f"{v} {k}" for k, v in n.items()) +
              f", {len(failures)} disagreements; totals so far: {dict(TOTALS)}")
    assert not failures, (f"seed {SEED}, policy {name}:\n{gp.text}\n{len(failures)} disagreements, first "
                          f"{min(SHOWN, len(failures))}:\n" + "\n".join(failures[:SHOWN]))
