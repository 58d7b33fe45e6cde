"""-j CT and -j NOTRACK: set up conntrack for a packet before conntrack sees it (xt_CT, raw table).

The kernel checks CT's settings only when `--notrack` is absent: a helper must exist for the
rule's protocol (so `-p` is required), and the zone must fit 16 bits.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from ..model.diagnostics import ParseError
from ..model.netfilter import proto_name
from ..model.nft import identifier, quote
from .base import Context, Extension, Option, register
from .values import check_printable, parse_c_uint

CT_EVENTS = ("new", "related", "destroy", "reply", "assured", "protoinfo", "helper", "mark", "natseqinfo",
             "secmark")
EXP_EVENTS = ("new",)
# Helpers the kernel ships, by name, with the protocols they attach to. Other names may be
# user-space helpers registered with `nfct helper add`, which stockade cannot see.
HELPERS = {"ftp": (6,), "irc": (6,), "sip": (6, 17), "tftp": (17,), "amanda": (17,), "RAS": (17,),
           "Q.931": (6,), "H.245": (17,), "pptp": (6,), "sane": (6,), "netbios-ns": (17,), "snmp": (17,),
           "snmp_trap": (17,)}
IPV4_ONLY_HELPERS = ("irc", "pptp", "netbios-ns", "snmp", "snmp_trap")
HELPER_MAX, TIMEOUT_MAX = 15, 31  # bytes; iptables silently cuts longer names
ZONE_OPTIONS = {"zone": frozenset(), "zone-orig": frozenset({"orig"}), "zone-reply": frozenset({"reply"})}


@dataclass(frozen=True)
class Ct:
    """Non-terminating: attaches a conntrack template to the packet, so the connection it starts
    is untracked (`notrack`: state UNTRACKED) or gets the given helper, timeout policy, event
    mask and zone; the packet goes on to the next rule."""

    notrack: bool = False
    helper: str | None = None
    timeout: str | None = None
    ctevents: tuple[str, ...] = ()  # in CT_EVENTS order
    expevents: tuple[str, ...] = ()
    zone: int | str | None = None  # a zone id, "mark" (taken from the packet mark), or None (zone 0)
    zone_dirs: frozenset[str] = frozenset()  # {"orig"} or {"reply"}: the zone applies to that direction only


@dataclass(frozen=True)
class Notrack:
    """Non-terminating: the packet's connection is not tracked (state UNTRACKED), as with
    `CT --notrack`; the packet goes on to the next rule."""


TEMPLATE_NOTE = "CT: conntrack template attached"


def untracks(data) -> bool:
    """Whether a target's data untracks the packet: NOTRACK, or CT --notrack."""
    return isinstance(data, Notrack) or (isinstance(data, Ct) and data.notrack)


def carries_state(pkt, env) -> bool:
    """Whether the packet already carries conntrack state, which xt_ct_target/notrack_tg leave
    alone: a template or untracking from an earlier raw rule, or, in raw PREROUTING, whatever a
    packet on lo kept from its output path (an entry, unless it was INVALID there)."""
    if TEMPLATE_NOTE in env.notes or (env.ctstate == "UNTRACKED" and pkt.state != "UNTRACKED"):
        return True
    if pkt.hook == "INPUT" and pkt.iif == "lo":
        # imported here, not at the top: the semantics package imports the extensions
        from ..model.conntrack import first_packet_state
        return (pkt.state or first_packet_state(pkt)) != "INVALID"
    return False


def untrack(pkt, env) -> None:
    if not carries_state(pkt, env):
        env.ctstate = "UNTRACKED"


