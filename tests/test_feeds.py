"""Feeds without a kernel: the list formats, bad lines by position, the policy's [feeds] section, and
the diff sets.py applies (merged ranges for nft's interval sets)."""
from __future__ import annotations

import pytest

from stockade.kernel.sets import change, merged
from stockade.model import Family
from stockade.policy.compile import compile_policy
from stockade.policy.feeds import read_feed
from stockade.policy.schema import PolicyError

V4IP, V4NET, V6NET = (Family.IPV4, "ip"), (Family.IPV4, "net"), (Family.IPV6, "net")


@pytest.mark.parametrize("fmt, text", [
    ("plain", "# a list\n192.0.2.1\n198.51.100.0/24  # note\n\n2001:db8::/32\n"),
    ("netset", "#\n# FireHOL netset\n#\n192.0.2.1\n198.51.100.0/24\n2001:db8::/32\n"),
    ("ip-comment", "192.0.2.1;seen scanning\n198.51.100.0/24;botnet\n2001:db8::/32; v6\n"),
    ("spamhaus", "; Spamhaus DROP List 2026/12/07\n; Last-Modified: x\n192.0.2.1 ; SBL1\n"
                 "198.51.100.0/24 ; SBL2\n2001:db8::/32 ; SBL3\n"),
])
def test_formats(fmt, text):
    fl = read_feed(text.encode(), fmt, "feed")
    assert fl.bad == []
    assert fl.members[V4IP] == ["192.0.2.1"] and fl.members[V4NET] == ["198.51.100.0/24"]
    assert fl.members[V6NET] == ["2001:db8::/32"] and fl.count == 3


def test_bad_lines_skipped_and_placed():
    text = "192.0.2.1\nnot-an-address\n  198.51.100.0/33\n192.0.2.2 192.0.2.3\n0.0.0.0/0\n203.0.113.9\n"
    fl = read_feed(text.encode(), "plain", "http://feed.example/list.txt")
    assert sorted(m for v in fl.members.values() for m in v) == ["192.0.2.1", "203.0.113.9"]
    assert [str(d).split("\n")[0] for d in fl.bad] == [
        "http://feed.example/list.txt:2:1: warning: `not-an-address` is not an address or network; line skipped",
        "http://feed.example/list.txt:3:3: warning: `198.51.100.0/33` is not an address or network; line skipped",
        "http://feed.example/list.txt:4:11: warning: `192.0.2.3`: one address or network per line; line skipped",
        "http://feed.example/list.txt:5:1: warning: `0.0.0.0/0` is every address; line skipped"]


def test_a_comment_sign_of_another_format_is_a_bad_line():
    fl = read_feed(b"192.0.2.1;note\n192.0.2.2\n", "plain", "f")
    assert fl.members[V4IP] == ["192.0.2.2"] and len(fl.bad) == 1 and fl.bad[0].origin.line == 1


def _policy(tmp_path, feed: str):
    p = tmp_path / "p.toml"
    p.write_text(f'[server]\ninterfaces = ["eth0"]\n[feeds.bl]\n{feed}\n[blocklist]\ninbound = ["bl"]\n')
    return p


def test_feed_group_compiles_its_last_good_list_and_keeps_empty_sets(tmp_path):
    p = _policy(tmp_path, 'url = "https://feed.example/drop.txt"\nformat = "spamhaus"\nmax_entries = 50000')
    c = compile_policy(p, feeds={"bl": {V4NET: ["198.51.100.0/24"]}})
    v4, v6 = c.rulesets[Family.IPV4].sets, c.rulesets[Family.IPV6].sets
    assert v4["stk-bl-net4"].members == ["198.51.100.0/24"] and v4["stk-bl-ip4"].members == []
    assert v6["stk-bl-ip6"].members == [] and v4["stk-bl-ip4"].options[-2:] == ("maxelem", "100000")
    assert "stk-bl-ip6" in c.rulesets[Family.IPV6].sets  # the rules match all four sets: updates never change them
    empty = compile_policy(p)
    assert empty.rulesets[Family.IPV4].sets["stk-bl-net4"].members == []


