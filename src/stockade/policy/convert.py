"""A script or dump turned into a policy that does what it does, and the proof that it does.

`convert` reads the script's model, not its text: the service matrix (semantics/matrix.py) of
filter/INPUT gives, per port a rule names, the sources that may open it; rules of a few plain
shapes give the rest (source-only ACCEPT: admin hosts; source-only DROP: the inbound blocklist;
destination-only DROP in OUTPUT: the outbound one; LOG: logging; a SYN rate limit: syn_flood).

What a policy cannot or should not say is a `Deviation`: a reason, the script line it concerns,
and the packet classes it covers. `prove` compiles the policy, runs the semantic diff
(semantics/diff.py) against the script, and gives each changed class the deviations that
cover it; a class no deviation covers is unexplained, i.e. a conversion bug.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from ..extensions.opaque import unread_rules
from ..model import Family, Ruleset
from ..model.netfilter import MARTIAN_V4, MARTIAN_V6, proto_name
from ..model.ranges import Ranges, complement, full, intersect, normalize, of_address, union
from ..model.ranges import difference as subtract
from ..model.space import DPORT, DST, ICMP, IIF, KIND, KINDS, OIF, PROTO, SRC
from ..semantics.diff import Change, Diff, semantic_diff
from ..semantics.flatten import Flat, FlatRule, Lit, flatten
from ..semantics.matrix import Service, service_matrix, setting
from .catalogue import CATALOGUE

DENY = ("DROP", "REJECT")
KIND_INDEX = {k.label: i for i, k in enumerate(KINDS)}
REPLIES = {KIND_INDEX["ESTABLISHED"], KIND_INDEX["RELATED"]}
MALFORMED = {KIND_INDEX["INVALID"], KIND_INDEX["INVALID NULL"], KIND_INDEX["NEW without SYN"]}


@dataclass
class Deviation:
    """A deliberate difference: why, the script line (or what the script lacks), and the classes it covers."""

    topic: str
    reason: str
    script: str
    covers: Callable[[Change, dict], bool] = field(repr=False, compare=False)

    def to_json(self) -> dict:
        return {"topic": self.topic, "reason": self.reason, "script": self.script}


@dataclass
class Allowed:
    """One service port as the script opens it: who may open it, to which destinations, what else it asks."""

    proto: str
    lo: int
    hi: int
    sources: dict[Family, Ranges]
    dests: dict[Family, Ranges]
    limited: bool
    rules: list[FlatRule]


@dataclass
class Conversion:
    source: str
    policy: dict  # the policy's data, as the schema reads it
    comments: dict[str, list[str]]  # a TOML section or `allow.N` -> comment lines above it
    deviations: list[Deviation]
    groups_from: dict[str, str] = field(default_factory=dict)  # group -> why it exists
    title: str = ""  # the header's first line; default: converted from `source`

    def toml(self, used: dict[int, int] | None = None) -> str:
        """The policy file; with `used` (deviation index -> classes it explains), the header lists those."""
        return render_toml(self, used)


# ---- addresses ---------------------------------------------------------------------------------------------

def _bits(family: Family) -> int:
    return 32 if family is Family.IPV4 else 128


def _nets(nets) -> Ranges:
    return normalize((int(n.network_address), int(n.broadcast_address)) for n in nets)


def public(family: Family) -> Ranges:
    """Sources a host's INPUT sees from the network: all but the kernel's martians (loopback among them)."""
    return complement(_nets(MARTIAN_V4 if family is Family.IPV4 else MARTIAN_V6), _bits(family))


def cidrs(family: Family, ranges: Ranges) -> list[str]:
    cls = ipaddress.IPv4Address if family is Family.IPV4 else ipaddress.IPv6Address
    out = []
    for lo, hi in ranges:
        for n in ipaddress.summarize_address_range(cls(lo), cls(hi)):
            out.append(str(n.network_address) if n.num_addresses == 1 else str(n))
    return out


def _covers(outer: Ranges, inner: Ranges) -> bool:
    return not subtract(inner, outer)


# ---- reading the script's rules ----------------------------------------------------------------------------

def _only(r: FlatRule, *kinds: str) -> bool:
    """Whether the rule tests exactly these kinds of field, none negated."""
    return bool(r.conds) and all(lit.kind in kinds and not lit.negated for lit in r.conds)


def _where(r: FlatRule | None) -> str:
    ref = r.rule if r is not None else None
    return str(ref.origin) if ref is not None and ref.origin is not None else "(chain policy)"


def _lit_ranges(lit: Lit) -> Ranges:
    return of_address(lit.value) or ()


def _dports(r: FlatRule) -> list[tuple[str, int, int]]:
    """The (proto, lo, hi) destination ports a rule opens (a tcp/udp --dport or multiport --dports)."""
    proto = next((lit.value for lit in r.conds if lit.kind == "proto" and not lit.negated), None)
    if proto not in (6, 17):
        return []
    out = []
    for lit in r.conds:
        if lit.kind != "match" or lit.negated:
            continue
        name, d = lit.value.name, lit.value.data
        if name in ("tcp", "udp") and getattr(d, "dport", None) is not None and not d.dport.invert:
            out.append((proto_name(proto), d.dport.lo, d.dport.hi))
        elif name == "multiport" and d.side in ("dports", "ports") and not d.invert:
            out += [(proto_name(proto), lo, hi) for lo, hi in d.ranges]
    return out


def _sports(r: FlatRule) -> list[int]:
    """The lowest source port of each tcp/udp --sport a rule asks for."""
    return [lit.value.data.sport.lo for lit in r.conds if lit.kind == "match" and lit.value.name in ("tcp", "udp")
            and not lit.negated and getattr(lit.value.data, "sport", None) is not None
            and not lit.value.data.sport.invert]


def _sport_only(r: FlatRule) -> bool:
    """A tcp/udp rule that names a source port and no destination port: anyone sending from that
    port reaches every port of the host."""
    if _dports(r):
        return False
    for lit in r.conds:
        if lit.kind == "match" and lit.value.name in ("tcp", "udp") and getattr(lit.value.data, "sport", None):
            return True
        if lit.kind == "match" and lit.value.name == "multiport" and lit.value.data.side == "sports":
            return True
    return False


def _state_words(r: FlatRule) -> str:
    return " ".join(w for lit in r.conds if lit.kind == "match" and lit.value.name in ("state", "conntrack")
                    for w in lit.words(Family.IPV4))


def _extra(r: FlatRule, family: Family) -> list[str]:
    """A service rule's tests the policy does not keep (it opens a port by protocol, port and source)."""
    out = []
    for lit in r.conds:
        if lit.kind in ("proto", "src"):
            continue
        if lit.kind == "match" and lit.value.name in ("tcp", "udp", "multiport"):
            d = lit.value.data
            if lit.value.name != "multiport" and getattr(d, "sport", None) is None and getattr(d, "option", None) \
                    is None:
                continue
            if lit.value.name == "multiport" and d.side == "dports":
                continue
        if lit.kind == "match" and lit.value.name in ("limit", "hashlimit", "recent"):
            continue  # a rate: the policy keeps one per source
        out.append(" ".join(lit.words(family)))
    return out


