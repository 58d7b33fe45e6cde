"""Each target as the nft statement it becomes, in iptables-translate's forms.

Mark arithmetic keeps the kernel's order, mark := (mark & ~mask) ^ value, which nft's
precedence (`and` before `xor`) writes as `mark and ~MASK xor VALUE`. nft 1.0.6 can
only combine a register with constants, so CONNMARK --save/--restore with masks on
both marks is refused.
"""
from __future__ import annotations

from ...extensions import Opaque
from ...model import Target
from .core import Ctx, hexnum, identifier, quote, span

ALL = 0xFFFFFFFF
LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
REJECT_TYPES = {
    "icmp-net-unreachable": "icmp type net-unreachable", "icmp-host-unreachable": "icmp type host-unreachable",
    "icmp-proto-unreachable": "icmp type prot-unreachable", "icmp-net-prohibited": "icmp type net-prohibited",
    "icmp-host-prohibited": "icmp type host-prohibited", "icmp-admin-prohibited": "icmp type admin-prohibited",
    "icmp6-no-route": "icmpv6 type no-route", "icmp6-adm-prohibited": "icmpv6 type admin-prohibited",
    "icmp6-addr-unreachable": "icmpv6 type addr-unreachable", "icmp6-policy-fail": "icmpv6 type policy-fail",
    "icmp6-reject-route": "icmpv6 type reject-route", "tcp-reset": "tcp reset",
}  # port-unreachable is nft's default
ECN = ("not-ect", "ect1", "ect0", "ce")


def translate_target(t: Target | None, ctx: Ctx) -> str | None:
    """The statement for the rule's target; None for a rule without one (it only counts)."""
    if t is None:
        return None
    if t.name in ("ACCEPT", "DROP", "RETURN"):
        return t.name.lower()
    if t.name == "QUEUE":
        return "queue num 0"
    if isinstance(t.data, Opaque):
        raise ctx.fail(f"-j {t.name} has no nftables translation in stockade")
    if t.data is None:
        return f"{'goto' if t.goto else 'jump'} {ctx.chain_name(t.name)}"
    if t.name not in TARGETS:
        raise ctx.fail(f"-j {t.name} has no nftables translation in stockade")
    return TARGETS[t.name](t.data, ctx)


def log(d, ctx: Ctx) -> str:
    out = ["log"] + ([f"prefix {quote(d.prefix, 'log prefix')}"] if d.prefix is not None else [])
    out += [f"level {LOG_LEVELS[d.level]}"] if d.level != 4 else []
    tcp = [n for flag, n in (("--log-tcp-sequence", "sequence"), ("--log-tcp-options", "options")) if flag in d.flags]
    out += [f"flags tcp {','.join(tcp)}"] if tcp else []
    for flag, text in (("--log-ip-options", "ip options"), ("--log-uid", "skuid"), ("--log-macdecode", "ether")):
        out += [f"flags {text}"] if flag in d.flags else []
    return " ".join(out)


def nflog(d, ctx: Ctx) -> str:
    out = ["log"] + ([f"prefix {quote(d.prefix, 'log prefix')}"] if d.prefix is not None else [])
    out += [f"snaplen {d.size}"] if d.size is not None else []
    out += [f"queue-threshold {d.threshold}"] if d.threshold else []
    return " ".join(out + [f"group {d.group}"])


def reject(d, ctx: Ctx) -> str:
    return "reject" if d.with_.endswith("port-unreachable") else f"reject with {REJECT_TYPES[d.with_]}"


def _xmark(current: str, value: int, mask: int) -> str:
    """The nft expression for (current & ~mask) ^ value, in its simplest form."""
    if mask == ALL:
        return hexnum(value)
    if mask == 0:
        return f"{current} xor {hexnum(value)}"
    if value == 0:
        return f"{current} and {hexnum(~mask & ALL)}"
    if value == mask:
        return f"{current} or {hexnum(value)}"
    return f"{current} and {hexnum(~mask & ALL)} xor {hexnum(value)}"


def mark(d, ctx: Ctx) -> str:
    return f"meta mark set {_xmark('mark', d.value, d.mask)}"


