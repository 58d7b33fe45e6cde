"""The iptables project's own extension tests (corpus iptables-tests/*.t) against our parser and renderer.

Each OK line must parse and render to its expected iptables-save form; each FAIL
line must be refused with an error diagnostic. Files outside the foundation's
extension list are named in OUT_OF_SCOPE with the reason; an extension added since
has its file in scope by being registered.
"""
from __future__ import annotations

import re

import pytest

from stockade.extensions import REGISTRY
from stockade.model import Family, Origin
from stockade.model.diagnostics import Token
from stockade.parse.command import Builder, table_of
from stockade.parse.save import split_line
from stockade.render.save import rule_words

from .corpus import IPT_TESTS

IN_SCOPE = """
iptables.t libxt_standard.t libipt_standard.t libip6t_standard.t
libxt_tcp.t libxt_udp.t libipt_icmp.t libip6t_icmp6.t libxt_multiport.t libxt_state.t
libxt_conntrack.t libipt_conntrack.t libip6t_conntrack.t libxt_limit.t libxt_hashlimit.t
libxt_recent.t libipt_recent.t libip6t_recent.t libxt_iprange.t libipt_iprange.t libip6t_iprange.t
libxt_set.t libxt_comment.t libxt_mac.t libxt_mark.t libxt_connmark.t libxt_length.t libipt_ttl.t
libip6t_hl.t libxt_pkttype.t libxt_addrtype.t libxt_owner.t libxt_connlimit.t libipt_connlimit.t
libip6t_connlimit.t libxt_string.t libxt_tos.t libxt_dscp.t
libipt_REJECT.t libip6t_REJECT.t libipt_LOG.t libip6t_LOG.t libxt_NFLOG.t libxt_MARK.t libxt_CONNMARK.t
libipt_DNAT.t libip6t_DNAT.t libipt_SNAT.t libip6t_SNAT.t libipt_MASQUERADE.t libip6t_MASQUERADE.t
libxt_REDIRECT.t libxt_TRACE.t libxt_CT.t libxt_NOTRACK.t libxt_DSCP.t libxt_TOS.t
""".split()
IN_SCOPE += [p.name for p in sorted(IPT_TESTS.glob("lib*.t")) if p.name not in IN_SCOPE
             and (m := re.fullmatch(r"lib(?:xt|ipt|ip6t)_(.+)\.t", p.name))
             and (REGISTRY.matches.get(m[1]) or REGISTRY.targets.get(m[1]))]

OUT_OF_SCOPE = {
    "libebt_": "ebtables (bridge family) is not part of stockade's iptables/ip6tables model",
    "libarpt_": "arptables (ARP family) is not part of stockade's iptables/ip6tables model",
    "other": "extension not in the foundation's list; parsed as an opaque (verbatim) extension",
}


def families(filename: str) -> list[Family]:
    if filename.startswith("libxt_"):
        return [Family.IPV4, Family.IPV6]
    if filename.startswith("libip6t_"):
        return [Family.IPV6]
    return [Family.IPV4]


def cases(filename: str):
    """(lineno, table, chain, rule, expected, result) for every test line, one per chain."""
    chains, table = None, "filter"
    for lineno, line in enumerate((IPT_TESTS / filename).read_text().splitlines(), 1):
        if not line or line[0] in "#@%":
            continue
        if line[0] == ":":
            chains = line[1:].split(",")
            continue
        if line[0] == "*":
            table = line[1:]
            continue
        fields = line.split(";")
        rule, expected, result = fields[0], fields[1], fields[2]
        if len(fields) > 3 and fields[3] == "LEGACY":  # we model the nft backend
            result = fields[4] if len(fields) > 4 else {"OK": "FAIL", "FAIL": "OK", "NOMATCH": "OK"}[result]
        for chain in chains:
            yield lineno, table, chain, rule, (rule if expected == "=" else expected), result


def run_case(family: Family, filename: str, lineno: int, table: str, chain: str, rule: str):
    """Parse `-A CHAIN RULE`; return (rendered words or None, error diagnostics)."""
    b = Builder(known_sets=frozenset())  # the .t runs create no ipsets
    origin = Origin(filename, lineno)
    tbl = table_of(b, family, Token(table, origin))
    words = [Token("-A", origin), Token(chain, origin)] + split_line(rule, filename, lineno)
    b.run(family, tbl, words, origin)
    errors = [d for d in b.diagnostics if d.severity == "error"]
    rules = tbl.chains[chain].rules
    return (" ".join(rule_words(rules[0], family)) if rules else None), errors


@pytest.mark.parametrize("filename", IN_SCOPE)
def test_extension_file(filename):
    failures, count = [], 0
    for family in families(filename):
        for lineno, table, chain, rule, expected, result in cases(filename):
            count += 1
            got, errors = run_case(family, filename, lineno, table, chain, rule)
            where = f"{filename}:{lineno} [{family.cmd} -t {table} -A {chain}] {rule!r}"
            if result == "OK" and (errors or got != expected):
                failures.append(f"{where}: expected {expected!r}, got {got!r} {[str(e) for e in errors]}")
            elif result == "FAIL" and not errors:
                failures.append(f"{where}: should be refused, got {got!r}")
    print(f"{filename}: {count - len(failures)}/{count} lines pass")
    assert not failures, "\n".join(failures)


def test_scope_is_accounted_for():
    """Every .t file is either in scope or out of scope for a stated reason."""
    for path in IPT_TESTS.glob("*.t"):
        name = path.name
        reason = next((r for prefix, r in OUT_OF_SCOPE.items() if name.startswith(prefix)), OUT_OF_SCOPE["other"])
        assert name in IN_SCOPE or reason
    assert all((IPT_TESTS / f).exists() for f in IN_SCOPE)