# ---- the conversion ------------------------------------------------------------------------------------------

SERVICE_BY_PORT = {(s.ports[0].proto, s.ports[0].lo): name for name, s in CATALOGUE.items() if len(s.ports) == 1}


def _service_name(proto: str, lo: int, hi: int) -> str:
    if lo == hi and (proto, lo) in SERVICE_BY_PORT:
        return SERVICE_BY_PORT[(proto, lo)]
    return f"{lo}/{proto}" if lo == hi else f"{lo}-{hi}/{proto}"


def _flat(rs: Ruleset, chain: str) -> Flat:
    """The filter chain flattened; a ruleset without a filter table (only nat, say) filters nothing."""
    if "filter" not in rs.tables:
        return Flat(rs.family, "filter", chain, "ACCEPT", [FlatRule((), "ACCEPT", True, (), None, True)])
    return flatten(rs, "filter", chain)


def _closed_policy(flat: Flat) -> Flat:
    """The chain with its policy DROP: what its rules accept."""
    rules = [r if not r.policy else FlatRule(r.conds, "DROP", True, r.origins, None, True) for r in flat.rules]
    return Flat(flat.family, flat.table, flat.chain, "DROP", rules)


def _has_rules(rs: Ruleset | None) -> bool:
    return rs is not None and any(c.rules or (c.policy not in (None, "ACCEPT"))
                                  for t in rs.tables.values() for c in t.chains.values())