def events(word: str, table: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = word.split(",")
    for n in names:
        if n not in table:
            raise ParseError(f"CT {what}: unknown event `{n}`", code="bad-value",
                             hint=f"events are {', '.join(table)} (lower case, comma-separated)")
    return tuple(e for e in table if e in names)


def object_name(word: str, what: str, limit: int) -> str | None:
    """A helper or timeout-policy name; iptables prints it unquoted, so it must be one plain word."""
    if not word:
        return None  # iptables keeps no name at all
    if len(word.encode()) > limit:
        raise ParseError(f"CT {what} name `{word}` is longer than {limit} bytes", code="too-long",
                         hint="iptables would silently cut it, naming another object")
    check_printable(word, f"CT {what} name")
    if any(c in word for c in " \"'\\"):
        raise ParseError(f"CT {what} name `{word}` contains a blank, quote or backslash", code="bad-value",
                         hint="iptables-save prints the name unquoted, so it could not be read back")
    return word


def check_helper(helper: str, ctx: Context) -> None:
    """What the kernel refuses when it looks the helper up for the rule's protocol."""
    if not ctx.proto or ctx.proto_inverted:
        raise ParseError(f"CT --helper {helper} needs the rule to match one protocol", code="target-needs-proto",
                         hint="the kernel finds helpers by protocol: add e.g. `-p tcp` (or use --notrack)")
    protos = HELPERS.get(helper)
    if protos is None:
        return
    if ctx.family is Family.IPV6 and helper in IPV4_ONLY_HELPERS:
        raise ParseError(f"CT helper `{helper}` exists for IPv4 only", code="wrong-family")
    if ctx.proto not in protos:
        need = " or ".join(f"`-p {proto_name(p)}`" for p in protos)
        raise ParseError(f"CT helper `{helper}` does not handle {proto_name(ctx.proto)}",
                         code="target-needs-proto", hint=f"use {need}")


@register
class CtTarget(Extension):
    name = "CT"
    classwise = True
    terminal = False
    conntrack = True
    kind = "target"
    options = (Option("--notrack", nargs=0), Option("--helper"), Option("--timeout"), Option("--ctevents"),
               Option("--expevents"), Option("--zone"), Option("--zone-orig"), Option("--zone-reply"))
    tables = ("raw",)
    chains = ("PREROUTING", "OUTPUT")

    def parse(self, acc, opt, invert, args, ctx):
        super().parse(acc, opt, invert, args, ctx)
        if opt.key in ZONE_OPTIONS:
            # The three zone options combine: directions add up, "mark" sticks, the last id wins.
            zone = acc[opt.key][1]
            acc["dirs"] = acc.get("dirs", frozenset()) | ZONE_OPTIONS[opt.key]
            acc["mark"] = acc.get("mark", False) or zone == "mark"
            acc["id"] = 0 if zone == "mark" else zone

    def convert(self, opt, args, ctx):
        word = args[0] if args else ""
        if opt.key == "notrack":
            return True
        if opt.key in ("helper", "timeout"):
            return object_name(word, opt.key, HELPER_MAX if opt.key == "helper" else TIMEOUT_MAX)
        if opt.key == "ctevents":
            return events(word, CT_EVENTS, opt.name)
        if opt.key == "expevents":
            return events(word, EXP_EVENTS, opt.name)
        if word.lower() == "mark":
            return "mark"
        try:
            return parse_c_uint(word, f"CT {opt.name}", 0, 2**16 - 1)
        except ParseError as e:
            e.hint = "a zone is a number 0-65535, or `mark` to take it from the packet mark"
            raise

    def finish(self, acc, ctx):
        def get(key):
            return acc[key][1] if key in acc else None

        notrack, helper = bool(get("notrack")), get("helper")
        if helper is not None and not notrack:
            check_helper(helper, ctx)
        zone = "mark" if acc.get("mark") else (acc.get("id") or None)
        dirs = acc.get("dirs", frozenset()) if zone is not None else frozenset()
        return Ct(notrack, helper, get("timeout"), get("ctevents") or (), get("expevents") or (), zone,
                  frozenset() if len(dirs) == 2 else dirs)

    def act(self, d: Ct, pkt, env) -> None:
        """xt_ct_target: --notrack untracks; otherwise a template (helper, zone, timeouts, events)
        is attached, which does not change the state conntrack gives the first packet."""
        if d.notrack:
            untrack(pkt, env)
        elif not carries_state(pkt, env):
            env.notes.append(TEMPLATE_NOTE)

    def save(self, d: Ct) -> list[str]:
        out = ["--notrack"] if d.notrack else []
        for flag, value in (("--helper", d.helper), ("--timeout", d.timeout)):
            if value is not None:
                out += [flag, value]
        for flag, names in (("--ctevents", d.ctevents), ("--expevents", d.expevents)):
            if names:
                out += [flag, ",".join(names)]
        if d.zone is not None:
            out += ["--zone" + "".join(f"-{x}" for x in d.zone_dirs), str(d.zone)]
        return out

    def nft(self, d: Ct, ctx) -> str | None:
        """--notrack and --zone act before conntrack (raw table); a helper is attached to a new
        connection, which nft can only do once conntrack has run (see render/nft/layout.py)."""
        if d.notrack:
            return "notrack"
        if d.timeout or d.ctevents or d.expevents or d.zone == "mark":
            raise ctx.fail("CT: --timeout, --ctevents, --expevents and --zone mark have no nftables translation "
                           "in stockade")
        if d.helper is not None:
            if not ctx.helpers or d.zone is not None:
                raise ctx.fail("CT --helper: nftables attaches helpers after conntrack, so only a raw chain "
                               "that does nothing but attach helpers can be translated")
            proto = {6: "tcp", 17: "udp"}.get(ctx.proto)
            if proto is None or not identifier(name := f"helper_{d.helper}_{proto}".replace(".", "_")):
                raise ctx.fail(f"CT --helper {d.helper}: cannot declare it as an nft ct helper")
            ctx.decls.taken.add(name)
            ctx.decls.items[name] = (f'ct helper {name} {{ type {quote(d.helper, "helper")} protocol {proto}; '
                                 'l3proto inet; }')
            return f'ct helper set "{name}"'
        if d.zone is None:
            return None
        where = {frozenset({"orig"}): "original ", frozenset({"reply"}): "reply "}.get(d.zone_dirs, "")
        return f"ct {where}zone set {d.zone}"


@register
class NotrackTarget(Extension):
    name = "NOTRACK"
    classwise = True
    terminal = False
    conntrack = True
    kind = "target"
    tables = ("raw",)
    chains = ("PREROUTING", "OUTPUT")

    def finish(self, acc, ctx):
        return Notrack()

    def act(self, d: Notrack, pkt, env) -> None:
        """notrack_tg: as CT --notrack."""
        untrack(pkt, env)

    def save(self, d: Notrack) -> list[str]:
        return []

    def nft(self, d: Notrack, ctx) -> str:
        return "notrack"
