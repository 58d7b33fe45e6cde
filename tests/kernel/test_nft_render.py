"""The nftables rendering against the real nft (1.0.6 here) and kernel, in throwaway namespaces.

`nft -c` must accept, and `nft -f` install, the rendering of: the example policies
(twice, as a reload replaces the table atomically), every translatable OK line of the
corpus .t files (each as its own table), and a ruleset using the forms nft 1.0.6 is
particular about. A further test reads nft's bytecode to confirm that every expression
share starts with an nfproto check (the guard, or the dependency nft adds for a match).
"""
from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from stockade.kernel.netns import NetnsError
from stockade.model import Family, IPSet, Origin
from stockade.model.diagnostics import Token
from stockade.parse.command import Builder, table_of
from stockade.parse.save import read_save, split_line
from stockade.policy.compile import compile_policy
from stockade.render.nft import NftError, render_nft

from ..test_iptables_t import IN_SCOPE, cases, families

pytestmark = pytest.mark.kernel
EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))
V4, V6 = Family.IPV4, Family.IPV6


@pytest.fixture
def nft(netns):
    """Runs `nft ARGS` with TEXT on stdin inside the test's namespace."""
    if shutil.which("nft") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nft is not installed", pytrace=False)
        pytest.skip("nft is not installed")
    return lambda *args, text=None: netns.run(["nft", *args], input=text).stdout


def load(nft, text: str) -> None:
    nft("-c", "-f", "-", text=text)
    nft("-f", "-", text=text)


BASE = re.compile(r"^(filter|nat|mangle|raw|security)_[A-Z]+$")  # a base chain both families share
NFPROTO_CHECK = "  [ meta load nfproto => reg 1 ]\n  [ cmp eq reg 1 0x0000000"
PURE = re.compile(r"  \[ (meta load|payload load|ct load|exthdr load|fib|cmp|bitwise|lookup|range|byteorder) ")


def assert_confined(nft, text: str) -> int:
    """Every rule of a shared base chain checks nfproto, in nft's own bytecode, before it does
    anything with a side effect: the renderer's guard, or the dependency nft adds for a match the
    renderer trusts to imply the family; or it is one rule for both families (the renderer writes one
    where both families have the same rule at the same place, or a verdict map on nfproto where they
    jump to their own chains), which reads nothing of a network header."""
    out = nft("-c", "--debug=netlink", "-f", "-", text=text)
    blocks = re.findall(r"^inet \S+ (\S+)\n((?:  \[.*\]\n)+)", out, re.MULTILINE)
    shared = [(chain, code) for chain, code in blocks if BASE.match(chain)]
    bad = [f"{chain}:\n{code}" for chain, code in shared if "@ network header" in code and (
        NFPROTO_CHECK not in code
        or not all(PURE.match(line) for line in code[:code.index(NFPROTO_CHECK)].splitlines()))]
    assert not bad, "\n".join(bad)
    return len(shared)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_policies_load_and_reload(nft, example):
    text = render_nft(compile_policy(example).rulesets)
    load(nft, text)
    load(nft, text)  # the second load replaces the first in one transaction
    assert assert_confined(nft, text)
    listed = nft("list", "table", "inet", "stockade")
    assert "hook input priority filter; policy drop;" in listed


def corpus_rules():
    """(file, line, family, table, chain, rule) for every OK line of the in-scope .t files."""
    for filename in IN_SCOPE:
        for family in families(filename):
            for lineno, table, chain, rule, _, result in cases(filename):
                if result != "OK":
                    continue
                b = Builder(known_sets=frozenset())
                origin = Origin(filename, lineno)
                tbl = table_of(b, family, Token(table, origin))
                b.run(family, tbl, [Token("-A", origin), Token(chain, origin)] + split_line(rule, filename, lineno),
                      origin)
                if not [d for d in b.diagnostics if d.severity == "error"] and tbl.chains[chain].rules:
                    yield filename, lineno, family, b.rulesets


def test_every_translatable_corpus_rule_loads(nft):
    tables, refused = [], Counter()
    for filename, lineno, family, rulesets in corpus_rules():
        try:
            tables.append((f"{filename}:{lineno} {family.cmd}", render_nft(rulesets, table=f"t{len(tables)}")))
        except NftError as e:
            refused[re.sub(r"^.*?-A \S+: ", "", str(e)).split(":")[0]] += 1
    try:
        load(nft, "".join(t for _, t in tables))
    except NetnsError:  # name the corpus lines whose tables nft refuses
        bad = []
        for where, text in tables:
            try:
                nft("-c", "-f", "-", text=text)
            except NetnsError as e:
                bad.append(f"{where}:\n{text}{e.stderr}")
        raise AssertionError("\n".join(bad)) from None
    print(f"{len(tables)} corpus rules loaded; refused: {dict(refused)}")
    assert len(tables) > 1000
    assert assert_confined(nft, "".join(t for _, t in tables)) > 1000


