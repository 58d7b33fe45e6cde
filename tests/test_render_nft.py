"""The nftables back end (stockade.render.nft).

1. Golden: the corpus .txlate files pair iptables rules with what iptables-translate
   (1.8.13) prints. Every case for an extension stockade has must come out exactly, or
   be listed below with the reason stockade writes something else (DEVIATIONS) or refuses
   it (REFUSED). Cases for other families and extensions are counted as not applicable.
2. Structure: the table, base chains, family guards, names, sets, refusals.
3. The optimiser: merged rules must do what the rules they replace did, checked by
   running both on every port for random rule lists.
"""
from __future__ import annotations

import re
import shlex
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.extensions import REGISTRY
from stockade.model import BUILTIN_CHAINS, VERDICTS, Family, IPSet, Origin
from stockade.model.diagnostics import Token
from stockade.parse.command import Builder, table_of
from stockade.parse.save import read_save
from stockade.render.nft import Ctx, NftError, NftRule, render_nft, translate_rule
from stockade.render.nft.core import Part
from stockade.render.nft.optimise import optimise

from .corpus import IPT_TESTS

V4, V6 = Family.IPV4, Family.IPV6
INPUT = re.compile(r"^(ip6?tables|ebtables|arptables)(-restore)?-translate |^iptables ")

# Cases the harness adapts to what the kernel requires (iptables-translate never asks the kernel):
# file -> (words to put before -m, or "mangle" for the table to load into; why).
ADAPT = {
    "libipt_icmp.txlate": ("-p icmp", "-m icmp needs -p icmp (the translation leaves it out again)"),
    "libip6t_icmp6.txlate": ("-p ipv6-icmp", "-m icmp6 needs -p ipv6-icmp (left out again)"),
    "libxt_DSCP.txlate": ("mangle", "the DSCP target is mangle-only; compared with the table as written"),
    "libxt_TOS.txlate": ("mangle", "the TOS target is mangle-only; compared with the table as written"),
}
# Where stockade deliberately writes something else: (file, line) -> (stockade's line, why).
DEVIATIONS = {
    ("libxt_CONNMARK.txlate", 7): (
        "nft 'add rule ip mangle PREROUTING counter ct mark set ct mark and 0xffffffed xor 0x16'",
        ("nft's `and` binds before `xor`: iptables-translate's `ct mark xor 0x16 and 0xffffffed` is "
         "ct mark ^ 0x04, not the kernel's (ct mark & ~0x12) ^ 0x16")),
    ("libxt_CONNMARK.txlate", 22): (
        "nft 'add rule ip mangle PREROUTING counter ct mark set ( ct mark and 0xffffff9c xor 0x23 ) >> 5'",
        "the same operator order, then shifted"),
    ("libxt_DNAT.txlate", 28): (
        "nft 'add rule ip6 nat prerouting meta l4proto tcp counter dnat to [fec0::1234]-[fec0::2000]:1-20'",
        "nft 1.0.6 reads an IPv6 range with ports only as [A]-[B]:PORTS"),
    ("libxt_conntrack.txlate", 46): (
        "nft 'add rule ip filter INPUT ct expiration 3s-3s999ms counter accept'",
        "--ctexpire counts whole seconds; `ct expiration 3` is exactly 3000 ms"),
    ("libxt_conntrack.txlate", 52): (
        ("nft 'add rule ip filter INPUT ct direction original ct original protocol 6 ct state new "
         "ct status seen-reply ct expiration 10s-10s999ms ct original saddr 192.168.0.1 "
         "ct original daddr 192.168.0.1 ct reply saddr 192.168.0.1 ct reply daddr 192.168.0.1 "
         "ct original proto-src 12 ct original proto-dst 14 ct reply proto-src 16 ct reply proto-dst 18 "
         "counter accept'"), "--ctexpire in milliseconds, as above"),
    ("libxt_multiport.txlate", 13): (
        ("nft 'insert rule ip filter INPUT ip protocol tcp tcp sport . tcp dport { 10 . 0-65535, 0-9 . 10, "
         "11-65535 . 10 } counter'"),
        "disjoint pairs: the kernel refuses iptables-translate's overlapping ones for some lists (port 0, ranges)"),
    ("libxt_limit.txlate", 7): (
        "nft 'add rule ip filter INPUT limit rate 10/second burst 5 packets counter'",
        "the model keeps --limit-burst 0 as nft's default 5, which it is"),
    ("libxt_TOS.txlate", 1): (
        "nft 'add rule ip6 filter INPUT counter ip6 dscp set 0x07 ip6 ecn set ce'",
        "--set-tos 0x1f sets the whole traffic class, ECN bits included"),
    ("libxt_TOS.txlate", 4): (
        "nft 'add rule ip6 filter INPUT counter ip6 dscp set 0x3f ip6 ecn set ce'", "as above"),
}
PARTIAL_TOS = "a TOS mask covering part of the DSCP field needs `ip6 dscp set ip6 dscp and ...`, which nft 1.0.6 refuses"
REFUSED = {
    ("libxt_owner.txlate", 7): "`! --uid-owner` holds for packets without a socket; `skuid !=` fails on them",
    **{("libxt_TOS.txlate", n): PARTIAL_TOS for n in (7, 10, 13, 16, 19, 22, 25)},
}