class Converter:
    def __init__(self, rulesets: dict[Family, Ruleset], source: str):
        self.source = source
        self.fams = [f for f in (Family.IPV4, Family.IPV6) if _has_rules(rulesets.get(f))]
        self.rulesets = rulesets
        self.flat_in = {f: _flat(rulesets[f], "INPUT") for f in self.fams}
        # what the rules accept, not the chain policy: a port open only by `-P INPUT ACCEPT` is not a service
        self.explicit = {f: _closed_policy(flat) for f, flat in self.flat_in.items()}
        self.flat_out = {f: _flat(rulesets[f], "OUTPUT") for f in self.fams}
        self.devs: list[Deviation] = []
        self.comments: dict[str, list[str]] = {}
        self.groups: dict[str, dict[Family, Ranges]] = {}
        self.group_why: dict[str, str] = {}

    def dev(self, topic: str, reason: str, script: str, covers: Callable[[Change, dict], bool]) -> None:
        self.devs.append(Deviation(topic, reason, script, covers))

    # -- groups --

    def group(self, stem: str, members: dict[Family, Ranges], why: str) -> str:
        """A group for these addresses: an existing one with the same members, else a new one."""
        for name, have in self.groups.items():
            if have == members:
                return name
        name, n = stem[:19], 2
        while name in self.groups:
            name = f"{stem[:16]}-{n}"
            n += 1
        self.groups[name] = members
        self.group_why[name] = why
        return name

    # -- each part --

    def convert(self) -> Conversion:
        policy: dict = {}
        if not self.fams:
            self.comments["server"] = ["the input has no rules: the policy starts from nothing open"]
        blocked = self._blocklist()
        admin = self._admin()
        allows = self._services(blocked, admin)
        policy["server"] = {"interfaces": self._interfaces()}
        policy["defaults"] = {"closed": self._closed(), "egress": "open"}
        self._egress()
        policy["log"] = self._log()
        policy["icmp"] = self._icmp()
        policy["protect"] = self._protect()
        if blocked:
            policy["blocklist"] = blocked
        if admin:
            policy["admin"] = admin
        policy["allow"] = allows
        self._structural()
        policy["groups"] = {name: [a for f in (Family.IPV4, Family.IPV6) for a in cidrs(f, m.get(f, ()))]
                            for name, m in self.groups.items()}
        return Conversion(self.source, policy, self.comments, self.devs, dict(self.group_why))

    def _interfaces(self) -> list[str]:
        names = []
        for flat in self.flat_in.values():
            for r in flat.rules:
                for lit in r.conds:
                    if lit.kind == "iif" and not lit.negated and lit.value not in ("lo", "+") \
                            and lit.value not in names:
                        names.append(lit.value)
        return names or ["eth0"]

    def _blocklist(self) -> dict:
        """Source-only DROP/REJECT rules in INPUT, destination-only ones in OUTPUT: the blocklists."""
        out: dict = {}
        for side, flats, kind in (("inbound", self.flat_in, "src"), ("outbound", self.flat_out, "dst")):
            members: dict[Family, Ranges] = {}
            lines = []
            for f, flat in flats.items():
                for r in flat.rules:
                    if r.action in DENY and r.terminal and _only(r, kind):
                        rng = normalize([x for lit in r.conds for x in _lit_ranges(lit)])
                        members[f] = union(members.get(f, ()), rng)
                        lines.append(_where(r))
                        if side == "outbound" and r.action == "DROP":
                            where = _where(r)
                            self.dev("blocklist", "the outbound blocklist rejects (the server's own programs fail at "
                                     "once instead of waiting for a timeout); the script drops", where,
                                     lambda c, p, w=where: c.hook == "OUTPUT" and c.old.rule == w
                                     and c.new.verdict == "REJECT")
            if members:
                name = self.group("blocked" if side == "inbound" or not out else "blocked-out", members,
                                  f"addresses the script blocks ({', '.join(lines[:4])})")
                out[side] = [name]
                self.comments.setdefault("blocklist", []).append(
                    f"{side}: {name}, from {', '.join(lines[:4])}" + (" ..." if len(lines) > 4 else ""))
                if side == "inbound":
                    self.blocked_in = members
                self._early(side, members, lines)
        # the policy checks the blocklist before anything else it accepts (established replies aside)
        return out

    def _early(self, side: str, members: dict[Family, Ranges], lines: list[str]) -> None:
        """The policy checks a blocklist before what it accepts (replies aside); a script that appends its
        blocks after its accepts lets the blocked addresses through those."""
        hook, dim = ("INPUT", SRC) if side == "inbound" else ("OUTPUT", DST)

        def covers(c: Change, p: dict) -> bool:
            inside = subtract(p[dim], c.space.martians() if dim == SRC else ())
            return (c.hook == hook and c.old.verdict == "ACCEPT" and c.new.verdict in DENY and bool(inside)
                    and _covers(members.get(c.family, ()), inside))
        self.dev("blocklist", f"the {side} blocklist is checked before anything the policy accepts; the script "
                 "appends its blocks after rules that accept, so those let the blocked addresses through",
                 ", ".join(lines[:4]), covers)

    def _admin(self) -> list[str]:
        members: dict[Family, Ranges] = {}
        lines = []
        for f, flat in self.flat_in.items():
            for r in flat.rules:
                if r.action == "ACCEPT" and r.terminal and _only(r, "src"):
                    members[f] = union(members.get(f, ()), normalize(
                        [x for lit in r.conds for x in _lit_ranges(lit)]))
                    lines.append(_where(r))
        if not members:
            return []
        self.admin_members = members
        name = self.group("admin-hosts", members, f"full access in the script ({', '.join(lines)})")
        self.comments["admin"] = [f"{name}: every port, as the script's {', '.join(lines)} allows"]
        return [name]

    def _services(self, blocked: dict, admin: list[str]) -> list[dict]:
        """Per port the INPUT rules name, the sources the service matrix lets open it."""
        ports: list[tuple[str, int, int]] = []
        rules_of: dict[tuple[str, int, int], list[FlatRule]] = {}
        for flat in self.flat_in.values():
            for r in flat.rules:
                if r.action != "ACCEPT":
                    continue
                for p in _dports(r):
                    if p not in ports:
                        ports.append(p)
                    rules_of.setdefault(p, []).append(r)
        found: list[Allowed] = []
        admin_m = getattr(self, "admin_members", {})
        blocked_m = getattr(self, "blocked_in", {})
        for proto, lo, hi in ports:
            srcs, dsts, limited = {}, {}, False
            # an ephemeral client port, and each source port a rule for this port asks for (DHCP: 67)
            sports = [40000] + sorted({sp for r in rules_of[(proto, lo, hi)] for sp in _sports(r)})
            for f, flat in self.explicit.items():
                for sport in sports:
                    m = service_matrix(flat, Service(6 if proto == "tcp" else 17, lo, sport), s=setting(flat, None))
                    src = normalize([r for a, _ in m.may for r in m.classes[a]])
                    dst = normalize([r for a, b in m.may if intersect(m.classes[a], public(f)) for r in m.classes[b]])
                    src = subtract(intersect(src, public(f)), admin_m.get(f, ()))  # admins reach it via `admin`
                    if src:
                        srcs[f], dsts[f] = union(srcs.get(f, ()), src), union(dsts.get(f, ()), dst)
                        limited |= bool(m.undecided)
            if srcs:
                found.append(Allowed(proto, lo, hi, srcs, dsts, limited, rules_of[(proto, lo, hi)]))
        # one entry per (sources, limit), services in the script's order
        entries: dict[tuple, dict] = {}
        relaxed: dict[tuple, list[Allowed]] = {}  # services the script restricts alike: one deviation
        for a in found:
            everyone = all(_covers(union(union(a.sources.get(f, ()), blocked_m.get(f, ())), admin_m.get(f, ())),
                                   public(f)) for f in self.fams)
            if everyone:
                who = "everyone"
            else:
                name = _service_name(a.proto, a.lo, a.hi)
                stem = f"{a.proto}{a.lo}" if name[0].isdigit() else name[:11]
                who = self.group(f"{stem}-clients", a.sources, f"the sources the script lets open {name}")
            limit = self._limit(a) if a.limited else None
            key = (who, limit)
            entry = entries.setdefault(key, {"service": [], "from": who} | ({"limit": limit} if limit else {}))
            entry["service"].append(_service_name(a.proto, a.lo, a.hi))
            relaxed.setdefault((who, self._extras(a)), []).append(a)
        for (who, extras), group in relaxed.items():
            self._relaxed(group, who, extras)
        out = []
        for e in entries.values():
            svcs = e["service"]
            if "53/udp" in svcs and "53/tcp" in svcs:
                svcs[svcs.index("53/udp")] = "dns"
                svcs.remove("53/tcp")
            e["service"] = svcs[0] if len(svcs) == 1 else svcs
            e["from"] = e["from"] if e["from"] == "everyone" else [e["from"]]
            out.append(e)
        for n, e in enumerate(out):
            lines = sorted({_where(r) for a in found for r in a.rules
                            if _service_name(a.proto, a.lo, a.hi) in (e["service"] if isinstance(e["service"], list)
                                                                       else [e["service"]])
                            or (e["service"] == "dns" and a.lo == 53)})
            self.comments[f"allow.{n}"] = [f"from {', '.join(lines[:5])}" + (" ..." if len(lines) > 5 else "")]
        return out

    def _limit(self, a: Allowed) -> str | None:
        """The per-source rate a limited service gets: the script's limit or recent rule's rate."""
        for r in a.rules:
            for lit in r.conds:
                if lit.kind != "match":
                    continue
                d = lit.value.data
                if lit.value.name == "limit":
                    return _rate(d.burst, d.per * d.burst // max(d.rate, 1))
                if lit.value.name == "recent" and d.hitcount and d.seconds:
                    return _rate(d.hitcount - 1, d.seconds)
        for flat in self.flat_in.values():  # a recent check on its own rule, above the ACCEPT
            for r in flat.rules:
                for lit in r.conds:
                    if lit.kind == "match" and lit.value.name == "recent" and r.action in DENY:
                        d = lit.value.data
                        if d.hitcount and d.seconds and any(p[1] <= a.lo <= p[2] for p in _dports(r)):
                            return _rate(d.hitcount - 1, d.seconds)
        return None

    def _extras(self, a: Allowed) -> tuple[str, ...]:
        """What the script asks of a service's packets beyond protocol, port and source."""
        return tuple(sorted({x for r in a.rules for f in self.fams for x in _extra(r, f)}))

    def _relaxed(self, group: list[Allowed], who: str, extras: tuple[str, ...]) -> None:
        """Services the script restricts alike (`extras`): the policy opens them on every address of the
        host, from any source port, in any interface. One deviation for them together, as the diff's
        classes join their ports."""
        group = [a for a in group if extras or not all(_covers(a.dests.get(f, ()), public(f)) for f in a.dests)]
        if not group:
            return
        ports = {proto: normalize([(a.lo, a.hi) for a in group if a.proto == name])
                 for proto, name in ((6, "tcp"), (17, "udp"))}
        srcs = {f: normalize([r for a in group for r in a.sources.get(f, ())]) for f in Family}
        lines = ", ".join(sorted({_where(r) for a in group for r in a.rules}))

        def covers(c: Change, p: dict, ports=ports, srcs=srcs) -> bool:
            one = len(p[PROTO]) == 1 and p[PROTO][0][0] == p[PROTO][0][1]
            have = ports.get(p[PROTO][0][0]) if one else None
            return (c.hook == "INPUT" and c.new.verdict == "ACCEPT" and bool(have) and _covers(have, p[DPORT])
                    and (who == "everyone" or _covers(srcs.get(c.family, ()), subtract(p[SRC], c.space.martians()))))
        names = ", ".join(_service_name(a.proto, a.lo, a.hi) for a in group)
        what = "; ".join(extras) if extras else "a destination address"
        self.dev("relaxed", f"{names} {'is' if len(group) == 1 else 'are'} opened by protocol, port and source only; "
                 f"the script also asks for {what}", lines, covers)

    def _closed(self) -> str:
        verdicts = []
        for flat in self.flat_in.values():
            last = flat.rules[-1] if flat.rules else None
            verdicts.append(last.action if last is not None and last.action in DENY else "DROP")
        return "reject" if verdicts and all(v == "REJECT" for v in verdicts) else "drop"

    def _egress(self) -> None:
        """The policy's open egress: OUTPUT accepts what the blocklist does not hold."""
        for flat in self.flat_out.values():
            for r in flat.rules:
                if r.action in DENY and r.terminal and not _only(r, "dst"):
                    where = _where(r)
                    self.dev("egress", "egress stays open: the policy does not filter what the server sends "
                             "beyond the outbound blocklist (`egress = \"strict\"` lists what may leave)", where,
                             lambda c, p, w=where: c.hook == "OUTPUT" and c.old.rule == w)
            if flat.policy in DENY:
                self.dev("egress", f"the script's OUTPUT policy is {flat.policy}; the policy keeps egress open",
                         "OUTPUT policy", lambda c, p: c.hook == "OUTPUT" and c.old.rule == "OUTPUT policy")
        blocks = {_where(r) for flat in self.flat_out.values() for r in flat.rules if _only(r, "dst")}
        self.dev("egress", "egress stays open: what the server sends is accepted unless the outbound blocklist "
                 "holds the destination (`egress = \"strict\"` lists what may leave)", "the script's OUTPUT rules",
                 lambda c, p: c.hook == "OUTPUT" and c.new.verdict == "ACCEPT" and c.old.rule not in blocks)

    def _log(self) -> dict:
        for flat in self.flat_in.values():
            for r in flat.rules:
                if r.action in ("LOG", "NFLOG") and r.target is not None:
                    prefix = getattr(r.target.data, "prefix", None) or "stockade-drop: "
                    clean = "".join(ch for ch in prefix if ch.isalnum() or ch in "_.:=- ")[:28] or "stockade-drop: "
                    self.comments["log"] = [f"the script logs at {_where(r)}; the policy logs what it drops, "
                                            "at a bounded rate"]
                    nflog = {"target": "nflog", "group": r.target.data.group} if r.action == "NFLOG" else {}
                    return {"drops": True, "prefix": clean, **nflog}
        self.comments["log"] = ["the script logs nothing"]
        return {"drops": False}

    def _icmp(self) -> dict:
        """Echo requests: allowed, limited or denied as the script treats them from the internet."""
        per: dict[Family, str] = {}
        dst_of: dict[Family, Ranges] = {}
        for f, flat in self.explicit.items():
            svc = Service(1 if f is Family.IPV4 else 58, icmp_type=8 if f is Family.IPV4 else 128, icmp_code=0)
            m = service_matrix(flat, svc, s=setting(flat, None))
            src = intersect(normalize([r for a, _ in m.may for r in m.classes[a]]), public(f))
            src = subtract(src, getattr(self, "admin_members", {}).get(f, ()))
            per[f] = ("limit" if m.undecided else "allow") if src else "deny"
            dst = normalize([r for a, b in m.always if intersect(m.classes[a], public(f))  # not via `-i lo`
                             for r in m.classes[b]])  # surely: `-i` rules are undecided
            if src and not _covers(dst, full(_bits(f))):
                ip = 1 if f is Family.IPV4 else 58
                self.dev("ping", f"echo requests are answered on every address of the host; the script answers "
                         f"them only to {', '.join(cidrs(f, dst)[:3])}", "the script's ICMP rules",
                         lambda c, p, f=f, ip=ip: c.family is f and c.hook == "INPUT" and p[PROTO] == ((ip, ip),)
                         and c.new.verdict == "ACCEPT" and not intersect(p[DST], dst_of[f]))
                dst_of[f] = dst
        order = ("deny", "limit", "allow")
        verdict = max(per.values(), key=order.index, default="deny")  # one setting: the family that answers most
        proto = {Family.IPV4: 1, Family.IPV6: 58}
        icmp_rules = [_where(r) for flat in self.flat_in.values() for r in flat.rules
                      if r.action == "ACCEPT" and any(lit.kind == "proto" and lit.value in (1, 58) for lit in r.conds)]
        where = ", ".join(icmp_rules) or "(no ICMP rule)"
        self.comments["icmp"] = [f"ping: {verdict}, as the script treats echo requests ({where})"]
        for f, v in per.items():
            if v != verdict:
                self.dev("ping", f"ping is one setting for both families: `{verdict}`, as the script answers "
                         f"IPv{int(f)} echo requests `{v}`", where,
                         lambda c, p, f=f: c.family is f and c.hook == "INPUT"
                         and p[PROTO] == ((proto[f], proto[f]),) and c.new.verdict == "ACCEPT")

        def other_icmp(c: Change, p: dict) -> bool:
            ip = proto[c.family]
            return c.hook == "INPUT" and p[PROTO] == ((ip, ip),) and (c.old.rule in icmp_rules or (
                c.old.rule == "INPUT policy" and c.old.verdict == "ACCEPT"))
        self.dev("icmp", "ICMP other than echo requests comes in as RELATED to the server's connections (errors) "
                 "or not at all; a first echo request gets the verdict the script gives it", where, other_icmp)
        return {"ping": verdict, "ping_out": "allow"}

    def _protect(self) -> dict:
        syn = None
        for flat in self.flat_in.values():
            for r in flat.rules:
                synful = any("syn" in ref.chain.lower() for ref in r.origins) or any(
                    x.kind == "match" and x.value.name == "tcp" and getattr(x.value.data, "option", None)
                    for x in r.conds)
                lim = next((x.value.data for x in r.conds if x.kind == "match" and x.value.name == "limit"), None)
                if synful and lim is not None:
                    syn = (_rate(lim.rate, lim.per), lim.burst, _where(r))
                    break
            if syn:
                break
        out = {"invalid": True, "null": True, "xmas": True, "new_without_syn": True, "bogons": False,
               "syn_flood": {"rate": syn[0], "burst": syn[1]} if syn else False}
        self.comments["protect"] = [
            "invalid, NULL, XMAS and new-without-SYN packets are dropped before any allow (the script's own "
            "drops of them, if any, are kept this way)",
            "bogons: off, as the script does not drop private or reserved sources"]
        if syn:
            self.comments["protect"].append(f"syn_flood: the script's SYN limit ({syn[2]}), per source instead of "
                                            "shared by every client")
            where = syn[2]
            self.dev("syn-flood", "the SYN limit counts each source on its own; the script's is one bucket for "
                     "every client, so one attacker used up everyone's budget", where,
                     lambda c, p: c.hook == "INPUT" and c.old.verdict == c.new.verdict and p[PROTO] == ((6, 6),))

        def malformed(c: Change, p: dict) -> bool:
            kinds = {i for lo, hi in p[KIND] for i in range(lo, hi + 1)}
            return c.hook in ("INPUT", "OUTPUT") and kinds <= MALFORMED and c.new.verdict != "ACCEPT"
        self.dev("protect", "malformed packets (INVALID state, NULL or XMAS flags, a NEW TCP packet without SYN) "
                 "are dropped before any allow", "the script's rules that accept them", malformed)
        return out

    def _structural(self) -> None:
        """The differences every policy has from a script: IPv6, FORWARD, replies, loopback, closing; and
        where the script's own answer is open (a command or value stockade cannot resolve statically)."""
        lines = sorted({u.why for rs in self.rulesets.values() for *_, parts in unread_rules(rs) for u in parts})
        if lines:
            self.dev("unresolved", "the script's verdict for these packets depends on what stockade cannot resolve "
                     "statically (" + "; ".join(lines[:3]) + ("; ..." if len(lines) > 3 else "") + "); the policy "
                     "decides them", "; ".join(dict.fromkeys(w.split(":", 1)[0] for w in lines[:3])),
                     lambda c, p: c.old.verdict == "UNKNOWN" or len(c.old.may) > 1)
        for fam in (Family.IPV4, Family.IPV6):
            if fam not in self.fams:
                tool, v = ("iptables", 4) if fam is Family.IPV4 else ("ip6tables", 6)
                self.dev(f"ipv{v}", f"the script has no {tool} rules, so IPv{v} is open; the policy gives IPv{v} the "
                         "same entries" + (" (and the ICMPv6 IPv6 needs)" if v == 6 else ""),
                         f"(no {tool} rules)", lambda c, p, fam=fam: c.family is fam)
        fwd = {f: self.rulesets[f].tables["filter"].chains.get("FORWARD") if "filter" in self.rulesets[f].tables
               else None for f in self.fams}
        self.dev("forward", "a host policy forwards nothing (FORWARD policy DROP); the script "
                 + ("forwards everything" if any(c is None or c.policy == "ACCEPT" for c in fwd.values())
                    else "forwards some traffic"), "FORWARD policy",
                 lambda c, p: c.hook == "FORWARD")

        def icmpv6(c: Change, p: dict) -> bool:
            from .compile import ICMPV6_ALWAYS, ICMPV6_MLD, ICMPV6_ND
            types = normalize((t * 256, t * 256 + 255) for t in (*ICMPV6_ALWAYS, *ICMPV6_ND, *ICMPV6_MLD))
            return (c.family is Family.IPV6 and p[PROTO] == ((58, 58),) and c.new.verdict == "ACCEPT"
                    and _covers(types, p[ICMP]))
        if Family.IPV6 in self.fams:
            self.dev("icmpv6", "the ICMPv6 IPv6 needs (errors, neighbour discovery, multicast listeners from "
                     "link-local sources; RFC 4890) is accepted", "the script's ip6tables rules", icmpv6)

        def replies(c: Change, p: dict) -> bool:
            kinds = {i for lo, hi in p[KIND] for i in range(lo, hi + 1)}
            return kinds <= REPLIES and c.new.verdict == "ACCEPT"
        self.dev("established", "packets of established connections (and their related errors) are accepted "
                 "first, in and out; the script lacks such a rule or lists replies port by port",
                 "the script's ESTABLISHED rules", replies)

        def loopback(c: Change, p: dict) -> bool:
            dim, hook = (IIF, "INPUT") if c.hook == "INPUT" else (OIF, "OUTPUT")
            if c.hook != hook:
                return False
            lo = c.space.ifaces.index("lo")
            return p[dim] == ((lo, lo),) and c.new.verdict == "ACCEPT"
        self.dev("loopback", "loopback traffic is accepted before any other test", "the script's `-i lo` rule",
                 loopback)
        policies = {f: flat.policy for f, flat in self.flat_in.items()}
        if any(v == "ACCEPT" for v in policies.values()):
            self.dev("closed", "open only because the script's INPUT policy is ACCEPT: the policy closes every "
                     "port it does not allow", "INPUT policy ACCEPT",
                     lambda c, p: c.hook == "INPUT" and c.old.rule in ("INPUT policy", None)
                     and c.old.verdict == "ACCEPT")
        self.dev("closed-how", "closed ports are answered one way (defaults.closed); the script mixes DROP and "
                 "REJECT", "the script's DROP/REJECT rules",
                 lambda c, p: c.old.verdict in DENY and c.new.verdict in DENY)
        others = sorted({str(r.origin) for f in self.fams for name, t in self.rulesets[f].tables.items()
                         if name != "filter" for ch in t.chains.values() for r in ch.rules if r.origin})
        if others:
            self.dev("other-tables", "the script's nat, mangle or raw rules (address translation, marks) are outside a "
                     "host filter policy; left out", ", ".join(others[:4]) + (" ..." if len(others) > 4 else ""),
                     lambda c, p: any(o in text for o in others for text in (c.old.rule or "", *c.old.depends)))
        not_converted = self._not_converted()
        for where, why in not_converted.items():
            self.dev("not-converted", why, where,
                     lambda c, p, w=where: c.old.rule == w or any(w in d for d in c.old.depends))

    def _not_converted(self) -> dict[str, str]:
        """Script ACCEPT rules the policy leaves out on purpose, each with why."""
        out: dict[str, str] = {}
        for flat in self.flat_in.values():
            for r in flat.rules:
                odd = sorted({lit.value.name for lit in r.conds if lit.kind == "match"} - UNDERSTOOD)
                if odd and r.rule is not None and r.action in ("ACCEPT", *DENY):
                    out[_where(r)] = (f"what `-m {' -m '.join(odd)}` decides has no policy entry (an ipset's "
                                      "members the script does not show, a string or time match...); left out: "
                                      "a list of addresses becomes a group, `{ file = ... }`")
                    continue
                ifaces = sorted({lit.value for lit in r.conds if lit.kind == "iif" and lit.value != "lo"})
                if ifaces and r.rule is not None and r.action in ("ACCEPT", *DENY):
                    out[_where(r)] = (f"the policy treats every interface alike; what the script decides by "
                                      f"`-i {' '.join(ifaces)}` (a VPN, a container bridge, anti-spoofing) has no "
                                      "entry; left out")
                    continue
                if r.action != "ACCEPT" or r.rule is None:
                    continue
                where = _where(r)
                state = _state_words(r)
                if _sport_only(r):
                    out[where] = ("dangerous: it admits every port to anyone sending from the source port it names; "
                                  "left out (replies come in through the established rule)")
                elif state and "NEW" not in state and "INVALID" not in state and "UNTRACKED" not in state:
                    out[where] = "replies only: the policy's established rule admits them, for connections that exist"
                elif not _dports(r) and not _only(r, "src") and not _only(r, "iif") \
                        and not any(lit.kind == "proto" and lit.value in (1, 58) for lit in r.conds):
                    out.setdefault(where, "a rule the policy has no entry for (no destination port, not a "
                                   "source-only or loopback rule); left out")
        return out


# the matches the conversion reads (ports, state, rates, ICMP types); a rule with any other is left out
UNDERSTOOD = {"tcp", "udp", "multiport", "state", "conntrack", "limit", "hashlimit", "recent", "icmp", "icmp6",
              "comment"}


def _rate(count: int, seconds: int) -> str:
    """A policy rate string for `count` per `seconds`."""
    count = max(1, count)
    for unit, secs in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)):
        if seconds % secs == 0 and seconds // secs < 1000 and (seconds < secs * 60 or unit == "day"):
            n = seconds // secs
            return f"{count}/{unit}" if n == 1 else f"{count}/{n}{unit[0]}"
    return f"{count}/{seconds}s"