QUIRKS_V4 = """*raw
-A PREROUTING -p tcp --dport 21 -j CT --helper ftp
COMMIT
*mangle
-A OUTPUT -p tcp --dport 25 -j MARK --set-xmark 0x4/0xff
-A PREROUTING -j CONNMARK --set-xmark 0x16/0x12 --right-shift-mark 2
COMMIT
*nat
-A INPUT -p tcp -j SNAT --to-source 192.0.2.1:1000-2000
-A OUTPUT -p tcp --dport 80 -j DNAT --to-destination 192.0.2.9:8080
-A POSTROUTING -o eth0 -j MASQUERADE --random-fully
COMMIT
*filter
:INPUT DROP [0:0]
:web - [0:0]
-A INPUT -m conntrack ! --ctstate NEW,RELATED,INVALID,UNTRACKED --ctexpire 5:10 -j ACCEPT
-A INPUT -p tcp --dport 22 -m comment --comment ssh -j ACCEPT
-A INPUT -p tcp -m multiport --dports 80,443 -m comment --comment web -j web
-A INPUT -p tcp --dport 8000:8010 -j DROP
-A INPUT -p tcp -m hashlimit --hashlimit-above 5/sec --hashlimit-mode srcip --hashlimit-name shared -j DROP
-A INPUT -p udp -m hashlimit --hashlimit-above 5/sec --hashlimit-mode srcip --hashlimit-name shared -j DROP
-A INPUT -m set --match-set admins src -j ACCEPT
-A INPUT -m set --match-set svc dst,dst -j ACCEPT
-A INPUT -m set ! --match-set temp src -j DROP
-A INPUT -m set --match-set macs src -j ACCEPT
-A INPUT -p icmp --icmp-type 3/1:3 -j ACCEPT
-A INPUT -p icmp ! --icmp-type 3/4 -j ACCEPT
-A INPUT -m tos --tos 0x10/0x3f -j ACCEPT
-A web -m connlimit --connlimit-above 20 --connlimit-mask 24 -j REJECT
-A web -j ACCEPT
COMMIT
"""
QUIRKS_V6 = """*nat
-A PREROUTING -p tcp -j DNAT --to-destination [2001:db8::1-2001:db8::9]:80-90
COMMIT
*filter
:web - [0:0]
-A INPUT -p ipv6-icmp --icmpv6-type 135 -m hl --hl-eq 255 -j ACCEPT
-A INPUT -m tos ! --tos 0x20 -j DROP
-A INPUT -m set --match-set nets6 src,dst -j ACCEPT
-A web -j ACCEPT
COMMIT
"""


def test_forms_nft_1_0_6_is_particular_about(nft):
    rulesets = {V4: read_save(QUIRKS_V4, "quirks.v4", V4).rulesets[V4],
                V6: read_save(QUIRKS_V6, "quirks.v6", V6).rulesets[V6]}
    rulesets[V4].sets.update({
        "admins": IPSet("admins", "hash:net", ("family", "inet"), ["192.0.2.0/24", "192.0.2.7", "192.0.2.7"]),
        "svc": IPSet("svc", "hash:ip,port", ("maxelem", "100"), ["192.0.2.1,tcp:80", "192.0.2.1,udp:53-54", "192.0.2.2,22"]),
        "temp": IPSet("temp", "hash:ip", ("timeout", "600", "comment"), ['192.0.2.9 timeout 30 comment "x y"']),
        "macs": IPSet("macs", "hash:mac", (), ["52:54:00:12:34:56"])})
    rulesets[V6].sets["nets6"] = IPSet("nets6", "hash:net,net", ("family", "inet6"), ["2001:db8::/32,2001:db8:1::/48"])
    text = render_nft(rulesets)
    load(nft, text)
    assert_confined(nft, text)
    listed = nft("list", "table", "inet", "stockade")
    for fragment in ("type nat hook input priority 100;", "type nat hook output priority -100;",
                     "type filter hook prerouting priority -199;", "type route hook output priority mangle;",
                     "dnat ip6 to [2001:db8::1]-[2001:db8::9]:80-90", 'ct helper set "helper_ftp_tcp"',
                     'tcp dport vmap { 22 comment "ssh" : accept, 80 comment "web" : jump ip_web, ',
                     "ct state ! invalid,", "ct expiration 5s-10s", "add @connlimit0 { ip saddr & 255.255.255.0",
                     # (ct mark & ~0x12) ^ 0x16, as nft simplifies it: the kernel's CONNMARK arithmetic
                     "ct mark set (ct mark ^ 0x00000004 | 0x00000012) >> 2"):
        assert fragment in listed, fragment
    assert listed.count("update @ip_shared { ip saddr limit rate over 5/second }") == 2


def test_confinement_check_catches_an_unguarded_rule(nft):
    with pytest.raises(AssertionError):
        assert_confined(nft, "table inet x {\n\tchain filter_INPUT {\n\t\tlimit rate 1/second ip saddr 10.0.0.1\n\t}\n}\n")
    assert assert_confined(nft, "table inet x {\n\tchain filter_INPUT {\n\t\tiifname \"lo\" ip saddr 10.0.0.1\n\t}\n}\n")
