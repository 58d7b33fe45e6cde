"""-m hashlimit: rate limits per flow, in a named kernel table (xt_hashlimit revision 3).

Values are kept as the kernel holds them, because iptables-save prints them back
from there: a packet rate is the time between packets in microseconds, a byte
rate the kernel's cost value, and several print forms are lossy (a rate-match
rate is divided by its unit, byte counts are rounded down to kb/mb).

Not checked here: the kernel refuses a rule whose --hashlimit-rate-match setting
differs from that of an existing table of the same name (a ruleset-level check).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from ..model import Family
from ..model.diagnostics import ParseError
from ..model.netfilter import PORT_PROTOS, proto_name
from ..model.nft import IDENT, Part, identifier, netmask
from .base import Extension, Option, register
from .limit import NFT_UNITS, PRINTED, interval, parse_rate, printed_rate
from .recent import HZ, check_table_name, jiffies, sharers
from .values import parse_c_uint, parse_decimal

SCALE = 1_000_000  # packet rates: microseconds between packets
U32, U64 = 2**32 - 1, 2**64 - 1
BURST, BURST_MAX = 5, 1_000_000
GC_INTERVAL = 1000  # ms
BYTE_EXPIRE, BYTE_EXPIRE_BURST = 15_000, 60_000  # ms: default expiry of byte-mode entries
MAX_SIZE = 1_048_576  # the kernel silently lowers htable-size and -max to this
NAME_MAX = 254
MODES = ("srcip", "srcport", "dstip", "dstport")  # print order
UNITS = (("m", 1 << 20), ("k", 1 << 10))
NFT_BYTE_UNITS = (("mbytes", 1 << 20), ("kbytes", 1 << 10))
# The kernel's burst overflow test multiplies by HZ * CREDITS_PER_JIFFY / 1e6 in 64 bits (HZ 250 or 1000).
CREDITS_PER_USEC = 137_438_953
# xt_hashlimit's token arithmetic (revision 3): credits gained per jiffy, in packet and in byte mode.
CREDITS_PER_JIFFY = 1 << ((U64 // (HZ * 86400)).bit_length() - 1)
CREDITS_PER_JIFFY_BYTES = 1 << ((U32 // HZ).bit_length() - 1)
BYTES_FULL = CREDITS_PER_JIFFY_BYTES * HZ  # a byte-mode bucket's credit when full
PORTS_AT = {6: 0, 17: 0, 33: 0, 132: 0, 136: 0}  # proto_ports_offset(); ESP and AH would read their SPI


def bytes_to_cost(nbytes: int) -> int:
    return U32 // (((nbytes >> 4) & U32) + 1)


def cost_to_bytes(cost: int) -> int:
    return (U32 // cost - 1) << 4


def parse_bytes(word: str) -> int:
    """`Nb/s`, `Nkb/s` or `Nmb/s` into the kernel's cost."""
    m = re.fullmatch(r"(\d+)([km]?)b/s", word)
    if not m:
        raise ParseError(f"hashlimit: bad byte rate `{word}`", code="bad-value",
                         hint="write bytes per second as Nb/s, Nkb/s or Nmb/s (lower-case k and m)")
    nbytes = int(m[1]) << {"": 0, "k": 10, "m": 20}[m[2]]
    if not 16 <= nbytes < 1 << 35:
        raise ParseError(f"hashlimit: byte rate `{word}` is out of range", code="bad-value",
                         hint="between 16b/s and 32767mb/s: iptables stores smaller rates as 0, "
                              "the kernel refuses larger ones")
    return bytes_to_cost(nbytes)


def parse_burst(word: str) -> int:
    """A count, or bytes with a k/m suffix (`400kb`)."""
    m = re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)([km]?)b?", word)
    value = parse_c_uint(m[1], "hashlimit burst", 1, U64) if m else 0
    if not m or (not m[2] and value > BURST_MAX):
        raise ParseError(f"hashlimit: bad --hashlimit-burst `{word}`", code="bad-value",
                         hint=f"a count 1-{BURST_MAX}, or for byte rates a size such as 400kb")
    return value << {"": 0, "k": 10, "m": 20}[m[2]]