def connmark(d, ctx: Ctx) -> str:
    """set: ctmark := ((ctmark & ~ctmask) ^ value) shifted; save: ctmark := (ctmark & ~ctmask) ^
    ((mark & nfmask) shifted); restore: the same from ct mark to mark with the masks swapped."""
    op = ">>" if d.shift_right else "<<"
    if d.mode == "set":
        if d.ctmask == ALL:  # a constant, shifted here
            value = d.ctmark_value >> d.shift if d.shift_right else d.ctmark_value << d.shift & ALL
            return f"ct mark set {hexnum(value)}"
        expr = _xmark("ct mark", d.ctmark_value, d.ctmask)
        return f"ct mark set ( {expr} ) {op} {d.shift}" if d.shift else f"ct mark set {expr}"
    dest_mask, src_mask, src, dest = ((d.ctmask, d.nfmask, "mark", "ct mark") if d.mode == "save"
                                      else (d.nfmask, d.ctmask, "ct mark", "meta mark"))
    if dest_mask != ALL:
        raise ctx.fail(f"CONNMARK --{d.mode}-mark keeping part of the old mark combines two registers, "
                       "which nft 1.0.6 cannot")
    expr = src if src_mask == ALL else f"{src} and {hexnum(src_mask)}"
    if not d.shift:
        return f"{dest} set {expr}"
    return f"{dest} set {expr} {op} {d.shift}" if src_mask == ALL else f"{dest} set ( {expr} ) {op} {d.shift}"


def _nat_to(r, ctx: Ctx) -> str:
    """`[ip|ip6 ]to ADDR[-ADDR][:PORT[-PORT]]`, IPv6 addresses bracketed before ports (nft 1.0.6)."""
    if r.ports is not None and r.ports.base is not None:
        raise ctx.fail("NAT: a /BASE port offset has no nftables 1.0.6 equivalent")
    text = ""
    if r.addrs is not None:
        first, last = (str(a) for a in r.addrs)
        v6 = r.addrs[0].version == 6 and r.ports is not None
        if v6:
            first, last = f"[{first}]", f"[{last}]"
        text = first if first == last else f"{first}-{last}"
    if r.ports is not None:
        text += f":{span(r.ports.lo, r.ports.hi)}"
    family = f"{ctx.ip} " if ctx.nft_family == "inet" and r.addrs is not None else ""
    return f"{family}to {text}"


NAT_FLAGS = {"random": "random", "random_fully": "fully-random", "persistent": "persistent"}


def _flags(d, names: tuple[str, ...]) -> str:
    on = [NAT_FLAGS[n] for n in names if getattr(d, n)]
    return (" " + ",".join(on)) if on else ""


def dnat(d, ctx: Ctx) -> str:
    return f"dnat {_nat_to(d.to, ctx)}{_flags(d, ('random', 'persistent'))}"


def snat(d, ctx: Ctx) -> str:
    return f"snat {_nat_to(d.to, ctx)}{_flags(d, ('random', 'random_fully', 'persistent'))}"


def _to_ports(ports) -> str:
    return f" to :{span(ports.lo, ports.hi)}" if ports is not None else ""


def masquerade(d, ctx: Ctx) -> str:
    return f"masquerade{_to_ports(d.ports)}{_flags(d, ('random', 'random_fully'))}"


def redirect(d, ctx: Ctx) -> str:
    return f"redirect{_to_ports(d.ports)}{_flags(d, ('random',))}"


def trace(d, ctx: Ctx) -> str:
    return "nftrace set 1"


def notrack(d, ctx: Ctx) -> str:
    return "notrack"


def ct(d, ctx: Ctx) -> str | None:
    """--notrack and --zone act before conntrack (raw table); a helper is attached to a new
    connection, which nft can only do once conntrack has run (see layout.py)."""
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
        ctx.decls.items[name] = f'ct helper {name} {{ type {quote(d.helper, "helper")} protocol {proto}; l3proto inet; }}'
        return f'ct helper set "{name}"'
    if d.zone is None:
        return None
    where = {frozenset({"orig"}): "original ", frozenset({"reply"}): "reply "}.get(d.zone_dirs, "")
    return f"ct {where}zone set {d.zone}"


def dscp(d, ctx: Ctx) -> str:
    return f"{ctx.ip} dscp set {hexnum(d.value, 2)}"


def tos(d, ctx: Ctx) -> str | None:
    """TOS byte := (tos & ~mask) ^ value, as DSCP (top 6 bits) and ECN (low 2) set to constants: each
    field must be fully replaced or left alone."""
    out = []
    for field, shift, width, names in (("dscp", 2, 0x3F, None), ("ecn", 0, 0x3, ECN)):
        mask, value = (d.mask >> shift) & width, (d.value >> shift) & width
        if mask == width:
            out.append(f"{ctx.ip} {field} set {names[value] if names else hexnum(value, 2)}")
        elif mask or value:
            raise ctx.fail("TOS: only whole DSCP and ECN fields can be set in nftables")
    return " ".join(out) or None


TARGETS = {
    "LOG": log, "NFLOG": nflog, "REJECT": reject, "MARK": mark, "CONNMARK": connmark, "DNAT": dnat, "SNAT": snat,
    "MASQUERADE": masquerade, "REDIRECT": redirect, "TRACE": trace, "NOTRACK": notrack, "CT": ct, "DSCP": dscp,
    "TOS": tos,
}
