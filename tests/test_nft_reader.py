"""parse/nft.py: nft JSON into model/nftables.py, with positions, and every defect refused at its place."""
from __future__ import annotations

import json

import pytest

from stockade.parse.nft import NftJsonError, read_nft_json
from stockade.parse.read import Unreadable

from .nftjson import ACCEPT, COUNTER, Doc, jump, match, payload


def doc() -> Doc:
    d = Doc().table("inet", "t").chain("inet", "t", "in", "input", -10, "drop").chain("inet", "t", "sub")
    d.set("inet", "t", "nets", "ipv4_addr", [{"prefix": {"addr": "192.0.2.0", "len": 28}}, "198.51.100.7"],
          flags=["interval"])
    d.rule("inet", "t", "in", match(payload("ip", "saddr"), "@nets"), COUNTER, jump("sub"))
    d.rule("inet", "t", "sub", match(payload("tcp", "dport"), 22), ACCEPT)
    return d.table("ip", "filter").chain("ip", "filter", "INPUT", "input", 0)


def test_listing_becomes_the_model():
    rs = read_nft_json(doc().text(), "rs.json")
    t = rs.table("inet", "t")
    assert t is not None and t.analysed and t.label == "inet t"
    base = t.chains["in"]
    assert (base.base, base.type, base.hook, base.prio, base.policy) == (True, "filter", "input", -10, "drop")
    assert not t.chains["sub"].base
    assert [r.handle for r in base.rules] == [1]
    assert t.sets["nets"].key == ("ipv4_addr",) and t.sets["nets"].flags == {"interval"}
    assert [tc[1].name for tc in rs.base_chains("input")] == ["in", "INPUT"]
    assert [t.label for t in rs.native().tables] == ["inet t"]  # ip filter is iptables-nft's


def test_each_object_keeps_its_line_and_column():
    text = doc().text(indent=2)
    rs = read_nft_json(text, "rs.json")
    rule = rs.table("inet", "t").chains["sub"].rules[0]
    line = text.splitlines()[rule.origin.line - 1]
    assert rule.origin.file == "rs.json" and line[rule.origin.col - 1] == "{"
    assert '"rule"' in text.splitlines()[rule.origin.line]  # the object that opens there is the rule


def test_commands_flush_and_elements():
    items = [{"add": {"table": {"family": "ip", "name": "old"}}}, {"flush": {"ruleset": None}},
             {"add": {"table": {"family": "ip", "name": "x"}}},
             {"add": {"set": {"family": "ip", "table": "x", "name": "s", "type": "inet_service", "elem": [1]}}},
             {"add": {"element": {"family": "ip", "table": "x", "name": "s", "elem": [2, 3]}}},
             {"add": {"chain": {"family": "ip", "table": "x", "name": "c", "type": "filter", "hook": "input",
                                "prio": "filter - 5"}}}]
    rs = read_nft_json(json.dumps({"nftables": items}), "cmds.json")
    assert [t.label for t in rs.tables] == ["ip x"]
    assert rs.tables[0].sets["s"].elements == [1, 2, 3]
    assert rs.tables[0].chains["c"].prio == -5


@pytest.mark.parametrize("text,line,col,words", [
    ('{"nftables": [\n  {"table": }]}', 2, 13, "not JSON"),
    ('[1, 2]', 1, 1, "without an `nftables` array"),
])
def test_not_nft_json_is_unreadable(text, line, col, words):
    with pytest.raises(Unreadable) as e:
        read_nft_json(text, "x.json")
    d = e.value.diagnostic
    assert (d.origin.line, d.origin.col) == (line, col) and words in d.message


def _bad(*items: dict) -> NftJsonError:
    text = json.dumps({"nftables": [{"table": {"family": "inet", "name": "t"}}, *items]}, indent=1)
    with pytest.raises(NftJsonError) as e:
        read_nft_json(text, "bad.json")
    d = e.value.diagnostics[0]
    assert d.origin.line > 1, "the defect is placed at its own object"
    return e.value


@pytest.mark.parametrize("items,words", [
    ([{"rule": {"family": "inet", "table": "t", "chain": "nope", "expr": []}}], "chain nope"),
    ([{"rule": {"family": "inet", "table": "u", "chain": "c", "expr": []}}], "table inet u"),
    ([{"chain": {"family": "inet", "table": "t", "name": "c"}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [jump("gone")]}}], "chain gone"),
    ([{"chain": {"family": "inet", "table": "t", "name": "c"}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [match(payload("ip", "saddr"), "@s")]}}],
     "set @s"),
    ([{"chain": {"family": "inet", "table": "t", "name": "c", "hook": "sideways", "prio": 0}}], "no hook"),
    ([{"chain": {"family": "inet", "table": "t", "name": "c", "hook": "input", "prio": "soon"}}], "priority"),
    ([{"chain": {"family": "inet", "table": "t", "name": "c", "hook": "input", "policy": "maybe"}}], "policy"),
    ([{"chain": {"family": "inet", "table": "t", "name": "c"}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"a": 1, "b": 2}]}}], "one key"),
    ([{"table": {"family": "decnet", "name": "x"}}], "family"),
    ([{"replace": {"rule": {}}}], "not something stockade reads"),
])
def test_defects_are_errors_at_their_place(items, words):
    e = _bad(*items)
    assert words in str(e), str(e)
    assert str(e).startswith("bad.json:")


@pytest.mark.parametrize("text,nft", [
    ('{"nftables": []}', True),
    ("#!/usr/sbin/nft -f\nflush ruleset\n", True),
    ("# firewall\ntable inet filter {\n}\n", True),
    ("define LAN = 192.0.2.0/24\nadd table ip nat\n", True),
    ("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", False),
    ("#!/bin/sh\nnft -f - <<EOF\ntable inet filter {\n}\nEOF\n", False),
    ("iptables -A INPUT -j ACCEPT\n", False),
])
def test_nft_inputs_are_recognised(text, nft):
    from stockade.parse.nft import looks_like_nft

    assert looks_like_nft(text) == nft