def _unit(nbytes: int, exact_cost: int | None = None) -> str:
    """Bytes as iptables prints them: in mb or kb (rounded down), for a rate only if that keeps its cost."""
    for name, size in UNITS:
        if nbytes >= size and (exact_cost is None or bytes_to_cost(nbytes & ~(size - 1) & U32) == exact_cost):
            return f"{nbytes // size}{name}b"
    return f"{nbytes}b"


@dataclass(frozen=True)
class Hashlimit:
    """Per-flow rate limiting. Packets are grouped into flows by the header fields in `mode` (addresses
    cut to `srcmask`/`dstmask` bits; no mode: one flow), each flow with a token bucket in the kernel
    table `name`: one table per name and family, shared by every rule naming it and set up by the first.
    Without `above`, a packet matches while its flow is within the rate (and takes a token); with
    `above`, while the flow exceeds it. Packet mode: `avg` is microseconds per token, `burst` the bucket
    size in packets. Byte mode (`bytes`): the bucket counts bytes, `avg` is the kernel's cost
    2**32-1 // (bytes per second // 16 + 1), `burst` the bucket size in seconds' worth of bytes (0: none).
    With `rate_match`, the flow's rate over `interval`-second windows is compared with the rate instead.
    Flows idle for `expire` ms are forgotten."""

    name: str
    avg: int
    burst: int
    above: bool = False
    bytes: bool = False
    mode: tuple[str, ...] = ()
    srcmask: int | None = None  # None: the whole address
    dstmask: int | None = None
    size: int = 0  # 0: the kernel sizes the table
    max: int = 0
    gcinterval: int = GC_INTERVAL
    expire: int = 1000
    rate_match: bool = False
    interval: int = 0  # only with rate_match


def _host_table_size() -> int:
    """The least htable_create's default size can be on this host: 8192 buckets when the kernel has
    more than 1 GiB (sure with over 2 GiB physical), else it scales with memory, down to 16."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 16
    return 8192 if memory > 2 << 30 else 16


def _fewest_entries(d: Hashlimit) -> int:
    """The least the table's entry limit can be (htable_create: max, at least size; 8 × size if unset)."""
    return d.max or 8 * (d.size or _host_table_size())


def _key(d: Hashlimit, pkt) -> tuple | None:
    """hashlimit_init_dst: the flow a packet belongs to. None when the ports would be read from bytes
    the packet model does not carry: an IPv4 non-first fragment's payload, an ESP or AH SPI."""
    bits = 32 if pkt.family is Family.IPV4 else 128

    def masked(addr: int, plen: int | None) -> int:
        drop = bits - (bits if plen is None else plen)
        return addr >> drop << drop

    src = masked(pkt.src, d.srcmask) if "srcip" in d.mode else 0
    dst = masked(pkt.dst, d.dstmask) if "dstip" in d.mode else 0
    sport = dport = 0
    # On IPv6 ipv6_skip_exthdr stops at a non-first fragment's header: no ports. IPv4 reads on.
    if {"srcport", "dstport"} & set(d.mode) and not (pkt.frag_offset and pkt.family is Family.IPV6):
        if pkt.proto in (50, 51):
            return None
        if pkt.proto in PORTS_AT:
            if pkt.frag_offset or pkt.sport is None or pkt.dport is None:
                return None
            sport, dport = pkt.sport, pkt.dport
    return (src, dst, sport if "srcport" in d.mode else 0, dport if "dstport" in d.mode else 0)


