"""One iptables rule as one nft rule: the header (-i -o -f -p -s -d) and each match as expressions,
the target as a statement, in iptables-translate's forms.

Each extension translates itself (`Extension.nft`, found through the registry); here are only the
rule header and the built-in verdicts and jumps.
"""
from __future__ import annotations

from ...extensions import REGISTRY, Opaque
from ...model import Family, Match, Rule, Target
from ...model.netfilter import proto_name
from .core import Ctx, NftError, NftRule, Part, addr_match, neg, quote


def translate_rule(rule: Rule, ctx: Ctx) -> NftRule:
    """Raises NftError (naming the rule) for anything nft cannot express with the same meaning."""
    ctx.proto = rule.proto.number if rule.proto and not rule.proto.invert else None
    ctx.origin = rule.origin
    try:
        parts = header(rule, ctx)
        comments = []
        for m in rule.matches:
            if m.name == "comment":
                comments.append(quote(m.data, "comment") and m.data)
            parts += translate_match(m, ctx)
        return NftRule(parts, translate_target(rule.target, ctx), "; ".join(comments) or None)
    except NftError as e:
        raise e if e.located else ctx.fail(str(e)) from None


def iface(key: str, name: str, invert: bool) -> Part | None:
    """`-i eth+` is a prefix (`"eth*"`); a literal `*` at the end is escaped; `-i +` is any interface,
    and `! -i +` none (iptables-translate's never-matching name)."""
    if name == "+":
        return Part(f'{key} "INVAL/D"') if invert else None
    wildcard = name.endswith("+")
    text = name[:-1] + "*" if wildcard else (name[:-1] + "\\*" if name.endswith("*") else name)
    return Part(f"{key} {neg(invert)}{quote(text, 'interface name')}")


def _implied(proto: int, rule: Rule) -> bool:
    """Does a match say the protocol already? iptables-translate looks for a match of the protocol's
    name (`-p tcp -m tcp`); icmp6 implies ipv6-icmp just as well."""
    return any(m.name == proto_name(proto) or (proto, m.name) == (58, "icmp6") for m in rule.matches)


def header(rule: Rule, ctx: Ctx) -> list[Part]:
    """In iptables-translate's order: interfaces, fragment, protocol, addresses."""
    parts = [p for p in (iface("iifname", rule.iif.name, rule.iif.invert) if rule.iif else None,
                         iface("oifname", rule.oif.name, rule.oif.invert) if rule.oif else None) if p]
    v4 = ctx.family is Family.IPV4
    if rule.fragment is not None:
        parts.append(Part("ip frag-off & 0x1fff " + ("!= 0" if rule.fragment else "0"), "ipv4"))
    if rule.proto and rule.proto.number and not _implied(rule.proto.number, rule):
        key = "ip protocol" if v4 else "meta l4proto"
        parts.append(Part(f"{key} {neg(rule.proto.invert)}{proto_name(rule.proto.number)}",
                          "ipv4" if v4 else None))
    for key, am in (("saddr", rule.src), ("daddr", rule.dst)):
        if am is not None and (am.addr.mask or am.invert):
            parts.append(Part(addr_match(f"{ctx.ip} {key}", am.addr, am.invert), ctx.nfproto))
    return parts


def translate_match(m: Match, ctx: Ctx) -> list[Part]:
    ext = None if isinstance(m.data, Opaque) else REGISTRY.find("match", m.name, ctx.family)
    if ext is None:
        raise ctx.fail(f"-m {m.name} has no nftables translation in stockade")
    return ext.nft(m.data, ctx)


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
    ext = REGISTRY.find("target", t.name, ctx.family)
    if ext is None:
        raise ctx.fail(f"-j {t.name} has no nftables translation in stockade")
    return ext.nft(t.data, ctx)