def txlate_cases():
    for path in sorted(IPT_TESTS.glob("*.txlate")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if INPUT.match(line):
                expected = lines[i + 1:i + 3] if lines[i + 2:i + 3] and lines[i + 2].startswith("nft") else [lines[i + 1]]
                yield path.name, i + 1, line, expected


def not_applicable(fname: str, line: str) -> str | None:
    if not line.startswith(("iptables", "ip6tables")):
        return "ebtables/arptables: not a family stockade models"
    m = re.match(r"lib(?:xt|ipt|ip6t)_(.*)\.txlate", fname)
    if m and not (REGISTRY.matches.get(m[1]) or REGISTRY.targets.get(m[1])):
        return f"extension {m[1]} is not one stockade has"
    if " -F" in line:
        return "a table command, not a rule"
    return None


def translate_case(fname: str, lineno: int, line: str) -> list[str]:
    """The nft command lines stockade writes for one .txlate input line."""
    words = shlex.split(line)
    family = V6 if words[0].startswith("ip6") else V4
    words = words[1:]
    table = shown = "filter"
    if "-t" in words:
        at = words.index("-t")
        table = shown = words[at + 1]
        del words[at:at + 2]
    adapt = ADAPT.get(fname, ("", ""))[0]
    if adapt == "mangle":
        table = "mangle"
    elif adapt:
        at = words.index("-m")
        words[at:at] = adapt.split()
    verb, chain, rest = words[0], words[1], words[2:]
    origin = Origin(fname, lineno)
    b = Builder(known_sets=None)
    tbl = table_of(b, family, Token(table, origin))
    new = [chain] if chain not in BUILTIN_CHAINS[table] else []
    new += [t for w, t in pairwise(rest) if w in ("-j", "-g") and t not in VERDICTS and t not in REGISTRY.targets]
    for name in new + [None]:
        cmd = ["-N", name] if name else ["-A", chain] + rest
        b.run(family, tbl, [Token(w, origin) for w in cmd], origin)
    errors = [d.message for d in b.diagnostics if d.severity == "error"]
    assert not errors, errors
    fam = "ip" if family is V4 else "ip6"
    ctx = Ctx(family, fam, table, chain)
    rule = translate_rule(tbl.chains[chain].rules[0], ctx)
    out = [f"nft 'add set {fam} {shown} {decl.removeprefix('set ')}'" for decl in ctx.decls.items.values()]
    return out + [f"nft '{'add' if verb == '-A' else 'insert'} rule {fam} {shown} {chain} {rule.text()}'"]


CASES = list(txlate_cases())
APPLICABLE = [c for c in CASES if not not_applicable(c[0], c[2])]


@pytest.mark.parametrize("fname,lineno,line,expected", APPLICABLE, ids=[f"{c[0]}:{c[1]}" for c in APPLICABLE])
def test_txlate(fname, lineno, line, expected):
    if (fname, lineno) in REFUSED:
        with pytest.raises(NftError):
            translate_case(fname, lineno, line)
        return
    got = translate_case(fname, lineno, line)
    want = [DEVIATIONS[(fname, lineno)][0]] if (fname, lineno) in DEVIATIONS else expected
    assert got == want


# The files whose cases the report counts; an extension added since brings its own, each of which
# test_txlate holds to iptables-translate's output, a listed deviation or a listed refusal.
REPORTED = frozenset("""
generic libip6t_LOG libip6t_MASQUERADE libip6t_REJECT libip6t_SNAT libip6t_hl libip6t_icmp6 libipt_LOG
libipt_MASQUERADE libipt_REJECT libipt_SNAT libipt_icmp libipt_ttl libxt_CONNMARK libxt_DNAT libxt_DSCP libxt_MARK
libxt_NFLOG libxt_NOTRACK libxt_REDIRECT libxt_TOS libxt_TRACE libxt_addrtype libxt_comment libxt_connlimit
libxt_connmark libxt_conntrack libxt_dscp libxt_hashlimit libxt_iprange libxt_length libxt_limit libxt_mac
libxt_mark libxt_multiport libxt_owner libxt_pkttype libxt_tcp libxt_udp""".split())


def test_txlate_accounting():
    """Every case is accounted for; the counts are the ones the report gives."""
    na = [c for c in CASES if not_applicable(c[0], c[2])]
    added = [c for c in APPLICABLE if c[0].removesuffix(".txlate") not in REPORTED]
    assert len(CASES) == 452  # 451 *-translate lines and one bare `iptables` line (libxt_tcp)
    assert len(APPLICABLE) - len(added) == 221 and len(na) + len(added) == 231
    assert len(APPLICABLE) - len(added) - len(DEVIATIONS) - len(REFUSED) == 204
    assert set(DEVIATIONS) | set(REFUSED) <= {(c[0], c[1]) for c in APPLICABLE}


# ---- structure ----

def rulesets(v4: str = "", v6: str = "", sets: dict | None = None) -> dict[Family, object]:
    out = {}
    for family, text in ((V4, v4), (V6, v6)):
        if text:
            b = read_save(text, f"test.v{int(family)}", family)
            assert not [d for d in b.diagnostics if d.severity == "error"], b.diagnostics
            out[family] = b.rulesets[family]
            for name, s in (sets or {}).get(family, {}).items():
                out[family].sets[name] = s
    return out


def chain_body(text: str, name: str) -> list[str]:
    m = re.search(rf"\n\tchain {re.escape(name)} {{\n(.*?)\n\t}}", text, re.DOTALL)
    assert m, f"no chain {name} in\n{text}"
    return [line.strip() for line in m[1].splitlines()]


def test_atomic_replacement_header():
    text = render_nft(rulesets("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n"), table="fw")
    assert text.splitlines()[:3] == ["table inet fw", "delete table inet fw", "table inet fw {"]
    assert text.endswith("}\n")
    with pytest.raises(NftError):
        render_nft({}, table="bad name")


def test_base_chains_hooks_priorities_and_policies():
    v4 = ("*raw\n-A PREROUTING -j NOTRACK\nCOMMIT\n*mangle\n-A OUTPUT -j MARK --set-mark 1\nCOMMIT\n"
          "*nat\n-A INPUT -j ACCEPT\n-A OUTPUT -j ACCEPT\n-A PREROUTING -j ACCEPT\n-A POSTROUTING -j MASQUERADE\n"
          "COMMIT\n*filter\n:INPUT DROP [0:0]\nCOMMIT\n*security\n-A INPUT -j ACCEPT\nCOMMIT\n")
    text = render_nft(rulesets(v4, v4.replace("-A POSTROUTING -j MASQUERADE\n", "")))
    heads = {name: body[0] for name in ("raw_PREROUTING", "mangle_OUTPUT", "nat_PREROUTING", "nat_INPUT",
                                          "nat_OUTPUT", "nat_POSTROUTING", "filter_INPUT", "security_INPUT")
             for body in [chain_body(text, name)]}
    assert heads == {
        "raw_PREROUTING": "type filter hook prerouting priority raw; policy accept;",
        "mangle_OUTPUT": "type route hook output priority mangle; policy accept;",
        "nat_PREROUTING": "type nat hook prerouting priority dstnat; policy accept;",
        "nat_INPUT": "type nat hook input priority 100; policy accept;",  # 1.0.6: srcnat only at postrouting
        "nat_OUTPUT": "type nat hook output priority -100; policy accept;",
        "nat_POSTROUTING": "type nat hook postrouting priority srcnat; policy accept;",
        "filter_INPUT": "type filter hook input priority filter; policy drop;",
        "security_INPUT": "type filter hook input priority security; policy accept;",
    }
    assert "filter_OUTPUT" not in text  # unused built-in chains get no base chain


def test_shared_chain_guards_only_rules_that_need_it():
    v4 = ("*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -j DROP\n"
          "-A INPUT -m limit --limit 1/s -m iprange --src-range 10.0.0.1-10.0.0.2 -j ACCEPT\n-A INPUT -p icmp --icmp-type 8 -j ACCEPT\nCOMMIT\n")
    v6 = "*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -p ipv6-icmp --icmpv6-type 128 -j ACCEPT\nCOMMIT\n"
    # the families' rules aligned, one rule where they are the same, the rest each family's own in its
    # order, IPv4's first: no packet meets the other family's rules where it need not
    assert chain_body(render_nft(rulesets(v4, v6)), "filter_INPUT")[1:] == [
        "tcp dport 22 counter accept",
        "ip saddr 10.0.0.0/8 counter drop",
        "meta nfproto ipv4 limit rate 1/second burst 5 packets ip saddr 10.0.0.1-10.0.0.2 counter accept",
        "icmp type echo-request counter accept",
        "icmpv6 type echo-request counter accept",
    ]
    # a rate limit is state of its rule: the same limit in both families stays two rules
    limited = "*filter\n-A INPUT -m limit --limit 1/s -j ACCEPT\nCOMMIT\n"
    assert chain_body(render_nft(rulesets(limited, limited)), "filter_INPUT")[1:] == [
        "meta nfproto ipv4 limit rate 1/second burst 5 packets counter accept",
        "meta nfproto ipv6 limit rate 1/second burst 5 packets counter accept"]


def test_different_policies_split_the_base_chain():
    text = render_nft(rulesets("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n",
                               "*filter\n-A INPUT -j LOG\nCOMMIT\n"))
    assert chain_body(text, "ip_filter_INPUT") == [
        "type filter hook input priority filter; policy drop;",
        "meta nfproto != ipv4 accept", 'iifname "lo" counter accept']
    assert chain_body(text, "ip6_filter_INPUT") == [
        "type filter hook input priority filter; policy accept;", "meta nfproto != ipv6 accept", "counter log"]
    # one family alone: the other family's packets must not meet its DROP policy
    only = render_nft(rulesets("*filter\n:INPUT DROP [0:0]\nCOMMIT\n"))
    assert chain_body(only, "ip_filter_INPUT")[1] == "meta nfproto != ipv4 accept"


def test_user_chain_names():
    v4 = "*filter\n:Web - [0:0]\n:stk-in - [0:0]\n:x - [0:0]\n-A INPUT -j Web\n-A INPUT -g stk-in\nCOMMIT\n*nat\n:x - [0:0]\nCOMMIT\n"
    v6 = "*filter\n:stk-in - [0:0]\n-A INPUT -j stk-in\nCOMMIT\n"
    text = render_nft(rulesets(v4, v6))
    for name in ("Web", "ip_stk-in", "ip6_stk-in", "filter_x", "nat_x"):
        assert f"\tchain {name} {{" in text
    # jumps that differ only in their chain: one rule, a verdict map on the family
    assert chain_body(text, "filter_INPUT")[1:] == ["counter meta nfproto vmap { ipv4 : jump Web, ipv6 : jump ip6_stk-in }",
                                                    "meta nfproto ipv4 counter goto ip_stk-in"]
    with pytest.raises(NftError, match="nft name"):
        render_nft(rulesets("*filter\n:a:b - [0:0]\nCOMMIT\n"))


def test_ipsets_become_native_sets():
    sets = {V4: {"Block": IPSet("Block", "hash:net", ("family", "inet", "hashsize", "1024"),
                                ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.1"]),
                 "svc": IPSet("svc", "hash:ip,port", (), ["192.0.2.1,tcp:80", "192.0.2.2,udp:53-54"])},
            V6: {"Block6": IPSet("Block6", "hash:ip", ("family", "inet6"), ["2001:db8::1"])}}
    v4 = "*filter\n-A INPUT -m set --match-set Block src -j DROP\n-A INPUT -m set ! --match-set svc dst,dst -j DROP\nCOMMIT\n"
    v6 = "*filter\n-A INPUT -m set --match-set Block6 src -j DROP\nCOMMIT\n"
    text = render_nft(rulesets(v4, v6, sets))
    assert ("\tset Block {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n"
            "\t\telements = { 10.0.0.0/8, 10.1.0.0/16, 192.0.2.1 }\n\t}") in text
    assert "\tset ip_svc {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tflags interval\n" in text
    assert "192.0.2.1 . tcp . 80" in text and "192.0.2.2 . udp . 53-54" in text
    assert "\tset Block6 {\n\t\ttype ipv6_addr\n\t\telements = { 2001:db8::1 }\n\t}" in text
    assert chain_body(text, "filter_INPUT")[1:] == [
        "ip saddr @Block counter drop", "ip6 saddr @Block6 counter drop",
        "ip daddr . meta l4proto . th dport != @ip_svc counter drop"]
    for bad in (IPSet("l", "list:set"), IPSet("n", "hash:net", (), ["10.0.0.0/8 nomatch"]),
                IPSet("m", "hash:net", ("netmask", "24"))):
        with pytest.raises(NftError, match=f"ipset {bad.name}"):
            render_nft(rulesets("*filter\nCOMMIT\n", sets={V4: {bad.name: bad}}))


def test_hashlimit_tables_are_shared_declared_sets():
    rule = "-A INPUT -p tcp -m hashlimit --hashlimit-above 10/sec --hashlimit-mode srcip,dstport --hashlimit-name ssh -j DROP"
    text = render_nft(rulesets(f"*filter\n{rule}\n{rule.replace('INPUT', 'FORWARD')}\nCOMMIT\n"))
    assert "\tset ssh_" not in text
    assert "\tset ip_ssh { type inet_service . ipv4_addr; size 65535; flags dynamic,timeout; timeout 1s; }" in text
    assert text.count("update @ip_ssh { tcp dport . ip saddr limit rate over 10/second }") == 2
    other = rule.replace("10/sec", "20/sec").replace("INPUT", "FORWARD")
    with pytest.raises(NftError, match="sharing --hashlimit-name ssh"):
        render_nft(rulesets(f"*filter\n{rule}\n{other}\nCOMMIT\n"))


def test_connlimit_gets_one_set_per_rule():
    v4 = ("*filter\n-A INPUT -p tcp -m connlimit --connlimit-above 4 -j REJECT --reject-with tcp-reset\n"
          "-A INPUT -m connlimit --connlimit-upto 9 --connlimit-mask 24 -j ACCEPT\nCOMMIT\n")
    text = render_nft(rulesets(v4))
    assert "\tset connlimit0 { type ipv4_addr; flags dynamic; }\n\tset connlimit1 { type ipv4_addr; flags dynamic; }" in text
    assert chain_body(text, "filter_INPUT")[1:] == [
        "ip protocol tcp add @connlimit0 { ip saddr ct count over 4 } counter reject with tcp reset",
        "meta nfproto ipv4 add @connlimit1 { ip saddr and 255.255.255.0 ct count 9 } counter accept"]


@pytest.mark.parametrize("rule,reason", [
    ("-A INPUT -m recent --set", "recent"),
    ("-A INPUT -m string --string x --algo bm", "payload"),
    ("-A INPUT -m conntrack --ctstate INVALID --ctproto tcp -j DROP", "without a conntrack entry"),
    ("-A INPUT -m conntrack --ctstate NEW,DNAT -j DROP", "OR"),
    ("-A OUTPUT -m owner --socket-exists -j DROP", "socket-exists"),
    ("-A INPUT -p icmp ! --icmp-type any", "no packet"),
    ('-A INPUT -j ACCEPT -m comment --comment "say \\"hi\\""', "string cannot hold"),
])
def test_refusals_name_the_rule(rule, reason):
    with pytest.raises(NftError, match=reason) as e:
        render_nft(rulesets(f"*filter\n{rule}\nCOMMIT\n"))
    assert "test.v4:2:1: iptables -t filter -A" in str(e.value)


def test_refused_targets():
    for table, rule, reason in (("mangle", "-A OUTPUT -j CONNMARK --save-mark --mask 0xff", "two registers"),
                                ("raw", "-A OUTPUT -j CT --zone mark", "zone mark"),
                                ("raw", "-A OUTPUT -p tcp -j CT --helper ftp\n-A OUTPUT -j NOTRACK", "helper"),
                                ("nat", "-A PREROUTING -p tcp -j DNAT --to-destination 1.2.3.4:80-90/85", "BASE")):
        with pytest.raises(NftError, match=reason):
            render_nft(rulesets(f"*{table}\n{rule}\nCOMMIT\n"))


def test_helper_only_raw_chain_runs_after_conntrack():
    text = render_nft(rulesets("*raw\n-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\nCOMMIT\n",
                               "*raw\n-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\nCOMMIT\n"))
    assert '\tct helper helper_ftp_tcp { type "ftp" protocol tcp; l3proto inet; }' in text
    assert chain_body(text, "raw_PREROUTING") == [
        "type filter hook prerouting priority -199; policy accept;",
        'tcp dport 21 counter ct helper set "helper_ftp_tcp"']


def test_strings_and_inet_forms():
    v4 = ("*filter\n-A INPUT -i eth+ -m comment --comment " + "x" * 200 + " -j ACCEPT\n"
          "-A INPUT -m conntrack --ctorigsrc 10.0.0.0/8 -j ACCEPT\nCOMMIT\n"
          "*nat\n-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:8080\n-A OUTPUT -p tcp -j DNAT --to :81\nCOMMIT\n")
    text = render_nft(rulesets(v4))
    body = chain_body(text, "filter_INPUT")
    assert body[1] == 'meta nfproto ipv4 iifname "eth*" counter accept comment "' + "x" * 128 + '"'
    assert body[2] == "meta nfproto ipv4 ct original ip saddr 10.0.0.0/8 counter accept"  # inet needs `ip`
    assert chain_body(text, "nat_PREROUTING")[1] == "ip protocol tcp counter dnat ip to 10.0.0.1:8080"
    assert chain_body(text, "nat_OUTPUT")[1] == "ip protocol tcp counter dnat to :81"


# ---- the optimiser ----

def test_ports_merge_into_a_set_or_a_verdict_map():
    v4 = ("*filter\n:web - [0:0]\n-A INPUT -p tcp --dport 22 -m comment --comment ssh -j ACCEPT\n"
          "-A INPUT -p tcp -m multiport --dports 80,443 -m comment --comment web -j ACCEPT\n"
          "-A INPUT -p tcp --dport 8080 -j web\n-A INPUT -p tcp --dport 9000:9010 -j DROP\n"
          "-A INPUT -p udp --dport 53 -j ACCEPT\n-A INPUT -p udp --dport 53 -j ACCEPT\n"
          "-A INPUT -p udp --dport 54 -m limit --limit 1/s -j ACCEPT\n-A INPUT -p udp --dport 55 -m limit --limit 1/s -j ACCEPT\n"
          "COMMIT\n")
    body = chain_body(render_nft(rulesets(v4)), "filter_INPUT")
    assert body[1:] == [
        ('meta nfproto ipv4 tcp dport vmap { 22 comment "ssh" : accept, 80 comment "web" : accept, '
         '443 comment "web" : accept, 8080 : jump filter_web, 9000-9010 : drop }'),
        "meta nfproto ipv4 udp dport 53 counter accept",  # the same port twice: not disjoint
        "meta nfproto ipv4 udp dport 53 counter accept",
        "meta nfproto ipv4 udp dport 54 limit rate 1/second burst 5 packets counter accept",  # stateful
        "meta nfproto ipv4 udp dport 55 limit rate 1/second burst 5 packets counter accept",
    ]
    same = "*filter\n-A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j LOG\n-A INPUT -s 10.0.0.0/8 -p tcp --dport 25 -j LOG\nCOMMIT\n"
    assert chain_body(render_nft(rulesets(same)), "filter_INPUT")[1:] == ["ip saddr 10.0.0.0/8 tcp dport { 22, 25 } counter log"]


PORTS = [(p, p) for p in (1, 2, 3, 5, 8)] + [(2, 4), (6, 9)]
ACTIONS = ["accept", "drop", "return", "jump A", "log", "meta mark set 0x1"]
OTHERS = [Part("iifname \"a\""), Part("ip saddr 10.0.0.0/8", "ipv4")]


@st.composite
def rule_lists(draw):
    rules = []
    for _ in range(draw(st.integers(0, 7))):
        ranges = draw(st.lists(st.sampled_from(PORTS), min_size=1, max_size=2, unique=True))
        proto = draw(st.sampled_from(["tcp", "udp"]))
        others = draw(st.lists(st.sampled_from(OTHERS), max_size=2, unique=True))
        dport = Part(f"{proto} dport ...", dport=(proto, tuple(ranges)))
        rules.append(NftRule(others + [dport], draw(st.sampled_from(ACTIONS)),
                             draw(st.sampled_from([None, "a", "b"]))))
    return rules


def run(rules: list[NftRule], proto: str, port: int, facts: set[str]) -> list[str]:
    """The actions a packet meets, in order, up to a terminal verdict (a jump returns, so it goes on)."""
    seen = []
    for r in rules:
        action = _fires(r, proto, port, facts)
        if action is None:
            continue
        seen.append(action)
        if action in ("accept", "drop", "return"):
            break
    return seen


def _fires(rule: NftRule, proto: str, port: int, facts: set[str]) -> str | None:
    """Reads the parts back: plain dport tests, merged sets `P dport { a, b-c }`, maps `P dport vmap {..}`."""
    for p in rule.parts:
        if p.dport:
            if p.dport[0] != proto or not any(lo <= port <= hi for lo, hi in p.dport[1]):
                return None
        elif m := re.fullmatch(r"(\w+) dport \{ (.*) \}", p.text):
            if m[1] != proto or not any(_in(e, port) for e in m[2].split(", ")):
                return None
        elif p.text not in facts:
            return None
    if m := re.fullmatch(r"(\w+) dport vmap \{ (.*) \}", rule.action or ""):
        hits = [e.split(" : ")[1] for e in m[2].split(", ") if m[1] == proto and _in(e.split(" : ")[0], port)]
        return hits[0] if hits else None
    return rule.action


def _in(element: str, port: int) -> bool:
    lo, _, hi = element.split(" comment ")[0].partition("-")
    return int(lo) <= port <= int(hi or lo)


@settings(max_examples=400, deadline=None)
@given(rule_lists())
def test_optimiser_is_equivalent(rules):
    merged = optimise(rules)
    for proto in ("tcp", "udp"):
        for port in range(11):
            for n in range(4):
                facts = {p.text for i, p in enumerate(OTHERS) if n >> i & 1}
                assert run(merged, proto, port, facts) == run(rules, proto, port, facts)


def test_a_jump_after_tests_of_the_familys_own_goes_through_a_gate_chain(tmp_path):
    """A policy's INPUT jumps to stk-syn only from sources in no blocklist set (policy/compile.py): IPv4's
    rule tests IPv4 sets, IPv6's none. One rule with a verdict map on `meta nfproto`, counting nothing,
    sends IPv4 to a gate chain holding IPv4's tests (counted, with the rule's comment) and IPv6 straight
    to its chain; the drop of what the gate kept out is IPv4's alone."""
    from stockade.policy.compile import compile_policy

    (tmp_path / "bad.txt").write_text("203.0.113.66\n203.0.113.128/25\n")
    policy = tmp_path / "p.toml"
    policy.write_text('[server]\ninterfaces = ["eth0"]\n\n[groups]\nbad = { file = "bad.txt" }\n\n'
                      '[blocklist]\ninbound = ["bad"]\n\n[[allow]]\nservice = "ssh"\n')
    text = render_nft(compile_policy(policy).rulesets)
    syn = 'iifname != "lo" tcp flags syn / fin,syn,rst,ack ct state new'
    body = chain_body(text, "filter_INPUT")
    assert body[2] == f'{syn} meta nfproto vmap {{ ipv4 : jump ip_gate1, ipv6 : jump ip6_stk-syn }} ' \
                      'comment "p.toml:1 new syn connections"'
    assert body[3] == f'meta nfproto ipv4 {syn} counter drop comment "p.toml:8 blocklist bad"'
    assert chain_body(text, "ip_gate1") == [
        'ip saddr != @ip_stk-bad-ip4 ip saddr != @ip_stk-bad-net4 counter jump ip_stk-syn '
        'comment "p.toml:1 new syn connections"']