def convert(rulesets: dict[Family, Ruleset], source: str) -> Conversion:
    """The policy for a script's or dump's rulesets, with its deliberate differences."""
    return Converter(rulesets, source).convert()


# ---- the proof ---------------------------------------------------------------------------------------------

@dataclass
class Explained:
    change: Change
    deviations: list[Deviation]  # empty: unexplained

    def to_json(self) -> dict:
        return self.change.to_json() | {"explained_by": [d.topic for d in self.deviations],
                                        "script_line": self.change.old.rule,
                                        "reasons": [d.reason for d in self.deviations]}


def attribute(diff: Diff, deviations: list[Deviation]) -> list[Explained]:
    """Each changed class with the deviations covering every exact class merged into it."""
    out = []
    for c in diff.changes:
        used: list[Deviation] = []
        ok = True
        for part in c.parts:
            d = next((d for d in deviations if d.covers(c, part)), None)
            if d is None:
                ok = False
                break
            if d not in used:
                used.append(d)
        out.append(Explained(c, used if ok else []))
    return out


@dataclass
class Proof:
    diff: Diff
    explained: list[Explained]

    @property
    def unexplained(self) -> list[Explained]:
        return [e for e in self.explained if not e.deviations]

    def used(self, conv: Conversion) -> dict[int, int]:
        """Deviation index -> how many changed classes it explains, in the conversion's order."""
        counts = dict.fromkeys(range(len(conv.deviations)), 0)
        for e in self.explained:
            for d in e.deviations:
                counts[next(i for i, x in enumerate(conv.deviations) if x is d)] += 1
        return {i: n for i, n in counts.items() if n}


