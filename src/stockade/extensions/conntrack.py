"""-m conntrack: tests on the packet's connection-tracking entry (xt_conntrack revision 3)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Address, parse_address
from ..model.address import ntop
from ..model.diagnostics import ParseError
from ..model.nft import Part, address, neg, span
from ..model.space import KIND, Kind
from .base import Extension, Option, register
from .state import NO_ENTRY, PRINT_ORDER, STATE_NAMES, States, ct_state, nft_states, parse_names, template
from .values import format_range, parse_port_range, parse_proto, parse_uint_range

CTSTATE_NAMES = STATE_NAMES + ("SNAT", "DNAT")
STATUS_NAMES = ("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")  # parse order; NONE adds no bit
DIRECTIONS = ("ORIGINAL", "REPLY")
ADDRESS_KEYS = ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst")
PORT_KEYS = ("ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport")
# Trackers whose tuple holds the two ports. DCCP has none since Linux 6.16 (its tracker went with the
# protocol): like every other protocol without a tracker it gets the generic one, ports 0. GRE keeps
# PPTP call ids, which the packet model does not carry.
PORTED = (6, 17, 132, 136)
ICMP_REPLY = {4: {8: 0, 13: 14, 15: 16, 17: 18}, 6: {128: 129, 139: 140}}  # icmp(v6)_invert_tuple


@dataclass(frozen=True)
class Span:
    """A number (port, seconds) in lo..hi inclusive; with `invert`, outside it."""

    lo: int
    hi: int
    invert: bool = False

    def save(self, flag: str) -> list[str]:
        return (["!"] if self.invert else []) + [flag, format_range((self.lo, self.hi))]


@dataclass(frozen=True)
class CtAddress:
    """A tuple address inside `net` (with `invert`: outside it). `written` is the address as given,
    host bits included: they never affect matching, but iptables-save prints them."""

    net: Address
    written: int
    invert: bool = False

    def save(self, flag: str) -> list[str]:
        text = ntop(self.net.version, self.written)
        if self.net.prefixlen != self.net.bits:
            text += f"/{self.net.prefixlen}"
        return (["!"] if self.invert else []) + [flag, text]


@dataclass(frozen=True)
class Status:
    """The entry has at least one of the status bits `names` (an empty set, NONE, never holds);
    with `invert`, none of them."""

    names: frozenset[str]
    invert: bool = False

    def save(self) -> list[str]:
        listed = ",".join(n for n in STATUS_NAMES if n in self.names) or "NONE"
        return (["!"] if self.invert else []) + ["--ctstatus", listed]


@dataclass(frozen=True)
class Conntrack:
    """Packets whose conntrack entry passes every given test (the tests AND; each `!` negates only its
    own). orig*/repl* are the addresses and ports of the connection's original and reply tuples, `proto`
    its layer-4 protocol, `expire` its remaining lifetime in seconds, `direction` the packet's direction
    in it. A packet without an entry (INVALID, UNTRACKED) skips every test but `state` and matches only
    if `state` is given and holds."""

    state: States | None = None
    proto: int | None = None
    proto_invert: bool = False
    ctorigsrc: CtAddress | None = None
    ctorigdst: CtAddress | None = None
    ctreplsrc: CtAddress | None = None
    ctrepldst: CtAddress | None = None
    ctorigsrcport: Span | None = None
    ctorigdstport: Span | None = None
    ctreplsrcport: Span | None = None
    ctrepldstport: Span | None = None
    status: Status | None = None
    expire: Span | None = None
    direction: str | None = None  # "ORIGINAL" or "REPLY"


def _address(word: str, version: int) -> tuple[Address, int]:
    try:
        net = parse_address(word, version)
        written = parse_address(word.partition("/")[0], version).addr
    except ValueError as e:
        raise ParseError(f"conntrack: {e}", code="bad-address",
                         hint="one address or CIDR, e.g. 192.0.2.0/24; lists and host names are not accepted") \
            from None
    if net.prefixlen is None:
        raise ParseError(f"conntrack: mask in `{word}` is not a prefix", code="bad-address",
                         hint="iptables turns a non-contiguous mask into a host match; write a prefix length")
    return net, written


@register
class ConntrackMatch(Extension):
    name = "conntrack"
    conntrack = True
    # --ctstate and --ctproto: the entry's SNAT/DNAT bits they read change only under NAT targets, which
    # are not classwise. A tuple, status, expiry or direction test has no constraint, so is not (classes.cuts).
    classwise = True
    options = (
        Option("--ctstate", invertible=True),
        Option("--ctproto", invertible=True),
        *(Option(f"--{k}", invertible=True) for k in ADDRESS_KEYS + PORT_KEYS),
        Option("--ctstatus", invertible=True),
        Option("--ctexpire", invertible=True),
        Option("--ctdir"),
    )

    def convert(self, opt, args, ctx):
        word, key = args[0], opt.key
        if key == "ctstate":
            return parse_names(word, CTSTATE_NAMES, "ctstate")
        if key == "ctstatus":
            return parse_names(word, STATUS_NAMES, "ctstatus") - {"NONE"}
        if key == "ctproto":
            number = parse_proto(word)
            if number == 0:
                raise ParseError(f"conntrack: --ctproto {word} (protocol 0) would match no connection "
                                 "(with `!`, every one)",
                                 code="bad-protocol", hint="leave --ctproto out to match every protocol")
            return number
        if key in ADDRESS_KEYS:
            return _address(word, int(ctx.family))
        if key in PORT_KEYS:
            return parse_port_range(word)
        if key == "ctexpire":
            return parse_uint_range(word, "ctexpire seconds")
        if word.upper() not in DIRECTIONS:
            raise ParseError(f"conntrack: bad --ctdir `{word}`", code="bad-value", hint="use ORIGINAL or REPLY")
        return word.upper()

    def finish(self, acc, ctx):
        if not acc:
            raise ParseError("conntrack: at least one option is required", code="missing-option",
                             hint="e.g. `--ctstate ESTABLISHED,RELATED`")
        fields = {}
        if "ctstate" in acc:
            fields["state"] = States(acc["ctstate"][1], acc["ctstate"][0])
        if "ctproto" in acc:
            fields["proto_invert"], fields["proto"] = acc["ctproto"]
        for key in ADDRESS_KEYS:
            if key in acc:
                invert, (net, written) = acc[key]
                fields[key] = CtAddress(net, written, invert)
        for key in PORT_KEYS:
            if key in acc:
                fields[key] = Span(*acc[key][1], acc[key][0])
        if "ctstatus" in acc:
            fields["status"] = Status(acc["ctstatus"][1], acc["ctstatus"][0])
        if "ctexpire" in acc:
            fields["expire"] = Span(*acc["ctexpire"][1], acc["ctexpire"][0])
        if "ctdir" in acc:
            fields["direction"] = acc["ctdir"][1]
        return Conntrack(**fields)

    def holds(self, d: Conntrack, pkt, env) -> bool | None:
        """conntrack_mt (xt_conntrack.c, revision 3): every given test must pass, read from what
        _entry() knows of the packet's entry; one certain failure decides even when other tests are
        unknown. Without an entry (INVALID, UNTRACKED) only the state test counts, and fails if
        absent. --ctexpire is always open: the timeout of an unconfirmed entry (or a template) is
        relative, nf_ct_expires() subtracts the current jiffies from it, and what is left depends on
        the host's uptime (0 through most of it; measured)."""
        state = ct_state(pkt, env)
        if state is None:
            return None
        if state in UNTRACKED:
            return _untracked(d, state)
        e = _entry(state, pkt, env)
        tests = []
        if d.state is not None:
            tests.append(_state_test(d.state, state, e.nat))
        if d.direction is not None:
            tests.append(None if e.direction is None else d.direction == e.direction)
        tests += _tuple_tests(d, e.tuple)
        if d.status is not None:
            tests.append(_bits(d.status.names, e.status, e.maybe, d.status.invert))
        if d.expire is not None:
            tests.append(None)
        return all3(tests)

    def constraint(self, d: Conntrack, frame):
        """--ctstate and --ctproto per packet kind, as holds reads them; the entry's tuple, status,
        expiry and direction are no dimension."""
        if any(getattr(d, k) is not None for k in ADDRESS_KEYS + PORT_KEYS + ("status", "expire", "direction")):
            return None
        kinds = frame.kinds_where(lambda k: _kind_test(d, k))
        return None if kinds is None else {KIND: kinds}

    def save(self, d: Conntrack) -> list[str]:
        out = d.state.save("--ctstate") if d.state is not None else []
        if d.proto is not None:
            out += (["!"] if d.proto_invert else []) + ["--ctproto", str(d.proto)]
        for key in ADDRESS_KEYS + PORT_KEYS:
            if (part := getattr(d, key)) is not None:
                out += part.save(f"--{key}")
        if d.status is not None:
            out += d.status.save()
        if d.expire is not None:
            out += d.expire.save("--ctexpire")
        if d.direction:
            out += ["--ctdir", d.direction]
        return out

    def nft(self, d: Conntrack, ctx) -> list[Part]:
        """xt_conntrack skips every other test for a packet without an entry, where nft's ct
        expressions fail: refused when the state test could let such a packet through. The
        virtual SNAT/DNAT states are `ct status` bits, which need an entry too."""
        others = [k for k in ("proto", "direction", "status", "expire", *ADDRESS_KEYS, *PORT_KEYS)
                  if getattr(d, k) is not None]
        if any(getattr(d, k) is not None for k in PORT_KEYS) and (d.proto is None or d.proto_invert):
            raise ctx.fail("conntrack: nft can only compare tuple ports after `--ctproto` names the protocol")
        if others and _passes_without_entry(d.state):
            raise ctx.fail("conntrack: with this --ctstate a packet without a conntrack entry skips the other "
                           "tests in iptables, but fails them in nftables")
        parts = []
        if d.direction:
            parts.append(Part(f"ct direction {d.direction.lower()}"))
        if d.proto is not None:
            parts.append(Part(f"ct original protocol {neg(d.proto_invert)}{d.proto}"))
        if d.state is not None:
            parts += _nft_ctstate(d.state, ctx)
        if d.status is not None:
            if not d.status.names:
                raise ctx.fail("conntrack: --ctstatus NONE tests no status bit")
            names = ",".join(n.lower().replace("_", "-") for n in STATUS_NAMES if n in d.status.names)
            parts.append(Part(f"ct status {'! ' if d.status.invert else ''}{names}"))
        if d.expire is not None:
            parts.append(Part(f"ct expiration {neg(d.expire.invert)}{_nft_expiry(d.expire, ctx)}"))
        ip = "" if ctx.nft_family != "inet" else f"{ctx.ip} "  # inet cannot tell the address family itself
        for key in ADDRESS_KEYS:
            if (a := getattr(d, key)) is not None:
                where = "original" if key.startswith("ctorig") else "reply"
                parts.append(Part(f"ct {where} {ip}{key[-3]}addr {neg(a.invert)}{address(a.net)}"))
        for key in PORT_KEYS:
            if (p := getattr(d, key)) is not None:
                where = "original" if key.startswith("ctorig") else "reply"
                parts.append(Part(f"ct {where} proto-{key[-7:-4]} {neg(p.invert)}{span(p.lo, p.hi)}"))
        return parts