def _credits(user: int) -> int:
    """user2credits() for revision 3: microseconds into credits."""
    return user * (HZ * CREDITS_PER_JIFFY // SCALE) & U64


def _init(d: Hashlimit, now: int) -> tuple:
    """rateinfo_init: a new flow's bucket, full."""
    if d.rate_match:
        if d.bytes:
            rate = ((U32 // d.avg) - 1) << 4
            return (now, 0, 0, rate, d.burst * rate if d.burst else rate)
        rate = SCALE // d.avg
        return (now, 0, 0, rate, d.burst + rate)
    if d.bytes:
        return (now, BYTES_FULL, d.burst, (d.avg * HZ * CREDITS_PER_JIFFY_BYTES >> 32) & U32)
    full = _credits(d.avg * d.burst & U64)
    return (now, full, full, _credits(d.avg))


def _recalc(d: Hashlimit, state: tuple, now: int) -> tuple:
    """rateinfo_recalc: credit for the jiffies since the flow's previous packet (unsigned arithmetic)."""
    delta = (now - state[0]) & U64
    if delta == 0:
        return state
    if d.rate_match:
        _, _, current, rate, burst = state
        span = d.interval * HZ
        if delta < span:
            return state
        return (now, int((current * span & U64) > (delta * rate & U64)), 0, rate, burst)
    _, credit, cap, cost = state
    if d.bytes:
        grown = (credit + CREDITS_PER_JIFFY_BYTES * delta) & U64
        return (now, BYTES_FULL if grown <= credit else min(grown, BYTES_FULL), cap, cost)
    return (now, min((credit + delta * CREDITS_PER_JIFFY) & U64, cap), cap, cost)


def _take(d: Hashlimit, state: tuple, length: int) -> tuple[bool, tuple]:
    """hashlimit_mt_common after the lookup: (within the rate, the bucket afterwards)."""
    if d.rate_match:
        prev, window, current, rate, burst = state
        current = (current + (length if d.bytes else 1)) & U64
        return (not window and current <= burst), (prev, window, current, rate, burst)
    prev, credit, cap, cost = state
    if d.bytes:  # hashlimit_byte_cost: a bucket too short for the packet is refilled while refills last
        cost = min(((length >> 4) + 1) * state[3], BYTES_FULL)
        if credit < cost and cap:
            cap, credit = cap - 1, BYTES_FULL
    if credit >= cost:
        return True, (prev, credit - cost, cap, state[3])
    return False, (prev, credit, cap, state[3])


def _overflows(avg: int, burst: int) -> bool:
    """The kernel's (wrap-around) test that refuses a packet bucket too big for its counters."""
    return (avg * burst & U64) * CREDITS_PER_USEC & U64 < avg * CREDITS_PER_USEC & U64


@register
class HashlimitMatch(Extension):
    name = "hashlimit"
    stateful = True
    undecidable = "a rate over earlier packets"
    options = (
        Option("--hashlimit-upto", ("--hashlimit",), invertible=True),
        Option("--hashlimit-above", invertible=True),
        Option("--hashlimit-mode"),
        Option("--hashlimit-srcmask"),
        Option("--hashlimit-dstmask"),
        Option("--hashlimit-name"),
        Option("--hashlimit-burst"),
        Option("--hashlimit-htable-size"),
        Option("--hashlimit-htable-max"),
        Option("--hashlimit-htable-gcinterval"),
        Option("--hashlimit-htable-expire"),
        Option("--hashlimit-rate-match", nargs=0),
        Option("--hashlimit-rate-interval"),
    )

    def parse(self, acc, opt, invert, args, ctx):
        key = opt.key.removeprefix("hashlimit-")
        if key in ("upto", "above"):
            if "rate" in acc:
                raise ParseError("hashlimit: only one of --hashlimit-upto and --hashlimit-above",
                                 code="conflicting-options")
            acc["above"] = (key == "above") != invert
            word = args[0]
            if "b/s" in word:
                acc["rate"], acc["bytes"] = parse_bytes(word), True
            else:
                count, per = parse_rate(word, "hashlimit")
                acc["rate"], acc["unit"] = interval(count, per, SCALE, word), per
            return
        if key in acc:
            raise ParseError(f"hashlimit: {opt.name} given twice", code="duplicate-option")
        if invert:
            raise ParseError(f"hashlimit: {opt.name} cannot be inverted with `!`", code="bad-invert")
        acc[key] = self._value(key, args, ctx)

    def _value(self, key, args, ctx):
        word = args[0] if args else ""
        if key == "mode":
            parts = [p for p in re.split(r"[,|]", word) if p]
            if bad := [p for p in parts if p not in MODES]:
                raise ParseError(f"hashlimit: bad --hashlimit-mode `{bad[0]}`", code="bad-value",
                                 hint="a comma-separated list of srcip, srcport, dstip, dstport")
            return tuple(m for m in MODES if m in parts)
        if key in ("srcmask", "dstmask"):
            return parse_c_uint(word, f"hashlimit {key}", 0, 32 if ctx.family is Family.IPV4 else 128)
        if key == "name":
            return check_table_name(word, "hashlimit", NAME_MAX)
        if key == "burst":
            return parse_burst(word)
        if key == "rate-match":
            return True
        if key == "rate-interval":
            return parse_decimal(word, "hashlimit rate interval", 1, 2**31 - 1)  # read with atoi: decimal
        lo = 0 if key in ("htable-size", "htable-max") else 1  # the kernel refuses a zero gcinterval/expire
        return parse_c_uint(word, f"hashlimit {key}", lo, U32)

    def finish(self, acc, ctx):
        if "rate" not in acc:
            raise ParseError("hashlimit: --hashlimit-upto or --hashlimit-above is required",
                             code="missing-option", hint="e.g. `--hashlimit-upto 10/sec`")
        if "name" not in acc:
            raise ParseError("hashlimit: --hashlimit-name is required", code="missing-option",
                             hint="name the kernel table, e.g. `--hashlimit-name ssh`")
        avg, unit, byte_mode = acc["rate"], acc.get("unit"), acc.get("bytes", False)
        expire = acc.get("htable-expire", BYTE_EXPIRE if byte_mode else unit * 1000)
        burst = acc.get("burst")
        if byte_mode:
            burst = self._byte_burst(avg, burst) if burst is not None else 0
            if "burst" in acc and "htable-expire" not in acc:
                expire = BYTE_EXPIRE_BURST
        elif burst is None:
            burst = BURST
        elif burst > BURST_MAX:
            raise ParseError(f"hashlimit: burst {burst} is above {BURST_MAX}", code="bad-value")
        rate_match = acc.get("rate-match", False)
        interval_ = acc.get("rate-interval", 0) if rate_match else 0
        if rate_match:
            avg = avg if byte_mode else avg // unit
            interval_ = interval_ or (1 if byte_mode else unit)
            if avg == 0:
                raise ParseError("hashlimit: rate too fast for --hashlimit-rate-match", code="bad-value",
                                 hint=f"at most {SCALE} per second")
        if not byte_mode:  # the value iptables reads back from the printed rate, so equal text means equal rules
            count, per = printed_rate(avg, SCALE)
            avg = SCALE * per // count // (per if rate_match else 1)
        if not (rate_match or byte_mode) and _overflows(avg, burst):
            raise ParseError(f"hashlimit: burst {burst} is too large for this rate", code="bad-value",
                             hint="the kernel refuses it (counter overflow); lower the burst or raise the rate")
        bits = 32 if ctx.family is Family.IPV4 else 128
        return Hashlimit(
            name=acc["name"], avg=avg, burst=burst, above=acc["above"], bytes=byte_mode, mode=acc.get("mode", ()),
            srcmask=None if acc.get("srcmask", bits) == bits else acc["srcmask"],
            dstmask=None if acc.get("dstmask", bits) == bits else acc["dstmask"],
            size=min(acc.get("htable-size", 0), MAX_SIZE), max=min(acc.get("htable-max", 0), MAX_SIZE),
            gcinterval=acc.get("htable-gcinterval", GC_INTERVAL), expire=expire, rate_match=rate_match,
            interval=interval_)

    @staticmethod
    def _byte_burst(avg: int, nbytes: int) -> int:
        """A byte burst as the kernel holds it: whole multiples of the rate's bytes, rounded up. Refused
        when iptables-save would print it in a form that reads back as a different burst."""
        step = cost_to_bytes(avg)
        if nbytes < step:
            raise ParseError(f"hashlimit: burst cannot be smaller than {step}b", code="bad-value")
        count = -(-nbytes // step)
        shown = _unit(step * count)
        if nbytes > U32 or -(-parse_burst(shown) // step) != count or parse_burst(shown) > U32:
            raise ParseError(f"hashlimit: iptables-save would print this burst as `{shown}`, "
                             "which loads back as a different burst", code="bad-value",
                             hint="make rate × burst a whole number of mb (of kb below 1mb), below 4096mb")
        return count

    def holds(self, d: Hashlimit, pkt, env) -> bool | None:
        """hashlimit_mt_common (xt_hashlimit.c, revision 3), in jiffies. The table is shared by name
        and family and takes its settings from the first rule loaded; rules sharing it must agree on
        them (all but upto/above), or the outcome depends on load order (None). A flow's bucket is
        refilled on each packet for the jiffies since its previous one; the flow is forgotten by the
        table's garbage collector once idle `expire` ms, at a time the kernel does not fix: when a
        forgotten (fresh, full) bucket and the remembered one would decide differently, the answer is
        None, and both possibilities are kept until they agree again. Packets that would need a new
        entry in a table that may be full (the kernel drops them) are None too."""
        users = sharers(env, "hashlimit", d.name)
        if not users or d not in users or len({replace(u, above=False, gcinterval=GC_INTERVAL) for u in users}) != 1:
            return None
        key = _key(d, pkt)
        if key is None:
            return None
        now = jiffies(pkt.t)
        buckets = env.memory.setdefault(("hashlimit", d.name), {})
        expires, states = buckets.get(key, (None, frozenset()))
        if states is None:  # left unknowable by a packet the kernel may have dropped
            return None
        if expires is None or now - expires >= 0:  # new, or perhaps collected: then a fresh bucket
            if len(buckets) - (key in buckets) >= _fewest_entries(d):
                buckets[key] = (expires, None)
                return None
            states = {_recalc(d, s, now) for s in states} | {_init(d, now)}
        else:
            states = {_recalc(d, s, now) for s in states}
        taken = {_take(d, s, pkt.length) for s in states}
        buckets[key] = (now - (-d.expire * HZ // 1000), frozenset(s for _, s in taken))  # msecs_to_jiffies
        results = {ok for ok, _ in taken}
        return (results.pop() != d.above) if len(results) == 1 else None

    def save(self, d: Hashlimit) -> list[str]:
        out = ["--hashlimit-above" if d.above else "--hashlimit-upto"]
        if d.bytes:
            step = cost_to_bytes(d.avg)
            out.append(_unit(step, d.avg) + "/s")
            if d.burst:
                out += ["--hashlimit-burst", _unit(step * d.burst)]
            quantum = BYTE_EXPIRE_BURST if d.burst else BYTE_EXPIRE
        else:
            count, per = printed_rate(d.avg, SCALE)
            out += [f"{count}/{PRINTED[per]}", "--hashlimit-burst", str(d.burst)]
            quantum = per * 1000
        if d.mode:
            out += ["--hashlimit-mode", ",".join(d.mode)]
        out += ["--hashlimit-name", d.name]
        for flag, value, default in (("size", d.size, 0), ("max", d.max, 0), ("gcinterval", d.gcinterval, GC_INTERVAL),
                                     ("expire", d.expire, quantum)):
            if value != default:
                out += [f"--hashlimit-htable-{flag}", str(value)]
        for flag, value in (("srcmask", d.srcmask), ("dstmask", d.dstmask)):
            if value is not None:
                out += [f"--hashlimit-{flag}", str(value)]
        if d.rate_match:
            out.append("--hashlimit-rate-match")
            if d.interval != 1:
                out += ["--hashlimit-rate-interval", str(d.interval)]
        return out

    def nft(self, d: Hashlimit, ctx) -> list[Part]:
        """A per-flow token bucket: a dynamic set keyed by the flow, with a limit on each element. Without
        a mode all packets are one flow: keyed by something they share, so that the bucket still
        expires as xt_hashlimit's entry does."""
        if d.rate_match:
            raise ctx.fail("hashlimit: --hashlimit-rate-match has no nftables equivalent")
        keys, types = ([], []) if d.mode else (["meta nfproto"], ["nf_proto"])  # no mode: one flow for all
        for mode in ("dstip", "dstport", "srcip", "srcport"):  # iptables-translate's order
            if mode not in d.mode:
                continue
            if mode.endswith("ip"):
                mask = d.dstmask if mode == "dstip" else d.srcmask
                keys.append(f"{ctx.ip} {mode[0]}addr" + (f" and {netmask(ctx, mask)}" if mask is not None else ""))
                types.append("ipv4_addr" if ctx.family is Family.IPV4 else "ipv6_addr")
            else:
                if ctx.proto not in PORT_PROTOS:
                    raise ctx.fail("hashlimit: port modes need `-p tcp` (or udp, sctp, dccp, udplite) in nftables")
                keys.append(f"{proto_name(ctx.proto)} {mode[0]}port")
                types.append("inet_service")
        rate = "limit rate " + ("over " if d.above else "")
        if d.bytes:
            rate += _nft_rate_bytes(d.avg) + "/second" + (f" burst {_nft_size_bytes(cost_to_bytes(d.avg) * d.burst)}"
                                                         if d.burst else "")
        else:
            count, per = printed_rate(d.avg, SCALE)
            rate += f"{count}/{NFT_UNITS[per]}" + (f" burst {d.burst} packets" if d.burst != 5 else "")
        timeout = f"{d.expire // 1000}s" if d.expire % 1000 == 0 else f"{d.expire}ms"
        return [Part(_nft_meter(d, ctx, " . ".join(keys), " . ".join(types), timeout, rate), stateful=True)]

    def shares_state(self, d: Hashlimit, family: Family) -> bool:
        """Unless keyed by the whole source address, packets from different sources share a bucket."""
        bits = 32 if family is Family.IPV4 else 128
        return "srcip" not in d.mode or (d.srcmask or bits) < bits


def _nft_rate_bytes(cost: int) -> str:
    """A byte rate as iptables prints it: the largest unit whose rounding keeps the kernel's cost."""
    n = cost_to_bytes(cost)
    unit = next(((name, size) for name, size in NFT_BYTE_UNITS
                 if n >= size and bytes_to_cost(n & ~(size - 1)) == cost), ("bytes", 1))
    return f"{n // unit[1]} {unit[0]}"


def _nft_size_bytes(n: int) -> str:
    """A burst size in the largest unit it reaches, rounded down (as iptables-translate does)."""
    unit = next(((name, size) for name, size in NFT_BYTE_UNITS if n >= size), ("bytes", 1))
    return f"{n // unit[1]} {unit[0]}"


def _nft_meter(d: Hashlimit, ctx, key: str, types: str, timeout: str, rate: str) -> str:
    """iptables-translate's `meter NAME {...}`, or a declared set shared by the rules naming the same
    table. nft attaches the first rule's limit to each flow, where xt_hashlimit lets each rule
    test the table its own way: rules sharing a name must therefore agree on everything."""
    if ctx.inline_meters:
        if not IDENT.fullmatch(d.name):
            raise ctx.fail(f"hashlimit: `{d.name}` cannot be an nft meter name")
        return f"meter {d.name} {{ {key} timeout {timeout} {rate} }}"
    known = ctx.decls.meters.get((ctx.family, d.name))
    if known is None:
        names = [n for n in (d.name, f"{ctx.ip}_{d.name}") if identifier(n) and n not in ctx.decls.taken]
        if not names:
            raise ctx.fail(f"hashlimit: `{d.name}` cannot be an nft set name")
        ctx.decls.taken.add(names[0])
        known = ctx.decls.meters[(ctx.family, d.name)] = (names[0], d, key)
        ctx.decls.items[names[0]] = (f"set {names[0]} {{ type {types}; size {d.max or 65535}; "
                                     f"flags dynamic,timeout; timeout {timeout}; }}")
    elif known[1:] != (d, key):
        raise ctx.fail(f"hashlimit: rules sharing --hashlimit-name {d.name} differ; nftables gives each "
                       "flow the limit of the rule that saw it first")
    return f"update @{known[0]} {{ {key} {rate} }}"
