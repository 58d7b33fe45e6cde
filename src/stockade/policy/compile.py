"""A policy compiled to the netfilter model: one Ruleset per family, ipsets for every group.

The compiler speaks iptables words, one Token per word, through the same parser that
reads imported rulesets, so compiled rules are checked like any other and no policy
string is ever pasted into ruleset text. Each rule's origin is the policy line it
comes from, and a `-m comment` says so in the output.

Layout of the filter table (per family), ordered so that a packet meets few rules (issue 15 item 7:
tests/test_policy_cost.py counts them):
  INPUT (policy DROP): established/related ACCEPT first (a banned source excepted, so a ban still cuts
  open connections); a new TCP SYN or UDP packet not on loopback whose source is in none of the source
  checks' sets (bans, each inbound blocklist group's addresses and networks: `_source_checks`, negated
  lookups in the jump rule itself) to stk-syn / stk-udp (FAST), and right after each such jump the
  DROP of what it kept out (the last check's rule needs no lookup: only its members are left), so a
  blocked source costs three rules however many sets it is checked against; anything else to stk-in.
  stk-in: the ban sets ([bans], filled at run time: kernel/bans.py), loopback, invalid and
  malformed packets, inbound blocklist (a set lookup for its addresses, one for its
  networks), bogon sources on public interfaces, per-source SYN-flood limit, ICMP, services, admin
  groups (after the services, which all accept: a packet both allow is accepted either way, and a
  service's own connections meet one rule less), then stk-drop (DROP or REJECT).
  stk-syn, stk-udp: stk-in's rules such a packet can meet past the source checks, in stk-in's order
  (bogons, the SYN-flood limit for TCP, that protocol's services, admin groups, closed), so they decide
  exactly as stk-in would. When drops are logged, each policy line that drops jumps to stk-log-ID first
  (rate-limited LOG, or NFLOG to `[log] group` with `target = "nflog"`, whose prefix ends in the line's
  rule id, then stk-drop), so a kernel log line or an NFLOG message names the policy line that dropped
  the packet.
  OUTPUT (ACCEPT, or DROP in strict egress) -> stk-out. FORWARD: policy DROP.
"""
from __future__ import annotations

import ipaddress
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..files import read_regular
from ..model import Family, IPSet, Origin, Ruleset
from ..model.address import inet_pton4
from ..model.diagnostics import Diagnostic, Token, Unreadable
from ..parse.command import Builder, table_of
from ..parse.read import decode
from ..render.nft.core import COMMENT_MAX
from .catalogue import Port, resolve
from .locate import key_positions, position
from .schema import EVERY_ADDRESS, FileGroup, Policy, PolicyError, load_policy, network, parse_rate, read_policy

BOGONS = {
    Family.IPV4: ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                  "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4"),
    Family.IPV6: ("::/96", "::ffff:0:0/96", "100::/64", "fec0::/10", "ff00::/8"),
}
# RFC 4890: what IPv6 needs to work, accepted whatever the ping policy says.
ICMPV6_ALWAYS = (1, 2, 3, 4)  # destination unreachable, packet too big, time exceeded, parameter problem
ICMPV6_ND = (133, 134, 135, 136)  # router/neighbour solicitation and advertisement: hop limit 255 only
ICMPV6_MLD = (130, 131, 132, 143)  # multicast listener discovery: link-local sources only
MULTIPORT_MAX = 15
# New connections that no protection before the blocklist can match (not loopback, not INVALID, a TCP
# SYN without FIN, RST or ACK so neither NULL nor XMAS nor new-without-SYN): stk-in sends them to a
# chain holding only the rules they can meet, so a good SYN skips the protections and the other protocols.
FAST = {"stk-syn": ["!", "-i", "lo", "-p", "tcp", "--syn", "-m", "conntrack", "--ctstate", "NEW"],
        "stk-udp": ["!", "-i", "lo", "-p", "udp", "-m", "conntrack", "--ctstate", "NEW"]}
BAN_SET = "stk-bans"  # + family: stk-bans4, stk-bans6 (a group's sets always end in -ip4, -net6, ...)


@dataclass
class CompiledPolicy:
    policy: Policy
    rulesets: dict[Family, Ruleset]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    text: str = ""  # the policy file as compiled, recorded by apply