@pytest.mark.parametrize("feed, message", [
    ('format = "plain"', "a feed has either `url` or `file`"),
    ('url = "ftp://feed.example/x"', "is not an http:// or https:// URL"),
    ('url = "https://feed.example/x"\nfile = "x.txt"', "a feed has either `url` or `file`"),
    ('url = "https://feed.example/x"\nrefresh = "soon"', "is not a duration"),
    ('url = "https://feed.example/x"\nformat = "csv"', "feeds.bl.format"),
    ('url = "https://feed.example/x"\nmax_entry = 3', "unknown key `max_entry`"),
])
def test_feed_errors_are_positioned(tmp_path, feed, message):
    with pytest.raises(PolicyError) as e:
        compile_policy(_policy(tmp_path, feed))
    text = "\n".join(str(d) for d in e.value.diagnostics)
    assert message in text and f"{tmp_path / 'p.toml'}:" in text


def test_a_feed_and_a_group_of_one_name(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[groups]\nbl = ["192.0.2.1"]\n[feeds.bl]\nurl = "https://feed.example/x"\n')
    with pytest.raises(PolicyError, match="both a group and a feed"):
        compile_policy(p)


def test_merged_ranges_as_nft_keeps_them():
    assert merged(["192.0.2.0/25", "192.0.2.128/25", "198.51.100.0/24", "198.51.100.7/32", "203.0.113.0/25",
                   "203.0.113.128-203.0.113.200"]) == ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0-203.0.113.200"]


def test_change_is_the_difference():
    c = change("stk-x-ip4", ["192.0.2.1", "192.0.2.2"], ["192.0.2.2", "192.0.2.3"], "iptables-nft")
    assert (c.add, c.delete, len(c)) == (["192.0.2.3"], ["192.0.2.1"], 2)
    n = change("stk-x-net4", ["192.0.2.0/25"], ["192.0.2.0/25", "192.0.2.128/25"], "nftables")
    assert (n.add, n.delete, n.interval) == (["192.0.2.0/24"], ["192.0.2.0/25"], True)


def test_a_host_network_is_the_address_ipset_lists():
    assert len(change("stk-x-net4", ["198.51.100.7"], ["198.51.100.7/32"], "iptables-nft")) == 0
    assert len(change("stk-x-net6", ["2001:db8::1"], ["2001:db8::1/128"], "iptables-nft")) == 0


def test_an_ipv6_member_in_another_spelling_is_the_same():
    assert len(change("stk-x-net6", ["::ffff:0.0.0.0/96"], ["::ffff:0:0/96"], "iptables-nft")) == 0


def test_an_ipv6_slash_32_is_a_network():
    assert change("stk-x-net6", [], ["2001:db8::/32"], "iptables-nft").add == ["2001:db8::/32"]


def test_members_only_when_the_rules_and_the_sets_are_the_same():
    from stockade.kernel.part import OwnedPart
    from stockade.kernel.transaction import members_only

    rules = {"4": "*filter\n:stk-in - [0:0]\n-A stk-in -m set --match-set stk-b-ip4 src -j DROP\nCOMMIT\n",
             "6": "*filter\nCOMMIT\n"}
    create = "create stk-b-ip4 hash:ip family inet hashsize 1024 maxelem 4\n"
    live = OwnedPart("iptables-nft", {**rules, "sets": create + "add stk-b-ip4 192.0.2.1\nadd stk-b-ip4 192.0.2.2\n"})
    target = OwnedPart("iptables-nft", {**rules, "sets": create.replace("1024", "2048") + "add stk-b-ip4 192.0.2.2\n"
                                        "add stk-b-ip4 192.0.2.3\n"})
    [c] = members_only(live, target)
    assert (c.add, c.delete) == (["192.0.2.3"], ["192.0.2.1"])
    assert members_only(live, OwnedPart("iptables-nft", {**target.text, "4": rules["4"].replace("DROP", "REJECT")})) \
        is None
    bigger = "".join(f"add stk-b-ip4 192.0.2.{i}\n" for i in range(1, 6))
    assert members_only(live, OwnedPart("iptables-nft", {**rules, "sets": create + bigger})) is None  # maxelem 4
    other = OwnedPart("iptables-nft", {**rules, "sets": create.replace("hash:ip", "hash:net")})
    assert members_only(live, other) is None