def prove(conv: Conversion, script: dict[Family, Ruleset], policy_path: str, policy_text: str,
          progress: Callable[[str], None] | None = None) -> Proof:
    """Compile the converted policy, diff it against the script, and explain each changed class."""
    from .compile import compile_policy

    compiled = compile_policy(policy_path, policy_text)
    diff = semantic_diff(script, compiled.rulesets, progress=progress)
    return Proof(diff, attribute(diff, conv.deviations))


# ---- TOML ----------------------------------------------------------------------------------------------------

def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        import json

        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _comment(lines: list[str]) -> list[str]:
    return [f"# {x}" for line in lines for x in line.splitlines()]


def render_toml(conv: Conversion, used: dict[int, int] | None) -> str:
    p, com = conv.policy, conv.comments
    out = _comment([conv.title or f"Converted by `stockade convert` from {conv.source}."])
    if used is not None:
        out.append("# Where it deliberately differs (`stockade diff SCRIPT POLICY` lists each packet class):"
                   if used else "# `stockade diff` finds no packet class it treats differently.")
        for i, n in used.items():
            d = conv.deviations[i]
            out += _comment([f" - {d.topic} ({d.script}; {n} class{'es' if n > 1 else ''}): {d.reason}"])
    out.append("")
    if "admin" in p:
        out += _comment(com.get("admin", []))
        out.append(f"admin = {_value(p['admin'])}")
        out.append("")
    for section in ("server", "groups", "defaults", "log", "icmp", "protect", "blocklist"):
        if section not in p or (section == "groups" and not p[section]):
            continue
        out.append(f"[{section}]")
        out += _comment(com.get(section, []))
        for k, v in p[section].items():
            if section == "groups":
                out += _comment([conv.groups_from.get(k, "")])
            if section == "protect" and k == "syn_flood" and isinstance(v, dict):
                continue
            out.append(f"{k} = {_value(v)}")
        if section == "protect" and isinstance(p[section].get("syn_flood"), dict):
            out += ["", "[protect.syn_flood]"] + [f"{k} = {_value(v)}" for k, v in p[section]["syn_flood"].items()]
        out.append("")
    for n, e in enumerate(p.get("allow", [])):
        out.append("[[allow]]")
        out += _comment(com.get(f"allow.{n}", []))
        out += [f"{k} = {_value(v)}" for k, v in e.items()]
        out.append("")
    return "\n".join(out)