def _rate(text: str) -> tuple[str, int]:
    """A policy rate (count per seconds) as an iptables rate and burst: `10/10m` is 1/min, burst 10."""
    count, seconds = parse_rate(text)
    for per, unit in ((1, "sec"), (60, "min"), (3600, "hour"), (86400, "day")):
        if count * per % seconds == 0 and count * per // seconds >= 1:
            return f"{count * per // seconds}/{unit}", count
    return f"{max(1, round(count * 86400 / seconds))}/day", count


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_NETWORK = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}/(?:3[0-2]|[12]\d|[1-9])")  # IPv4 CIDR, prefix 1-32
_COMMENT = re.compile("#[^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]*")  # to the end of the line, as splitlines ends it
# A group's members by the set they go to: (family, "ip") single addresses, (family, "net") networks.
Members = dict[tuple[Family, str], list[str]]


GROUP_FILE_MAX = 128 << 20  # bytes: some 8 million addresses, far more than any list a seed keeps
ERRORS_SHOWN = 5  # bad lines of a group file reported one by one
QUOTED = 16  # characters of a bad entry an error repeats: the file may not be a list at all (/etc/shadow)


def quoted(text: str) -> str:
    """`text`, cut to QUOTED characters."""
    return f"`{text[:QUOTED]}…`" if len(text) > QUOTED else f"`{text}`"


def read_group_file(path: Path, origin: Origin) -> Members:
    """A blocklist file as the seeds keep one: an address or CIDR per line, `#` comments.

    Only a regular file of at most GROUP_FILE_MAX bytes is read; an error repeats only the bad word, cut short.
    Entries other than plain IPv4 ones are read with ipaddress and written back in its canonical form,
    so every back end reads them alike; a network keeps no host bits (ipset and nft clear them too)."""
    try:
        text = decode(read_regular(path, GROUP_FILE_MAX), str(path))
    except OSError as e:
        raise PolicyError([Diagnostic("error", "group-file", f"cannot read group file {path}: {e.strerror or e}",
                                      origin, "a group file is a regular file, one address or CIDR per line")]) \
            from None
    except Unreadable as e:
        raise PolicyError([e.diagnostic]) from None
    members = _read_bulk(text)
    if members is not None:
        return members
    out: Members = {}
    errors = []
    for n, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        words = entry.split()
        try:
            if len(words) > 1:
                raise ValueError(f"{quoted(words[1])}: one address or CIDR per line", "`#` starts a comment")
            key, canonical = _entry(entry)
        except ValueError as e:
            message, hint = e.args
            word = words[1] if len(words) > 1 else entry
            errors.append(Diagnostic("error", "group-file", message, Origin(str(path), n, line.index(word) + 1), hint))
            continue
        out.setdefault(key, []).append(canonical)
    if errors:
        if len(errors) > ERRORS_SHOWN:  # not a list at all: say so rather than quote the file line by line
            errors[ERRORS_SHOWN:] = [Diagnostic("error", "group-file", f"{len(errors) - ERRORS_SHOWN} more lines are "
                                                "not addresses either", errors[ERRORS_SHOWN].origin,
                                                "is this the address list the policy means?")]
        raise PolicyError(errors)
    return out


def _read_bulk(text: str) -> Members | None:
    """The members if every line is blank, a comment or a good entry, else None (the file is then read
    line by line, for the errors' positions). Lists run to millions of lines, so plain IPv4 entries are
    checked in bulk: inet_pton takes exactly the dotted quads ipaddress takes (no leading zeros)."""
    body = _COMMENT.sub("", text) if "#" in text else text
    entries = [e for e in map(str.strip, body.split("\n")) if e]
    others = [e for e in entries if ":" in e] if ":" in body else []
    ipv4 = [e for e in entries if ":" not in e] if others else entries
    addresses = [e for e in ipv4 if "/" not in e]
    networks = [e for e in ipv4 if "/" in e]
    try:
        deque(map(inet_pton4, addresses), maxlen=0)  # raises at the first that is not an address
        if not all(map(_NETWORK.fullmatch, networks)):
            return None
        out = {(Family.IPV4, "ip"): addresses, (Family.IPV4, "net"): networks}
        for key, canonical in map(_entry, others):
            out.setdefault(key, []).append(canonical)
    except (OSError, ValueError):
        return None
    return out


