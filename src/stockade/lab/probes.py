"""What the lab sends: sources, services and probe kinds, chosen from the ruleset under test.

Sources (per family): one address of every set a rule matches as a source (for a compiled
policy: one per group, named after it), one of every `-s` network, one address in none of them
(`outsider`), and a spoofed bogon. An address in the documentation ranges lives on a lab host
(the admin host for admin and SSH groups, a peer for other groups, the internet host for the
rest) and also makes real connections; any other address is only spoofed, never given to a host.
Services: every destination port a rule names, plus closed samples (tcp and udp), and ICMP echo.
Crafted probes leave from source ports in SPORTS and with the hop limit MARK_TTL, so the lab's
counters tell them from anything a kernel sends by itself.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..model import Family, Ruleset
from .hosts import documentation

SPORTS = (40000, 49999)
MARK_TTL = 99
CLOSED = {"tcp": (8081, 6001), "udp": (5001, 1901)}
TCP_KINDS = {"syn": ("SYN",), "null": (), "xmas": ("FIN", "PSH", "URG"), "fin": ("FIN",), "ack": ("ACK",)}
BOGON = {Family.IPV4: "10.0.0.7", Family.IPV6: "100::7"}
OUTSIDER = {Family.IPV4: ("203.0.113.77", "198.51.100.77", "192.0.2.77"),
            Family.IPV6: ("2001:db8:77::77", "2001:db8:7777::77")}
SERVER = {Family.IPV4: ("192.0.2.10", "203.0.113.10", "198.51.100.10"),
          Family.IPV6: ("2001:db8:f::10", "2001:db8:ff::10")}


@dataclass(frozen=True)
class ProbeSource:
    label: str
    addr: str
    family: Family
    host: str | None  # the lab host that owns the address; None: spoofed only


@dataclass(frozen=True)
class ProbedService:
    proto: str  # tcp, udp, icmp
    port: int | None
    listening: bool

    def __str__(self) -> str:
        return "icmp" if self.port is None else f"{self.port}/{self.proto}"


def _nets(rs: Ruleset) -> list[tuple[str, list[ipaddress._BaseNetwork]]]:
    """(label, networks) for every source a filter rule names: `-s` networks and `src` sets."""
    out: dict[str, list] = {}
    for chain in input_chains(rs):
        for r in chain.rules:
            if r.src is not None and not r.src.invert and r.src.addr.mask:
                net = ipaddress.ip_network(f"{r.src.addr}", strict=False)
                out.setdefault(str(net), [net])
            for m in r.matches:
                name = getattr(m.data, "name", None)
                if m.name == "set" and name in rs.sets and getattr(m.data, "dirs", ())[:1] == ("src",) \
                        and not m.data.invert:
                    members = [ipaddress.ip_network(x, strict=False) for x in rs.sets[name].members]
                    out.setdefault(name, members)
    return list(out.items())


def input_chains(rs: Ruleset) -> list:
    """The filter chains INPUT reaches (itself and the user chains it jumps or goes to)."""
    filt = rs.tables.get("filter")
    if filt is None or "INPUT" not in filt.chains:
        return []
    seen, todo = [], ["INPUT"]
    while todo:
        name = todo.pop()
        if name in seen or name not in filt.chains:
            continue
        seen.append(name)
        todo += [r.target.name for r in filt.chains[name].rules if r.target is not None]
    return [filt.chains[n] for n in seen]


def _pick(net: ipaddress._BaseNetwork, avoid: set) -> str | None:
    if net.num_addresses == 1:
        return str(net.network_address)
    for off in (7, 1, 2, 3):
        if off < net.num_addresses and (a := str(net.network_address + off)) not in avoid:
            return a
    return None


def group_label(name: str) -> str:
    """`stk-admins-ip4` (a compiled policy's set) -> `admins`."""
    if name.startswith("stk-") and name[-4:-1] in ("-ip", "net") or name.endswith(("ip4", "ip6", "net4", "net6")):
        return name.removeprefix("stk-").rsplit("-", 1)[0]
    return name


def sources(rs: Ruleset, admin_groups: set[str], server: str) -> list[ProbeSource]:
    fam = rs.family
    nets = _nets(rs)
    inside = [n for _, ns in nets for n in ns]
    out: list[ProbeSource] = []
    taken = {server}
    for name, members in nets:
        label = group_label(name)
        if label == "bogons":
            continue
        addr = next((a for n in members if n.version == int(fam) and not n.is_link_local and not n.is_multicast
                     and not n.is_loopback and (a := _pick(n, taken))), None)
        if addr is None:
            continue
        taken.add(addr)
        host = ("admin" if label in admin_groups else "peer") if documentation(addr) else None
        out.append(ProbeSource(label, addr, fam, host))
    outsider = next(a for a in OUTSIDER[fam] if not any(ipaddress.ip_address(a) in n for n in inside
                                                         if n.version == int(fam)))
    out.append(ProbeSource("outsider", outsider, fam, "internet"))
    out.append(ProbeSource("bogon", BOGON[fam], fam, None))
    return out


def server_address(rs: Ruleset, avoid: list[str]) -> str:
    nets = [n for _, ns in _nets(rs) for n in ns if n.version == int(rs.family)]
    return next(a for a in SERVER[rs.family] if a not in avoid and not any(ipaddress.ip_address(a) in n for n in nets))


def services(rulesets: list[Ruleset]) -> list[ProbedService]:
    """Every port a filter INPUT-side rule names (both families), plus closed samples and ICMP."""
    ports: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    for rs in rulesets:
        for chain in input_chains(rs):
            for r in chain.rules:
                proto = {6: "tcp", 17: "udp"}.get(r.proto.number if r.proto and not r.proto.invert else None)
                for m in r.matches:
                    for p in _dports(m):
                        for pr in ([proto] if proto else ["tcp", "udp"]):
                            ports[pr].add(p)
    out = []
    for proto in ("tcp", "udp"):
        out += [ProbedService(proto, p, True) for p in sorted(ports[proto])]
        out += [ProbedService(proto, p, False) for p in CLOSED[proto] if p not in ports[proto]]
    return out + [ProbedService("icmp", None, False)]


def _dports(m) -> list[int]:
    """Destination ports a tcp/udp (`--dport`) or multiport (`--dports`, `--ports`) match names: the
    first of each range."""
    d = m.data
    if m.name in ("tcp", "udp") and getattr(d, "dport", None) is not None and not d.dport.invert:
        return [d.dport.lo]
    if m.name == "multiport" and d.side in ("dports", "ports") and not d.invert:
        return [lo for lo, _ in d.ranges]
    return []