def _passes_without_entry(states) -> bool:
    """Can the state test hold for a packet conntrack has no entry for (INVALID or UNTRACKED)?"""
    return states is not None and any((s in states.names) != states.invert for s in NO_ENTRY)


def _nft_ctstate(states, ctx) -> list[Part]:
    """Real states are `ct state`, SNAT/DNAT `ct status` bits: two tests nft can only AND."""
    nat = states.names & {"SNAT", "DNAT"}
    real = states.names - nat
    if not nat:
        return [Part(nft_states(real, states.invert))]
    if not states.invert and real:
        raise ctx.fail("conntrack: --ctstate mixing SNAT/DNAT with other states is an OR nft cannot write")
    if states.invert and not NO_ENTRY <= real:
        raise ctx.fail("conntrack: `! --ctstate SNAT/DNAT` holds for packets without an entry, "
                       "`ct status` does not; add INVALID,UNTRACKED to the list")
    status = Part(f"ct status {'! ' if states.invert else ''}{','.join(n.lower() for n in PRINT_ORDER if n in nat)}")
    return ([Part(nft_states(real, True))] if real else []) + [status]


def _nft_expiry(e, ctx) -> str:
    """--ctexpire counts whole seconds, nft's ct expiration milliseconds (32 bits): N:M is Ns-Ms999ms."""
    hi = min(e.hi * 1000 + 999, 2**32 - 1)
    if e.lo * 1000 > hi:
        raise ctx.fail(f"conntrack: --ctexpire {e.lo} is beyond what ct expiration holds")
    return f"{e.lo}s-{hi // 1000}s" + (f"{hi % 1000}ms" if hi % 1000 else "")