def _entry(entry: str) -> tuple[tuple[Family, str], str]:
    """Which set an entry goes to, (family, kind), and its canonical text; ValueError(message, hint)
    if it is not an address or network, or is every address."""
    try:
        net = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(f"{quoted(entry)} is not an address or network",
                         "one address or CIDR per line; `#` starts a comment") from None
    if net.prefixlen == 0:
        raise ValueError(f"{quoted(entry)} is every address", EVERY_ADDRESS)
    family = Family(net.version)
    return ((family, "net"), str(net)) if "/" in entry else ((family, "ip"), str(net.network_address))


class Compiler:
    def __init__(self, policy: Policy, file: str, text: str, feeds: Mapping[str, Members] | None = None):
        self.p = policy
        self.file, self.text = file, text
        self.pos = key_positions(text)
        self.base = Path(file).parent
        self.b = Builder()
        self.groups = self._groups()
        self.groups.update({name: dict((feeds or {}).get(name, {})) for name in policy.feeds})

    # -- helpers -----------------------------------------------------------------------------------------

    def origin(self, *path) -> Origin:
        """Where the policy says this: the line of the key, or of the nearest enclosing one the file has;
        for a default the file leaves wholly unsaid, no line but the key (`protect.invalid`)."""
        if any(path[:n] in self.pos for n in range(1, len(path) + 1)):
            return Origin(self.file, *position(self.pos, tuple(path)))
        return Origin(self.file, 0, 0, ".".join(map(str, path)))

    def _groups(self) -> dict[str, Members]:
        out: dict[str, Members] = {}
        for name, spec in self.p.groups.items():
            if isinstance(spec, FileGroup):
                out[name] = read_group_file(self.base / spec.file, self.origin("groups", name))
            else:
                out[name] = {}
                for x in spec:
                    out[name].setdefault((Family(network(x).version), "net" if "/" in x else "ip"), []).append(x)
        return out

    def set_name(self, group: str, family: Family, kind: str) -> str:
        return f"stk-{group}-{kind}{int(family)}"

    def add(self, family: Family, table: str, chain: str, words: list[str], origin: Origin, note: str) -> None:
        """Append one rule: the words go through the rule parser; the comment names the policy line
        (`FILE:LINE`, or `FILE:KEY` for a default the file leaves unsaid), for status and logs; a long note
        (an allow line of sixty ports) is cut to what every back end keeps (nft: 128 bytes)."""
        comment = f"{origin.tag} {note}"
        if len(comment.encode()) > COMMENT_MAX:
            comment = comment.encode()[:COMMENT_MAX - 3].decode(errors="ignore") + "..."
        tokens = [Token(w, origin) for w in ["-A", chain, *words, "-m", "comment", "--comment", comment]]
        self.b.run(family, table_of(self.b, family, Token(table, origin)), tokens, origin)

    def chain(self, family: Family, table: str, name: str, origin: Origin) -> None:
        self.b.run(family, table_of(self.b, family, Token(table, origin)), [Token("-N", origin), Token(name, origin)],
                   origin)

    def policy(self, family: Family, chain: str, verdict: str, origin: Origin) -> None:
        self.b.run(family, table_of(self.b, family, Token("filter", origin)),
                   [Token("-P", origin), Token(chain, origin), Token(verdict, origin)], origin)

    def source_sets(self, family: Family, groups: list[str], where: tuple) -> list[list[str]] | None:
        """Match words per source: [] for everyone, a set match per group; None if no group has this family."""
        if "everyone" in groups:
            return [[]]
        out = []
        for g in groups:
            if g not in self.groups:
                raise PolicyError([Diagnostic("error", "policy", f"unknown group `{g}`", self.origin(*where),
                                              f"define it under [groups]; known: {', '.join(self.groups) or 'none'}")])
            for name in (self.set_name(g, family, kind) for kind in ("ip", "net")):
                if name in self.b.ruleset(family).sets:
                    out.append(["-m", "set", "--match-set", name, "src"])
        return out or None

    # -- the policy, section by section ------------------------------------------------------------------

    def compile(self) -> CompiledPolicy:
        for family in (Family.IPV4, Family.IPV6):
            self._sets(family)
            self._input(family)
            self._output(family)
            self.policy(family, "FORWARD", "DROP", self.origin("server"))
        errors = [d for d in self.b.diagnostics if d.severity == "error"]
        if errors:  # a compiler bug or an unusable value that slipped past the schema
            raise PolicyError(errors)
        return CompiledPolicy(self.p, self.b.rulesets, self.b.diagnostics, self.text)

    def _sets(self, family: Family) -> None:
        """Per group, its addresses in a hash:ip set and its networks in a hash:net set: nftables keeps
        networks in interval sets, which load several times slower per entry than its hashes."""
        for g, members in self.groups.items():
            feed = self.p.feeds.get(g)
            for kind in ("ip", "net"):
                self._set(family, g, kind, members.get((family, kind), []),
                          self.origin("feeds" if feed else "groups", g), feed and feed.max_entries)
        if self.p.protect.bogons:
            self._set(family, "bogons", "net", list(BOGONS[family]), self.origin("protect", "bogons"))
        if self.p.bans is not None:  # empty when compiled: what is banned is state, carried by apply
            name, bans = ban_set(family), self.p.bans
            self.b.ruleset(family).sets[name] = IPSet(name, "hash:ip", (
                "family", "inet" if family is Family.IPV4 else "inet6", "hashsize", "1024",
                "maxelem", str(bans.max), "timeout", str(bans.timeout)), [], self.origin("bans"))

    def _set(self, family: Family, group: str, kind: str, members: list[str], origin: Origin,
             feed_max: int | None = None) -> None:
        """The set, unless empty; its hash sized for the members, as one that grows while loading
        rehashes all it holds. A feed's sets exist even when empty, sized for its `max_entries`:
        `feeds update` changes their members in place, never the rules that use them."""
        if members or feed_max:
            name = self.set_name(group, family, kind)
            size = max(len(members), feed_max or 0)
            self.b.ruleset(family).sets[name] = IPSet(name, f"hash:{kind}", (
                "family", "inet" if family is Family.IPV4 else "inet6",
                "hashsize", str(max(1024, 1 << (size // 2).bit_length())),
                "maxelem", str(max(65536, 2 * size))), members, origin)

    def _input(self, f: Family) -> None:
        p, o = self.p, self.origin
        for chain in ("stk-in", *FAST):
            self.chain(f, "filter", chain, o("server"))
        self.chain(f, "filter", "stk-drop", o("defaults"))
        self.policy(f, "INPUT", "DROP", o("defaults"))
        add = _InputRules(self, f)
        banned = ["-m", "set", "!", "--match-set", ban_set(f), "src"] if p.bans is not None else []
        self.add(f, "filter", "INPUT", ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *banned, "-j", "ACCEPT"],
                 o("server"), "established")
        checks = self._source_checks(f)
        guard = [w for sets, _, _ in checks for s in sets for w in ("-m", "set", "!", "--match-set", s, "src")]
        for chain, match in FAST.items():
            self.add(f, "filter", "INPUT", [*match, *guard, "-j", chain], o("server"), f"new {chain[4:]} connections")
            for n, (sets, origin, note) in enumerate(checks):  # what the guard kept out: in some check's set
                last = n == len(checks) - 1
                for m in [[]] if last else [["-m", "set", "--match-set", s, "src"] for s in sets]:
                    self.add(f, "filter", "INPUT", [*match, *m, "-j", "DROP"], origin, note)
        self.add(f, "filter", "INPUT", ["-j", "stk-in"], o("server"), "stockade")
        if p.bans is not None:
            add(["-m", "set", "--match-set", ban_set(f), "src", "-j", "DROP"], o("bans"), "banned")
        add(["-i", "lo", "-j", "ACCEPT"], o("server"), "loopback")
        pr = p.protect
        if pr.null:
            add(["-p", "tcp", "--tcp-flags", "ALL", "NONE", *self.drop(f, o("protect", "null"), "NULL scan")],
                o("protect", "null"), "NULL scan")
        if pr.xmas:
            add(["-p", "tcp", "--tcp-flags", "ALL", "ALL", *self.drop(f, o("protect", "xmas"), "XMAS scan")],
                o("protect", "xmas"), "XMAS scan")
        if pr.invalid:
            add(["-m", "conntrack", "--ctstate", "INVALID", *self.drop(f, o("protect", "invalid"), "invalid")],
                o("protect", "invalid"), "invalid")
        if pr.new_without_syn:
            add(["-p", "tcp", "!", "--syn", "-m", "conntrack", "--ctstate", "NEW",
                 *self.drop(f, o("protect", "new_without_syn"), "new without SYN")],
                o("protect", "new_without_syn"), "new without SYN")
        for g in p.blocklist.inbound:  # a new SYN or UDP packet met these in INPUT (checks)
            for m in self.source_sets(f, [g], ("blocklist", "inbound")) or []:
                add(m + ["-j", "DROP"], o("blocklist", "inbound"), f"blocklist {g}")
        add.fast = True  # from here on, what a new TCP SYN or UDP packet can meet
        if pr.bogons:
            for iface in p.server.interfaces:
                bogons = self.set_name("bogons", f, "net")
                add(["-i", iface, "-m", "set", "--match-set", bogons, "src",
                     *self.drop(f, o("protect", "bogons"), "bogon source")], o("protect", "bogons"),
                    f"bogon source on {iface}")
        if pr.syn_flood:
            rate, _ = _rate(pr.syn_flood.rate)
            add(["-p", "tcp", "--syn", "-m", "conntrack", "--ctstate", "NEW", "-m", "hashlimit", "--hashlimit-above",
                 rate, "--hashlimit-burst", str(pr.syn_flood.burst), "--hashlimit-mode", "srcip",
                 "--hashlimit-name", f"stk-syn{int(f)}", *self.drop(f, o("protect", "syn_flood"), "SYN flood")],
                o("protect", "syn_flood"),
                "SYN flood per source")
        self._icmp_in(f, add)
        self._services(f, add)
        for g in p.admin:  # after the services: every rule in between accepts, so only the line counted changes
            for m in self.source_sets(f, [g], ("admin",)) or []:
                add(m + ["-j", "ACCEPT"], o("admin"), f"admin {g}")
        self._drop_chain(f)
        add(self.drop(f, o("defaults", "closed"), "closed"), o("defaults", "closed"), f"closed: {p.defaults.closed}")

    def _source_checks(self, f: Family) -> list[tuple[list[str], Origin, str]]:
        """The checks that drop a new connection by its source alone, in stk-in's order: the ban set, then
        each inbound blocklist group's sets, as (set names, policy line, note)."""
        out = [([ban_set(f)], self.origin("bans"), "banned")] if self.p.bans is not None else []
        for g in self.p.blocklist.inbound:
            sets = [m[3] for m in self.source_sets(f, [g], ("blocklist", "inbound")) or []]
            out += [(sets, self.origin("blocklist", "inbound"), f"blocklist {g}")] if sets else []
        return out

    def _icmp_in(self, f: Family, add) -> None:
        ic, o = self.p.icmp, self.origin
        proto, flag, echo = ("icmp", "--icmp-type", "8") if f is Family.IPV4 else ("ipv6-icmp", "--icmpv6-type", "128")
        if f is Family.IPV6:
            for t in ICMPV6_ALWAYS:
                add(["-p", proto, flag, str(t), "-j", "ACCEPT"], o("icmp"), f"ICMPv6 type {t} (RFC 4890)")
            for t in ICMPV6_ND:
                add(["-p", proto, flag, str(t), "-m", "hl", "--hl-eq", "255", "-j", "ACCEPT"], o("icmp"),
                    f"neighbour discovery type {t}")
            for t in ICMPV6_MLD:
                add(["-s", "fe80::/10", "-p", proto, flag, str(t), "-j", "ACCEPT"], o("icmp"), f"MLD type {t}")
        if ic.ping == "allow":
            add(["-p", proto, flag, echo, "-j", "ACCEPT"], o("icmp", "ping"), "ping")
        elif ic.ping == "limit":
            rate, _ = _rate(ic.rate)
            add(["-p", proto, flag, echo, "-m", "hashlimit", "--hashlimit-upto", rate, "--hashlimit-burst",
                 str(ic.burst), "--hashlimit-mode", "srcip", "--hashlimit-name", f"stk-ping{int(f)}", "-j", "ACCEPT"],
                o("icmp", "ping"), "ping, limited per source")

    def _services(self, f: Family, add) -> None:
        raw_helpers = set()
        for n, allow in enumerate(self.p.allow):
            where = ("allow", n)
            sources = self.source_sets(f, allow.sources, where + ("from",))
            if sources is None:
                continue
            ports: list[Port] = []
            for name in allow.services:
                svc = resolve(name)
                ports += svc.ports
                if svc.helper:
                    raw_helpers.add((svc.helper, svc.ports[0].lo))
            label = "+".join(allow.services)
            for src in sources:
                for proto in ("tcp", "udp"):
                    mine = [p for p in ports if p.proto == proto]
                    if not mine:
                        continue
                    if allow.limit:
                        rate, burst = _rate(allow.limit)
                        for i, port in enumerate(mine):
                            add(src + ["-p", proto, "--dport", f"{port.lo}:{port.hi}", "-m", "conntrack",
                                       "--ctstate", "NEW", "-m", "hashlimit", "--hashlimit-upto", rate,
                                       "--hashlimit-burst", str(burst), "--hashlimit-mode", "srcip",
                                       "--hashlimit-name", f"stk-a{n}-{proto[0]}{i}-{int(f)}", "-j", "ACCEPT"],
                                self.origin(*where), f"allow {label}, limited per source")
                    else:
                        for chunk in _multiport_chunks(mine):
                            spec = ",".join(f"{p.lo}" if p.lo == p.hi else f"{p.lo}:{p.hi}" for p in chunk)
                            match = (["--dport", spec] if len(chunk) == 1
                                     else ["-m", "multiport", "--dports", spec])
                            add(src + ["-p", proto, *match, "-j", "ACCEPT"], self.origin(*where), f"allow {label}")
        for helper, port in sorted(raw_helpers):
            self.add(f, "raw", "PREROUTING", ["-p", "tcp", "--dport", str(port), "-j", "CT", "--helper", helper],
                     self.origin("allow"), f"{helper} helper for related data connections")

    def drop(self, f: Family, origin: Origin, note: str) -> list[str]:
        """The target of a rule that drops for the policy line `origin`: stk-drop, or, when drops are
        logged, the line's own chain that logs first (its prefix ends in the line's rule id, which
        `stockade logs` maps back; the rate limit is the line's own, so one flood hides no other line)."""
        lg = self.p.log
        if not lg.drops:
            return ["-j", "stk-drop"]
        rid = rule_id(origin)
        chain = f"stk-log-{rid}"
        if chain not in self.b.ruleset(f).tables["filter"].chains:
            self.chain(f, "filter", chain, origin)
            rate, _ = _rate(lg.rate)
            prefix = log_prefix(lg.prefix, rid)
            target = (["-j", "NFLOG", "--nflog-group", str(lg.group), "--nflog-prefix", prefix] if lg.target == "nflog"
                      else ["-j", "LOG", "--log-prefix", prefix])
            self.add(f, "filter", chain, ["-m", "limit", "--limit", rate, "--limit-burst", str(lg.burst), *target],
                     origin, f"log: {note}")
            self.add(f, "filter", chain, ["-j", "stk-drop"], origin, note)
        return ["-j", chain]

    def _drop_chain(self, f: Family) -> None:
        o = self.origin
        if self.p.defaults.closed == "reject":
            self.add(f, "filter", "stk-drop", ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
                     o("defaults", "closed"), "closed ports: reject")
            self.add(f, "filter", "stk-drop", ["-j", "REJECT"], o("defaults", "closed"), "closed ports: reject")
        else:
            self.add(f, "filter", "stk-drop", ["-j", "DROP"], o("defaults", "closed"), "closed ports: drop")

    def _output(self, f: Family) -> None:
        p, o = self.p, self.origin
        strict = p.defaults.egress == "strict"
        self.chain(f, "filter", "stk-out", o("defaults", "egress"))
        self.policy(f, "OUTPUT", "DROP" if strict else "ACCEPT", o("defaults", "egress"))
        self.add(f, "filter", "OUTPUT", ["-j", "stk-out"], o("defaults", "egress"), "stockade")
        add = lambda words, origin, note: self.add(f, "filter", "stk-out", words, origin, note)  # noqa: E731
        add(["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"], o("defaults"), "established")
        add(["-o", "lo", "-j", "ACCEPT"], o("defaults"), "loopback")
        for g in p.blocklist.outbound:
            for m in self._dest_sets(f, [g], ("blocklist", "outbound")) or []:
                add(m + ["-j", "REJECT"], o("blocklist", "outbound"), f"outbound blocklist {g}")
        if not strict:
            return
        if f is Family.IPV6:
            for t in (*ICMPV6_ND, *ICMPV6_MLD):
                add(["-p", "ipv6-icmp", "--icmpv6-type", str(t), "-j", "ACCEPT"], o("icmp"), f"ICMPv6 type {t}")
        if p.icmp.ping_out == "allow":
            v4 = f is Family.IPV4
            proto, flag, echo = ("icmp", "--icmp-type", "8") if v4 else ("ipv6-icmp", "--icmpv6-type", "128")
            add(["-p", proto, flag, echo, "-j", "ACCEPT"], o("icmp", "ping_out"), "outbound ping")
        for n, eg in enumerate(p.egress):
            dests = self._dest_sets(f, eg.targets, ("egress", n, "to"))
            if dests is None:
                continue
            for name in eg.services:
                for port in resolve(name).ports:
                    for d in dests:
                        add(d + ["-p", port.proto, "--dport", f"{port.lo}:{port.hi}", "-j", "ACCEPT"],
                            o("egress", n), f"egress {name}")
        add(["-j", "REJECT"], o("defaults", "egress"), "egress: strict")

    def _dest_sets(self, f: Family, groups: list[str], where: tuple) -> list[list[str]] | None:
        src = self.source_sets(f, groups, where)
        return None if src is None else [[w if w != "src" else "dst" for w in m] for m in src]


class _InputRules:
    """Appends an inbound rule to stk-in and, once `fast` is set, to each fast chain whose packets it can
    match (by its `-p`). A fast chain is a copy of stk-in's tail for new connections that cannot meet the
    rules before it (loopback, invalid, NULL, XMAS and non-SYN packets), ending in the same verdicts."""

    def __init__(self, compiler: Compiler, family: Family):
        self.c, self.f, self.fast = compiler, family, False

    def __call__(self, words: list[str], origin: Origin, note: str) -> None:
        self.c.add(self.f, "filter", "stk-in", words, origin, note)
        proto = words[words.index("-p") + 1] if "-p" in words else None
        for chain, match in FAST.items() if self.fast else ():
            if proto is None or proto == match[match.index("-p") + 1]:
                self.c.add(self.f, "filter", chain, words, origin, note)


LOG_PREFIX_MAX = 29  # bytes of a LOG prefix the kernel keeps (extensions/log.py)


def ban_set(family: Family) -> str:
    return f"{BAN_SET}{int(family)}"


def rule_id(origin: Origin) -> str:
    """The short id of a policy line in log prefixes and chain names: `L39` for line 39; for a default
    the file leaves unsaid, `D` and its key's last word (`Dclosed`) or initials (`Dnws`: new_without_syn)."""
    if origin.line:
        return f"L{origin.line}"
    words = origin.key.rsplit(".", 1)[-1].split("_")
    return "D" + (words[0] if len(words) == 1 else "".join(w[:1] for w in words))[:8]


def log_prefix(prefix: str, rid: str) -> str:
    """The policy's log prefix with the rule id and a space after it, the prefix cut to fit the kernel's field."""
    return prefix[:LOG_PREFIX_MAX - len(rid) - 1] + f"{rid} "


def _multiport_chunks(ports: list[Port]) -> list[list[Port]]:
    """Ports in groups multiport can take: 15 slots, a range counting as two."""
    chunks, cur, used = [], [], 0
    for p in ports:
        cost = 1 if p.lo == p.hi else 2
        if used + cost > MULTIPORT_MAX:
            chunks.append(cur)
            cur, used = [], 0
        cur.append(p)
        used += cost
    return chunks + ([cur] if cur else [])


def compile_policy(path: str | Path, text: str | None = None,
                   feeds: Mapping[str, Members] | None = None) -> CompiledPolicy:
    """Load, validate and compile a policy file; raise PolicyError with positioned diagnostics. `feeds`:
    each feed's last good list (kernel/feeds.py keeps them); a feed without one compiles empty."""
    path = Path(path)
    if text is None:
        text = read_policy(path)
    policy = load_policy(path, text)
    return Compiler(policy, str(path), text, feeds).compile()
