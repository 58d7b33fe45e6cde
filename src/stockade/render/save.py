"""The model as iptables-save prints it (iptables 1.8), the canonical text stockade compares."""
from __future__ import annotations

from ..extensions import REGISTRY, Opaque, Unread
from ..extensions.opaque import loadable
from ..model import BUILTIN_CHAINS, Chain, Counters, Family, Rule, Ruleset, Table
from ..model.netfilter import proto_name


def rule_words(rule: Rule, family: Family) -> list[str]:
    """The words after `-A CHAIN`, in iptables-save order: -s -d -i -o -p -f, matches, target. A stand-in
    for what stockade could not read (extensions.opaque.Unread) shows the words as they were written."""
    out: list[str] = []

    def neg(flag: bool) -> None:
        if flag:
            out.append("!")

    for flag, am in (("-s", rule.src), ("-d", rule.dst)):
        if am is not None:
            neg(am.invert)
            out += [flag, str(am.addr)]
    for flag, iface in (("-i", rule.iif), ("-o", rule.oif)):
        if iface is not None:
            neg(iface.invert)
            out += [flag, iface.name]
    if rule.proto is not None:
        neg(rule.proto.invert)
        out += ["-p", proto_name(rule.proto.number)]
    if rule.fragment is not None:
        neg(not rule.fragment)
        out.append("-f")
    for m in rule.matches:
        if isinstance(m.data, Unread):
            out += m.data.save()
            continue
        out += ["-m", m.name]
        if isinstance(m.data, Opaque):
            out += m.data.save()
        else:
            out += REGISTRY.find("match", m.name, family).save(m.data)
    t = rule.target
    if t is not None and isinstance(t.data, Unread):
        out += t.data.save()
    elif t is not None:
        out += ["-g" if t.goto else "-j", t.name]
        if isinstance(t.data, Opaque):
            out += t.data.save()
        elif t.data is not None:
            out += REGISTRY.find("target", t.name, family).save(t.data)
    return out


def rule_line(chain: str, rule: Rule, family: Family, counters: bool = False) -> str:
    words = " ".join(["-A", chain, *rule_words(rule, family)])
    if counters and rule.counters is not None:
        return f"[{rule.counters.packets}:{rule.counters.bytes}] {words}"
    return words


# iptables-save 1.8 (nft) prints tables in this order, whatever order they were created in.
TABLE_ORDER = ("mangle", "security", "raw", "filter", "nat")


def save_chains(table: Table) -> list[Chain]:
    """The chains as iptables-save 1.8 (nft) lists them: every built-in chain of the table in hook
    order (an undeclared one with policy ACCEPT), then user chains sorted by name (strcmp order)."""
    builtins = [table.chains.get(n) or Chain(n, "ACCEPT", Counters()) for n in BUILTIN_CHAINS[table.name]]
    return builtins + [table.chains[n] for n in sorted(table.chains) if n not in BUILTIN_CHAINS[table.name]]


def kernel_rules(chain: Chain) -> list[Rule]:
    """The chain's rules a kernel can hold: a rule with a stand-in for what stockade could not read
    (extensions.opaque.Unread) is there for the analyses only; iptables-restore refuses it as written,
    or its words are not known. (A rule added under a condition read as true is loaded as read.)"""
    return [r for r in chain.rules if loadable(r)]


def render_save(rs: Ruleset, counters: bool = False) -> str:
    """iptables-restore input for the whole ruleset, in the order the kernel's iptables-save prints it
    (without the rules stockade could not read: kernel_rules)."""
    lines: list[str] = []
    for name in sorted(rs.tables, key=TABLE_ORDER.index):
        chains = save_chains(rs.tables[name])
        lines.append(f"*{name}")
        for chain in chains:
            c = chain.counters if (counters and chain.counters) else None
            lines.append(f":{chain.name} {chain.policy or '-'} [{c.packets if c else 0}:{c.bytes if c else 0}]")
        for chain in chains:
            lines += (rule_line(chain.name, r, rs.family, counters) for r in kernel_rules(chain))
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"
