"""-m conntrack: tests on the packet's connection-tracking entry (xt_conntrack revision 3)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Address, parse_address
from ..model.address import ntop
from ..parse.diagnostics import ParseError
from .base import Extension, Option, register
from .state import STATE_NAMES, States, parse_names
from .values import format_range, parse_port_range, parse_proto, parse_uint_range

CTSTATE_NAMES = STATE_NAMES + ("SNAT", "DNAT")
STATUS_NAMES = ("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")  # parse order; NONE adds no bit
DIRECTIONS = ("ORIGINAL", "REPLY")
ADDRESS_KEYS = ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst")
PORT_KEYS = ("ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport")


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