UNTRACKED = ("INVALID", "UNTRACKED")  # states of a packet without an entry


def _untracked(d: Conntrack, state: str) -> bool:
    """Without an entry only the state test counts, and fails if absent."""
    return d.state is not None and (state in d.state.names) != d.state.invert


def _state_test(s: States, state: str, nat: frozenset[str] | None) -> bool | None:
    """--ctstate for a packet with an entry: its state plus the entry's SNAT/DNAT bits (None: unknown)."""
    return _bits(s.names, {state} | (nat or set()), {"SNAT", "DNAT"} if nat is None else set(), s.invert)


def _proto_test(d: Conntrack, proto: int) -> bool:
    return (proto == d.proto) != d.proto_invert


def _kind_test(d: Conntrack, k: Kind) -> bool | None:
    if k.state is None:
        return None
    if k.state in UNTRACKED:
        return _untracked(d, k.state)
    tests = [] if d.state is None else [_state_test(d.state, k.state, k.nat)]
    if d.proto is not None:
        tests.append(None if k.ctproto is None else _proto_test(d, k.ctproto))
    return all3(tests)


def packet_kind(label: str, pkt, env) -> Kind:
    """A packet as a model.space Kind: the state a rule sees it in (ct_state), its TCP flags, and
    what _entry knows of its entry."""
    state = ct_state(pkt, env)
    if state is None or state in UNTRACKED:
        return Kind(label, state, pkt.tcp_flags)
    e = _entry(state, pkt, env)
    return Kind(label, state, pkt.tcp_flags, e.nat, None if e.tuple is None else e.tuple[0])


