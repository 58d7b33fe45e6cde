"""-m recent: lists of recently seen addresses, kept by the kernel in named tables (xt_recent revision 1)."""
from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ..model import Family
from ..model.address import ntop
from ..model.diagnostics import ParseError
from .base import Extension, Option, register
from .values import check_printable, parse_c_uint

COMMANDS = ("set", "rcheck", "update", "remove")
NAME_MAX = 199
HITCOUNT_MAX = 65535  # the kernel keeps at most 65536 timestamps per address
SECONDS_MAX = 2**31 - 1  # iptables-save prints --seconds as a signed number
# The kernel the semantics are checked against: CONFIG_HZ=250 (/proc/config.gz; jiffies in
# /proc/timer_list advance 250 a second), and xt_recent's module parameters as
# /sys/module/xt_recent/parameters shows them: 100 addresses per table, ip_pkt_list_tot unset (0).
HZ = 250
IP_LIST_TOT = 100


def jiffies(t: float) -> int:
    """The jiffies counter at packet time t (seconds), taking t = 0 to fall on a tick."""
    return int(round(t * HZ, 6) // 1)


def sharers(env, match: str, name: str) -> list | None:
    """The data of every `-m match` in the ruleset whose kernel table is called `name`: the table is
    set up by whichever of them the kernel loads first, so its settings are theirs only if they agree.
    None: the simulator gave no ruleset to look in."""
    if getattr(env, "ruleset", None) is None:
        return None
    key = ("sharers", match, name)
    if key not in env.memory:
        env.memory[key] = [m.data for table in env.ruleset.tables.values() for chain in table.chains.values()
                           for rule in chain.rules for m in rule.matches
                           if m.name == match and getattr(m.data, "name", None) == name]
    return env.memory[key]


@dataclass
class _Entry:
    ttl: int
    stamps: deque  # the last nstamps packet times, in jiffies, oldest first


@dataclass
class _Table:
    """One named table: entries by masked address, least recently updated first (the LRU list)."""

    mask: int
    nstamps: int
    entries: OrderedDict = field(default_factory=OrderedDict)

    def __deepcopy__(self, memo) -> _Table:
        """A copy for a simulator's fork, at a tenth of what the generic deepcopy costs: a table is
        copied for each packet that reaches it when a rule stockade could not read may be tried both ways."""
        return _Table(self.mask, self.nstamps,
                      OrderedDict((a, _Entry(e.ttl, e.stamps.copy())) for a, e in self.entries.items()))


def check_table_name(name: str, ext: str, limit: int) -> str:
    """A kernel table name (it becomes a /proc file), printable bare by iptables-save."""
    check_printable(name, f"{ext} table name")
    if not name or name in (".", "..") or "/" in name:
        raise ParseError(f"{ext}: `{name}` is not a valid table name", code="bad-value",
                         hint="the name becomes a file in /proc: not empty, no `/`, not `.` or `..`")
    if len(name.encode()) > limit:
        raise ParseError(f"{ext}: table name is {len(name.encode())} bytes; at most {limit} are kept",
                         code="too-long", hint="iptables would cut it short silently; shorten it")
    if any(c.isspace() or c in "\"'\\" for c in name):
        raise ParseError(f"{ext}: table name `{name}` contains a space, quote or backslash", code="bad-value",
                         hint="iptables-save prints the name unquoted, so the saved rules would not load again")
    return name


@dataclass(frozen=True)
class Recent:
    """Looks up the packet's source address (`dest`: destination address) ANDed with `mask` in the
    kernel list `name`. set: adds it (or refreshes its timestamp) and matches. rcheck: matches if it is
    listed with, when given, at least `hitcount` timestamps (`seconds`: within the last so many seconds;
    `rttl`: only if the packet's TTL equals the one recorded). update: like rcheck, and on a match
    records this packet too. remove: deletes it and matches if it was listed. `reap` drops timestamps
    older than `seconds` while checking. `invert` negates the result (update then records when the
    negated result is true)."""

    command: str  # one of COMMANDS
    mask: ipaddress.IPv4Address | ipaddress.IPv6Address
    invert: bool = False
    name: str = "DEFAULT"
    seconds: int = 0  # 0: any age
    reap: bool = False
    hitcount: int = 0  # 0: one timestamp suffices
    rttl: bool = False
    dest: bool = False


@register
class RecentMatch(Extension):
    name = "recent"
    stateful = True
    nft_refusal = "recent: nftables has no lists of recently seen addresses with hit counts and ages"
    undecidable = "a list of addresses earlier packets filled"
    options = (
        *(Option(f"--{c}", nargs=0, invertible=True) for c in COMMANDS),
        Option("--seconds"), Option("--reap", nargs=0), Option("--hitcount"), Option("--rttl", nargs=0),
        Option("--name"), Option("--mask"), Option("--rsource", nargs=0), Option("--rdest", nargs=0),
    )

    def parse(self, acc, opt, invert, args, ctx):
        key = opt.key
        if key in acc:
            raise ParseError(f"recent: {opt.name} given twice", code="duplicate-option")
        if key in COMMANDS and "command" in acc:
            raise ParseError(f"recent: --{acc['command'][0]} and {opt.name} cannot be used together",
                             code="conflicting-options", hint="one of --set, --rcheck, --update, --remove per match")
        if invert and key not in COMMANDS:
            raise ParseError(f"recent: {opt.name} cannot be inverted with `!`", code="bad-invert",
                             hint="put `!` before --set, --rcheck, --update or --remove")
        if key in COMMANDS:
            acc["command"] = (key, invert)
        elif key in ("rsource", "rdest"):
            acc["dest"] = key == "rdest"  # the later of the two wins
        acc[key] = self._value(key, args[0] if args else "", ctx)

    @staticmethod
    def _value(key, word, ctx):
        if key == "seconds":
            seconds = parse_c_uint(word, "recent seconds", 1, 2**32 - 1)
            if seconds > SECONDS_MAX:
                raise ParseError(f"recent: --seconds {word} is above {SECONDS_MAX}", code="bad-number",
                                 hint="iptables-save would print it as a negative number that does not load again")
            return seconds
        if key == "hitcount":
            return parse_c_uint(word, "recent hitcount", 0, HITCOUNT_MAX)
        if key == "name":
            return check_table_name(word, "recent", NAME_MAX)
        if key == "mask":
            try:
                mask = ipaddress.ip_address(word)
            except ValueError:
                mask = None
            if mask is None or mask.version != int(ctx.family):
                raise ParseError(f"recent: --mask `{word}` is not an IPv{int(ctx.family)} address", code="bad-address",
                                 hint="write the mask as an address, e.g. 255.255.255.0 or ffff:ffff:ffff:ffff::")
            return mask
        return True

    def finish(self, acc, ctx):
        if "command" not in acc:
            raise ParseError("recent: one of --set, --rcheck, --update or --remove is required",
                             code="missing-option")
        command, invert = acc["command"]
        if "reap" in acc and "seconds" not in acc:
            raise ParseError("recent: --reap needs --seconds", code="missing-option")
        if command in ("set", "remove"):
            extra = [f"--{k}" for k in ("seconds", "reap", "hitcount", "rttl") if k in acc]
            if extra:
                raise ParseError(f"recent: {extra[0]} cannot be used with --{command}", code="conflicting-options",
                                 hint=f"{extra[0]} only qualifies --rcheck and --update")
        full = ipaddress.ip_address(2**(32 if int(ctx.family) == 4 else 128) - 1)
        return Recent(command, acc.get("mask", full), invert, acc.get("name", "DEFAULT"), acc.get("seconds", 0),
                      "reap" in acc, acc.get("hitcount", 0), "rttl" in acc, acc.get("dest", False))

    def holds(self, d: Recent, pkt, env) -> bool | None:
        """recent_mt (xt_recent.c). The table is shared by name and set up by the first rule loaded:
        its address mask and timestamp count come from the rules using it, so if they disagree on
        --mask the outcome depends on load order (None). An address is looked up (with --rttl: only
        if the TTL recorded agrees, 0 agreeing with any); --set adds it (evicting the least recently
        updated once IP_LIST_TOT are held) or adds a timestamp; --rcheck/--update count its
        timestamps (within --seconds) against --hitcount; --update records this packet only when the
        match, `!` applied, holds; --reap then drops the least recently updated address if its
        newest timestamp is older than --seconds. The TTL recorded is the one the packet arrived
        with: in FORWARD and POSTROUTING xt_recent adds back the decrement of forwarding. Not
        modelled: use of the same name by the other family's rules, which share the table and its
        IP_LIST_TOT places."""
        table = self._table(d, env)
        if table is None:
            return None
        now = jiffies(pkt.t)
        # "use TTL as seen before forwarding": with an output device and no local socket, one back
        ttl = pkt.ttl + (pkt.hook == "FORWARD" and env.at[1] in ("FORWARD", "POSTROUTING"))
        addr = (pkt.dst if d.dest else pkt.src) & table.mask
        ret = d.invert
        e = table.entries.get(addr)
        if e is not None and d.rttl and ttl != e.ttl and 0 not in (ttl, e.ttl):
            e = None
        if e is None:
            if d.command == "set":
                if len(table.entries) >= IP_LIST_TOT:
                    table.entries.popitem(last=False)
                table.entries[addr] = _Entry(ttl, deque([now], maxlen=table.nstamps))
                return not ret
            return ret
        if d.command in ("set", "remove"):
            ret = not ret
            if d.command == "remove":
                del table.entries[addr]
        else:
            since = now - d.seconds * HZ
            hits = sum(1 for stamp in e.stamps if not d.seconds or stamp >= since)
            if hits and hits >= d.hitcount:
                ret = not ret
            if d.reap:
                head_addr, head = next(iter(table.entries.items()))
                if not (head is e and d.command == "update" and ret) and head.stamps[-1] < since:
                    del table.entries[head_addr]
        if d.command == "set" or (d.command == "update" and ret):
            e.stamps.append(now)
            e.ttl = ttl
            table.entries.move_to_end(addr)
        return ret

    @staticmethod
    def _table(d: Recent, env) -> _Table | None:
        key = ("recent", d.name)
        if key not in env.memory:
            users = sharers(env, "recent", d.name)
            if not users or d not in users or len({u.mask for u in users}) > 1:
                return None
            # recent_mt_check: 2**k >= --hitcount timestamps per address (32 without), the most any rule asks
            masks = [(1 << (u.hitcount - 1).bit_length()) if u.hitcount else 32 for u in users]
            env.memory[key] = _Table(int(d.mask), max(masks))
        return env.memory[key]

    def save(self, d: Recent) -> list[str]:
        out = (["!"] if d.invert else []) + [f"--{d.command}"]
        if d.seconds:
            out += ["--seconds", str(d.seconds)]
        if d.reap:
            out.append("--reap")
        if d.hitcount:
            out += ["--hitcount", str(d.hitcount)]
        if d.rttl:
            out.append("--rttl")
        mask = ntop(d.mask.version, int(d.mask))
        return out + ["--name", d.name, "--mask", mask, "--rdest" if d.dest else "--rsource"]

    def shares_state(self, d: Recent, family: Family) -> bool:
        """Entries are per source address, unless --rdest or a mask groups several senders."""
        bits = 32 if family is Family.IPV4 else 128
        return d.dest or int(d.mask) != (1 << bits) - 1