def all3(tests: list[bool | None]) -> bool | None:
    """AND where None is unknown: one certain False decides."""
    if False in tests:
        return False
    return None if None in tests else True


@dataclass(frozen=True)
class _ConntrackEntry:
    """What conntrack_mt reads from a packet's entry; None where the model does not know it."""

    nat: frozenset[str] | None  # SNAT/DNAT state bits
    direction: str | None
    tuple: tuple | None  # (l4proto, orig src, orig dst, reply src, reply dst, (4 ports as in PORT_KEYS))
    status: frozenset[str] = frozenset()  # --ctstatus bits certainly set
    maybe: frozenset[str] = frozenset(STATUS_NAMES)  # bits that may be set


def _entry(state: str, pkt, env) -> _ConntrackEntry:
    """A NEW packet travels in the original direction and its entry has seen no reply, so it is
    neither EXPECTED, SEEN_REPLY nor ASSURED; a first packet (state derived, not given) is not yet
    CONFIRMED either. Its original tuple is the packet as conntrack saw it (env.orig), its reply tuple
    that reversed, with the new destination DNAT gave as source and SNAT's new source as destination;
    nf_nat_setup_info sets the DNAT/SNAT bits only when it changed the tuple. A raw-table template
    has an all-zero tuple and is CONFIRMED (xt_ct_tg_check). ESTABLISHED/RELATED entries given by
    the packet spec are unknown."""
    if template(env):
        return _ConntrackEntry(frozenset(), "ORIGINAL", (0, 0, 0, 0, 0, (0, 0, 0, 0)), frozenset({"CONFIRMED"}),
                               frozenset())
    if state != "NEW":
        return _ConntrackEntry(None, None, None)
    orig, nat = env.orig, set()
    if (pkt.src, pkt.sport) != (orig.src, orig.sport):
        nat.add("SNAT")
    if (pkt.dst, pkt.dport) != (orig.dst, orig.dport):
        nat.add("DNAT")
    ports = _ports(orig, orig.proto, reply=False) + _ports(pkt, orig.proto, reply=True)
    maybe = frozenset() if pkt.state is None else frozenset({"CONFIRMED"})
    return _ConntrackEntry(frozenset(nat), "ORIGINAL", (orig.proto, orig.src, orig.dst, pkt.dst, pkt.src, ports),
                  maybe=maybe)


def _bits(names: frozenset[str], present, maybe, invert: bool) -> bool | None:
    """A test that holds when one of `names` is present (with `invert`, when none is)."""
    if names & present:
        return not invert
    return None if names & maybe else invert


def _ports(pkt, proto: int, reply: bool) -> tuple[int | None, int | None]:
    """A tuple's (source, destination) `u.all` as numbers: ports, or for ICMP the id (not modelled)
    and type<<8|code; 0 for protocols the generic tracker handles."""
    if proto in PORTED:
        return (pkt.dport, pkt.sport) if reply else (pkt.sport, pkt.dport)
    if (int(pkt.family), proto) in ((4, 1), (6, 58)):
        kind = ICMP_REPLY[int(pkt.family)].get(pkt.icmp_type) if reply else pkt.icmp_type
        return None, None if kind is None else kind << 8 | (pkt.icmp_code or 0)
    if proto == 47:
        return None, None
    return 0, 0


def _tuple_tests(d: Conntrack, entry: tuple | None) -> list[bool | None]:
    """--ctproto and the address and port tests; one None if any is given and the tuple unknown."""
    given = [getattr(d, k) for k in ADDRESS_KEYS + PORT_KEYS]
    if d.proto is None and given == [None] * len(given):
        return []
    if entry is None:
        return [None]
    proto, *addrs, ports = entry
    tests = [] if d.proto is None else [_proto_test(d, proto)]
    for test, value in zip(given[:4], addrs):
        if test is not None:
            tests.append(test.net.contains(value) != test.invert)
    for test, port in zip(given[4:], ports):
        if test is not None:
            tests.append(None if port is None else (test.lo <= port <= test.hi) != test.invert)
    return tests
